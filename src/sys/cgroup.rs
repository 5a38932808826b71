//! cgroup v2 containment: finding a hierarchy reapd may write, one cgroup per service, and what
//! the kernel offers a stop (exact membership, freezing, `cgroup.kill`, `populated`).
//!
//! Owns: the layout under reapd's own cgroup, `<own>/reapd-<pid>/` (the *base*, which holds no
//! process, so controllers can be enabled in it), holding `svc-<name>` per service (a prefix no
//! interface file has, so a service named `cpu.stat` cannot collide with one); reapd itself stays
//! where it was started (moving a process between cgroups waits for an RCU grace period, 10 to
//! 20 ms, and moving back at exit would add that to every shutdown); the `cgroup.events` descriptors watched
//! for `populated`; reading membership and accounting files; removing the directories.
//! Must never: decide. What it reads goes to the core as inputs; what it writes (a freeze, a
//! kill, a removal) the core asked for. Nor fail the daemon: past detection, a file that cannot
//! be written costs a warning and the `/proc` walk still covers the service.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use log::{debug, warn};
use mio::unix::SourceFd;
use mio::{Interest, Registry};

use crate::core::proctree::Pid;
use crate::sys::tokens;
use crate::wire::replies::Usage;

/// The leaf an earlier reapd moved itself (and its hooks) into: what a crashed one left there
/// is a survivor.
const SELF_LEAF: &str = "reapd";
/// A service's directory is this prefix and its name.
const SERVICE_PREFIX: &str = "svc-";
/// How deep membership is read below a service's cgroup (a service may make sub-cgroups).
const MAX_DEPTH: usize = 8;
/// Most pids read from one service's cgroup in one look: a fork bomb's table is bounded by
/// `pids.max` or the kernel, this by reapd.
const MAX_MEMBERS: usize = 1 << 16;
/// Largest interface file read (`cgroup.procs` of a storm is the big one).
const MAX_FILE: u64 = 4 << 20;

/// A writable cgroup v2 hierarchy, with a base for reapd's services.
#[derive(Debug)]
pub struct Cgroups {
    /// `<own>/reapd-<pid>`.
    base: PathBuf,
    /// `cgroup.kill` exists (Linux 5.14).
    can_kill: bool,
    /// `cgroup.freeze` exists (Linux 5.2).
    can_freeze: bool,
    /// Services' `cgroup.events`, watched for `populated`, by token number.
    events: HashMap<usize, Watched>,
    next_token: usize,
    /// [`Cgroups::release`] ran: nothing left for the drop to undo.
    released: bool,
}

#[derive(Debug)]
struct Watched {
    service: String,
    file: File,
}

/// Where the cgroup2 filesystem is mounted, and which part of the hierarchy it shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The mount point.
    pub point: PathBuf,
    /// The hierarchy's directory mounted there (`/` unless a subtree is bind-mounted).
    pub root: String,
}

impl Cgroups {
    /// Finds reapd's cgroup on a cgroup2 mount and creates the base in it. The error says why the `/proc` walk is used instead.
    pub fn detect(pid: Pid) -> Result<Cgroups, String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let mounts = cgroup2_mounts(&mountinfo);
        if mounts.is_empty() {
            return Err("no cgroup2 mount in /proc/self/mountinfo".into());
        }
        let text = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let path = unified_path(&text)
            .ok_or("/proc/self/cgroup has no cgroup v2 entry (0::): reapd's cgroup is unknown")?;
        let own = locate(&mounts, &path).ok_or_else(|| {
            format!(
                "reapd's cgroup {path} is not visible under any cgroup2 mount ({})",
                mounts
                    .iter()
                    .map(|m| m.point.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        // A service's process moves itself from reapd's cgroup into its own: the kernel asks
        // for write access to the cgroup.procs of their common ancestor, which is reapd's.
        let procs = own.join("cgroup.procs");
        if let Err(e) = nix::unistd::access(&procs, nix::unistd::AccessFlags::W_OK) {
            return Err(format!(
                "not writable: cannot write {}: {e}",
                procs.display()
            ));
        }
        let base = own.join(format!("reapd-{pid}"));
        match fs::create_dir(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(format!(
                    "not writable: cannot create {}: {e}",
                    base.display()
                ));
            }
        }
        enable_controllers(&base);
        Ok(Cgroups {
            can_kill: base.join("cgroup.kill").exists(),
            can_freeze: base.join("cgroup.freeze").exists(),
            base,
            events: HashMap::new(),
            next_token: 0,
            released: false,
        })
    }

    /// `<own>/reapd-<pid>`: recorded in the state file, so a successor finds what is left in it.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// For `status` and the log.
    pub fn describe(&self) -> String {
        let mut missing = Vec::new();
        if !self.can_freeze {
            missing.push("cgroup.freeze");
        }
        if !self.can_kill {
            missing.push("cgroup.kill");
        }
        let mut s = format!("cgroup v2 at {}", self.base.display());
        if !missing.is_empty() {
            s.push_str(&format!(
                " (no {}: an older kernel; the kill signals each process)",
                missing.join(", no ")
            ));
        }
        s
    }

    fn dir(&self, service: &str) -> PathBuf {
        self.base.join(format!("{SERVICE_PREFIX}{service}"))
    }

    /// Makes the service's cgroup ready for a process to join: created if needed, thawed (a
    /// kill froze it), its `cgroup.events` watched (if a descriptor is left for it). Returns `cgroup.procs` open for writing, for
    /// the child to write `0` to before it execs.
    pub fn prepare_spawn(&mut self, service: &str, registry: &Registry) -> Result<OwnedFd, String> {
        let dir = self.dir(service);
        match fs::create_dir(&dir) {
            Ok(()) => debug!("created cgroup {}", dir.display()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create cgroup {}: {e}", dir.display())),
        }
        if self.can_freeze
            && let Err(e) = write_file(&dir.join("cgroup.freeze"), "0")
        {
            return Err(format!("cannot thaw cgroup {}: {e}", dir.display()));
        }
        if !self.events.values().any(|w| w.service == service)
            && let Err(e) = self.watch(service, &dir, registry)
        {
            // Its stops then confirm by looking at /proc, a moment later.
            warn!("{e}: {service}'s stops cannot hear that its cgroup is empty");
        }
        let procs = dir.join("cgroup.procs");
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&procs)
            .map(OwnedFd::from)
            .map_err(|e| format!("cannot open {}: {e}", procs.display()))
    }

    fn watch(&mut self, service: &str, dir: &Path, registry: &Registry) -> Result<(), String> {
        let path = dir.join("cgroup.events");
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let n = self.next_token;
        self.next_token += 1;
        // A change of cgroup.events raises POLLPRI on it (kernfs_notify).
        registry
            .register(
                &mut SourceFd(&file.as_raw_fd()),
                tokens::cgroup(n),
                Interest::PRIORITY,
            )
            .map_err(|e| format!("cannot watch {}: {e}", path.display()))?;
        self.events.insert(
            n,
            Watched {
                service: service.to_string(),
                file,
            },
        );
        Ok(())
    }

    /// A watched `cgroup.events` changed: the service, if its cgroup is now empty.
    pub fn emptied(&mut self, token: usize) -> Option<String> {
        let w = self.events.get_mut(&token)?;
        let mut text = String::new();
        w.file.rewind().ok()?;
        (&w.file).take(4096).read_to_string(&mut text).ok()?;
        (populated(&text) == Some(false)).then(|| w.service.clone())
    }

    /// Pids in the service's cgroup and below it (bounded); `None` when it cannot be read.
    pub fn members(&self, service: &str) -> Option<Vec<Pid>> {
        let mut pids = Vec::new();
        collect_pids(&self.dir(service), 0, &mut pids).ok()?;
        Some(pids)
    }

    /// Freezes the service's cgroup and kills everything in it at once (`cgroup.kill`, when the
    /// kernel has it). The thaw comes before the next spawn into it.
    pub fn kill(&self, service: &str) -> Result<(), String> {
        let dir = self.dir(service);
        if self.can_freeze {
            write_file(&dir.join("cgroup.freeze"), "1")
                .map_err(|e| format!("cannot freeze cgroup {}: {e}", dir.display()))?;
        }
        if self.can_kill {
            write_file(&dir.join("cgroup.kill"), "1")
                .map_err(|e| format!("cannot kill cgroup {}: {e}", dir.display()))?;
        }
        Ok(())
    }

    /// What the service's cgroup has used, from the files that exist (controllers not enabled
    /// here have none).
    pub fn usage(&self, service: &str) -> Option<Usage> {
        let dir = self.dir(service);
        if !dir.is_dir() {
            return None;
        }
        let read = |f: &str| fs::read_to_string(dir.join(f)).ok();
        Some(Usage {
            memory_bytes: read("memory.current").and_then(|t| t.trim().parse().ok()),
            cpu_usec: read("cpu.stat").and_then(|t| stat_field(&t, "usage_usec")),
            pids: read("pids.current").and_then(|t| t.trim().parse().ok()),
        })
    }

    /// The service is gone for good: its cgroup goes (it must be empty; the kernel says so).
    pub fn remove(&mut self, service: &str, registry: &Registry) {
        let tokens: Vec<usize> = self
            .events
            .iter()
            .filter(|(_, w)| w.service == service)
            .map(|(t, _)| *t)
            .collect();
        for t in tokens {
            if let Some(w) = self.events.remove(&t) {
                let _ = registry.deregister(&mut SourceFd(&w.file.as_raw_fd()));
            }
        }
        let dir = self.dir(service);
        match fs::remove_dir(&dir) {
            Ok(()) => debug!("removed cgroup {}", dir.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot remove cgroup {}: {e}", dir.display()),
        }
    }

    /// At exit: removes every directory reapd made. Returns what could not be removed.
    pub fn release(&mut self, registry: &Registry) -> Vec<String> {
        for (_, w) in self.events.drain() {
            let _ = registry.deregister(&mut SourceFd(&w.file.as_raw_fd()));
        }
        self.undo()
    }

    fn undo(&mut self) -> Vec<String> {
        self.released = true;
        remove_tree(&self.base)
    }
}

/// A start-up that fails after detection (the lock is held by another instance, say) leaves no
/// directory behind.
impl Drop for Cgroups {
    fn drop(&mut self) {
        if !self.released {
            for f in self.undo() {
                warn!("{f}");
            }
        }
    }
}

/// What a predecessor's base still holds: (service, pid) for every process in it. The path comes
/// from a state file: only a `reapd-<pid>` directory on a cgroup2 mount is read.
pub fn left_in(base: &Path) -> Vec<(String, Pid)> {
    if !is_reapd_base(base) {
        return Vec::new();
    }
    let mut found = Vec::new();
    let Ok(dir) = fs::read_dir(base) else {
        return found;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let owner = match name.strip_prefix(SERVICE_PREFIX) {
            Some(svc) => svc.to_string(),
            None if name == SELF_LEAF => "survivor".to_string(),
            None => continue,
        };
        let mut pids = Vec::new();
        let _ = collect_pids(&e.path(), 0, &mut pids);
        found.extend(pids.into_iter().map(|p| (owner.clone(), p)));
    }
    found
}

/// Removes a predecessor's base once it is empty; quietly leaves it while anything is in it.
pub fn remove_left(base: &Path) {
    if is_reapd_base(base) {
        for f in remove_tree(base) {
            debug!("{f}");
        }
    }
}

fn is_reapd_base(base: &Path) -> bool {
    let named = base
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("reapd-"))
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    named && base.join("cgroup.events").is_file()
}

/// Removes a cgroup directory and its sub-cgroups, deepest first (rmdir on a cgroup removes
/// its interface files with it).
fn remove_tree(dir: &Path) -> Vec<String> {
    // Most have no sub-cgroup: one rmdir, no directory read.
    match fs::remove_dir(dir) {
        Ok(()) => return Vec::new(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(_) => {}
    }
    let mut failures = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                failures.extend(remove_tree(&e.path()));
            }
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => failures.push(format!("cannot remove cgroup {}: {e}", dir.display())),
    }
    failures
}

fn collect_pids(dir: &Path, depth: usize, pids: &mut Vec<Pid>) -> io::Result<()> {
    let mut text = String::new();
    File::open(dir.join("cgroup.procs"))?
        .take(MAX_FILE)
        .read_to_string(&mut text)?;
    for p in text.lines().filter_map(|l| l.trim().parse::<Pid>().ok()) {
        if pids.len() >= MAX_MEMBERS {
            return Ok(());
        }
        pids.push(p);
    }
    if depth < MAX_DEPTH {
        for e in fs::read_dir(dir)?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = collect_pids(&e.path(), depth + 1, pids);
            }
        }
    }
    Ok(())
}

/// Best effort: the controllers reapd's own cgroup hands down (`cgroup.controllers` of the
/// base) are enabled for the services, so their accounting files exist. The base holds no
/// process, so this cannot break the no-internal-process rule.
fn enable_controllers(base: &Path) {
    let Ok(available) = fs::read_to_string(base.join("cgroup.controllers")) else {
        return;
    };
    for c in available
        .split_ascii_whitespace()
        .filter(|c| matches!(*c, "memory" | "pids" | "cpu"))
    {
        if let Err(e) = write_file(&base.join("cgroup.subtree_control"), &format!("+{c}")) {
            debug!("cannot enable the {c} controller for services: {e}");
        }
    }
}

fn write_file(path: &Path, text: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?
        .write_all(text.as_bytes())
}

/// The cgroup2 mounts listed in `/proc/self/mountinfo`.
pub fn cgroup2_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if right.split_ascii_whitespace().next()? != "cgroup2" {
                return None;
            }
            let f: Vec<&str> = left.split_ascii_whitespace().collect();
            Some(Mount {
                root: unescape(f.get(3)?),
                point: PathBuf::from(unescape(f.get(4)?)),
            })
        })
        .collect()
}

/// The path of the `0::` line of `/proc/PID/cgroup`.
pub fn unified_path(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end_matches(" (deleted)").to_string())
        .filter(|p| p.starts_with('/'))
}

/// The directory of cgroup `path` on the mount that shows it (the deepest matching root).
pub fn locate(mounts: &[Mount], path: &str) -> Option<PathBuf> {
    mounts
        .iter()
        .filter_map(|m| {
            let rest = if m.root == "/" {
                Some(path.trim_start_matches('/'))
            } else {
                path.strip_prefix(m.root.as_str())
                    .filter(|r| r.is_empty() || r.starts_with('/'))
                    .map(|r| r.trim_start_matches('/'))
            }?;
            Some((m.root.len(), m.point.join(rest)))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, dir)| dir)
}

/// `populated` from `cgroup.events`.
pub fn populated(events: &str) -> Option<bool> {
    stat_field(events, "populated").map(|v| v != 0)
}

fn stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\'
            && let Some(oct) = s.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(oct, 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:38 /sub /mnt/my\\040cg rw - cgroup2 cgroup2 rw
";

    #[test]
    fn the_cgroup2_mounts_are_found_beside_v1_ones() {
        let m = cgroup2_mounts(HYBRID);
        assert_eq!(
            m,
            vec![
                Mount {
                    point: "/sys/fs/cgroup/unified".into(),
                    root: "/".into()
                },
                Mount {
                    point: "/mnt/my cg".into(),
                    root: "/sub".into()
                }
            ]
        );
        assert_eq!(
            locate(&m, "/sub/x"),
            Some(PathBuf::from("/mnt/my cg/x")),
            "the deepest root that shows it"
        );
        assert_eq!(
            locate(&m, "/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/a/b"))
        );
        assert_eq!(locate(&m[1..], "/subway"), None);
        assert!(cgroup2_mounts("41 31 0:38 / /x rw - cgroup cgroup rw,pids\n").is_empty());
    }

    #[test]
    fn the_unified_line_and_events_are_read() {
        assert_eq!(
            unified_path("4:memory:/m\n0::/user.slice/x\n").as_deref(),
            Some("/user.slice/x")
        );
        assert_eq!(unified_path("1:cpu:/\n"), None);
        assert_eq!(populated("populated 0\nfrozen 1\n"), Some(false));
        assert_eq!(populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(populated("frozen 0\n"), None);
        assert_eq!(
            stat_field("usage_usec 1234\nuser_usec 1000\n", "usage_usec"),
            Some(1234)
        );
    }

    #[test]
    fn only_a_reapd_base_of_a_state_file_is_read() {
        assert!(!is_reapd_base(Path::new("/etc")));
        assert!(!is_reapd_base(Path::new("/tmp/reapd-12x")));
        assert!(left_in(Path::new("/tmp/reapd-1")).is_empty());
    }
}
