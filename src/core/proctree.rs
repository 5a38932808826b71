//! Process-table snapshots and the trees reapd derives from them.
//!
//! Owns: the `/proc/<pid>/stat` line parser, the [`Snapshot`] type, tree walks over it (descendants,
//! depth, deepest-first order) and [`Attribution`], which remembers which service every descendant
//! of reapd belongs to.
//! Must never: read `/proc` or make any other system call. `procfs.rs` fills snapshots; tests build
//! them by hand.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// A kernel process id.
pub type Pid = i32;

/// A process identity that survives pid reuse: the pid plus its start time (clock ticks since
/// boot, field 22 of `/proc/<pid>/stat`). Two processes never share both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId {
    /// Kernel pid.
    pub pid: Pid,
    /// Start time in clock ticks since boot.
    pub start: u64,
}

/// One process as seen in one scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    /// Kernel pid.
    pub pid: Pid,
    /// Parent pid (0 for the kernel's own roots).
    pub ppid: Pid,
    /// Process group id.
    pub pgid: Pid,
    /// Session id.
    pub sid: Pid,
    /// Start time in clock ticks since boot.
    pub start: u64,
    /// State letter of the thread group (`R`, `S`, `D`, `T`, `Z`, ...): the leader's from `stat`,
    /// or, when the leader thread has exited while other threads run, theirs (see
    /// [`group_state`]).
    pub state: char,
    /// Threads in the group (field 20 of `stat`). A zombie leader with more than one is alive.
    pub threads: u32,
    /// Command name (at most 15 bytes, may contain anything but NUL).
    pub comm: String,
    /// The `REAPD_SERVICE` environment value, when it was read and present.
    pub marker: Option<String>,
    /// The command line (arguments joined by spaces), when it was read.
    pub cmdline: Option<String>,
}

impl ProcInfo {
    /// The identity of this process.
    pub fn id(&self) -> ProcId {
        ProcId {
            pid: self.pid,
            start: self.start,
        }
    }

    /// A zombie or dead process can no longer run, fork or hold anything but its pid.
    ///
    /// Liveness belongs to the thread group, not to its leader: when `main` ends with
    /// `pthread_exit()` the leader shows `Z` while the other threads run on, and the process can
    /// still fork, hold ports and ignore signals. It is gone only once no thread is left.
    pub fn is_dead(&self) -> bool {
        match self.state {
            'X' | 'x' => true,
            'Z' => self.threads <= 1,
            _ => false,
        }
    }

    /// The leader thread has exited but other threads of the group still run.
    pub fn is_zombie_leader(&self) -> bool {
        self.state == 'Z' && self.threads > 1
    }

    /// Stopped by a signal (or traced): it cannot fork until continued.
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, 'T' | 't')
    }

    /// The command line if known, else the command name in brackets (like `ps`).
    pub fn describe(&self) -> String {
        match &self.cmdline {
            Some(c) if !c.is_empty() => c.clone(),
            _ => format!("[{}]", self.comm),
        }
    }
}

/// Parses one `/proc/<pid>/stat` line.
///
/// The command name sits between the first `(` and the *last* `)`: it may itself contain spaces
/// and parentheses, so splitting on whitespace would shift every later field.
pub fn parse_stat(line: &[u8]) -> Option<ProcInfo> {
    let open = line.iter().position(|&b| b == b'(')?;
    let close = line.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let pid: Pid = std::str::from_utf8(line.get(..open)?)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = String::from_utf8_lossy(line.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(line.get(close + 1..)?).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the command: state(0) ppid(1) pgrp(2) session(3) ... num_threads(17) starttime(19).
    let state = fields.first()?.chars().next()?;
    let threads = fields.get(17)?.parse().ok()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let pgid = fields.get(2)?.parse().ok()?;
    let sid = fields.get(3)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        pgid,
        sid,
        start,
        state,
        threads,
        comm,
        marker: None,
        cmdline: None,
    })
}

/// The state of a thread group whose leader is a zombie, from its threads' states: a running or
/// sleeping thread makes the group alive, stopped only when every live thread is stopped, a zombie
/// only when no thread is left.
pub fn group_state(threads: impl IntoIterator<Item = char>) -> char {
    let rank = |c: char| match c {
        'R' => 6,
        'D' => 5,
        'S' | 'I' => 4,
        'T' | 't' => 1,
        'Z' | 'X' | 'x' => 0,
        // Any other letter (`W`, `P`, ...) is a live thread of some kind.
        _ => 3,
    };
    threads
        .into_iter()
        .max_by_key(|&c| rank(c))
        .filter(|&c| rank(c) > 0)
        .unwrap_or('Z')
}

/// Extracts the `REAPD_SERVICE` value from a NUL-separated `/proc/<pid>/environ` blob.
pub fn marker_from_environ(environ: &[u8]) -> Option<String> {
    environ
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"REAPD_SERVICE="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Turns a NUL-separated `/proc/<pid>/cmdline` blob into one space-separated line.
pub fn cmdline_from_bytes(raw: &[u8]) -> String {
    let trimmed = raw.strip_suffix(&[0]).unwrap_or(raw);
    String::from_utf8_lossy(trimmed).replace('\0', " ")
}

/// A process listening on a TCP port, found through `/proc/net/tcp{,6}` and `/proc/*/fd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The listening port.
    pub port: u16,
    /// Every process holding the listening socket.
    pub pid: Pid,
}

/// All processes visible in one pass over `/proc`, plus whatever extra facts the scan was asked
/// to collect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// reapd's own pid.
    pub self_pid: Pid,
    /// Every process, by pid.
    pub procs: BTreeMap<Pid, ProcInfo>,
    /// Processes listening on the ports a sweep asked about.
    pub listeners: Vec<Listener>,
    /// Some entries could not be read (out of descriptors, say): a process missing from this
    /// snapshot may still be alive.
    pub incomplete: bool,
    /// Only the processes asked for were read (a check of held processes' states): a process
    /// missing from it says nothing at all.
    pub partial: bool,
    /// The boot clock in clock ticks (the unit of [`ProcInfo::start`]) when the scan began, when
    /// the edge read it: a process started in a later tick started after the scan.
    pub ticks: Option<u64>,
    /// Pids in each service's cgroup, for the services the scan request named (cgroups only):
    /// membership no walk can lose.
    pub groups: BTreeMap<String, Vec<Pid>>,
}

impl Snapshot {
    /// A snapshot of the given processes.
    pub fn new(self_pid: Pid, procs: impl IntoIterator<Item = ProcInfo>) -> Self {
        Snapshot {
            self_pid,
            procs: procs.into_iter().map(|p| (p.pid, p)).collect(),
            listeners: Vec::new(),
            incomplete: false,
            partial: false,
            ticks: None,
            groups: BTreeMap::new(),
        }
    }

    /// The process with this pid, if it is still the same process.
    pub fn get(&self, id: ProcId) -> Option<&ProcInfo> {
        self.procs.get(&id.pid).filter(|p| p.start == id.start)
    }

    /// Children of every process, in pid order.
    pub fn children(&self) -> HashMap<Pid, Vec<Pid>> {
        let mut map: HashMap<Pid, Vec<Pid>> = HashMap::new();
        for p in self.procs.values() {
            if p.pid != p.ppid {
                map.entry(p.ppid).or_default().push(p.pid);
            }
        }
        map
    }

    /// Every descendant of `root` (not `root` itself), parents before children.
    pub fn descendants(&self, root: Pid) -> Vec<Pid> {
        let children = self.children();
        let mut out = Vec::new();
        let mut seen = HashSet::from([root]);
        let mut queue = VecDeque::from([root]);
        while let Some(p) = queue.pop_front() {
            for &c in children.get(&p).into_iter().flatten() {
                if seen.insert(c) {
                    out.push(c);
                    queue.push_back(c);
                }
            }
        }
        out
    }

    /// The chain of ancestors of `pid`, nearest first. Stops at a pid missing from the snapshot
    /// (the kernel's roots have ppid 0) and never loops on a corrupt table.
    pub fn ancestors(&self, pid: Pid) -> Vec<Pid> {
        let mut out = Vec::new();
        let mut seen = HashSet::from([pid]);
        let mut cur = pid;
        while let Some(p) = self.procs.get(&cur) {
            if p.ppid <= 0 || !seen.insert(p.ppid) {
                break;
            }
            out.push(p.ppid);
            cur = p.ppid;
        }
        out
    }

    /// Pids reapd must never signal, whatever a sweep matches: pid 1, reapd itself and every
    /// ancestor of reapd (killing the supervisor that runs us would be a disaster).
    pub fn protected(&self) -> HashSet<Pid> {
        let mut set: HashSet<Pid> = self.ancestors(self.self_pid).into_iter().collect();
        set.insert(1);
        set.insert(self.self_pid);
        set
    }
}

/// A set of processes arranged as a forest: a member's parent is its `ppid` when that is also a
/// member, otherwise the member is a root (a main process, or an orphan reparented to reapd).
#[derive(Debug)]
pub struct Forest {
    parent: HashMap<Pid, Pid>,
    children: HashMap<Pid, Vec<Pid>>,
    members: Vec<Pid>,
    /// Distance from each member's root, computed once.
    depth: HashMap<Pid, usize>,
}

impl Forest {
    /// Builds the forest of `members` (pids missing from the snapshot are ignored).
    pub fn new(snap: &Snapshot, members: impl IntoIterator<Item = Pid>) -> Self {
        let members: Vec<Pid> = {
            let mut v: Vec<Pid> = members
                .into_iter()
                .filter(|p| snap.procs.contains_key(p))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let set: HashSet<Pid> = members.iter().copied().collect();
        let mut parent = HashMap::new();
        let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
        for &m in &members {
            if let Some(p) = snap.procs.get(&m)
                && p.ppid != m
                && set.contains(&p.ppid)
            {
                parent.insert(m, p.ppid);
                children.entry(p.ppid).or_default().push(m);
            }
        }
        // A corrupt or racing table could contain a parent cycle; break it so walks terminate.
        for &m in &members {
            let mut seen = HashSet::from([m]);
            let mut cur = m;
            while let Some(&p) = parent.get(&cur) {
                if !seen.insert(p) {
                    parent.remove(&cur);
                    if let Some(c) = children.get_mut(&p) {
                        c.retain(|&x| x != cur);
                    }
                    break;
                }
                cur = p;
            }
        }
        // Depths in one pass from the roots, so walks over the forest stay linear.
        let mut depth: HashMap<Pid, usize> = HashMap::with_capacity(members.len());
        let mut queue: VecDeque<Pid> = members
            .iter()
            .copied()
            .filter(|m| !parent.contains_key(m))
            .collect();
        for &r in &queue {
            depth.insert(r, 0);
        }
        while let Some(p) = queue.pop_front() {
            let d = depth.get(&p).copied().unwrap_or(0);
            for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
                if depth.insert(c, d + 1).is_none() {
                    queue.push_back(c);
                }
            }
        }
        Forest {
            parent,
            children,
            members,
            depth,
        }
    }

    /// Members in pid order.
    pub fn members(&self) -> &[Pid] {
        &self.members
    }

    /// Children of a member inside the forest.
    pub fn children_of(&self, pid: Pid) -> &[Pid] {
        self.children.get(&pid).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Distance from the member's root (roots have depth 0).
    pub fn depth(&self, pid: Pid) -> usize {
        self.depth.get(&pid).copied().unwrap_or(0)
    }

    /// The member's parent inside the forest.
    pub fn parent_of(&self, pid: Pid) -> Option<Pid> {
        self.parent.get(&pid).copied()
    }

    /// Members ordered parents first (depth ascending, then pid): the order to freeze in, so a
    /// parent is stopped before it can fork a child we have not seen.
    pub fn top_down(&self) -> Vec<Pid> {
        let mut v: Vec<(usize, Pid)> = self.members.iter().map(|&p| (self.depth(p), p)).collect();
        v.sort_unstable();
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// Members ordered deepest first (depth descending, then pid): the order to kill in.
    pub fn deepest_first(&self) -> Vec<Pid> {
        let mut v: Vec<(std::cmp::Reverse<usize>, Pid)> = self
            .members
            .iter()
            .map(|&p| (std::cmp::Reverse(self.depth(p)), p))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// The members above `pid`, nearest first.
    pub fn above(&self, pid: Pid) -> Vec<Pid> {
        let mut out = Vec::new();
        let mut cur = pid;
        while let Some(&p) = self.parent.get(&cur) {
            out.push(p);
            cur = p;
        }
        out
    }

    /// Every member below `pid`.
    pub fn below(&self, pid: Pid) -> Vec<Pid> {
        let mut out = Vec::new();
        let mut stack: Vec<Pid> = self.children_of(pid).to_vec();
        while let Some(p) = stack.pop() {
            out.push(p);
            stack.extend_from_slice(self.children_of(p));
        }
        out
    }

    /// The longest downward chain of members satisfying `counts`, starting at `pid` (a member
    /// not counted adds nothing but passes its children's chains through). Linear, without
    /// recursion, however deep the tree.
    pub fn chain_len(&self, pid: Pid, counts: &dyn Fn(Pid) -> bool) -> usize {
        let mut below = self.below(pid);
        below.push(pid);
        below.sort_unstable_by_key(|&p| std::cmp::Reverse(self.depth(p)));
        let mut len: HashMap<Pid, usize> = HashMap::with_capacity(below.len());
        for p in below {
            let deepest = self
                .children_of(p)
                .iter()
                .filter_map(|c| len.get(c))
                .copied()
                .max()
                .unwrap_or(0);
            len.insert(p, usize::from(counts(p)) + deepest);
        }
        len.get(&pid).copied().unwrap_or(0)
    }

    /// Roots of the forest.
    pub fn roots(&self) -> Vec<Pid> {
        self.members
            .iter()
            .copied()
            .filter(|p| !self.parent.contains_key(p))
            .collect()
    }
}

/// Who a descendant of reapd belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// A process of this service (its main process or anything descended from it).
    Service(String),
    /// A cleanup hook, by index in the config's `cleanup` list.
    Hook(usize),
    /// Reparented to reapd with no way to tell where it came from.
    Unknown,
}

/// What reapd knows for certain when attributing: the roots it spawned itself.
#[derive(Clone, Debug, Default)]
pub struct Roots {
    /// Processes reapd spawned (service main processes and hooks).
    pub spawned: HashMap<ProcId, Owner>,
    /// Session id → service: every service main process is a session leader.
    pub sessions: HashMap<Pid, String>,
    /// Names of services that still exist (a marker naming a removed service means nothing).
    pub services: HashSet<String>,
}

/// Remembers which owner every descendant of reapd has, across scans.
///
/// Ancestry is recorded as it is observed: once a process has been seen under a service's main
/// process, it keeps that owner after its parent dies and it is reparented to reapd. Processes
/// first met as orphans fall back on their `REAPD_SERVICE` marker, then on their session id.
#[derive(Clone, Debug, Default)]
pub struct Attribution {
    known: HashMap<ProcId, Owner>,
}

impl Attribution {
    /// Attributes every live descendant of reapd in `snap`, records the result and forgets
    /// processes that are gone. Returns pid → owner for the live descendants.
    pub fn update(&mut self, snap: &Snapshot, roots: &Roots) -> HashMap<Pid, Owner> {
        let mut now: HashMap<Pid, Owner> = HashMap::new();
        for pid in snap.descendants(snap.self_pid) {
            let Some(p) = snap.procs.get(&pid) else {
                continue;
            };
            let id = p.id();
            let owner = if let Some(o) = roots.spawned.get(&id) {
                o.clone()
            } else if let Some(o) = self.known.get(&id) {
                o.clone()
            } else if p.ppid != snap.self_pid {
                // Parents come before children in `descendants`, so the parent is decided.
                now.get(&p.ppid).cloned().unwrap_or(Owner::Unknown)
            } else if let Some(m) = p.marker.as_ref().filter(|m| roots.services.contains(*m)) {
                Owner::Service(m.clone())
            } else if let Some(s) = roots.sessions.get(&p.sid) {
                Owner::Service(s.clone())
            } else {
                Owner::Unknown
            };
            now.insert(pid, owner);
        }
        self.known.retain(|id, _| snap.get(*id).is_some());
        for (&pid, owner) in &now {
            if let Some(p) = snap.procs.get(&pid) {
                self.known.insert(p.id(), owner.clone());
            }
        }
        now
    }

    /// Pids of every process attributed so far.
    pub fn known_pids(&self) -> impl Iterator<Item = Pid> + '_ {
        self.known.keys().map(|id| id.pid)
    }

    /// The recorded owner of a process, if it was ever attributed.
    #[cfg(test)]
    pub fn owner_of(&self, id: ProcId) -> Option<&Owner> {
        self.known.get(&id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A process for fake tables: pid, ppid, session; start time = pid * 10.
    pub(crate) fn proc(pid: Pid, ppid: Pid, sid: Pid) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            pgid: sid,
            sid,
            start: pid as u64 * 10,
            state: 'S',
            threads: 1,
            comm: format!("p{pid}"),
            marker: None,
            cmdline: None,
        }
    }

    #[test]
    fn stat_parser_splits_at_the_last_parenthesis() {
        let line =
            b"4242 (x) 9 (y z) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        let p = parse_stat(line).expect("parses");
        assert_eq!(p.pid, 4242);
        assert_eq!(p.comm, "x) 9 (y z");
        assert_eq!(
            (p.state, p.ppid, p.pgid, p.sid, p.start),
            ('S', 17, 4242, 4242, 987654)
        );
    }

    #[test]
    fn a_zombie_leader_with_live_threads_is_alive() {
        // `main` ended in pthread_exit(): the leader is Z, one more thread runs.
        let line = b"9511 (zl) Z 9510 9502 1083 0 -1 4227084 129 0 1 0 0 0 0 0 20 0 2 0 23715 0 0";
        let mut p = parse_stat(line).expect("parses");
        assert_eq!((p.state, p.threads), ('Z', 2));
        assert!(!p.is_dead() && p.is_zombie_leader());
        p.threads = 1;
        assert!(p.is_dead(), "a plain zombie is gone");
        assert_eq!(group_state(['Z', 'S']), 'S');
        assert_eq!(group_state(['Z', 'T', 'R']), 'R');
        assert!(matches!(group_state(['Z', 'T', 't']), 'T' | 't'));
        assert_eq!(group_state(['Z', 'Z']), 'Z');
        assert_eq!(group_state([]), 'Z');
    }

    #[test]
    fn stat_parser_rejects_truncated_lines() {
        assert!(parse_stat(b"12 (sh) S 1 12").is_none());
        assert!(parse_stat(b"").is_none());
        assert!(parse_stat(b"12 sh) S (").is_none());
    }

    #[test]
    fn environ_marker_and_cmdline() {
        assert_eq!(
            marker_from_environ(b"A=1\0REAPD_SERVICE=web\0B=2\0"),
            Some("web".into())
        );
        assert_eq!(marker_from_environ(b"A=1\0XREAPD_SERVICE=web\0"), None);
        assert_eq!(cmdline_from_bytes(b"sh\0-c\0sleep 1\0"), "sh -c sleep 1");
    }

    #[test]
    fn descendants_and_ancestors_survive_cycles() {
        let snap = Snapshot::new(
            10,
            [
                proc(1, 0, 1),
                proc(10, 1, 1),
                proc(11, 10, 11),
                proc(12, 11, 11),
                proc(20, 21, 20),
                proc(21, 20, 20),
            ],
        );
        assert_eq!(snap.descendants(10), vec![11, 12]);
        assert_eq!(snap.ancestors(12), vec![11, 10, 1]);
        assert_eq!(snap.ancestors(20), vec![21]);
        let prot = snap.protected();
        assert!(prot.contains(&1) && prot.contains(&10) && !prot.contains(&11));
    }

    #[test]
    fn forest_orders_deepest_first_and_top_down() {
        // 100 → 101 → 102 → 103, plus orphan root 200 → 201.
        let snap = Snapshot::new(
            1,
            [
                proc(100, 1, 100),
                proc(101, 100, 100),
                proc(102, 101, 100),
                proc(103, 102, 100),
                proc(200, 1, 100),
                proc(201, 200, 100),
            ],
        );
        let f = Forest::new(&snap, [100, 101, 102, 103, 200, 201]);
        assert_eq!(f.deepest_first(), vec![103, 102, 101, 201, 100, 200]);
        assert_eq!(f.top_down(), vec![100, 200, 101, 201, 102, 103]);
        assert_eq!(f.roots(), vec![100, 200]);
        assert_eq!(f.chain_len(100, &|_| true), 4);
        assert_eq!(f.chain_len(100, &|p| p != 103 && p != 102), 2);
        assert!(f.children_of(103).is_empty() && !f.children_of(102).is_empty());
        let mut below = f.below(101);
        below.sort();
        assert_eq!(below, vec![102, 103]);
    }

    fn roots(mains: &[(ProcId, &str)]) -> Roots {
        let mut r = Roots::default();
        for (id, name) in mains {
            r.spawned.insert(*id, Owner::Service(name.to_string()));
            r.sessions.insert(id.pid, name.to_string());
            r.services.insert(name.to_string());
        }
        r
    }

    #[test]
    fn orphans_keep_the_owner_observed_while_their_parent_lived() {
        let me = 1000;
        let web = proc(1001, me, 1001);
        let child = proc(1002, 1001, 1001);
        let mut escapee = proc(1003, 1002, 1003); // called setsid
        escapee.marker = None; // and cleared its environment
        let r = roots(&[(web.id(), "web")]);
        let mut a = Attribution::default();
        let seen = a.update(
            &Snapshot::new(
                me,
                [proc(me, 1, 1), web.clone(), child.clone(), escapee.clone()],
            ),
            &r,
        );
        assert_eq!(seen[&1003], Owner::Service("web".into()));
        // The middle process exits; the escapee is reparented to reapd.
        escapee.ppid = me;
        let seen = a.update(&Snapshot::new(me, [proc(me, 1, 1), web, escapee]), &r);
        assert_eq!(seen[&1003], Owner::Service("web".into()));
    }

    #[test]
    fn first_met_orphans_fall_back_on_marker_then_session() {
        let me = 1000;
        let web = proc(1001, me, 1001);
        let mut by_marker = proc(1100, me, 1100);
        by_marker.marker = Some("web".into());
        let by_session = proc(1200, me, 1001);
        let mut stale_marker = proc(1300, me, 1300);
        stale_marker.marker = Some("removed".into());
        let r = roots(&[(web.id(), "web")]);
        let seen = Attribution::default().update(
            &Snapshot::new(
                me,
                [proc(me, 1, 1), web, by_marker, by_session, stale_marker],
            ),
            &r,
        );
        assert_eq!(seen[&1100], Owner::Service("web".into()));
        assert_eq!(seen[&1200], Owner::Service("web".into()));
        assert_eq!(seen[&1300], Owner::Unknown);
    }

    #[test]
    fn a_reused_pid_is_a_new_process() {
        let me = 1000;
        let web = proc(1001, me, 1001);
        let child = proc(1002, 1001, 1001);
        let r = roots(&[(web.id(), "web")]);
        let mut a = Attribution::default();
        a.update(&Snapshot::new(me, [web.clone(), child.clone()]), &r);
        assert!(a.owner_of(child.id()).is_some());
        // 1002 dies and the number is reused by an unrelated orphan with a different start time.
        let mut reused = proc(1002, me, 1002);
        reused.start = 99_999;
        let seen = a.update(&Snapshot::new(me, [web, reused.clone()]), &r);
        assert_eq!(seen[&1002], Owner::Unknown);
        assert!(a.owner_of(child.id()).is_none());
    }
}
