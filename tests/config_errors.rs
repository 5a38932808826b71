//! Config validation through the real binary: `reapd check` on good and bad files (the exact
//! error lines, each naming its JSON path; a key given twice is one of them), a daemon that refuses a bad file and starts nothing,
//! usage errors, and stop timeouts that are capped with a warning.

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

/// Writes `text` as a config file in `dir` and runs `reapd check` on it.
fn check_text(dir: &TestDir, name: &str, text: &str) -> (i32, String, String, String) {
    let path = dir.write(name, text);
    let (code, out, err) = check(&path);
    (code, out, err, path.display().to_string())
}

/// Asserts `reapd check` fails with exit 2, printing exactly `errors` and then the summary line.
fn assert_rejected(tag: &str, text: &str, errors: &[&str]) {
    let dir = TestDir::new(tag);
    let (code, out, err, path) = check_text(&dir, "config.json", text);
    assert_eq!(code, 2, "exit status; stderr:\n{err}");
    assert_eq!(out, "", "nothing on stdout for a bad file");
    let mut expected: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    expected.push(format!(
        "reapd: {path}: {} error{}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    ));
    let got: Vec<&str> = err.lines().collect();
    assert_eq!(got, expected, "stderr:\n{err}");
}

/// Runs the binary with `args` and nothing on stdin: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("REAPD_SOCKET")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run reapd");
    (
        code_of(out.status),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn a_valid_file_prints_a_one_line_summary_in_start_order() {
    let dir = TestDir::new("cfgok");
    let cfg = json!({ "services": {
        "web": { "cmd": ["./web"], "after": ["db"] },
        "db": { "cmd": ["postgres"] },
        "cache": { "cmd": ["redis-server"], "after": ["db"] },
    }});
    let (code, out, err, path) = check_text(&dir, "config.json", &cfg.to_string());
    assert_eq!(code, 0, "stderr:\n{err}");
    assert_eq!(err, "", "no warnings expected");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with(&format!("{path}: ")), "{out}");
    assert!(
        out.contains("ok: 3 services (start order: db, cache, web)"),
        "{out}"
    );
    let (code, out, _, _) = check_text(&dir, "one.json", r#"{"services":{"a":{"cmd":["x"]}}}"#);
    assert_eq!(code, 0);
    assert!(out.contains("ok: 1 service (start order: a)"), "{out}");
}

#[test]
fn a_wrong_type_names_its_json_path() {
    assert_rejected(
        "cfgtype",
        r#"{"services":{"web":{"cmd":["x"],"stop_timeout_ms":"10s"}}}"#,
        &[r#"services.web.stop_timeout_ms: expected an integer, found "10s""#],
    );
}

#[test]
fn an_unknown_key_suggests_the_one_that_was_meant() {
    assert_rejected(
        "cfgkey",
        r#"{"sockt":"/tmp/x.sock","services":{}}"#,
        &[r#"sockt: unknown key (did you mean "socket"?)"#],
    );
    assert_rejected(
        "cfgkey2",
        r#"{"services":{"web":{"cmd":["x"],"stop_timout_ms":5}}}"#,
        &[r#"services.web.stop_timout_ms: unknown key (did you mean "stop_timeout_ms"?)"#],
    );
}

#[test]
fn an_unknown_dependency_is_named_with_a_suggestion() {
    assert_rejected(
        "cfgdep",
        r#"{"services":{"db":{"cmd":["x"]},"web":{"cmd":["x"],"after":["db","dbb"]}}}"#,
        &[r#"services.web.after[1]: unknown service "dbb" (did you mean "db"?)"#],
    );
}

#[test]
fn a_dependency_cycle_is_spelled_out() {
    assert_rejected(
        "cfgcycle",
        r#"{"services":{"a":{"cmd":["x"],"after":["b"]},"b":{"cmd":["x"],"after":["a"]},"c":{"cmd":["x"]}}}"#,
        &["services.a.after: dependency cycle: a → b → a"],
    );
}

#[test]
fn a_repeated_key_is_an_error_naming_its_path() {
    assert_rejected(
        "cfgdup",
        r#"{"services":{"a":{"cmd":["x"]},"a":{"cmd":["y"]},"b":{"cmd":["x"],"cmd":["y"]}},"grace_ms":1,"grace_ms":2}"#,
        &[
            "services.a: defined twice in the same object; keep only one (reapd does not pick one for you)",
            "services.b.cmd: defined twice in the same object; keep only one (reapd does not pick one for you)",
            "grace_ms: defined twice in the same object; keep only one (reapd does not pick one for you)",
        ],
    );
}

#[test]
fn invalid_json_gives_line_and_column() {
    let dir = TestDir::new("cfgjson");
    let text = "{\n  \"services\": {\n    \"a\": {\"cmd\": [\"x\"],}\n  }\n}\n";
    let (code, out, err, path) = check_text(&dir, "config.json", text);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("invalid JSON at line 3 column 24:"),
        "{err}"
    );
    assert_eq!(lines[1], format!("reapd: {path}: 1 error"));
}

#[test]
fn a_missing_file_cannot_be_read() {
    let dir = TestDir::new("cfgmissing");
    let path = dir.join("nope.json");
    let (code, out, err) = check(&path);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!("cannot read {}: ", path.display())),
        "{err}"
    );
    assert_eq!(lines[1], format!("reapd: {}: 1 error", path.display()));
}

#[test]
fn every_error_in_a_file_is_printed() {
    assert_rejected(
        "cfgmany",
        r#"{"sockt":"/x","services":{"web":{"cmd":"x","stop_timeout_ms":"10s","restart":"no"},"api":{"cmd":["x"],"after":["wbe"]}}}"#,
        &[
            r#"sockt: unknown key (did you mean "socket"?)"#,
            r#"services.web.cmd: expected an array of strings (argv, no shell), found "x"; write ["sh", "-c", "x"] to use a shell"#,
            r#"services.web.restart: expected one of "always", "on-failure", "never", found "no""#,
            r#"services.web.stop_timeout_ms: expected an integer, found "10s""#,
            r#"services.api.after[0]: unknown service "wbe" (did you mean "web"?)"#,
        ],
    );
}

#[test]
fn the_daemon_refuses_a_bad_file_and_starts_nothing() {
    let cfg = json!({ "services": {
        "good": { "cmd": ["sh", "-c", "touch \"$TEST_DIR/started\"; exec sleep 1000"] },
        "web": { "cmd": ["x"], "stop_timeout_ms": "10s" },
        "api": { "cmd": ["x"], "aftr": [] },
    }});
    let mut d = Daemon::start_config("cfgdaemon", &cfg.to_string(), &[]);
    let code = d.exit_code(SOON);
    assert_eq!(code, 2, "log:\n{}", d.log());
    let path = d.dir.join("config.json").display().to_string();
    let log = d.log();
    for e in [
        r#"services.api.aftr: unknown key (did you mean "after"?)"#,
        r#"services.web.stop_timeout_ms: expected an integer, found "10s""#,
    ] {
        assert_eq!(
            lines_with(&log, &format!("error: {path}: {e}")).len(),
            1,
            "{e}\nlog:\n{log}"
        );
    }
    assert!(!d.dir.join("started").exists(), "a service was started");
    assert!(!d.socket.exists(), "socket left behind");
    assert!(!d.dir.join("s.sock.lock").exists(), "lock left behind");
    let left = live_with_marker(&d.marker);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn usage_errors_exit_2_and_start_nothing() {
    let dir = TestDir::new("usage");
    let cfg = dir.write("config.json", r#"{"services":{}}"#);
    let cfg = cfg.display().to_string();
    let ran = dir.join("ran");
    let touch = format!("touch {}", ran.display());

    let (code, out, err) = run(&[]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    assert!(
        err.starts_with("reapd: nothing to supervise: give --config FILE or -- CMD"),
        "{err}"
    );
    assert!(err.contains("Try `reapd --help`."), "{err}");

    let (code, _, err) = run(&["--config", &cfg, "--", "sh", "-c", &touch]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("reapd: give either --config FILE or -- CMD, not both"),
        "{err}"
    );

    let (code, _, err) = run(&["--bogus", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("reapd: invalid option '--bogus'"), "{err}");

    let (code, _, err) = run(&["--stop-timeout", "5", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("apply to -- CMD"), "{err}");

    let (code, _, err) = run(&["check"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("check needs a file"), "{err}");

    assert!(!ran.exists(), "a command ran despite a usage error");
}

#[test]
fn check_caps_a_long_stop_timeout_with_a_warning() {
    let dir = TestDir::new("capcheck");
    let cfg = json!({ "services": { "slow": { "cmd": ["x"], "stop_timeout_ms": 45000 } } });
    let (code, out, err, path) = check_text(&dir, "config.json", &cfg.to_string());
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        ["warning: services.slow.stop_timeout_ms: 45000 ms capped to 30000 ms"]
    );
    assert!(
        out.starts_with(&format!("{path}: ok: 1 service (start order: slow)")),
        "{out}"
    );
}

#[test]
fn the_daemon_caps_a_long_stop_timeout_and_uses_the_cap() {
    let cfg = json!({ "services": {
        "slow": { "cmd": ["sleep", "1000"], "stop_timeout_ms": 45000 },
    }});
    let mut d = Daemon::start("capdaemon", &cfg.to_string());
    assert!(
        d.log()
            .contains("warn: services.slow.stop_timeout_ms: 45000 ms capped to 30000 ms"),
        "{}",
        d.log()
    );
    let mut w = d.watch();
    let v = d.request(r#"{"cmd":"stop","name":"slow"}"#);
    assert_eq!(v["ok"], true, "{v}");
    let mut seen = Vec::new();
    let stopping = w
        .until(SOON, &mut seen, |e| e["event"] == "stopping")
        .unwrap_or_else(|| panic!("no stopping event: {seen:?}"));
    assert_eq!(stopping["service"], "slow");
    assert_eq!(stopping["timeout_ms"], 30000, "{stopping}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}
