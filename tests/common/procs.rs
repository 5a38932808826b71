//! What `/proc` says about a process (its stat line, status fields, environment, command line,
//! descriptors), and the processes that carry a test's marker. Processes are found by marker or
//! by parent, never by name.

use std::collections::BTreeMap;

/// The fields of `/proc/<pid>/stat` the tests look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D`, `Z`, ...
    pub state: char,
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    pub session: i32,
    /// Threads in the group: a `Z` leader with more than one is alive.
    pub threads: u32,
    /// CPU time in clock ticks (user + system).
    pub cpu_ticks: u64,
}

/// `/proc/<pid>/stat`, or None once the process is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    let raw = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: the fields start after the last ')'.
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = String::from_utf8_lossy(&raw[close + 1..]).to_string();
    // Field 3 of proc(5) (state) is f[0].
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        session: f.get(3)?.parse().ok()?,
        threads: u32::try_from(num(17)?).ok()?,
        cpu_ticks: num(11)? + num(12)?,
    })
}

/// The text of `/proc/<pid>/status` ("" once the process is gone).
pub fn status_text(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

/// The first word of a `Key:` line of a status text.
pub fn status_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()
}

/// A number from `/proc/<pid>/status` (`VmRSS` in KiB, `voluntary_ctxt_switches`, ...); 0 when
/// absent.
pub fn status_number(pid: i32, key: &str) -> u64 {
    status_field(&status_text(pid), key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A hexadecimal signal set (`SigBlk`, `SigIgn`, `SigCgt`...) from a status text.
pub fn sigset(text: &str, key: &str) -> u64 {
    status_field(text, key)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

/// A signal set of a live process (`SigBlk`, `SigIgn`, `SigCgt`...); None once it is gone.
pub fn mask_of(pid: i32, key: &str) -> Option<u64> {
    status_field(&status_text(pid), key).and_then(|v| u64::from_str_radix(v, 16).ok())
}

/// The bit of `sig` in a signal set.
pub fn sig_bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// A process's argv (empty once it is gone).
pub fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            String::from_utf8_lossy(&raw)
                .split_terminator('\0')
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A process's environment (empty once it is gone).
pub fn environ(pid: i32) -> BTreeMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .split('\0')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Open descriptor numbers of a process, in order.
pub fn fds_of(pid: i32) -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort_unstable();
    fds
}

/// Whether `pid` is alive as a thread group: it exists and is not a zombie, or it is a zombie
/// leader whose other threads run on.
pub fn is_alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X') || s.threads > 1)
}

/// One process seen in `/proc`.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    /// Threads in the group: a `Z` leader with more than one is alive.
    pub threads: u32,
    /// argv joined by spaces.
    pub cmdline: String,
}

impl Proc {
    fn read(pid: i32) -> Option<Proc> {
        let s = stat(pid)?;
        Some(Proc {
            pid,
            ppid: s.ppid,
            state: s.state,
            threads: s.threads,
            cmdline: cmdline(pid).join(" ").trim().to_string(),
        })
    }

    /// Alive as a thread group: not a zombie, or a zombie leader whose other threads run on.
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X') || self.threads > 1
    }
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every process whose environment or command line contains `marker`, zombies included.
pub fn procs_with_marker(marker: &str) -> Vec<Proc> {
    let me = std::process::id() as i32;
    let hit = |hay: &[u8]| hay.windows(marker.len()).any(|w| w == marker.as_bytes());
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            hit(&env) || hit(&cmd)
        })
        .filter_map(Proc::read)
        .collect()
}

/// Marker processes that are still alive (not zombies; a zombie leader with live threads is
/// alive).
pub fn live_with_marker(marker: &str) -> Vec<Proc> {
    procs_with_marker(marker)
        .into_iter()
        .filter(Proc::is_alive)
        .collect()
}

/// Every process (marked or not) whose parent is `ppid`, zombies included.
pub fn children_of(ppid: i32) -> Vec<Proc> {
    all_pids()
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|s| s.ppid == ppid))
        .filter_map(Proc::read)
        .collect()
}

/// Zombies whose parent is `ppid`: children it has not reaped.
pub fn zombies_of(ppid: i32) -> Vec<Proc> {
    children_of(ppid)
        .into_iter()
        .filter(|p| !p.is_alive())
        .collect()
}

/// `pid` and every live descendant of it among `procs`, parents before children.
pub fn tree_of(pid: i32, procs: &[Proc]) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(procs.iter().filter(|p| p.ppid == parent).map(|p| p.pid));
        i += 1;
    }
    out
}
