//! Config validation through the real binary: `reapd check` on good and bad files (the exact
//! error lines, each naming its JSON path; a key given twice is one of them), a daemon that refuses a bad file and starts nothing,
//! usage errors, and stop timeouts that are capped with a warning.

mod common;

use common::*;
use serde_json::json;

/// Writes `text` as a config file in `dir` and runs `reapd check` on it; returns the run and the
/// file's path.
fn check_text(dir: &TestDir, name: &str, text: &str) -> (ToolRun, String) {
    let path = dir.write(name, text);
    (check(&path), path.display().to_string())
}

/// Asserts `reapd check` fails with exit 2, printing exactly `errors` and then the summary line.
fn assert_rejected(tag: &str, text: &str, errors: &[&str]) {
    let dir = TestDir::new(tag);
    let (run, path) = check_text(&dir, "config.json", text);
    assert_eq!(run.code, Some(2), "exit status; stderr:\n{}", run.stderr);
    assert_eq!(run.stdout, "", "nothing on stdout for a bad file");
    let mut expected: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    expected.push(format!(
        "reapd: {path}: {} error{}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    ));
    let got: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(got, expected, "stderr:\n{}", run.stderr);
}

/// Asserts reapd run with `args` is a usage error (exit 2, nothing on stdout); returns stderr.
fn usage_error(args: &[&str]) -> String {
    let run = run_reapd(args);
    assert_eq!(run.code, Some(2), "reapd {args:?}: {run:?}");
    assert_eq!(run.stdout, "", "reapd {args:?}");
    run.stderr
}

#[test]
fn a_valid_file_prints_a_one_line_summary_in_start_order() {
    let dir = TestDir::new("cfgok");
    let cfg = json!({ "services": {
        "web": { "cmd": ["./web"], "after": ["db"] },
        "db": { "cmd": ["postgres"] },
        "cache": { "cmd": ["redis-server"], "after": ["db"] },
    }});
    let (run, path) = check_text(&dir, "config.json", &cfg.to_string());
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert_eq!(run.stderr, "", "no warnings expected");
    let out = run.stdout;
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with(&format!("{path}: ")), "{out}");
    assert!(
        out.contains("ok: 3 services (start order: db, cache, web)"),
        "{out}"
    );
}

#[test]
fn the_summary_of_a_single_service_says_service() {
    let dir = TestDir::new("cfgone");
    let (run, _) = check_text(&dir, "one.json", r#"{"services":{"a":{"cmd":["x"]}}}"#);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("ok: 1 service (start order: a)"),
        "{run:?}"
    );
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
fn an_unknown_top_level_key_suggests_the_one_that_was_meant() {
    assert_rejected(
        "cfgkey",
        r#"{"sockt":"/tmp/x.sock","services":{}}"#,
        &[r#"sockt: unknown key (did you mean "socket"?)"#],
    );
}

#[test]
fn an_unknown_service_key_suggests_the_one_that_was_meant() {
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
    let path = dir.write(
        "config.json",
        "{\n  \"services\": {\n    \"a\": {\"cmd\": [\"x\"],}\n  }\n}\n",
    );
    assert_check_refuses(&path, "invalid JSON at line 3 column 24:");
}

#[test]
fn a_missing_file_cannot_be_read() {
    let dir = TestDir::new("cfgmissing");
    let path = dir.join("nope.json");
    assert_check_refuses(&path, &format!("cannot read {}: ", path.display()));
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
    let mut d = Daemon::builder("cfgdaemon").config(cfg).spawn();
    let code = d.exit_code(SOON);
    assert_eq!(code, 2, "log:\n{}", d.log());
    // What an operator reads when the daemon refuses its config: the log.
    let path = d.config_path().display().to_string();
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
    d.assert_nothing_left();
}

#[test]
fn nothing_to_supervise_is_a_usage_error() {
    let err = usage_error(&[]);
    assert!(
        err.starts_with("reapd: nothing to supervise: give --config FILE or -- CMD"),
        "{err}"
    );
    assert!(err.contains("Try `reapd --help`."), "{err}");
}

/// A config file with no services, for the usage errors that need one.
fn empty_config(tag: &str) -> (TestDir, String) {
    let dir = TestDir::new(tag);
    let path = dir.write("config.json", r#"{"services":{}}"#);
    (dir, path.display().to_string())
}

#[test]
fn a_config_and_a_command_together_are_a_usage_error_and_run_nothing() {
    let (dir, cfg) = empty_config("usage-both");
    let ran = dir.join("ran");
    let touch = format!("touch {}", ran.display());
    let err = usage_error(&["--config", &cfg, "--", "sh", "-c", &touch]);
    assert!(
        err.starts_with("reapd: give either --config FILE or -- CMD, not both"),
        "{err}"
    );
    assert!(!ran.exists(), "a command ran despite a usage error");
}

#[test]
fn an_unknown_option_is_a_usage_error() {
    let (_dir, cfg) = empty_config("usage-bogus");
    let err = usage_error(&["--bogus", "--config", &cfg]);
    assert!(err.starts_with("reapd: invalid option '--bogus'"), "{err}");
}

#[test]
fn a_command_option_with_a_config_is_a_usage_error() {
    let (_dir, cfg) = empty_config("usage-stop");
    let err = usage_error(&["--stop-timeout", "5", "--config", &cfg]);
    assert!(err.contains("apply to -- CMD"), "{err}");
}

#[test]
fn check_without_a_file_is_a_usage_error() {
    let err = usage_error(&["check"]);
    assert!(err.contains("check needs a file"), "{err}");
}

#[test]
fn check_caps_a_long_stop_timeout_with_a_warning() {
    let dir = TestDir::new("capcheck");
    let cfg = json!({ "services": { "slow": { "cmd": ["x"], "stop_timeout_ms": 45000 } } });
    let (run, path) = check_text(&dir, "config.json", &cfg.to_string());
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        ["warning: services.slow.stop_timeout_ms: 45000 ms capped to 30000 ms"]
    );
    let out = run.stdout;
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
    let mut d = Daemon::builder("capdaemon").config(cfg).start();
    // At start-up, before any client can watch: the log is where the warning is.
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
