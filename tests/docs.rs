//! The documentation keeps up with the code: every option `--help` lists, every config key the
//! parser accepts, every control command, event and error code appears in the man pages and
//! the README, and both man pages render without a single groff warning.

mod common;

use std::process::Command;

use common::*;
use reapd::wire::commands;
use reapd::wire::config::{SERVICE_KEYS, TOP_KEYS};
use reapd::wire::events::EVENTS;
use reapd::wire::replies::ErrorCode;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).expect(path)
}

/// Every `--long-option` in the usage text.
fn help_options() -> Vec<String> {
    let out = Command::new(BIN).arg("--help").output().expect("--help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut opts: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect();
    opts.sort();
    opts.dedup();
    opts
}

fn missing<'a>(text: &str, words: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    words.into_iter().filter(|w| !text.contains(*w)).collect()
}

#[test]
fn every_option_appears_in_the_man_page_and_the_readme() {
    let opts = help_options();
    assert!(opts.len() >= 9, "{opts:?}");
    // roff escapes dashes: `\-\-config` in the source is `--config` on the page.
    let man = read("man/reapd.8").replace("\\-", "-");
    let readme = read("README.md");
    let names: Vec<&str> = opts.iter().map(String::as_str).collect();
    assert_eq!(
        missing(&man, names.iter().copied()),
        Vec::<&str>::new(),
        "options missing from man/reapd.8"
    );
    assert_eq!(
        missing(&readme, names.iter().copied()),
        Vec::<&str>::new(),
        "options missing from README.md"
    );
}

#[test]
fn every_config_key_appears_in_the_man_page_and_the_readme() {
    let man = read("man/reapd.json.5").replace("\\-", "-");
    let readme = read("README.md");
    for key in TOP_KEYS.iter().chain(SERVICE_KEYS) {
        assert!(
            man.contains(&format!(".B {key}\n")),
            "{key} has no entry in man/reapd.json.5"
        );
        assert!(
            readme.contains(&format!("\"{key}\"")),
            "{key} is not shown in README.md"
        );
    }
}

#[test]
fn every_command_event_and_error_code_is_documented() {
    let man = read("man/reapd.8").replace("\\-", "-");
    let readme = read("README.md");
    for cmd in commands::names() {
        assert!(
            man.contains(&format!("{{\"cmd\":\"{cmd}\"")),
            "{cmd} not in man/reapd.8"
        );
        assert!(
            readme.contains(&format!("{{\"cmd\":\"{cmd}\"")),
            "{cmd} not in README.md"
        );
    }
    for ev in EVENTS {
        assert!(
            man.contains(&format!(".B {ev}\n")),
            "event {ev} not in man/reapd.8"
        );
        assert!(
            readme.contains(&format!("`{ev}`")),
            "event {ev} not in README.md"
        );
    }
    for code in ErrorCode::ALL.map(ErrorCode::as_str) {
        assert!(
            man.contains(&format!(".B {code}\n")),
            "error code {code} not in man/reapd.8"
        );
        assert!(
            readme.contains(&format!("`{code}`")),
            "error code {code} not in README.md"
        );
    }
}

#[test]
fn the_man_pages_render_without_warnings() {
    if !require_tool("groff") {
        return;
    }
    for page in ["man/reapd.8", "man/reapd.json.5"] {
        let out = Command::new("groff")
            .args([
                "-ww",
                "-z",
                "-man",
                &format!("{}/{page}", env!("CARGO_MANIFEST_DIR")),
            ])
            .output()
            .expect("groff");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.is_empty(), "{page}: {err}");
    }
}
