//! Reading `/proc`: process snapshots, service markers, command lines and TCP listeners.
//!
//! Owns: every read of `/proc` reapd makes, and tolerance for processes that vanish mid-scan (a
//! vanished entry is skipped). Two ways to take a snapshot: [`scan`] reads every process of the
//! machine; [`walk`] reads reapd's tree only, through the kernel's `children` lists, which costs
//! what the tree costs and not what the machine does. An entry that could not be read for another reason (out of
//! descriptors) marks the snapshot incomplete: "could not look" must never pass for "gone".
//! Must never: decide anything about the processes it reads; the pure modules do that.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::Instant;

use crate::core::io::{MIN_LOOK, ScanRequest};
use crate::core::proctree::{
    Listener, Pid, ProcInfo, Snapshot, cmdline_from_bytes, group_state, marker_from_environ,
    parse_stat,
};

/// Reads one process's `stat`: `Ok(None)` when it is gone (or hidden from us), `Err` when it
/// could not be looked at (out of descriptors, ...): then nothing is known about it.
pub fn read_stat_checked(pid: Pid) -> io::Result<Option<ProcInfo>> {
    match gone_is_none(read_proc(format!("/proc/{pid}/stat"), Ends::Newline))? {
        Some(raw) => Ok(parse_stat(&raw).map(resolve_zombie_leader)),
        None => Ok(None),
    }
}

/// How a `/proc` file shows it was read whole.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ends {
    /// With a newline (`stat`): no read for the end of the file is needed.
    Newline,
    /// Only with the end of the file (`children` ends with a space).
    Eof,
}

/// Reads a small `/proc` file whole in as few system calls as it allows: `open`, usually one
/// `read`, `close`. (`fs::read` also asks for the size, which is 0 in `/proc`, and then reads in
/// chunks that start at 32 bytes: eight system calls for one `stat`.)
fn read_proc(path: impl AsRef<Path>, ends: Ends) -> io::Result<Vec<u8>> {
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        let Some(free) = buf.get_mut(len..) else {
            break;
        };
        let n = match file.read(free) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        len += n;
        let whole = ends == Ends::Newline && buf.get(..len).is_some_and(|b| b.ends_with(b"\n"));
        if n == 0 || whole {
            break;
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// A process that is gone (or hidden from us) is `Ok(None)`; anything else that kept a file from
/// being read is an error: then nothing is known about the process.
fn gone_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
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
        .filter_map(|t| read_proc(t.path().join("stat"), Ends::Newline).ok())
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
    read_proc(format!("/proc/{pid}/cmdline"), Ends::Eof)
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
    let mut clock = Cutoff::new(req);
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
                if clock.passed() {
                    incomplete = true;
                    break;
                }
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
    annotate(&mut snap, req);
    snap
}

/// How many processes the machine has (entries of `/proc`, nothing read in them).
pub fn count() -> usize {
    fs::read_dir("/proc").map_or(0, |dir| {
        dir.flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<Pid>().is_ok())
            })
            .count()
    })
}

/// How many times a walk reads reapd's own `children` list again for processes reparented to it
/// while the walk went on.
const REREADS: usize = 4;
/// Most ancestors of reapd a walk reads (they are what reapd must never signal).
const MAX_ANCESTORS: usize = 64;

/// True when [`walk`] sees everything reapd is responsible for: the kernel has `children` lists
/// (`CONFIG_PROC_CHILDREN`), and every orphan of reapd's tree comes back to reapd (it is PID 1
/// or a child subreaper), so its tree is every descendant it ever had.
pub fn walk_works(self_pid: Pid) -> bool {
    let lists = Path::new(&format!("/proc/{self_pid}/task/{self_pid}/children")).exists();
    let reaper = self_pid == 1 || nix::sys::prctl::get_child_subreaper().unwrap_or(false);
    lists && reaper
}

/// Takes a snapshot of reapd's tree: reapd, every descendant of it and of `roots` (processes
/// outside the tree that reapd has records of), and reapd's ancestors; with the same extras as
/// [`scan`]. It reads `stat` and the `children` lists of those processes only, so it costs the
/// size of the tree, not of the machine.
///
/// A `children` list is exact while its owner cannot fork (a held process) and may miss an entry
/// while siblings come and go, like a directory walk of `/proc` misses what forks behind it: the
/// next look finds it. A process whose parent exits during the walk moves to reapd's own list, so
/// that list is read again at the end until it shows nothing new.
pub fn walk(self_pid: Pid, req: &ScanRequest, roots: &[Pid]) -> Snapshot {
    let ticks = boot_ticks();
    let mut procs: Vec<ProcInfo> = Vec::new();
    let mut incomplete = false;
    let mut seen: HashSet<Pid> = HashSet::from([self_pid]);
    let mut queue: VecDeque<Pid> = VecDeque::from([self_pid]);
    queue.extend(roots.iter().copied().filter(|p| seen.insert(*p)));
    let mut me: Option<ProcInfo> = None;
    let mut clock = Cutoff::new(req);
    for _ in 0..REREADS {
        while let Some(pid) = queue.pop_front() {
            if clock.passed() {
                incomplete = true;
                queue.clear();
                break;
            }
            match read_stat_checked(pid) {
                Ok(Some(p)) => {
                    // A zombie has no children: they were handed on when it exited.
                    if !p.is_dead() {
                        match children_of(&p) {
                            Ok(kids) => queue.extend(kids.into_iter().filter(|k| seen.insert(*k))),
                            Err(_) => incomplete = true,
                        }
                    }
                    if pid == self_pid {
                        me = Some(p.clone());
                    }
                    procs.push(p);
                }
                Ok(None) => {}
                Err(_) => incomplete = true,
            }
        }
        let Some(me) = me.as_ref() else {
            break;
        };
        match children_of(me) {
            Ok(kids) => queue.extend(kids.into_iter().filter(|k| seen.insert(*k))),
            Err(_) => incomplete = true,
        }
        if queue.is_empty() {
            break;
        }
    }
    if !queue.is_empty() {
        // Still finding orphans after every reread: what is left unread may be alive.
        incomplete = true;
    }
    let mut up = me.map(|m| m.ppid);
    for _ in 0..MAX_ANCESTORS {
        let Some(pid) = up.filter(|p| *p > 0 && seen.insert(*p)) else {
            break;
        };
        up = read_stat(pid).map(|p| {
            let ppid = p.ppid;
            procs.push(p);
            ppid
        });
    }
    let mut snap = Snapshot::new(self_pid, procs);
    snap.incomplete = incomplete;
    snap.ticks = ticks;
    annotate(&mut snap, req);
    snap
}

/// When a look must end ([`ScanRequest::until`], after [`MIN_LOOK`]); the clock is read every
/// few processes only.
struct Cutoff {
    at: Option<Instant>,
    count: u32,
}

impl Cutoff {
    fn new(req: &ScanRequest) -> Cutoff {
        let now = Instant::now();
        Cutoff {
            at: req.until.map(|u| u.max(now + MIN_LOOK)),
            count: 0,
        }
    }

    fn passed(&mut self) -> bool {
        self.count = self.count.wrapping_add(1);
        self.count.is_multiple_of(32) && self.at.is_some_and(|at| Instant::now() >= at)
    }
}

/// reapd's own children, from the kernel's lists (empty if they cannot be read).
pub fn own_children(self_pid: Pid) -> Vec<Pid> {
    read_stat(self_pid)
        .and_then(|me| children_of(&me).ok())
        .unwrap_or_default()
}

/// The children of a process: those of each of its threads (a child is listed under the thread
/// that forked it, `/proc/PID/task/TID/children`). Gone is no children.
fn children_of(p: &ProcInfo) -> io::Result<Vec<Pid>> {
    let mut out = Vec::new();
    let tids: Vec<String> = if p.threads <= 1 {
        vec![p.pid.to_string()]
    } else {
        match gone_is_none(fs::read_dir(format!("/proc/{}/task", p.pid)))? {
            Some(dir) => dir
                .flatten()
                .filter_map(|t| t.file_name().to_str().map(str::to_string))
                .collect(),
            None => return Ok(out),
        }
    };
    for tid in tids {
        let path = format!("/proc/{}/task/{tid}/children", p.pid);
        if let Some(raw) = gone_is_none(read_proc(&path, Ends::Eof))? {
            out.extend(
                raw.split(|b| b.is_ascii_whitespace())
                    .filter_map(|w| std::str::from_utf8(w).ok()?.parse::<Pid>().ok()),
            );
        }
    }
    Ok(out)
}

/// What a request asks for beyond `stat`: markers of orphans nothing else identifies, command
/// lines, listeners.
fn annotate(snap: &mut Snapshot, req: &ScanRequest) {
    let self_pid = snap.self_pid;
    let ours: HashSet<Pid> = snap.descendants(self_pid).into_iter().collect();
    for (pid, p) in snap.procs.iter_mut() {
        // An orphan reparented to reapd that nothing else identifies: its marker may.
        let orphan = p.ppid == self_pid
            && !req.attributed.contains(pid)
            && !req.service_sessions.contains(&p.sid);
        if orphan && !p.is_dead() {
            p.marker = read_proc(format!("/proc/{pid}/environ"), Ends::Eof)
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
    fn a_walk_finds_the_tree_a_scan_finds() {
        use std::process::{Command, Stdio};
        let me = std::process::id() as Pid;
        // Forked by a test thread: listed under that thread, not under the process's leader.
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & exec sleep 30"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let pid = child.id() as Pid;
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut grandchildren = Vec::new();
        while grandchildren.is_empty() && std::time::Instant::now() < end {
            grandchildren = scan(me, &ScanRequest::default()).descendants(pid);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let scanned = scan(me, &ScanRequest::default());
        let walked = walk(me, &ScanRequest::default(), &[]);
        let mut kill = scanned.descendants(pid);
        kill.push(pid);
        for p in &kill {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait();
        assert!(!grandchildren.is_empty(), "the shell's child started");
        let mut a = scanned.descendants(me);
        let mut b = walked.descendants(me);
        a.sort_unstable();
        b.sort_unstable();
        assert!(b.contains(&pid) && b.contains(&grandchildren[0]), "{b:?}");
        assert!(
            a.iter()
                .filter(|p| kill.contains(p))
                .eq(b.iter().filter(|p| kill.contains(p))),
            "{a:?} {b:?}"
        );
        // reapd's ancestors are in it: it must never signal them.
        let ppid = walked.procs.get(&me).map(|p| p.ppid).expect("own entry");
        assert!(walked.procs.contains_key(&ppid));
        assert!(!walked.incomplete);
    }

    #[test]
    fn a_proc_file_is_read_whole() {
        let me = std::process::id();
        let stat = read_proc(format!("/proc/{me}/stat"), Ends::Newline).expect("stat");
        assert!(stat.ends_with(b"\n") && parse_stat(&stat).is_some());
        // Longer than the first buffer: read to its end.
        let maps = read_proc(format!("/proc/{me}/maps"), Ends::Eof).expect("maps");
        let whole = fs::read(format!("/proc/{me}/maps")).expect("maps");
        assert!(maps.len() > 1024 && maps.len().abs_diff(whole.len()) < 4096);
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
