//! What services inherit from reapd, through the real binary: only descriptors 0-2, no blocked or
//! ignored signals, stdin on /dev/null, their own session, `REAPD_SERVICE` and their configured
//! `env`, and never `NOTIFY_SOCKET` — even when whoever started reapd leaked all of those into it.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{Value, json};

/// Starts reapd with `cfg` through a bash wrapper that runs `prelude` and then execs reapd, with
/// `blocked` signals blocked and `env` added to its environment.
fn start_wrapped(
    tag: &str,
    cfg: Value,
    prelude: &str,
    blocked: &[i32],
    env: &[(&str, &str)],
) -> Daemon {
    let b = Daemon::builder(tag);
    b.dir().write("input.txt", "not for services\n");
    let script = format!("{prelude}\nexec \"$@\"");
    let b = env.iter().fold(b, |b, (k, v)| b.env(k, v));
    b.config(cfg)
        .wrapper(["bash", "-c", &script, "reapd-wrapper"])
        .blocked_signals(blocked)
        .start()
}

/// A shell that stays alive waiting for a child of its own. (A shell cannot list its own
/// descriptors reliably: dash keeps a saved copy of fd 1 open while it runs `ls > file`.)
fn shell_with_child() -> Value {
    json!({ "cmd": ["sh", "-c", "sleep 1000; :"] })
}

/// Asserts a process has only fds 0-2 and no blocked or ignored signals at all (glibc's own
/// internal signals 32 and 33 included: reapd resets them with the raw system call).
fn assert_pristine(what: &str, pid: i32) {
    assert_eq!(fds_of(pid), [0, 1, 2], "{what}: descriptors of pid {pid}");
    let status = status_text(pid);
    assert_eq!(sigset(&status, "SigBlk"), 0, "{what}:\n{status}");
    assert_eq!(sigset(&status, "SigIgn"), 0, "{what}:\n{status}");
}

/// The `sleep` child of a service running [`shell_with_child`].
fn child_of(d: &Daemon, name: &str, shell: i32) -> Proc {
    let mut child = None;
    assert!(
        wait_until(SOON, || {
            child = live_with_marker(&d.marker)
                .into_iter()
                .find(|p| p.ppid == shell && p.cmdline == "sleep 1000");
            child.is_some()
        }),
        "{name}: the shell's child never appeared"
    );
    child.expect("child")
}

#[test]
fn services_get_only_fds_0_to_2_and_a_clean_signal_state() {
    let prelude = r#"trap "" HUP USR1 ALRM TTOU XFSZ
exec 7</dev/null 9>>"$TEST_DIR/extra.txt"
grep -E "^Sig(Blk|Ign):" /proc/$$/status > "$TEST_DIR/wrapper.sig""#;
    let blocked = [libc::SIGUSR2, libc::SIGALRM, libc::SIGTERM];
    let cfg = json!({ "services": { "one": shell_with_child(), "two": shell_with_child() } });
    let mut d = start_wrapped("fds", cfg, prelude, &blocked, &[]);

    // The test is only meaningful if reapd really inherited the mess.
    let wrapper = d.dir.read("wrapper.sig");
    for sig in blocked {
        assert_ne!(sigset(&wrapper, "SigBlk") & sig_bit(sig), 0, "{wrapper}");
    }
    for sig in [libc::SIGHUP, libc::SIGALRM, libc::SIGTTOU, libc::SIGXFSZ] {
        assert_ne!(sigset(&wrapper, "SigIgn") & sig_bit(sig), 0, "{wrapper}");
    }
    let own = status_text(d.pid());
    assert_ne!(
        sigset(&own, "SigIgn") & sig_bit(libc::SIGALRM),
        0,
        "reapd inherited ignored signals:\n{own}"
    );
    let reapd_fds = fds_of(d.pid());
    assert!(
        reapd_fds.contains(&7) && reapd_fds.contains(&9),
        "reapd inherited fds 7 and 9: {reapd_fds:?}"
    );

    for name in ["one", "two"] {
        let shell = d.pid_of(name).expect("running");
        let child = child_of(&d, name, shell);
        // While dash forks it blocks every signal for a moment; look once it sits waiting for
        // its child, as it does for the rest of its life.
        assert!(
            wait_until(SOON, || stat(shell).map(|s| s.state) == Some('S')),
            "{name}: the shell never settled"
        );
        assert_pristine(name, shell);
        assert_pristine(&format!("{name}'s child"), child.pid);
    }
    // reapd unblocked SIGTERM for itself too: it still shuts down on it.
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn ignored_real_time_signals_are_reset_too() {
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let prelude = format!("trap '' {rtmin} {} {rtmax}", rtmin + 5);
    let cfg = json!({ "services": { "one": shell_with_child() } });
    let mut d = start_wrapped("rtsig", cfg, &prelude, &[], &[]);
    let own = status_text(d.pid());
    let rt = sig_bit(rtmin) | sig_bit(rtmin + 5) | sig_bit(rtmax);
    assert_eq!(
        sigset(&own, "SigIgn") & rt,
        rt,
        "reapd inherited them:\n{own}"
    );
    let shell = d.pid_of("one").expect("running");
    let child = child_of(&d, "one", shell);
    for (what, pid) in [("one", shell), ("one's child", child.pid)] {
        let status = status_text(pid);
        assert_eq!(
            sigset(&status, "SigIgn") & rt,
            0,
            "{what}: SIGRTMIN, SIGRTMIN+5 and SIGRTMAX are still ignored:\n{status}"
        );
    }
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn service_environment_has_its_name_and_env_but_not_notify_socket() {
    let cfg = json!({ "services": {
        "envy": { "cmd": ["sleep", "1000"], "env": { "FOO": "inner", "EXTRA": "x y=z" } },
        "plain": { "cmd": ["sleep", "1000"] },
    }});
    let env = [
        ("NOTIFY_SOCKET", "/nonexistent/path"),
        ("REAPD_SERVICE", "outer"),
        ("FOO", "outer"),
        ("KEEP", "kept"),
    ];
    let mut d = start_wrapped("env", cfg, ":", &[], &env);
    let own = environ(d.pid());
    assert_eq!(
        own.get("NOTIFY_SOCKET").map(String::as_str),
        Some("/nonexistent/path"),
        "reapd itself has NOTIFY_SOCKET"
    );
    let envy = environ(d.pid_of("envy").expect("envy runs"));
    let plain = environ(d.pid_of("plain").expect("plain runs"));
    let get = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned();
    assert_eq!(get(&envy, "REAPD_SERVICE").as_deref(), Some("envy"));
    assert_eq!(get(&plain, "REAPD_SERVICE").as_deref(), Some("plain"));
    assert_eq!(get(&envy, "FOO").as_deref(), Some("inner"));
    assert_eq!(get(&envy, "EXTRA").as_deref(), Some("x y=z"));
    assert_eq!(get(&plain, "FOO").as_deref(), Some("outer"));
    assert_eq!(get(&plain, "EXTRA"), None);
    for (name, e) in [("envy", &envy), ("plain", &plain)] {
        assert_eq!(get(e, "KEEP").as_deref(), Some("kept"), "{name}");
        assert_eq!(
            get(e, "REAPD_TEST_MARKER"),
            Some(d.marker.clone()),
            "{name}"
        );
        assert_eq!(get(e, "NOTIFY_SOCKET"), None, "{name}: {e:?}");
    }
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn stdin_is_dev_null_even_when_reapd_has_a_real_one() {
    let cfg = json!({ "services": {
        "a": { "cmd": ["sh", "-c", "readlink /proc/$$/fd/0 > \"$TEST_DIR/stdin.tmp\"; mv \"$TEST_DIR/stdin.tmp\" \"$TEST_DIR/stdin\"; exec sleep 1000"] },
    }});
    let prelude = r#"exec 0<"$TEST_DIR/input.txt""#;
    let mut d = start_wrapped("stdin", cfg, prelude, &[], &[]);
    let reapd_stdin = std::fs::read_link(format!("/proc/{}/fd/0", d.pid())).expect("readlink");
    assert_eq!(reapd_stdin, d.dir.join("input.txt"), "reapd's own stdin");
    assert_eq!(d.wait_for("stdin", "\n").trim(), "/dev/null");
    let pid = d.pid_of("a").expect("a runs");
    let link = std::fs::read_link(format!("/proc/{pid}/fd/0")).expect("readlink");
    assert_eq!(link.to_string_lossy(), "/dev/null");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn each_service_leads_its_own_session() {
    let cfg = json!({ "services": {
        "a": { "cmd": ["sh", "-c", "sleep 1000 & wait"] },
        "b": { "cmd": ["sleep", "1000"] },
    }});
    let mut d = Daemon::builder("session").config(cfg).start();
    let reapd = stat(d.pid()).expect("reapd stat");
    let a = d.pid_of("a").expect("a runs");
    let b = d.pid_of("b").expect("b runs");
    for pid in [a, b] {
        let st = stat(pid).expect("stat");
        assert_eq!(st.ppid, d.pid(), "reapd's child");
        assert_eq!(st.session, pid, "pid {pid} leads its session");
        assert_eq!(st.pgrp, pid, "pid {pid} leads its process group");
        assert_ne!(st.session, reapd.session);
        assert_ne!(st.pgrp, reapd.pgrp);
    }
    // A child of a service stays in the service's session.
    let mut child = None;
    assert!(
        wait_until(SOON, || {
            child = live_with_marker(&d.marker)
                .into_iter()
                .find(|p| p.ppid == a);
            child.is_some()
        }),
        "a's child never appeared"
    );
    let child = child.expect("child");
    assert_eq!(stat(child.pid).map(|s| s.session), Some(a), "{child:?}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}
