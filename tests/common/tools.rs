//! Preconditions and short-lived tools: a loud skip when a tool or a privilege is missing (a
//! failure under `REAPD_REQUIRE_ALL=1`), bounded runs of external commands and of `reapd` itself
//! (`check`, usage errors, `--help`), the C fixtures and the static binary. Must never let a
//! tool run unbounded or skip quietly.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::BIN;
use super::dirs::{TestDir, fixture, repo_root, unique};
use super::marked::kill_marked;

/// When `ok` is false, say loudly that the test is skipped for want of `what`, or fail under
/// `REAPD_REQUIRE_ALL=1`. Returns `ok`.
pub fn require(ok: bool, what: &str) -> bool {
    if !ok {
        let msg = format!("SKIPPED: {what}");
        if std::env::var("REAPD_REQUIRE_ALL").is_ok_and(|v| v == "1") {
            panic!("{msg}; REAPD_REQUIRE_ALL=1 forbids skipping");
        }
        eprintln!("\n*** {msg} ***\n");
    }
    ok
}

/// Whether an external tool is installed ([`require`] when it is not).
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    require(
        found,
        &format!("`{tool}` is not installed (run scripts/test, which installs it)"),
    )
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The exit status as a shell would show it (code, or 128 + signal).
pub fn code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// What a tool run by [`run_bounded`] did.
#[derive(Debug)]
pub struct ToolRun {
    /// Shell-style exit code; None if it had to be killed at the time limit.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a short-lived tool with piped output and stdin on /dev/null, SIGKILLing it if it
/// outlives `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> ToolRun {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = collect(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = collect(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let end = Instant::now() + limit;
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(code_of(st));
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // A grandchild that kept the pipes open must not hang the test: give up on its output.
    let join = |h: std::thread::JoinHandle<String>| {
        let until = Instant::now() + Duration::from_secs(5);
        while !h.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            h.join().unwrap_or_default()
        } else {
            "<output still open>".to_string()
        }
    };
    ToolRun {
        code,
        stdout: join(out),
        stderr: join(err),
    }
}

/// Runs the reapd binary with `args` until it ends (bounded): `check`, `--help`, usage errors.
/// No socket or notify socket comes from the test's environment; should it start anything after
/// all, that carries a marker of its own and is killed.
pub fn run_reapd<I, S>(args: I) -> ToolRun
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let marker = unique("run");
    let run = run_bounded(
        Command::new(BIN)
            .args(args)
            .env("REAPD_TEST_MARKER", &marker)
            .env_remove("REAPD_SOCKET")
            .env_remove("NOTIFY_SOCKET"),
        Duration::from_secs(60),
    );
    kill_marked(&marker);
    run
}

/// `reapd check --config FILE`.
pub fn check(path: &Path) -> ToolRun {
    run_reapd([
        OsStr::new("check"),
        OsStr::new("--config"),
        path.as_os_str(),
    ])
}

/// Asserts `reapd check` refuses `path` with exit 2, printing nothing on stdout and on stderr
/// one error that starts with `error`, then the summary line.
pub fn assert_check_refuses(path: &Path, error: &str) {
    let run = check(path);
    assert_eq!(run.code, Some(2), "{}: {run:?}", path.display());
    assert_eq!(run.stdout, "", "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert!(lines[0].starts_with(error), "{run:?}");
    assert_eq!(lines[1], format!("reapd: {}: 1 error", path.display()));
}

/// The largest shutdown bound reapd accepts, from `reapd --help` ("at most N").
pub fn max_shutdown_ms() -> u64 {
    let help = run_reapd(["--help"]).stdout;
    let line = help
        .lines()
        .find(|l| l.contains("--shutdown-timeout"))
        .expect("--shutdown-timeout in --help");
    line.split("at most ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bound in {line:?}"))
}

/// Compiles a C fixture from `tests/fixtures` into `dir` with the system C compiler; None (after
/// a loud skip, or a failure under `REAPD_REQUIRE_ALL=1`) when there is no compiler.
pub fn compile_fixture(dir: &TestDir, source: &str) -> Option<PathBuf> {
    if !require_tool("cc") {
        return None;
    }
    let out = dir.join(source.trim_end_matches(".c"));
    let run = run_bounded(
        Command::new("cc")
            .args(["-O2", "-pthread", "-o"])
            .arg(&out)
            .arg(fixture(source)),
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "cc {source}: {}", run.stderr);
    Some(out)
}

/// Builds (or finds up to date) the static binary (`scripts/build-static`, as used in minimal
/// images); once per test process.
pub fn static_binary() -> PathBuf {
    static BUILT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.as_ref() {
        return p.clone();
    }
    let root = repo_root();
    // Always run the script: cargo makes it a no-op when the binary is up to date, and a stale
    // binary would test yesterday's code. A cold build takes a while.
    let run = run_bounded(
        Command::new(root.join("scripts/build-static")).current_dir(root),
        Duration::from_secs(900),
    );
    assert_eq!(
        run.code,
        Some(0),
        "scripts/build-static failed: {}\n{}",
        run.stdout,
        run.stderr
    );
    // The script's last line starts with the binary's path (it honours CARGO_TARGET_DIR).
    let bin = run
        .stdout
        .lines()
        .last()
        .and_then(|l| l.split_once(':'))
        .map(|(path, _)| root.join(path))
        .expect("scripts/build-static names its binary");
    assert!(bin.exists(), "{} missing after the build", bin.display());
    *built = Some(bin.clone());
    bin
}

/// Reads from `file` until EOF or `limit`, whichever comes first. Returns (bytes, saw EOF).
pub fn read_until_eof(file: &mut std::fs::File, limit: Duration) -> (Vec<u8>, bool) {
    use std::os::fd::AsRawFd;
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, false);
        }
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll reads and writes the one pollfd we pass.
        let n = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
        if n <= 0 {
            continue;
        }
        let mut buf = [0u8; 256];
        match file.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (got, true),
        }
    }
}
