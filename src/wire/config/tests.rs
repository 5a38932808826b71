//! Unit tests of the config parser: every key, every error with its path.

use super::*;
use serde_json::{Map, Value};

fn errors(text: &str) -> Vec<String> {
    parse(text)
        .expect_err("should fail")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn full_example_parses_in_dependency_order() {
    let cfg = parse(
        r#"{ "socket": "/run/reapd.sock", "shutdown_timeout_ms": 30000, "grace_ms": 10000,
          "services": {
            "db":  { "cmd": ["postgres", "-D", "/data"], "stop_signal": "SIGINT", "stop_timeout_ms": 20000 },
            "web": { "cmd": ["./web"], "after": ["db"], "env": {"PORT": "8080"}, "cwd": "/srv",
                     "restart": "always", "ports": [8080], "match": ["web-worker"] },
            "aaa": { "cmd": ["true"], "after": ["web"], "stop_scope": "main", "stop_signal": 3 } },
          "cleanup": [["umount", "/mnt/build"]] }"#,
    )
    .expect("valid");
    let names: Vec<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "web", "aaa"]);
    let db = cfg.service("db").expect("db");
    assert_eq!(
        (db.stop_signal, db.stop_timeout),
        (Signal::SIGINT, Duration::from_secs(20))
    );
    let web = cfg.service("web").expect("web");
    assert_eq!(web.ports, vec![8080]);
    assert_eq!(web.env.get("PORT").map(String::as_str), Some("8080"));
    let aaa = cfg.service("aaa").expect("aaa");
    assert_eq!(
        (aaa.stop_scope, aaa.stop_signal),
        (StopScope::Main, Signal::SIGQUIT)
    );
    assert_eq!(
        cfg.cleanup,
        vec![vec!["umount".to_string(), "/mnt/build".to_string()]]
    );
    assert!(cfg.warnings.is_empty());
}

#[test]
fn wrong_types_name_their_path() {
    assert_eq!(
        errors(r#"{"services": {"web": {"cmd": ["x"], "stop_timeout_ms": "10s"}}}"#),
        ["services.web.stop_timeout_ms: expected an integer, found \"10s\""]
    );
}

#[test]
fn every_error_is_reported() {
    let errs = errors(
        r#"{"sockett": "/x", "services": {"a": {"cmd": "sleep 1", "restart": "sometimes"},
            "b": {"cmd": [], "ports": [0, 70000], "match": ["x"]}, "bad name": {"cmd": ["x"]}}}"#,
    );
    assert_eq!(
        errs,
        [
            "sockett: unknown key (did you mean \"socket\"?)",
            "services.a.cmd: expected an array of strings (argv, no shell), found \"sleep 1\"; write [\"sh\", \"-c\", \"sleep 1\"] to use a shell",
            "services.a.restart: expected one of \"always\", \"on-failure\", \"never\", found \"sometimes\"",
            "services.b.cmd: expected at least the program name",
            "services.b.ports[0]: expected a TCP port number from 1 to 65535, found 0",
            "services.b.ports[1]: expected a TCP port number from 1 to 65535, found 70000",
            "services.b.match[0]: \"x\" is too short: a match string needs at least 3 characters, or it would sweep unrelated processes",
            "services[\"bad name\"]: invalid service name \"bad name\": use up to 64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit",
        ]
    );
}

#[test]
fn unknown_dependency_and_cycles() {
    assert_eq!(
        errors(r#"{"services": {"db": {"cmd": ["x"]}, "web": {"cmd": ["x"], "after": ["dbb"]}}}"#),
        ["services.web.after[0]: unknown service \"dbb\" (did you mean \"db\"?)"]
    );
    assert_eq!(
        errors(
            r#"{"services": {"a": {"cmd": ["x"], "after": ["c"]}, "b": {"cmd": ["x"], "after": ["a"]}, "c": {"cmd": ["x"], "after": ["b"]}, "d": {"cmd": ["x"]}}}"#
        ),
        ["services.a.after: dependency cycle: a → c → b → a"]
    );
    assert_eq!(
        errors(r#"{"services": {"a": {"cmd": ["x"], "after": ["a"]}}}"#),
        ["services.a.after: dependency cycle: a → a"]
    );
}

#[test]
fn depending_on_a_service_with_errors_is_not_an_unknown_dependency() {
    assert_eq!(
        errors(
            r#"{"services": {"web": {"cmd": "x"}, "proxy": {"cmd": ["x"], "after": ["web", "wbe"]}}}"#
        ),
        [
            "services.web.cmd: expected an array of strings (argv, no shell), found \"x\"; write [\"sh\", \"-c\", \"x\"] to use a shell",
            "services.proxy.after[1]: unknown service \"wbe\" (did you mean \"web\"?)",
        ]
    );
}

#[test]
fn limits_cap_with_warnings_and_reject_nonsense() {
    let cfg = parse(r#"{"shutdown_timeout_ms": 60000, "services": {"a": {"cmd": ["x"], "stop_timeout_ms": 45000}}}"#)
        .expect("valid");
    assert_eq!(cfg.shutdown_timeout, MAX_SHUTDOWN_TIMEOUT);
    assert_eq!(cfg.services[0].stop_timeout, MAX_STOP_TIMEOUT);
    assert_eq!(cfg.warnings.len(), 2, "{:?}", cfg.warnings);
    assert_eq!(
        errors(r#"{"shutdown_timeout_ms": 5}"#),
        ["shutdown_timeout_ms: shutdown timeout 5 ms is below the minimum of 100 ms"]
    );
    assert_eq!(
        errors(r#"{"services": {"a": {"cmd": ["x"], "stop_signal": "STOP"}}}"#),
        [
            "services.a.stop_signal: a job-control stop signal would freeze the service, not stop it; use TERM, INT, QUIT or HUP"
        ]
    );
    assert_eq!(
        errors(r#"{"services": {"a": {"cmd": ["x"], "stop_signal": "TERMINATE"}}}"#),
        [
            "services.a.stop_signal: unknown signal name \"TERMINATE\" (use a name such as TERM or a number)"
        ]
    );
}

#[test]
fn syntax_errors_give_line_and_column() {
    assert_eq!(
        errors("{\n  \"services\": {,}\n}"),
        ["invalid JSON at line 2 column 16: key must be a string"]
    );
    assert_eq!(errors("[]"), ["expected an object, found an array"]);
}

#[test]
fn underscore_keys_are_comments_and_grace_is_bounded() {
    let cfg = parse(r#"{"_comment": "hi", "grace_ms": 50000, "shutdown_timeout_ms": 6000, "services": {"_x": 1}}"#)
        .expect("valid");
    assert!(cfg.services.is_empty());
    assert_eq!(cfg.effective_grace(), Duration::from_secs(6));
}

#[test]
fn repeated_keys_are_errors_naming_their_path() {
    assert_eq!(
        errors(
            r#"{"services": {"a": {"cmd": ["x"]}, "a": {"cmd": ["y"]}, "b": {"cmd": ["x"], "env": {"K": "1", "K": "2"}}}, "grace_ms": 1, "grace_ms": 2}"#
        ),
        [
            "services.a: defined twice in the same object; keep only one (reapd does not pick one for you)",
            "services.b.env.K: defined twice in the same object; keep only one (reapd does not pick one for you)",
            "grace_ms: defined twice in the same object; keep only one (reapd does not pick one for you)",
        ]
    );
}

#[test]
fn a_long_chain_is_ordered_in_linear_time_and_a_long_cycle_is_named() {
    let n = 10_000;
    let chain = |cyclic: bool| {
        let services: Map<String, Value> = (0..n)
            .map(|i| {
                let after = match (i, cyclic) {
                    (0, false) => vec![],
                    (0, true) => vec![format!("s{:05}", n - 1)],
                    _ => vec![format!("s{:05}", i - 1)],
                };
                (
                    format!("s{i:05}"),
                    serde_json::json!({ "cmd": ["x"], "after": after }),
                )
            })
            .collect();
        serde_json::json!({ "services": services }).to_string()
    };
    let cfg = parse(&chain(false)).expect("valid");
    assert_eq!(cfg.services.len(), n);
    assert!(
        cfg.services
            .iter()
            .enumerate()
            .all(|(i, s)| s.name == format!("s{i:05}"))
    );
    let errs = errors(&chain(true));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("services.s00000.after: dependency cycle: s00000 → s09999 → s09998 → "),
        "{}",
        &errs[0][..200]
    );
    assert!(errs[0].ends_with("s00001 → s00000"));
}

#[test]
fn long_names_are_clipped_in_messages_and_suggestions_are_bounded() {
    let long = "x".repeat(60_000);
    let errs = errors(&format!(
        r#"{{"services": {{"a": {{"cmd": ["x"], "after": ["{long}"]}}, "b": {{"cmd": ["x"], "restart": "{long}"}}}}}}"#
    ));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs.iter().all(|e| e.len() < 300), "{errs:?}");
    // Every unknown dependency is reported, the first MAX_HINTS with a suggestion.
    let services: Map<String, Value> = (0..500)
        .map(|i| {
            (
                format!("s{i:03}"),
                serde_json::json!({ "cmd": ["x"], "after": [format!("t{i:03}")] }),
            )
        })
        .collect();
    let errs = errors(&serde_json::json!({ "services": services }).to_string());
    assert_eq!(errs.len(), 500);
    assert_eq!(
        errs.iter().filter(|e| e.contains("did you mean")).count(),
        MAX_HINTS
    );
}

#[test]
fn missing_cmd_says_what_to_write() {
    assert_eq!(
        errors(r#"{"services": {"a": {"after": []}}}"#),
        [
            "services.a: missing required key \"cmd\" (the program and its arguments, e.g. [\"sleep\", \"60\"])"
        ]
    );
}

#[test]
fn cgroups_is_auto_by_default_and_a_wrong_mode_is_named() {
    let cfg = parse(r#"{ "services": {} }"#).expect("valid");
    assert_eq!(cfg.cgroups, CgroupMode::Auto);
    for (text, mode) in [
        ("off", CgroupMode::Off),
        ("required", CgroupMode::Required),
        ("auto", CgroupMode::Auto),
    ] {
        let cfg = parse(&format!(r#"{{ "cgroups": "{text}" }}"#)).expect("valid");
        assert_eq!(cfg.cgroups, mode);
        assert_eq!(mode.as_str(), text);
    }
    let e = errors(r#"{ "cgroups": "requird" }"#);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("cgroups: unknown mode \"requird\"") && e[0].contains("\"required\""),
        "{e:?}"
    );
    assert!(errors(r#"{ "cgroups": true }"#)[0].starts_with("cgroups: "));
}

#[test]
fn run_keys_parse_with_their_defaults() {
    let cfg = parse(
        r#"{"services": {
            "db": {"cmd": ["x"], "ready": {"tcp": 5432}},
            "sock": {"cmd": ["x"], "ready": {"unix": "/run/s.sock", "interval_ms": 200}, "ready_timeout_ms": 5000},
            "fd": {"cmd": ["x"], "ready": {"notify_fd": 3}},
            "migrate": {"cmd": ["x"], "type": "oneshot", "essential": true},
            "web": {"cmd": ["x"], "health": {"exec": ["check"], "retries": 5, "start_period_ms": 1000},
                    "max_restarts": 3, "restart_window_ms": 10000, "autostart": false}}}"#,
    )
    .expect("valid");
    let run = |n: &str| cfg.service(n).expect(n).run.clone();
    assert_eq!(
        run("db").ready,
        Some(Readiness {
            probe: Probe::Tcp(5432),
            interval: DEFAULT_READY_INTERVAL
        })
    );
    assert_eq!(run("db").ready_timeout, DEFAULT_READY_TIMEOUT);
    assert_eq!(run("sock").ready_timeout, Duration::from_secs(5));
    assert_eq!(
        run("sock").ready.map(|r| (r.probe, r.interval)),
        Some((
            Probe::Unix(PathBuf::from("/run/s.sock")),
            Duration::from_millis(200)
        ))
    );
    assert_eq!(run("fd").ready.map(|r| r.probe), Some(Probe::NotifyFd(3)));
    let migrate = cfg.service("migrate").expect("migrate");
    assert_eq!(migrate.run.kind, ServiceKind::Oneshot);
    assert_eq!(
        migrate.restart,
        RestartPolicy::Never,
        "a one-shot is not rerun by default"
    );
    assert!(migrate.run.essential);
    let web = run("web");
    let health = web.health.expect("health");
    assert_eq!(
        (
            health.retries,
            health.start_period,
            health.interval,
            health.timeout
        ),
        (
            5,
            Duration::from_secs(1),
            DEFAULT_HEALTH_INTERVAL,
            DEFAULT_HEALTH_TIMEOUT
        )
    );
    assert_eq!(web.max_restarts, Some(3));
    assert!(!web.autostart);
}

#[test]
fn run_keys_refuse_checks_that_cannot_work() {
    assert_eq!(
        errors(
            r#"{"services": {
            "a": {"cmd": ["x"], "ready": {"tcp": 0}},
            "b": {"cmd": ["x"], "ready": {"tcp": 80, "exec": ["y"]}},
            "c": {"cmd": ["x"], "ready": {}},
            "d": {"cmd": ["x"], "ready": {"notify_fd": 1}},
            "e": {"cmd": ["x"], "health": {"notify_fd": 3}},
            "f": {"cmd": ["x"], "type": "oneshot", "ready": {"tcp": 80}, "restart": "always"},
            "g": {"cmd": ["x"], "type": "daemon", "ready": {"unix": "rel.sock", "interval_ms": 1}},
            "h": {"cmd": ["x"], "health": {"tcp": 80, "retries": 0}, "essential": "yes"}}}"#
        ),
        [
            "services.a.ready.tcp: expected a TCP port number from 1 to 65535 (checked on the loopback address), found 0",
            "services.b.ready: expected one check, found tcp and exec: keep one",
            "services.c.ready: expected one check: \"notify_fd\", \"tcp\", \"unix\" or \"exec\"",
            "services.d.ready.notify_fd: expected a descriptor number from 3 to 1023 (0, 1 and 2 are stdin, stdout and stderr), found 1",
            "services.e.health.notify_fd: a notification fd signals readiness once; a health check must be \"tcp\", \"unix\" or \"exec\"",
            "services.f.ready: a one-shot is ready when it exits 0: remove \"ready\", or make the service a \"longrun\"",
            "services.f.restart: a one-shot is never run again after it succeeded: use \"on-failure\" (retry a failure) or \"never\"",
            "services.g.type: expected \"longrun\" or \"oneshot\", found \"daemon\"",
            "services.g.ready.unix: expected an absolute socket path, found \"rel.sock\"",
            "services.h.health.retries: expected a count from 1 to 4294967295 (failures in a row before a restart), found 0",
            "services.h.essential: expected true or false, found \"yes\"",
        ]
    );
}
