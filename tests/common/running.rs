//! Small helpers the run-side tests share: `reapd ctl` against a test's daemon, services that
//! log their start or wait for a file before they notify readiness, and line counts of the logs
//! they write. Must never wait without a bound.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::BIN;
use super::daemon::Daemon;
use super::tools::{ToolRun, run_bounded};

/// Runs `reapd ctl --socket <d's socket> args...` within `limit`.
pub fn reapd_ctl(d: &Daemon, args: &[&str], limit: Duration) -> ToolRun {
    let socket = d.socket.display().to_string();
    let mut all = vec!["ctl", "--socket", socket.as_str()];
    all.extend_from_slice(args);
    run_bounded(std::process::Command::new(BIN).args(all), limit)
}

/// A shell service that logs `started` into `log` in `dir`, then sleeps.
pub fn start_logger(dir: &Path, log: &str) -> Value {
    logger(dir, log, "started")
}

/// [`start_logger`] with the time: `started <seconds since the epoch>`.
pub fn timed_start_logger(dir: &Path, log: &str) -> Value {
    logger(dir, log, "started $(date +%s.%N)")
}

fn logger(dir: &Path, log: &str, line: &str) -> Value {
    json!([
        "sh",
        "-c",
        format!(
            "echo {line} >> {}; exec sleep 1000",
            dir.join(log).display()
        )
    ])
}

/// A service that writes its readiness newline to fd 3 once the file `go` exists in `dir`.
pub fn ready_on_go(dir: &Path) -> Value {
    json!([
        "sh",
        "-c",
        format!(
            "while [ ! -e {} ]; do sleep 0.05; done; echo >&3; exec sleep 1000",
            dir.join("go").display()
        )
    ])
}

/// Lines in the file `name` of the daemon's directory (0 while it does not exist).
pub fn line_count(d: &Daemon, name: &str) -> usize {
    d.dir.read(name).lines().count()
}
