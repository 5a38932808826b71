//! `examples/systemd/reapd.service` is a unit systemd accepts (`systemd-analyze verify`, with the
//! manual pages its `Documentation=` names), and it keeps the settings reapd's shutdown needs:
//! readiness through `Type=notify`, SIGTERM to reapd alone (`KillMode=mixed`), and a stop
//! timeout above the longest shutdown reapd allows.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const INSTALLED: &str = "/usr/local/bin/reapd";

fn unit_text() -> String {
    let path = repo_root().join("examples/systemd/reapd.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Values of `key` in the `[Service]` section, in order.
fn service_values(text: &str, key: &str) -> Vec<String> {
    let mut section = "";
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]"
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            out.push(v.trim().to_string());
        }
    }
    out
}

/// A systemd time span in whole seconds ("35", "35s", "1min 5s"); None if it is anything else.
fn seconds(span: &str) -> Option<u64> {
    let mut total = 0;
    for part in span.split_whitespace() {
        let digits = part.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let n: u64 = digits.parse().ok()?;
        total += match &part[digits.len()..] {
            "" | "s" | "sec" => n,
            "min" | "m" => n * 60,
            _ => return None,
        };
    }
    Some(total)
}

#[test]
fn the_unit_keeps_what_reapds_shutdown_needs() {
    let text = unit_text();
    let one = |key: &str| {
        let v = service_values(&text, key);
        assert_eq!(v.len(), 1, "{key}= should be set once: {v:?}");
        v[0].clone()
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert_eq!(one("KillMode"), "mixed");
    assert_eq!(one("KillSignal"), "SIGTERM");
    let stop = seconds(&one("TimeoutStopSec")).expect("TimeoutStopSec in seconds or minutes");
    let bound = max_shutdown_ms();
    assert!(
        stop * 1000 > bound,
        "TimeoutStopSec={stop}s does not exceed reapd's largest bound of {bound} ms"
    );
    let start = one("ExecStart");
    assert!(
        start.starts_with(&format!("{INSTALLED} --config ")),
        "ExecStart runs reapd on a config: {start}"
    );
    assert_eq!(
        service_values(&text, "ExecReload")
            .last()
            .map(String::as_str),
        Some("/bin/kill -HUP $MAINPID"),
        "reload is SIGHUP"
    );
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    if !require_tool("systemd-analyze") || !require_tool("man") {
        return;
    }
    let dir = TestDir::new("systemd-unit");
    // verify insists that every command exists: point the unit at the binary under test.
    let unit = dir.write("reapd.service", &unit_text().replace(INSTALLED, BIN));
    // ... and that every `man:` page in Documentation= opens: give it the repository's pages.
    let root = repo_root();
    for (section, page) in [("man8", "reapd.8"), ("man5", "reapd.json.5")] {
        std::fs::create_dir_all(dir.join("man").join(section)).expect("mkdir");
        std::fs::copy(
            root.join("man").join(page),
            dir.join("man").join(section).join(page),
        )
        .expect("copy page");
    }
    let verify = |path: &Path| {
        run_bounded(
            Command::new("systemd-analyze")
                .arg("verify")
                .arg(path)
                .env("MANPATH", dir.join("man"))
                .env("SYSTEMD_LOG_COLOR", "0")
                .env_remove("SYSTEMD_UNIT_PATH"),
            Duration::from_secs(60),
        )
    };
    let run = verify(&unit);
    assert_eq!(run.code, Some(0), "systemd-analyze verify: {run:?}");
    assert_eq!(
        format!("{}{}", run.stdout, run.stderr).trim(),
        "",
        "systemd-analyze verify complained"
    );
    // The same check notices a misspelt key, so silence above means the unit was read.
    let typo = dir.write(
        "typo.service",
        &std::fs::read_to_string(&unit)
            .expect("unit")
            .replace("KillMode=mixed", "KilMode=mixed"),
    );
    let run = verify(&typo);
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("KilMode"),
        "systemd-analyze verify let a misspelt key pass: {run:?}"
    );
}
