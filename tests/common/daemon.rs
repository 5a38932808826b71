//! The one way tests run the real `reapd`: [`Daemon::builder`], then [`DaemonBuilder::start`]
//! (which waits until it answers `ping`) or [`DaemonBuilder::spawn`] (which does not):
//!
//! ```ignore
//! let b = Daemon::builder("tag");
//! let cfg = json!({ "services": { "a": { "cmd": chain_cmd(b.dir(), "a.log", 2, "exit") } } });
//! let mut d = b.config(cfg).start();
//! let events = d.signal_and_watch(libc::SIGTERM);
//! d.assert_clean_exit();
//! ```
//!
//! reapd runs with `--socket <dir>/s.sock` (and `--cgroups MODE` when the environment has
//! `REAPD_TEST_CGROUPS=MODE`: the suite runs either way), `REAPD_LOG=debug`, `TEST_DIR=<dir>`
//! and the directory's marker in its environment (so every service carries it too); its stderr
//! (the log) goes to `<dir>/reapd.log`. Dropping the [`Daemon`] kills reapd and, by pid, every process that
//! carries the marker, then removes the directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;

use super::client::{Watcher, request_at, request_raw_at, watch_at};
use super::dirs::TestDir;
use super::marked::Marked;
use super::procs::{Proc, live_with_marker};
use super::tools::code_of;
use super::{SOON, wait_until};

/// A running reapd; see the module doc. Fields drop in order: the processes are killed before
/// the directory goes.
#[derive(Debug)]
pub struct Daemon {
    pub proc: Marked,
    pub dir: TestDir,
    /// Where its control socket is (or would be).
    pub socket: PathBuf,
    pub marker: String,
    /// With [`DaemonBuilder::notify_pipe`]: the read end of the notify pipe.
    pub notify: Option<std::fs::File>,
}

impl Daemon {
    /// reapd's pid (or its wrapper's, for a wrapper that forks).
    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Waits until the daemon answers `ping` on its socket.
    pub fn wait_ready(&self) {
        let ok = wait_until(SOON, || {
            request_at(&self.socket, r#"{"cmd":"ping"}"#).is_ok_and(|v| v["ok"] == true)
        });
        assert!(ok, "reapd did not become ready; log:\n{}", self.log());
    }

    /// Sends one request line and returns the parsed reply.
    pub fn request(&self, line: &str) -> Value {
        request_at(&self.socket, line)
            .unwrap_or_else(|e| panic!("request {line}: {e}\nlog:\n{}", self.log()))
    }

    /// Sends one request line and returns the reply line exactly as reapd wrote it.
    pub fn request_raw(&self, line: &str) -> String {
        request_raw_at(&self.socket, line)
            .unwrap_or_else(|e| panic!("request {line}: {e}\nlog:\n{}", self.log()))
    }

    /// The services `list` reports.
    pub fn list(&self) -> Vec<Value> {
        let v = self.request(r#"{"cmd":"list"}"#);
        v["services"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("list: {v}"))
    }

    /// One service as `list` reports it.
    pub fn service(&self, name: &str) -> Option<Value> {
        self.list().into_iter().find(|s| s["name"] == name)
    }

    /// The service's main pid from `list`.
    pub fn pid_of(&self, name: &str) -> Option<i32> {
        self.service(name)?["pid"].as_i64().map(|p| p as i32)
    }

    /// Service name → main pid (None when not running) from `list`.
    pub fn pids(&self) -> BTreeMap<String, Option<i32>> {
        self.list()
            .iter()
            .map(|s| {
                let name = s["name"].as_str().unwrap_or_default().to_string();
                (name, s["pid"].as_i64().map(|p| p as i32))
            })
            .collect()
    }

    /// Waits until every service in `names` runs; returns their main pids.
    pub fn running(&self, names: &[&str]) -> BTreeMap<String, i32> {
        let mut out = BTreeMap::new();
        let ok = wait_until(SOON, || {
            let now = self.pids();
            out = names
                .iter()
                .filter_map(|n| Some((n.to_string(), (*now.get(*n)?)?)))
                .collect();
            out.len() == names.len()
        });
        assert!(ok, "not all of {names:?} running: {:?}", self.pids());
        out
    }

    /// Waits until `list` shows the service in `state`.
    pub fn wait_state(&self, name: &str, state: &str) {
        let ok = wait_until(SOON, || {
            self.service(name).is_some_and(|s| s["state"] == state)
        });
        assert!(
            ok,
            "{name} never reached {state}: {:?}\nlog:\n{}",
            self.service(name),
            self.log()
        );
    }

    /// Opens a `watch` stream.
    pub fn watch(&self) -> Watcher {
        watch_at(&self.socket)
    }

    pub fn signal(&self, sig: i32) {
        self.proc.signal(sig);
    }

    /// Opens a `watch` stream, sends `sig` and returns every event until reapd closes the
    /// stream (after `done`).
    pub fn signal_and_watch(&self, sig: i32) -> Vec<Value> {
        let mut w = self.watch();
        self.signal(sig);
        w.drain(Duration::from_secs(40))
    }

    /// Waits for reapd to exit; None if it did not within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.proc.wait_exit(limit)
    }

    /// Waits for exit and returns the shell-style code, failing the test if it hangs.
    pub fn exit_code(&mut self, limit: Duration) -> i32 {
        match self.wait_exit(limit) {
            Some(st) => code_of(st),
            None => panic!("reapd did not exit within {limit:?}; log:\n{}", self.log()),
        }
    }

    /// reapd's log (its stderr).
    pub fn log(&self) -> String {
        self.dir.read("reapd.log")
    }

    /// Waits until the file `name` in the daemon's directory contains `needle`; returns its text.
    pub fn wait_for(&self, name: &str, needle: &str) -> String {
        let mut text = String::new();
        let ok = wait_until(SOON, || {
            text = self.dir.read(name);
            text.contains(needle)
        });
        assert!(
            ok,
            "{name} never contained {needle:?}:\n{text}\nlog:\n{}",
            self.log()
        );
        text
    }

    /// The config file [`DaemonBuilder::config`](super::builder::DaemonBuilder::config) wrote.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Replaces the config file (atomically, so a reload never reads half a file).
    pub fn rewrite_config(&self, text: impl std::fmt::Display) {
        let tmp = self.dir.write("config.json.new", &text.to_string());
        std::fs::rename(tmp, self.config_path()).expect("rename config");
    }

    /// Live processes carrying the marker other than reapd itself: its services' processes.
    pub fn services_procs(&self) -> Vec<Proc> {
        self.proc.live_except(&[self.pid()])
    }

    /// Whether `pid` is a live process that carries the marker (a pid of this daemon's tree, not
    /// a stranger's that reused the number).
    pub fn runs(&self, pid: i32) -> bool {
        live_with_marker(&self.marker).iter().any(|p| p.pid == pid)
    }

    /// Asserts reapd left nothing behind: no socket, no lock file, no marked process alive.
    pub fn assert_nothing_left(&self) {
        assert_nothing_left(&self.socket, &live_with_marker(&self.marker), &self.log());
    }

    /// Asserts reapd exits 0 (within a bound above any shutdown's) and leaves nothing behind.
    pub fn assert_clean_exit(&mut self) {
        let code = self.exit_code(Duration::from_secs(40));
        assert_eq!(code, 0, "exit status; log:\n{}", self.log());
        self.assert_nothing_left();
    }
}

/// The lock file next to a control socket.
pub fn lock_of(socket: &Path) -> PathBuf {
    let mut lock = socket.as_os_str().to_os_string();
    lock.push(".lock");
    PathBuf::from(lock)
}

/// Asserts a reapd that has exited left nothing: no socket, no lock file, and `left` (the live
/// processes that carry its marker, less any the test keeps on purpose) is empty.
pub fn assert_nothing_left(socket: &Path, left: &[Proc], log: &str) {
    assert!(
        !socket.exists(),
        "socket {} left behind; log:\n{log}",
        socket.display()
    );
    let lock = lock_of(socket);
    assert!(
        !lock.exists(),
        "lock file {} left behind; log:\n{log}",
        lock.display()
    );
    assert!(
        left.is_empty(),
        "processes left behind: {left:?}\nlog:\n{log}"
    );
}
