//! Fork bombs in tests: always inside a pids cgroup ([`PidsCage`]), with a watchdog at real-time
//! priority that kills the cage by cgroup should reapd fail. Must never read a storm process's
//! `environ` or `cmdline` (that can block for minutes on its memory-map lock): the cage knows its
//! members from the cgroup alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::dirs::unique;
use super::tools::require;
use super::wait_until;

/// A pids-capped cgroup (plus a freezer, on cgroup v1) for a fork-bomb test. Processes enter it
/// through [`PidsCage::enter`]. A watchdog thread, running at real-time priority so the storm
/// cannot starve it, kills everything in the cage by cgroup once its deadline passes, and
/// dropping the cage does the same at once, whatever reapd did or failed to do. The watchdog only
/// touches cgroup files and `kill()`: reading a storm process's `environ` or `cmdline` could block
/// on its memory-map lock for minutes.
pub struct PidsCage {
    pids: PathBuf,
    freezer: Option<PathBuf>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    watchdog: Option<std::thread::JoinHandle<()>>,
}

impl PidsCage {
    /// A cage holding at most `max` tasks, emptied by force after `limit`; None after a loud skip
    /// (or a failure under `REAPD_REQUIRE_ALL=1`) where no pids controller is writable or the
    /// watchdog cannot get real-time priority.
    pub fn new(tag: &str, max: u32, limit: Duration) -> Option<PidsCage> {
        let name = unique(tag);
        let v1 = Path::new("/sys/fs/cgroup/pids");
        let v1_freezer = Path::new("/sys/fs/cgroup/freezer");
        let made: Option<(PathBuf, Option<PathBuf>)> = if v1.join("cgroup.procs").exists() {
            let pids = v1.join(&name);
            let freezer = v1_freezer
                .join("cgroup.procs")
                .exists()
                .then(|| v1_freezer.join(&name));
            (std::fs::create_dir(&pids).is_ok()
                && freezer
                    .as_ref()
                    .is_none_or(|f| std::fs::create_dir(f).is_ok()))
            .then_some((pids, freezer))
        } else {
            // cgroup v2: a child of our own cgroup where the pids controller is available.
            let own = std::fs::read_to_string("/proc/self/cgroup")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
                });
            own.and_then(|own| {
                let base = Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/'));
                let ok = std::fs::read_to_string(base.join("cgroup.controllers"))
                    .is_ok_and(|c| c.split_whitespace().any(|w| w == "pids"));
                let pids = base.join(&name);
                (ok && std::fs::create_dir(&pids).is_ok()).then_some((pids, None))
            })
        };
        let made =
            made.filter(|(pids, _)| std::fs::write(pids.join("pids.max"), max.to_string()).is_ok());
        if !require(
            made.is_some(),
            "no writable pids cgroup to cap a fork bomb with",
        ) {
            return None;
        }
        let (pids, freezer) = made?;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (p, f) = (pids.clone(), freezer.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<bool>();
        let watchdog = std::thread::spawn(move || {
            let _ = ready_tx.send(realtime_priority());
            // Woken early by the cage's drop (or its sender going away), or at the deadline.
            let _ = rx.recv_timeout(limit);
            empty_cgroup(&p, f.as_deref());
        });
        let cage = PidsCage {
            pids,
            freezer,
            stop: Some(tx),
            watchdog: Some(watchdog),
        };
        let rt = ready_rx.recv().unwrap_or(false);
        require(
            rt,
            "cannot give the fork-bomb watchdog real-time priority (needs root)",
        )
        .then_some(cage)
    }

    /// A shell command that moves the shell running it into the cage (then `&& exec ...`).
    pub fn enter(&self) -> String {
        let mut enter = format!("echo $$ > {}", self.pids.join("cgroup.procs").display());
        if let Some(f) = &self.freezer {
            enter.push_str(&format!(
                " && echo $$ > {}",
                f.join("cgroup.procs").display()
            ));
        }
        enter
    }

    /// Tasks in the cage now.
    pub fn members(&self) -> Vec<i32> {
        cgroup_members(&self.pids)
    }
}

fn cgroup_members(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills every task of a cgroup until none is left, then removes it (and its v1 freezer twin).
fn empty_cgroup(pids: &Path, freezer: Option<&Path>) {
    // cgroup v2 has cgroup.kill; v1 freezes first so nothing can fork while being killed.
    let _ = std::fs::write(pids.join("cgroup.kill"), "1");
    let state = |s: &str| {
        if let Some(f) = freezer {
            let _ = std::fs::write(f.join("freezer.state"), s);
        }
    };
    state("FROZEN");
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let members = cgroup_members(pids);
        if members.is_empty() {
            break;
        }
        for p in members {
            // SAFETY: kill by pid, only of processes in this test's own cgroup.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        // A v1-frozen task dies of SIGKILL only once thawed.
        state("THAWED");
        std::thread::sleep(Duration::from_millis(20));
        state("FROZEN");
    }
    state("THAWED");
    wait_until(Duration::from_secs(10), || {
        std::fs::remove_dir(pids).is_ok() || !pids.exists()
    });
    if let Some(f) = freezer {
        let _ = std::fs::remove_dir(f);
    }
}

/// Runs the calling thread above every ordinary process (`SCHED_FIFO`; what it starts does not
/// inherit it). False where that is not permitted.
pub fn realtime_priority() -> bool {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sched_setscheduler reads the struct we pass; pid 0 is the calling thread.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param) == 0
    }
}

impl Drop for PidsCage {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(w) = self.watchdog.take() {
            let _ = w.join();
        }
    }
}
