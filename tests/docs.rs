//! The documentation keeps up with the code: every option `--help` lists, every config key the
//! parser accepts, every control command (with its arguments, as the command registry declares
//! them), event, error code and exit status appears in the man pages and the README, and both
//! man pages render without a single groff warning.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use reapd::wire::commands::COMMANDS;
use reapd::wire::config::{SERVICE_KEYS, TOP_KEYS};
use reapd::wire::events::EVENTS;
use reapd::wire::exit::ExitCode;
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
fn every_command_is_documented_with_its_arguments() {
    let man = read("man/reapd.8").replace("\\-", "-");
    let readme = read("README.md");
    // Font changes dropped: `{"cmd":"stop","name":\fIservice\fB}` reads `..."name":service}`.
    let man_text = man
        .replace("\\fI", "")
        .replace("\\fB", "")
        .replace("\\fR", "");
    for spec in COMMANDS {
        let cmd = spec.name;
        // The request as documented: `{"cmd":"signal","name":...,"signal":...}`, arguments in order.
        let documented = |text: &str| {
            text.lines().any(|l| {
                let Some(at) = l.find(&format!("{{\"cmd\":\"{cmd}\"")) else {
                    return false;
                };
                let mut rest = &l[at..];
                spec.args
                    .iter()
                    .all(|a| match rest.find(&format!("\"{}\":", a.kind.field())) {
                        Some(i) => {
                            rest = &rest[i..];
                            true
                        }
                        None => false,
                    })
            })
        };
        assert!(
            documented(&man_text),
            "{cmd} and its arguments not in man/reapd.8"
        );
        assert!(
            documented(&readme),
            "{cmd} and its arguments not in README.md"
        );
        // `reapd ctl` with its arguments: `.BI signal " name signal"` in the man page,
        // `reapd ctl signal NAME SIGNAL` in the README.
        if !spec.args.is_empty() {
            let args: Vec<String> = spec
                .args
                .iter()
                .map(|a| a.kind.placeholder().to_lowercase())
                .collect();
            let entry = format!(".BI {cmd} \" {}\"", args.join(" "));
            assert!(man.contains(&entry), "{entry:?} not in man/reapd.8");
        }
        let usage = format!("reapd ctl {}", spec.usage());
        assert!(readme.contains(&usage), "{usage:?} not in README.md");
    }
    // What is refused once shutdown began is what the registry says mutates.
    let mutating: Vec<&str> = COMMANDS
        .iter()
        .filter(|s| s.mutates)
        .map(|s| s.name)
        .collect();
    let (last, first) = mutating.split_last().expect("some commands mutate");
    let listed = format!("{} or {last} after shutdown began", first.join(", "));
    let readme_words = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        readme_words.contains(&listed),
        "README.md: shutting_down must list {listed:?}"
    );
    // man/reapd.8: `.B shutting_down`, then `.BR start ,` ... `or` `.B reload`, `after ...`.
    let entry = man
        .split(".B shutting_down\n")
        .nth(1)
        .and_then(|e| e.split("after shutdown began").next())
        .expect("man/reapd.8 describes shutting_down");
    let man_listed: Vec<&str> = entry
        .lines()
        .filter_map(|l| l.strip_prefix(".BR ").or_else(|| l.strip_prefix(".B ")))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(man_listed, mutating, "man/reapd.8: shutting_down");
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
fn every_exit_status_is_documented() {
    let man = read("man/reapd.8");
    let section = man
        .split(".SH EXIT STATUS\n")
        .nth(1)
        .and_then(|s| s.split("\n.SH ").next())
        .expect("man/reapd.8 has an EXIT STATUS section");
    for exit in [
        ExitCode::Clean,
        ExitCode::NotClean,
        ExitCode::Usage,
        ExitCode::CannotStart,
    ] {
        assert!(
            section.contains(&format!(".B {}\n", exit.code())),
            "{exit:?} not in EXIT STATUS of man/reapd.8"
        );
    }
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
