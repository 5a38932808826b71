//! Who a service runs as, on the real binary: `user`, `group`, `groups`, `umask` and `limits` as
//! the service itself sees them; a step that fails is a start failure with its reason, not a
//! silent exit; `env_file` merged under `env`, and its errors (file and line) at `reapd check`,
//! at start and at reload.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::json;

#[test]
fn the_service_runs_as_the_user_group_groups_umask_and_limits_it_is_given() {
    if !require(is_root(), "root, to switch users") {
        return;
    }
    let dir = TestDir::new("run-as");
    // The service writes into the directory as uid 65534.
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let script = dir.script(
        "who.sh",
        "f=\"$TEST_DIR/who.txt\"\n\
         { echo \"uid $(id -u)\"; echo \"gid $(id -g)\"; echo \"groups $(id -G)\"; \
           echo \"umask $(umask)\"; echo \"nofile $(ulimit -Sn) $(ulimit -Hn)\"; \
           echo \"core $(ulimit -c)\"; } > \"$f.tmp\"\n\
         mv \"$f.tmp\" \"$f\"\nexec sleep 60\n",
    );
    let mut d = Daemon::builder_in(dir)
        .config(json!({"services": {"who": {
            "cmd": [script],
            "user": 65534, "group": 65533, "groups": [65532, 65533],
            "umask": "027",
            "limits": {"nofile": {"soft": 123, "hard": 456}, "core": 0}
        }}}))
        .start();
    let text = d.wait_for("who.txt", "core");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "uid 65534",
            "gid 65533",
            "groups 65533 65532",
            "umask 0027",
            "nofile 123 456",
            "core 0"
        ],
        "{text}"
    );
    // Files it creates follow its umask.
    let mode = std::fs::metadata(d.dir.join("who.txt"))
        .expect("who.txt")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_limit_the_kernel_refuses_is_a_start_failure_that_says_why() {
    let dir = TestDir::new("run-as-bad-limit");
    // No one may raise nofile above fs.nr_open (at most 2^30), root included; without root, a
    // hard limit above the current one is refused as well.
    let mut d = Daemon::builder_in(dir)
        .config(json!({"services": {
            "greedy": {"cmd": ["sleep", "60"], "limits": {"nofile": 2_000_000_000u64}, "restart": "never"},
            "fine": {"cmd": ["sleep", "60"]}
        }}))
        .start();
    let log = d.wait_for("reapd.log", "cannot set limit nofile");
    assert!(
        log.contains(
            "greedy: cannot start: cannot set limit nofile to soft 2000000000, hard 2000000000: \
             Operation not permitted"
        ),
        "{log}"
    );
    assert!(log.contains("fs.nr_open"), "{log}");
    d.wait_state("fine", "running");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_user_switch_without_the_privilege_is_a_start_failure_that_says_why() {
    if is_root() {
        // Root may switch to anyone; the failing switch is shown by a non-root reapd. Run it
        // under `setpriv` when the tool is there.
        if !require_tool("setpriv") {
            return;
        }
    }
    let dir = TestDir::new("run-as-no-priv");
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut b = Daemon::builder_in(dir).config(json!({"services": {
        "other": {"cmd": ["sleep", "60"], "user": 1, "restart": "never"}
    }}));
    if is_root() {
        b = b.wrapper([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ]);
    }
    let mut d = b.start();
    let log = d.wait_for("reapd.log", "cannot switch to user 1");
    assert!(
        log.contains("other: cannot start: cannot switch to user 1: Operation not permitted"),
        "{log}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn env_file_is_merged_under_env_and_its_errors_name_the_file_and_line() {
    let dir = TestDir::new("env-file");
    dir.write(
        "web.env",
        "# web's settings\n\nDB_HOST=db.local\nexport PORT=5432\nMODE=from-file\n",
    );
    let script = dir.script(
        "env.sh",
        "echo \"$DB_HOST $PORT $MODE\" > \"$TEST_DIR/env.tmp\"\nmv \"$TEST_DIR/env.tmp\" \"$TEST_DIR/env.txt\"\nexec sleep 60\n",
    );
    let config = json!({"services": {"web": {
        "cmd": [script], "env_file": "web.env", "env": {"MODE": "from-env"}
    }}});
    let path = dir.write("config.json", &config.to_string());
    let run = check(&path);
    assert_eq!(run.code, Some(0), "{run:?}");

    // A bad line is named, by `reapd check`...
    dir.write("bad.env", "A=1\n\nthis is not a pair\n");
    let bad = dir.write(
        "bad.json",
        &json!({"services": {"web": {"cmd": ["true"], "env_file": "bad.env"}}}).to_string(),
    );
    let env_path = dir.join("bad.env");
    assert_check_refuses(
        &bad,
        &format!(
            "services.web.env_file: {} line 3: expected KEY=VALUE, found \"this is not a pair\"",
            env_path.display()
        ),
    );
    // ...and so is a missing file.
    let missing = dir.write(
        "missing.json",
        &json!({"services": {"web": {"cmd": ["true"], "env_file": "/nonexistent/web.env"}}})
            .to_string(),
    );
    assert_check_refuses(
        &missing,
        "services.web.env_file: cannot read /nonexistent/web.env: No such file or directory",
    );

    // At start, env wins over the file.
    let mut d = Daemon::builder_in(dir).config(config.clone()).start();
    let text = d.wait_for("env.txt", "\n");
    assert_eq!(text, "db.local 5432 from-env\n");
    // At reload, a broken file is refused and the service keeps running.
    d.dir.write("web.env", "DB_HOST=db2\n1BAD=x\n");
    let r = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(r["code"], "config_error", "{r}");
    let errors = r.to_string();
    assert!(
        errors.contains("web.env line 2: invalid variable name"),
        "{r}"
    );
    // Fixed, it restarts the service with the new values.
    d.dir.write("web.env", "DB_HOST=db2\nPORT=1\n");
    let r = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(r["changed"], json!(["web"]), "{r}");
    assert!(
        wait_until(SOON, || d.dir.read("env.txt") == "db2 1 from-env\n"),
        "{}",
        d.dir.read("env.txt")
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_bad_env_file_at_start_stops_reapd_before_anything_runs() {
    let dir = TestDir::new("env-file-start");
    dir.write("web.env", "OK=1\n=nothing\n");
    let mut d = Daemon::builder_in(dir)
        .config(json!({"services": {"web": {"cmd": ["sleep", "60"], "env_file": "web.env"}}}))
        .spawn();
    let code = d.exit_code(SOON);
    assert_eq!(code, 2, "{}", d.log());
    let log = d.log();
    assert!(
        log.contains("services.web.env_file: ")
            && log.contains("web.env line 2: invalid variable name \"\""),
        "{log}"
    );
    d.assert_nothing_left();
}

#[test]
fn a_readiness_check_runs_as_its_service_and_its_output_is_told_under_its_name() {
    if !require(is_root(), "root, to switch users") {
        return;
    }
    let dir = TestDir::new("run-as-check");
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let check = dir.script(
        "check.sh",
        "echo \"check as $(id -u)\"\nid -u > \"$TEST_DIR/check.tmp\" && mv \"$TEST_DIR/check.tmp\" \"$TEST_DIR/check.txt\"\n",
    );
    let mut d = Daemon::builder_in(dir)
        .config(json!({"services": {"svc": {
            "cmd": ["sleep", "60"], "user": 65534, "group": 65534, "log": "prefix",
            "ready": {"exec": [check], "interval_ms": 50}
        }}}))
        .start();
    assert_eq!(d.wait_for("check.txt", "\n"), "65534\n");
    d.wait_for("stdout.log", "svc | check as 65534\n");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}
