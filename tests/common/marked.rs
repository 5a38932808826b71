//! The guard around every process tree a test starts: [`Marked`] spawns a command with the test's
//! marker in its environment and, when dropped (also when the test fails), kills it and then, by
//! pid, every live process that carries the marker. Must never kill by name, nor a process
//! that does not carry the marker.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use super::procs::{Proc, live_with_marker};

/// SIGKILLs, by pid, every live process carrying `marker` (repeatedly, to beat forks).
pub fn kill_marked(marker: &str) {
    for _ in 0..50 {
        let live = live_with_marker(marker);
        if live.is_empty() {
            return;
        }
        for p in &live {
            // SIGSTOP first so a forking process cannot outrun the kill.
            // SAFETY: kill has no memory effects; the pid carries this test's marker.
            unsafe { libc::kill(p.pid, libc::SIGSTOP) };
        }
        for p in &live {
            // SAFETY: as above.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process tree a test started (reapd, a supervisor, `socat`, `chroot`) with
/// `REAPD_TEST_MARKER=<marker>` in its environment. Dropping it kills the child and then, by pid,
/// every live process that carries the marker.
#[derive(Debug)]
pub struct Marked {
    pub child: Child,
    pub marker: String,
    pub status: Option<ExitStatus>,
}

impl Marked {
    /// Spawns `cmd` with the marker in its environment.
    pub fn spawn(cmd: &mut Command, marker: &str) -> Marked {
        let child = cmd
            .env("REAPD_TEST_MARKER", marker)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Marked {
            child,
            marker: marker.to_string(),
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: kill has no memory effects; the child is unreaped, so its pid is its own.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    /// Waits for the child to exit; None if it did not within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                return self.status;
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Live marked processes other than the ones in `except`.
    pub fn live_except(&self, except: &[i32]) -> Vec<Proc> {
        live_with_marker(&self.marker)
            .into_iter()
            .filter(|p| !except.contains(&p.pid))
            .collect()
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        kill_marked(&self.marker);
    }
}
