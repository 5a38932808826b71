//! Services' output through reapd (`"log": "prefix"`), on the real binary: whole, prefixed lines
//! under a flood on both streams, nothing lost when the flood comes during the shutdown, a
//! partial last line flushed at exit, and `ctl logs` with `-n` and `-f`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::json;

const LINES: usize = 20_000;

/// An awk program printing `lines` numbered lines `<tag> N <padding>` to `to`.
fn numbered(tag: &str, to: &str, lines: usize) -> String {
    format!(
        "awk 'BEGIN {{ for (i = 1; i <= {lines}; i++) printf \"{tag} %d abcdefghijklmnopqrstuvwxyz0123456789\\n\", i > \"{to}\" }}'"
    )
}

/// Checks that `text` holds, for `service`, the lines `<tag> 1..=lines` exactly once each, every
/// one whole and correctly prefixed; other lines must belong to reapd or `service` as well.
fn assert_every_line_once(text: &str, service: &str, tag: &str, lines: usize) {
    let prefix = format!("{service} | {tag} ");
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let (n, pad) = rest.split_once(' ').unwrap_or((rest, ""));
        assert_eq!(
            pad, "abcdefghijklmnopqrstuvwxyz0123456789",
            "torn line {line:?}"
        );
        let n: usize = n.parse().unwrap_or_else(|_| panic!("torn line {line:?}"));
        *seen.entry(n).or_default() += 1;
    }
    let missing: Vec<usize> = (1..=lines).filter(|n| !seen.contains_key(n)).collect();
    let twice: Vec<(&usize, &usize)> = seen.iter().filter(|(_, c)| **c != 1).collect();
    assert!(
        missing.is_empty() && twice.is_empty() && seen.len() == lines,
        "{tag}: {} missing (first {:?}), {} more than once",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        twice.len()
    );
}

/// Waits until the main process of `service` waits in `write(2)` on its full output pipe.
fn assert_blocked_in_write(d: &Daemon, service: &str) {
    let pid = d.pid_of(service).expect("the service runs");
    let blocked = wait_until(SOON, || {
        std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .is_ok_and(|w| w.contains("pipe_write"))
    });
    assert!(
        blocked,
        "{service} never blocked in write; log:\n{}",
        d.log()
    );
}

#[test]
fn a_flood_on_both_streams_arrives_whole_and_prefixed_and_the_partial_last_line_at_exit() {
    let dir = TestDir::new("logs-flood");
    let script = dir.script(
        "flood.sh",
        &format!(
            "{} &\n{}\nwait\nprintf 'partial without newline'\nprintf 'stderr partial' >&2\n",
            numbered("out", "/dev/stdout", LINES),
            numbered("err", "/dev/stderr", LINES)
        ),
    );
    let mut d = Daemon::builder_in(dir)
        .config(json!({"services": {"flood": {
            "cmd": [script], "log": "prefix", "restart": "never"
        }}}))
        .start();
    d.wait_for("stdout.log", "flood | partial without newline\n");
    // The tail has the last lines, oldest first.
    let r = d.request(r#"{"cmd":"logs","name":"flood","lines":2}"#);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["captured"], true, "{r}");
    let lines = r["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 2, "{r}");
    let texts: Vec<&str> = lines.iter().filter_map(|l| l["line"].as_str()).collect();
    assert!(
        texts.contains(&"partial without newline") || texts.contains(&"stderr partial"),
        "{r}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    let out = d.dir.read("stdout.log");
    assert_every_line_once(&out, "flood", "out", LINES);
    assert!(!out.contains("flood | err "), "stderr lines go to stderr");
    for line in out.lines() {
        assert!(
            line.starts_with("flood | "),
            "stdout holds only flood's lines: {line:?}"
        );
    }
    let log = d.log();
    assert_every_line_once(&log, "flood", "err", LINES);
    assert!(
        log.contains("\nflood | stderr partial\n"),
        "partial stderr line flushed"
    );
}

#[test]
fn what_a_service_writes_while_it_stops_is_all_written_before_reapd_exits() {
    let dir = TestDir::new("logs-at-exit");
    // On SIGTERM the service floods both streams, then exits: the whole flood happens during
    // the shutdown, and reapd must write all of it before it exits.
    let script = dir.script(
        "late.sh",
        &format!(
            "trap '{} & {}; wait; printf last; exit 0' TERM\necho up\nwhile :; do sleep 0.05; done\n",
            numbered("out", "/dev/stdout", LINES).replace('\'', "'\\''"),
            numbered("err", "/dev/stderr", LINES).replace('\'', "'\\''")
        ),
    );
    let mut d = Daemon::builder_in(dir)
        .config(json!({"services": {"late": {
            "cmd": [script], "log": "prefix", "stop_scope": "main", "stop_timeout_ms": 20000
        }}}))
        .start();
    d.wait_for("stdout.log", "late | up\n");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    let out = d.dir.read("stdout.log");
    assert_every_line_once(&out, "late", "out", LINES);
    assert!(
        out.ends_with("late | last\n"),
        "partial last line at the end: {:?}",
        out.get(out.len().saturating_sub(80)..)
    );
    assert_every_line_once(&d.log(), "late", "err", LINES);
}

#[test]
fn ctl_logs_shows_the_last_lines_and_follows_new_ones() {
    let dir = TestDir::new("logs-follow");
    let script = dir.script(
        "tick.sh",
        "n=0\ntrap 'n=$((n+1)); echo \"hup $n\"; echo \"warn $n\" >&2' HUP\necho one\necho two\nwhile :; do sleep 0.05; done\n",
    );
    let mut d = Daemon::builder_in(dir)
        .config(json!({"services": {
            "tick": {"cmd": [script], "log": "prefix-time"},
            "plain": {"cmd": ["sleep", "60"]}
        }}))
        .start();
    d.wait_for("stdout.log", "tick | two\n");
    let out = d.dir.read("stdout.log");
    let first = out.lines().next().unwrap_or_default();
    // prefix-time: `HH:MM:SS.mmm tick | one`.
    assert_eq!(first.len(), "12:00:00.000 tick | one".len(), "{first:?}");
    assert!(
        first.ends_with(" tick | one") && first.as_bytes()[2] == b':',
        "{first:?}"
    );

    let mut w = Watcher::connect(&d.socket).expect("connect");
    w.send(r#"{"cmd":"logs","name":"tick","lines":1,"follow":true,"id":3}"#);
    let reply = w.next_line(SOON).expect("reply");
    assert_eq!(reply["id"], 3, "{reply}");
    assert_eq!(reply["lines"][0]["line"], "two", "{reply}");
    assert_eq!(reply["lines"].as_array().map(Vec::len), Some(1), "{reply}");
    d.request(r#"{"cmd":"signal","name":"tick","signal":"HUP"}"#);
    let a = w.next_line(SOON).expect("followed line");
    let b = w.next_line(SOON).expect("followed line");
    let mut got = [
        (a["log"].clone(), a["stream"].clone(), a["line"].clone()),
        (b["log"].clone(), b["stream"].clone(), b["line"].clone()),
    ];
    got.sort_by_key(|g| g.1.to_string());
    assert_eq!(
        got[0],
        (json!("tick"), json!("stderr"), json!("warn 1")),
        "{a} {b}"
    );
    assert_eq!(
        got[1],
        (json!("tick"), json!("stdout"), json!("hup 1")),
        "{a} {b}"
    );

    // `reapd ctl logs` for people, and its errors.
    let run = run_reapd([
        "ctl",
        "--socket",
        d.socket.to_str().expect("utf-8"),
        "logs",
        "tick",
        "-n",
        "1",
    ]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let shown = run.stdout.trim_end();
    assert!(
        shown.ends_with(" tick | warn 1") || shown.ends_with(" tick | hup 1"),
        "{run:?}"
    );
    // `reapd ctl logs -f` prints the tail, then follows.
    let out = std::fs::File::create(d.dir.join("ctl-follow.txt")).expect("file");
    let follower = Marked::spawn(
        std::process::Command::new(BIN)
            .args(["ctl", "--socket"])
            .arg(&d.socket)
            .args(["logs", "tick", "-f", "-n", "1"])
            .stdout(out),
        // Its own marker: dropping it kills only the client.
        &unique("ctl-follow"),
    );
    d.wait_for("ctl-follow.txt", "tick | ");
    d.request(r#"{"cmd":"signal","name":"tick","signal":"HUP"}"#);
    d.wait_for("ctl-follow.txt", " tick | hup 2\n");
    drop(follower);
    let r = d.request(r#"{"cmd":"logs","name":"plain"}"#);
    assert_eq!(
        (&r["captured"], &r["lines"]),
        (&json!(false), &json!([])),
        "{r}"
    );
    let r = d.request(r#"{"cmd":"logs","name":"nope"}"#);
    assert_eq!(r["code"], "no_such_service", "{r}");
    let r = d.request(r#"{"cmd":"logs","name":"tick","lines":-1}"#);
    assert_eq!(r["code"], "bad_request", "{r}");

    // The follower stays through the shutdown and is closed when reapd exits.
    d.signal(libc::SIGTERM);
    assert!(
        w.closed_within(Duration::from_secs(40)),
        "follower closed at exit"
    );
    d.assert_clean_exit();
}

#[test]
fn a_stdout_nobody_reads_holds_back_the_service_never_the_loop() {
    if !require_tool("perl") {
        return;
    }
    let dir = TestDir::new("logs-full-stdout");
    let flood = dir.script(
        "flood.sh",
        &format!("exec {}\n", numbered("out", "/dev/stdout", 100_000)),
    );
    let talker = dir.script(
        "talker.sh",
        "trap 'echo \"hup on stderr\" >&2' HUP\nwhile :; do sleep 0.05; done\n",
    );
    // reapd's stdout is a pipe whose read end reapd itself holds (inherited) and never reads.
    let mut d = Daemon::builder_in(dir)
        .wrapper([
            "perl",
            "-e",
            "use Fcntl; pipe(my $r, my $w) or die; fcntl($r, F_SETFD, 0); \
             open(STDOUT, '>&', $w) or die; close $w; exec @ARGV or die",
        ])
        .config(json!({"services": {
            "flood": {"cmd": [flood], "log": "prefix"},
            "talker": {"cmd": [talker], "log": "prefix"}
        }}))
        .start();
    // The flood fills the pipe and reapd's buffer, then waits in write(2).
    assert_blocked_in_write(&d, "flood");
    // The loop still answers, the tail is there, and stderr still flows.
    let r = d.request(r#"{"cmd":"logs","name":"flood","lines":1}"#);
    assert_eq!(r["lines"].as_array().map(Vec::len), Some(1), "{r}");
    d.request(r#"{"cmd":"signal","name":"talker","signal":"HUP"}"#);
    d.wait_for("reapd.log", "talker | hup on stderr\n");
    let rss = status_number(d.pid(), "VmRSS");
    assert!(rss < 64 * 1024, "reapd holds {rss} KiB");
    d.signal(libc::SIGTERM);
    let code = d.exit_code(Duration::from_secs(20));
    assert_eq!(code, 0, "{}", d.log());
    assert!(
        d.log().contains(
            "bytes of services' output were not written: reapd's stdout is not being read"
        ),
        "{}",
        d.log()
    );
    d.assert_nothing_left();
}

#[test]
fn a_slow_reader_of_stdout_gets_every_line_once_it_reads() {
    if !require_tool("perl") {
        return;
    }
    let dir = TestDir::new("logs-slow-reader");
    let lines = 60_000;
    let flood = dir.script(
        "flood.sh",
        &format!("exec {}\n", numbered("out", "/dev/stdout", lines)),
    );
    // reapd's stdout is a pipe to a reader that starts reading only once `go` exists.
    let mut d = Daemon::builder_in(dir)
        .wrapper([
            "perl",
            "-e",
            "pipe(my $r, my $w) or die; my $pid = fork() // die; \
             if ($pid == 0) { close $w; \
               until (-e \"$ENV{TEST_DIR}/go\") { select(undef, undef, undef, 0.01) } \
               open(my $o, '>', \"$ENV{TEST_DIR}/out.log\") or die; \
               while (sysread($r, my $buf, 65536)) { syswrite($o, $buf) } exit 0 } \
             close $r; open(STDOUT, '>&', $w) or die; close $w; exec @ARGV or die",
        ])
        .config(
            json!({"services": {"flood": {"cmd": [flood], "log": "prefix", "restart": "never"}}}),
        )
        .start();
    assert_blocked_in_write(&d, "flood");
    d.dir.write("go", "");
    let last = format!("flood | out {lines} ");
    let all = wait_until(SOON, || d.dir.read("out.log").contains(&last));
    assert!(all, "the held-back lines never came; log:\n{}", d.log());
    d.signal(libc::SIGTERM);
    assert_eq!(d.exit_code(Duration::from_secs(40)), 0, "{}", d.log());
    // The reader ends at the end of the pipe, once reapd has exited.
    assert!(
        wait_until(SOON, || d.services_procs().is_empty()),
        "reader left"
    );
    d.assert_nothing_left();
    assert_every_line_once(&d.dir.read("out.log"), "flood", "out", lines);
}

#[test]
fn a_line_longer_than_the_cap_is_cut_into_marked_pieces() {
    let dir = TestDir::new("logs-long-line");
    // 10 000 bytes and a newline, then a short line: pieces of 3968, 3968 and 2064 bytes.
    let script = dir.script(
        "long.sh",
        "awk 'BEGIN { s = \"\"; for (i = 0; i < 10000; i++) s = s \"y\"; print s; print \"short\" }'\nexec sleep 60\n",
    );
    let mut d = Daemon::builder_in(dir)
        .config(json!({"services": {"long": {"cmd": [script], "log": "prefix"}}}))
        .start();
    let out = d.wait_for("stdout.log", "long | short\n");
    let lines: Vec<(&str, usize)> = out
        .lines()
        .map(|l| (l.get(..7).unwrap_or(l), l.len().saturating_sub(7)))
        .collect();
    assert_eq!(
        lines,
        [
            ("long | ", 3968),
            ("long + ", 3968),
            ("long + ", 2064),
            ("long | ", 5)
        ],
        "{out:.200}"
    );
    let r = d.request(r#"{"cmd":"logs","name":"long","lines":3}"#);
    assert_eq!(r["lines"][0]["continued"], true, "{r:.300}");
    assert_eq!(r["lines"][2]["line"], "short", "{r:.300}");
    assert!(r["lines"][2].get("continued").is_none(), "{r:.300}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn out_of_descriptors_a_service_writes_to_reapds_output_instead_and_the_stop_path_keeps_its_reserve()
 {
    if !require_tool("prlimit") {
        return;
    }
    let dir = TestDir::new("logs-few-fds");
    let services: serde_json::Map<String, serde_json::Value> = (0..20)
        .map(|i| {
            (
                format!("s{i:02}"),
                json!({"cmd": ["sh", "-c", format!("echo hello from {i}; exec sleep 60")], "log": "prefix"}),
            )
        })
        .collect();
    let mut d = Daemon::builder_in(dir)
        .wrapper(["prlimit", "--nofile=64:64", "--"])
        .config(json!({ "services": services }))
        .start();
    let log = d.wait_for("reapd.log", "no descriptor left for its output pipes");
    assert!(log.contains("raise ulimit -n"), "{log}");
    // Every service runs and says hello, through a pipe or directly.
    assert!(
        wait_until(SOON, || d
            .dir
            .read("stdout.log")
            .matches("hello from")
            .count()
            == 20),
        "{}",
        d.dir.read("stdout.log")
    );
    let out = d.dir.read("stdout.log");
    assert!(out.contains("s00 | hello from 0\n"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("hello from ")), "{out}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}
