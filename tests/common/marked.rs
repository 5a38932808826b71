//! The guard around every process tree a test starts: [`Marked`] spawns a command with the test's
//! marker in its environment and, when dropped (also when the test fails), kills it and then, by
//! pid, every live process that carries the marker, and removes the cgroups a killed reapd made
//! for itself. Must never kill by name, nor a process that does not carry the marker, nor touch
//! a cgroup it did not learn from its own child.

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
        // A reapd killed here cannot remove the cgroups it made: learn where they are first.
        let cgroups = own_cgroup_base(self.pid());
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        kill_marked(&self.marker);
        if let Some(base) = cgroups {
            remove_cgroup_tree(&base);
        }
    }
}

/// The `reapd-<pid>` cgroup directory a reapd with this pid made for its services beside itself,
/// if it made one.
fn own_cgroup_base(pid: i32) -> Option<std::path::PathBuf> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let base = std::path::Path::new(path).join(format!("reapd-{pid}"));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let (fields, fstype) = l.split_once(" - ")?;
        fstype
            .starts_with("cgroup2 ")
            .then(|| fields.split_whitespace().nth(4).map(str::to_string))?
    })?;
    let dir = std::path::Path::new(&mount).join(base.strip_prefix("/").ok()?);
    dir.is_dir().then_some(dir)
}

/// Removes a cgroup directory and those below it, deepest first, once their processes are gone
/// (bounded: a cgroup that stays populated is left for the next run to see).
fn remove_cgroup_tree(base: &std::path::Path) {
    let end = Instant::now() + Duration::from_secs(2);
    while base.exists() && Instant::now() < end {
        let mut dirs = vec![base.to_path_buf()];
        let mut i = 0;
        while let Some(d) = dirs.get(i).cloned() {
            if let Ok(entries) = std::fs::read_dir(&d) {
                dirs.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
            i += 1;
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
        if base.exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
