//! The documentation keeps up with the code: every option `--help` lists, every config key the
//! parser accepts, every control command, event and error code appears in the man pages and
//! the README, and both man pages render without a single groff warning.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use reapd::wire::config::{SERVICE_KEYS, TOP_KEYS};
use reapd::wire::events::EVENTS;
use reapd::wire::protocol::COMMANDS;
use reapd::wire::replies::ErrorCode;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).expect(path)
}

/// Every `--long-option` in the usage text.
fn help_options() -> Vec<String> {
    let run = run_reapd(["--help"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let text = run.stdout;
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

/// Asserts every one of `names` (a `what`) appears in man/reapd.8 as `man(name)` and in the
/// README as `readme(name)`.
fn assert_documented<'a>(
    what: &str,
    names: impl IntoIterator<Item = &'a str>,
    man_form: impl Fn(&str) -> String,
    readme_form: impl Fn(&str) -> String,
) {
    let man = read("man/reapd.8").replace("\\-", "-");
    let readme = read("README.md");
    for name in names {
        assert!(
            man.contains(&man_form(name)),
            "{what} {name} not in man/reapd.8"
        );
        assert!(
            readme.contains(&readme_form(name)),
            "{what} {name} not in README.md"
        );
    }
}

#[test]
fn every_command_is_documented() {
    let request = |cmd: &str| format!("{{\"cmd\":\"{cmd}\"");
    assert_documented("command", COMMANDS.iter().copied(), request, request);
}

#[test]
fn every_event_is_documented() {
    assert_documented(
        "event",
        EVENTS.iter().copied(),
        |ev| format!(".B {ev}\n"),
        |ev| format!("`{ev}`"),
    );
}

#[test]
fn every_error_code_is_documented() {
    assert_documented(
        "error code",
        ErrorCode::ALL.map(ErrorCode::as_str),
        |code| format!(".B {code}\n"),
        |code| format!("`{code}`"),
    );
}

#[test]
fn the_man_pages_render_without_warnings() {
    if !require_tool("groff") {
        return;
    }
    for page in ["man/reapd.8", "man/reapd.json.5"] {
        let run = run_bounded(
            Command::new("groff")
                .args(["-ww", "-z", "-man"])
                .arg(repo_root().join(page)),
            Duration::from_secs(60),
        );
        assert!(
            run.code == Some(0) && run.stderr.is_empty(),
            "{page}: {run:?}"
        );
    }
}
