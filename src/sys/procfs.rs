//! Reading `/proc`: process snapshots, service markers, command lines and TCP listeners.
//!
//! Owns: every read of `/proc` reapd makes, and tolerance for processes that vanish mid-scan (a
//! vanished entry is skipped). An entry that could not be read for another reason (out of
//! descriptors) marks the snapshot incomplete: "could not look" must never pass for "gone".
//! Must never: decide anything about the processes it reads; the pure modules do that.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;

use crate::core::io::ScanRequest;
use crate::core::proctree::{
    Listener, Pid, ProcInfo, Snapshot, cmdline_from_bytes, group_state, marker_from_environ,
    parse_stat,
};

/// Reads one process's `stat`: `Ok(None)` when it is gone (or hidden from us), `Err` when it
/// could not be looked at (out of descriptors, ...): then nothing is known about it.
pub fn read_stat_checked(pid: Pid) -> io::Result<Option<ProcInfo>> {
    match fs::read(format!("/proc/{pid}/stat")) {
        Ok(raw) => Ok(parse_stat(&raw).map(resolve_zombie_leader)),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ESRCH | libc::EACCES)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A leader that shows `Z` while other threads run tells nothing of the group's state: read the
/// threads'. A thread that cannot be read is left out; if none can, the process keeps `Z` with its
/// thread count, which still counts as alive (see `ProcInfo::is_dead`), so the next look decides.
fn resolve_zombie_leader(mut p: ProcInfo) -> ProcInfo {
    if !p.is_zombie_leader() {
        return p;
    }
    let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", p.pid)) else {
        return p;
    };
    let states: Vec<char> = tasks
        .flatten()
        .filter_map(|t| fs::read(t.path().join("stat")).ok())
        .filter_map(|raw| parse_stat(&raw).map(|t| t.state))
        .collect();
    if !states.is_empty() {
        let state = group_state(states);
        // A group whose threads all ended between the two reads is a plain zombie now.
        if state == 'Z' {
            p.threads = 1;
        }
        p.state = state;
    }
    p
}

/// Reads one process's `stat`, if it still exists and can be read.
pub fn read_stat(pid: Pid) -> Option<ProcInfo> {
    read_stat_checked(pid).ok().flatten()
}

/// Reads a process's command line (empty for kernel threads and zombies).
pub fn read_cmdline(pid: Pid) -> Option<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|raw| cmdline_from_bytes(&raw))
}

/// The boot clock in clock ticks, the unit of a process's start time in `stat` (both follow the
/// time namespace).
pub fn boot_ticks() -> Option<u64> {
    use nix::time::{ClockId, clock_gettime};
    use nix::unistd::{SysconfVar, sysconf};
    let hz = u64::try_from(sysconf(SysconfVar::CLK_TCK).ok()??).ok()?;
    let now = clock_gettime(ClockId::CLOCK_BOOTTIME).ok()?;
    let secs = u64::try_from(now.tv_sec()).ok()?;
    let nanos = u64::try_from(now.tv_nsec()).ok()?;
    Some(secs * hz + nanos * hz / 1_000_000_000)
}

/// Takes a snapshot of every process: `stat` for all of them, and only what the request asks for
/// beyond that (see [`ScanRequest`] for why `environ` and `cmdline` are read sparingly).
pub fn scan(self_pid: Pid, req: &ScanRequest) -> Snapshot {
    let ticks = boot_ticks();
    if !req.only.is_empty() {
        // A check of a few processes' states: no directory walk, no other file.
        let mut incomplete = false;
        let procs: Vec<ProcInfo> = req
            .only
            .iter()
            .filter_map(|&pid| match read_stat_checked(pid) {
                Ok(p) => p,
                Err(_) => {
                    incomplete = true;
                    None
                }
            })
            .collect();
        let mut snap = Snapshot::new(self_pid, procs);
        snap.partial = true;
        snap.incomplete = incomplete;
        snap.ticks = ticks;
        return snap;
    }
    let mut procs = Vec::new();
    let mut incomplete = false;
    match fs::read_dir("/proc") {
        Ok(dir) => {
            for entry in dir {
                let Ok(entry) = entry else {
                    incomplete = true;
                    continue;
                };
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<Pid>().ok())
                else {
                    continue;
                };
                match read_stat_checked(pid) {
                    Ok(Some(p)) => procs.push(p),
                    Ok(None) => {}
                    Err(_) => incomplete = true,
                }
            }
        }
        Err(_) => incomplete = true,
    }
    let mut snap = Snapshot::new(self_pid, procs);
    snap.incomplete = incomplete;
    snap.ticks = ticks;
    let ours: HashSet<Pid> = snap.descendants(self_pid).into_iter().collect();
    for (pid, p) in snap.procs.iter_mut() {
        // An orphan reparented to reapd that nothing else identifies: its marker may.
        let orphan = p.ppid == self_pid
            && !req.attributed.contains(pid)
            && !req.service_sessions.contains(&p.sid);
        if orphan && !p.is_dead() {
            p.marker = fs::read(format!("/proc/{pid}/environ"))
                .ok()
                .and_then(|e| marker_from_environ(&e));
        }
        if req.foreign_cmdlines && !ours.contains(pid) && *pid != self_pid {
            p.cmdline = read_cmdline(*pid);
        }
        // A stopped process cannot be in the middle of a fork: its command line is safe to read.
        if req.stopped_cmdlines && ours.contains(pid) && p.is_stopped() {
            p.cmdline = read_cmdline(*pid);
        }
    }
    if !req.ports.is_empty() {
        snap.listeners = listeners(&req.ports, snap.procs.keys().copied());
    }
    snap
}

/// Finds the processes holding a listening TCP socket on one of `ports` (IPv4 and IPv6, in
/// reapd's network namespace).
pub fn listeners(ports: &[u16], pids: impl IntoIterator<Item = Pid>) -> Vec<Listener> {
    let mut inodes: HashMap<u64, u16> = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            for (port, inode) in parse_net_tcp_listeners(&text) {
                if ports.contains(&port) {
                    inodes.insert(inode, port);
                }
            }
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for pid in pids {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Some(inode) = socket_inode(&fd.path())
                && let Some(&port) = inodes.get(&inode)
            {
                out.push(Listener { port, pid });
            }
        }
    }
    out.sort_by_key(|l| (l.port, l.pid));
    out.dedup();
    out
}

fn socket_inode(link: &Path) -> Option<u64> {
    let target = fs::read_link(link).ok()?;
    let t = target.to_str()?;
    t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Parses `/proc/net/tcp` or `tcp6` into (port, socket inode) for sockets in LISTEN state.
pub fn parse_net_tcp_listeners(text: &str) -> Vec<(u16, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.get(3)? != &"0A" {
                return None;
            }
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let inode = f.get(9)?.parse().ok()?;
            Some((port, inode))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_tcp_listen_lines() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:9A59 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12864 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:9A59 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 12999 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(parse_net_tcp_listeners(text), vec![(39513, 12864)]);
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(parse_net_tcp_listeners(v6), vec![(8080, 777)]);
        assert!(parse_net_tcp_listeners("garbage\n1 2 3").is_empty());
    }

    #[test]
    fn scans_this_process_and_its_children() {
        let me = std::process::id() as Pid;
        let snap = scan(me, &ScanRequest::default());
        let p = snap.procs.get(&me).expect("own entry");
        assert!(p.start > 0);
        assert!(snap.ancestors(me).contains(&p.ppid));
        assert!(read_stat(me).is_some());
        assert!(read_cmdline(me).is_some_and(|c| !c.is_empty()));
    }
}
