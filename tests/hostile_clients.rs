//! Clients that try to hold the loop or its memory: a writer that never reads, a reader that
//! pipelines 100 000 requests, requests naming enormous services, and watchers that take every
//! descriptor reapd may spend on clients. Everyone else keeps getting answers, memory stays
//! bounded and comes back, and SIGTERM still ends clean within its bound.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Generous bound for one answer while others flood (the real figure is in `scripts/bench`).
const ANSWER: Duration = Duration::from_secs(1);
/// The resident memory reapd may reach under any flood.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// `n` sleeping services and a shutdown bound of 2 s.
fn services(n: usize) -> Value {
    let mut cfg = sleepers(n);
    cfg["shutdown_timeout_ms"] = json!(2000);
    cfg
}

fn rss_kib(pid: i32) -> u64 {
    status_number(pid, "VmRSS")
}

/// One `ping` on a fresh connection: how long until the answer.
fn ping_time(socket: &std::path::Path) -> Duration {
    let t0 = Instant::now();
    let v = request_at(socket, r#"{"cmd":"ping"}"#).expect("ping answered");
    assert_eq!(v["pong"], true, "{v}");
    t0.elapsed()
}

/// Pings on fresh connections every 20 ms while `busy` holds, and samples reapd's memory:
/// returns (slowest answer, most memory in KiB, answers).
fn probe_while(d: &Daemon, mut busy: impl FnMut() -> bool) -> (Duration, u64, usize) {
    let (mut slowest, mut most, mut n) = (Duration::ZERO, 0, 0);
    while busy() {
        slowest = slowest.max(ping_time(&d.socket));
        most = most.max(rss_kib(d.pid()));
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    (slowest, most, n)
}

#[test]
fn clients_that_write_without_reading_hold_neither_the_loop_nor_memory() {
    let mut d = Daemon::builder("flood").config(services(40)).start();
    let before = rss_kib(d.pid());
    let flooders: Vec<Flooder> = (0..3)
        .map(|_| Flooder::start(&d.socket, r#"{"cmd":"list"}"#))
        .collect();
    let end = Instant::now() + Duration::from_secs(3);
    let (slowest, most, n) = probe_while(&d, || Instant::now() < end);
    assert!(n > 10, "only {n} answers in 3 s");
    assert!(
        slowest < ANSWER,
        "a ping took {slowest:?} while others flooded"
    );
    assert!(
        most < RSS_LIMIT_KIB,
        "reapd grew to {most} KiB (from {before} KiB)"
    );
    // Slowed down, never dropped: once a flooder reads, its replies are there, in full.
    for f in flooders {
        let (s, sent) = f.finish();
        assert!(sent > 0);
        s.set_read_timeout(Some(SOON)).expect("read timeout");
        let mut r = BufReader::new(s);
        for _ in 0..50 {
            let mut line = String::new();
            r.read_line(&mut line).expect("a reply");
            let v: Value = serde_json::from_str(&line).expect("one JSON reply");
            assert_eq!(v["services"].as_array().map(Vec::len), Some(40), "{line}");
        }
    }
    // Gone clients give their memory back.
    assert!(
        wait_until(SOON, || rss_kib(d.pid()) <= before + 2048),
        "memory stayed at {} KiB after the flood (before: {before} KiB, peak {most} KiB)",
        rss_kib(d.pid())
    );
    eprintln!(
        "flood: slowest ping {slowest:?}, RSS {before} KiB before, {most} KiB peak, {} KiB after",
        rss_kib(d.pid())
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_pipelining_reader_gets_all_100000_replies_in_order() {
    const N: usize = 100_000;
    let mut d = Daemon::builder("pipeline").config(services(3)).start();
    let s = UnixStream::connect(&d.socket).expect("connect");
    s.set_read_timeout(Some(SOON)).expect("read timeout");
    let mut w = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let all: String = (0..N)
            .map(|i| format!("{{\"cmd\":\"ping\",\"id\":{i}}}\n"))
            .collect();
        w.write_all(all.as_bytes()).expect("write requests");
        w.shutdown(std::net::Shutdown::Write)
            .expect("shutdown write");
    });
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(s);
            let t0 = Instant::now();
            for i in 0..N {
                let mut line = String::new();
                let n = r.read_line(&mut line).expect("read reply");
                assert!(n > 0, "connection closed after {i} replies");
                let v: Value = serde_json::from_str(&line).expect("JSON reply");
                assert_eq!(v["id"], i, "reply {i} out of order: {line}");
                assert_eq!(v["pong"], true, "{line}");
            }
            let took = t0.elapsed();
            // Every request answered, the connection is then closed.
            let mut rest = String::new();
            assert_eq!(r.read_line(&mut rest).expect("eof"), 0, "{rest}");
            done.store(true, Ordering::Relaxed);
            took
        })
    };
    let (slowest, most, _) = probe_while(&d, || {
        !done.load(Ordering::Relaxed) && !reader.is_finished()
    });
    writer.join().expect("writer");
    let took = reader.join().expect("all replies in order");
    assert!(slowest < ANSWER, "a ping took {slowest:?} meanwhile");
    assert!(most < RSS_LIMIT_KIB, "reapd grew to {most} KiB");
    eprintln!(
        "pipeline: {N} replies in {took:?} ({:.0} per second), slowest other ping {slowest:?}, peak RSS {most} KiB",
        N as f64 / took.as_secs_f64()
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn requests_naming_an_enormous_service_among_300_do_not_hold_the_loop() {
    let mut d = Daemon::builder("hugename").config(services(300)).start();
    let name = "x".repeat(60_000);
    let s = UnixStream::connect(&d.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut w = s.try_clone().expect("clone");
    let line = format!("{}\n", json!({ "cmd": "start", "name": name }));
    for _ in 0..10 {
        w.write_all(line.as_bytes()).expect("send");
    }
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(s);
        (0..10)
            .map(|_| {
                let mut line = String::new();
                r.read_line(&mut line).expect("reply");
                serde_json::from_str::<Value>(&line).expect("JSON reply")
            })
            .collect::<Vec<Value>>()
    });
    let (slowest, most, _) = probe_while(&d, || !reader.is_finished());
    let replies = reader.join().expect("ten replies");
    assert!(replies.iter().all(|v| v["code"] == "no_such_service"));
    assert!(slowest < ANSWER, "a ping took {slowest:?} meanwhile");
    assert!(most < RSS_LIMIT_KIB, "reapd grew to {most} KiB");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn sigterm_during_a_flood_ends_clean_within_its_bound() {
    let mut cfg = services(5);
    cfg["services"]["tree"] = json!({ "cmd": ["sh", "-c", "sleep 1000 & sleep 1000 & wait"] });
    let mut d = Daemon::builder("flood-term").config(cfg).start();
    let _flooders: Vec<Flooder> = (0..2)
        .map(|_| Flooder::start(&d.socket, r#"{"cmd":"status"}"#))
        .collect();
    let _pipeliner = Flooder::start(&d.socket, r#"{"cmd":"ping"}"#);
    assert!(
        wait_until(SOON, || live_with_marker(&d.marker).len() >= 8),
        "services up"
    );
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    d.signal(libc::SIGTERM);
    let code = d.exit_code(Duration::from_secs(20));
    let took = t0.elapsed();
    assert_eq!(code, 0, "{}", d.log());
    // The bound is 2 s; the margin covers a loaded machine, not a loop held by clients.
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?} with flooding clients"
    );
    d.assert_clean_exit();
}

#[test]
fn out_of_descriptors_a_waiting_client_is_served_when_a_watcher_leaves() {
    if !require_tool("prlimit") {
        return;
    }
    // More processes than reapd may hold pidfds for (30 under this limit): the stop path relies
    // on its reserve of descriptors to rescan /proc and signal them.
    let mut cfg = json!({ "services": {
        "tree": { "cmd": ["sh", "-c", "sleep 1000 & sleep 1000 & sleep 1000 & wait"] },
    } });
    for i in 0..11 {
        cfg["services"][format!("pair{i:02}")] =
            json!({ "cmd": ["sh", "-c", "sleep 1000 & sleep 1000 & wait"] });
    }
    let mut d = Daemon::builder("fd-watchers")
        .config(cfg)
        .wrapper(["prlimit", "--nofile=64:64", "--"])
        .start();
    assert!(
        wait_until(SOON, || live_with_marker(&d.marker).len() >= 4 + 11 * 3),
        "trees up"
    );
    // Watchers until one is no longer taken: that one waits in the backlog.
    let mut watchers = Vec::new();
    let waiting = loop {
        assert!(
            watchers.len() < 64,
            "64 watchers accepted under a limit of 64 descriptors"
        );
        let mut w = Watcher::connect(&d.socket).expect("connect");
        w.send(r#"{"cmd":"watch"}"#);
        match w.next_line(Duration::from_millis(1500)) {
            Some(v) => {
                assert_eq!(v["watching"], true, "{v}");
                watchers.push(w);
            }
            None => break w,
        }
    };
    assert!(!watchers.is_empty(), "no watcher accepted:\n{}", d.log());
    let mut waiting = waiting;
    waiting.send(r#"{"cmd":"ping"}"#);
    // One watcher leaves; nobody else connects. The waiting client is served.
    drop(watchers.pop());
    let first = waiting.next_line(SOON);
    assert_eq!(
        first.as_ref().map(|v| v["watching"] == true),
        Some(true),
        "waiting client not served after a watcher left: {first:?}\n{}",
        d.log()
    );
    let pong = waiting.next_line(SOON).expect("pong");
    assert_eq!(pong["pong"], true, "{pong}");
    // Every slot is taken again; the stop path still has its descriptors. The waiting client is
    // a watcher now: it sees the report.
    d.signal(libc::SIGTERM);
    let events = waiting.drain(Duration::from_secs(40));
    d.assert_clean_exit();
    let done = done_event(&events);
    assert_eq!(done["survivors"], json!([]), "{done}");
    drop(watchers);
}
