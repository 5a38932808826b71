//! The system edge of a turn: every resource the event loop holds, and carrying out the core's
//! actions with them.
//!
//! Owns: the pidfds (one per watched process, verified against pid reuse, capped by the
//! descriptor budget; their handling is in `pidfds`), signalling only through pidfds, spawning
//! children with their notification pipes, output pipes and cgroup, the single reaper, the
//! control socket's part in actions (replies, events to watchers), services' cgroups, the state
//! file, and releasing the socket and lock at the end.
//! Must never: decide: what it learns while acting (a spawn's pid, a process already gone, no
//! descriptor left) goes back to the core as inputs.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, warn};
use mio::Poll;
use mio::unix::SourceFd;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

use crate::core::io::{Action, Input, ScanRequest, Spawnee};
use crate::core::proctree::{Pid, ProcId, Snapshot};
use crate::core::turn::Edge;
use crate::sys::cgroup::{self, Cgroups};
use crate::sys::checks::{self, Notification, NotifyPipe, NotifyPipes};
use crate::sys::config_file;
use crate::sys::control::{Control, Incoming, Lock};
use crate::sys::logging;
use crate::sys::notify::Notifier;
use crate::sys::output::Outputs;
use crate::sys::pidfd::PidFd;
use crate::sys::priority::{Priority, PriorityControl};
use crate::sys::procfs;
use crate::sys::signals::SignalSource;
use crate::sys::spawn::{SpawnSpec, Spawner};
use crate::sys::state_file;
use crate::wire::config::{ConfigError, LogMode};
use crate::wire::events::{Event, ExitStatus, event_line};
use crate::wire::replies::{Reply, ok_line};
use crate::wire::state_file::{Recorded, StateRecord};

/// How long reading services' cgroup usage for one request may take (a few files each).
const ACCOUNT_BUDGET: Duration = Duration::from_millis(20);
mod looks;
mod pidfds;

/// How long exiting may spend delivering the last lines to clients.
const FINAL_FLUSH: Duration = Duration::from_millis(200);

/// Whether a process could be reached through a pidfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// A pidfd is held: its exit will be announced.
    Yes,
    /// It is gone (or the pid belongs to another process now).
    Gone,
    /// It could not be checked or watched (out of descriptors): assume it lives.
    Blind,
}

struct Watched {
    start: u64,
    fd: PidFd,
}

/// The system side of a turn: every resource the loop holds.
pub struct SysEdge {
    pub(super) poll: Poll,
    signals: SignalSource,
    pub(super) control: Option<Control>,
    lock: Option<Lock>,
    pidfds: HashMap<Pid, Watched>,
    notify_pipes: NotifyPipes,
    notifier: Notifier,
    spawner: Spawner,
    config_path: Option<PathBuf>,
    self_pid: Pid,
    /// reapd's own start time, the state file's first record.
    self_start: u64,
    /// `<socket>.state`, when there is a socket.
    pub(super) state_path: Option<PathBuf>,
    /// Set by the core's last action.
    pub(super) exit_code: Option<i32>,
    /// What was learnt while performing an action or reaping, for the core.
    pub(super) learnt: Vec<Input>,
    /// Most pidfds held at once (the descriptor budget).
    watch_cap: usize,
    warned_fds: bool,
    priority: PriorityControl,
    /// A descriptor was closed this turn: connections waiting for one may be accepted.
    pub(super) fds_freed: bool,
    /// Services' output read through pipes (`log: prefix`).
    pub(super) outputs: Outputs,
    /// One cgroup per service, when the hierarchy is writable.
    cgroups: Option<Cgroups>,
    /// A crashed predecessor's cgroup directory, removed once its processes are gone.
    predecessor_cgroup: Option<PathBuf>,
    /// reapd's tree can be read on its own (see [`procfs::walk_works`]).
    walk_works: bool,
    /// How many processes the last looks found, to choose the cheaper way to look.
    sizes: looks::Sizes,
}

/// What the edge is built from, prepared by the event loop's start-up.
pub(super) struct Resources {
    pub(super) poll: Poll,
    pub(super) signals: SignalSource,
    pub(super) control: Option<Control>,
    pub(super) lock: Option<Lock>,
    pub(super) notifier: Notifier,
    pub(super) spawner: Spawner,
    pub(super) config_path: Option<PathBuf>,
    pub(super) self_pid: Pid,
    pub(super) state_path: Option<PathBuf>,
    pub(super) watch_cap: usize,
    pub(super) cgroups: Option<Cgroups>,
}

impl SysEdge {
    /// The edge of a loop that holds these resources.
    pub(super) fn new(r: Resources) -> SysEdge {
        SysEdge {
            poll: r.poll,
            signals: r.signals,
            control: r.control,
            lock: r.lock,
            pidfds: HashMap::new(),
            notify_pipes: NotifyPipes::default(),
            notifier: r.notifier,
            spawner: r.spawner,
            config_path: r.config_path,
            self_pid: r.self_pid,
            self_start: procfs::read_stat(r.self_pid).map_or(0, |p| p.start),
            walk_works: {
                let works = procfs::walk_works(r.self_pid);
                debug!(
                    "looks at /proc read {}",
                    if works {
                        "reapd's tree through the kernel's children lists"
                    } else {
                        "every process (no children lists, or reapd is not a subreaper)"
                    }
                );
                works
            },
            sizes: looks::Sizes::new(),
            state_path: r.state_path,
            exit_code: None,
            learnt: Vec::new(),
            watch_cap: r.watch_cap,
            warned_fds: false,
            priority: PriorityControl::default(),
            fds_freed: false,
            outputs: Outputs::default(),
            cgroups: r.cgroups,
            predecessor_cgroup: None,
        }
    }
}

impl std::fmt::Debug for SysEdge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SysEdge")
            .field("watched", &self.pidfds.len())
            .finish_non_exhaustive()
    }
}

impl Edge for SysEdge {
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Collects every child that has exited: SIGCHLD coalesces, so one signal may stand for many.
    fn reap(&mut self) -> Vec<Input> {
        self.reap_children()
    }

    fn perform(&mut self, action: Action) -> Vec<Input> {
        match action {
            Action::Spawn {
                who,
                cmd,
                env,
                cwd,
                inherit_stdin,
                notify_fd,
                mut launch,
                cgroup,
            } => {
                // Two descriptors more must fit in the pidfds' share, or the stop path's
                // reserve would pay for them: the service then writes to reapd's own output.
                if launch.log.piped()
                    && self.pidfds.len() + self.outputs.open_pipes() + 2 > self.watch_cap
                {
                    let name = match &who {
                        Spawnee::Service(name) | Spawnee::Check { service: name, .. } => {
                            name.as_str()
                        }
                        Spawnee::Hook(_) => "cleanup hook",
                    };
                    warn!(
                        "{name}: no descriptor left for its output pipes (the open-file limit); \
                         it writes to reapd's own output this time; raise ulimit -n to avoid this"
                    );
                    launch.log = LogMode::Inherit;
                }
                let pipe = match notify_fd.map(|_| NotifyPipe::new()).transpose() {
                    Ok(p) => p,
                    Err(e) => {
                        self.learnt.push(Input::SpawnFailed {
                            who,
                            error: format!("cannot create its notification pipe: {e}"),
                        });
                        return std::mem::take(&mut self.learnt);
                    }
                };
                let procs = match (cgroup, self.cgroups.as_mut()) {
                    (Some(svc), Some(c)) => match c.prepare_spawn(&svc, self.poll.registry()) {
                        Ok(fd) => Some(fd),
                        Err(e) => {
                            // Spawned outside its cgroup, a service would be lost to the
                            // kernel's bookkeeping, and an empty cgroup would end its stop early.
                            self.learnt.push(Input::SpawnFailed { who, error: e });
                            return std::mem::take(&mut self.learnt);
                        }
                    },
                    _ => None,
                };
                let spec = SpawnSpec {
                    cmd: &cmd,
                    env: &env,
                    cwd: cwd.as_ref(),
                    inherit_stdin,
                    notify: pipe
                        .as_ref()
                        .zip(notify_fd)
                        .map(|(p, fd)| (p.write.as_raw_fd(), fd)),
                    launch: &launch,
                    cgroup: procs.as_ref().map(AsRawFd::as_raw_fd),
                };
                let input = match self.spawner.spawn(&spec) {
                    Ok(spawned) => {
                        if let (
                            Some(read),
                            Spawnee::Service(name) | Spawnee::Check { service: name, .. },
                        ) = (spawned.output, &who)
                        {
                            self.outputs
                                .adopt(name, launch.log, read, self.poll.registry());
                        }
                        match self.adopt_child(spawned.pid) {
                            Ok(proc) => {
                                if let (Some(pipe), Spawnee::Service(name)) = (pipe, &who) {
                                    // The child holds the write end now; reapd's copy must go,
                                    // or the pipe would never reach end of file.
                                    drop(pipe.write);
                                    self.notify_pipes.watch(
                                        self.poll.registry(),
                                        spawned.pid,
                                        name,
                                        pipe.read,
                                    );
                                }
                                Input::Spawned { who, proc }
                            }
                            Err(e) => Input::SpawnFailed { who, error: e },
                        }
                    }
                    Err(e) => Input::SpawnFailed { who, error: e },
                };
                self.learnt.push(input);
            }
            Action::Probe {
                service,
                seq,
                probe,
            } => {
                let result = checks::probe(&probe);
                self.learnt.push(Input::Probed {
                    service,
                    seq,
                    result,
                });
            }
            Action::SignalGroup { pgid, signal } => {
                // ESRCH: the group is empty, which is the usual case.
                match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal) {
                    Ok(()) => debug!("sent {signal} to process group {pgid}"),
                    Err(Errno::ESRCH) => {}
                    Err(e) => warn!("kill({signal}) of process group {pgid}: {e}"),
                }
            }
            Action::Signal { proc, signal } => {
                let reach = self.send(proc, signal);
                self.reached(proc, reach);
            }
            Action::Watch(proc) => {
                let reach = self.watch(proc);
                self.reached(proc, reach);
            }
            Action::KillGroup(service) => {
                if let Some(c) = &self.cgroups {
                    match c.kill(&service) {
                        Ok(()) => debug!("froze and killed the cgroup of {service}"),
                        Err(e) => warn!("{e}; killing its processes one by one"),
                    }
                }
            }
            Action::Account {
                to,
                request,
                services,
            } => {
                // Bounded like every part of a turn: past the budget, services show no usage.
                let began = Instant::now();
                let usage = services
                    .into_iter()
                    .take_while(|_| began.elapsed() < ACCOUNT_BUDGET)
                    .filter_map(|s| {
                        let u = self.cgroups.as_ref()?.usage(&s)?;
                        Some((s, u))
                    })
                    .collect();
                self.learnt.push(Input::Accounted { to, request, usage });
            }
            Action::RemoveGroup(service) => {
                if let Some(c) = self.cgroups.as_mut() {
                    c.remove(&service, self.poll.registry());
                }
            }
            Action::Reply { conn, line } => {
                let got = self
                    .control
                    .as_mut()
                    .map(|c| c.reply(conn, &line, self.poll.registry()))
                    .unwrap_or_default();
                let inputs = self.incoming(got);
                self.learnt.extend(inputs);
            }
            Action::Event(ev) => {
                logging::event(&ev);
                // A service gone from the config takes its tail with it (once its pipes end).
                if let Event::Removed { service } = &ev {
                    self.outputs.forget_tail(service);
                }
                let line = event_line(&ev, logging::unix_ms(SystemTime::now()));
                let got = self
                    .control
                    .as_mut()
                    .map(|c| c.broadcast(&line, self.poll.registry()))
                    .unwrap_or_default();
                let inputs = self.incoming(got);
                self.learnt.extend(inputs);
            }
            Action::CloseIdle => {
                let got = self
                    .control
                    .as_mut()
                    .map(|c| c.close_idle(self.poll.registry()))
                    .unwrap_or_default();
                let inputs = self.incoming(got);
                self.learnt.extend(inputs);
            }
            Action::CloseListener => {
                if let Some(c) = self.control.as_mut() {
                    c.close_listener(self.poll.registry());
                }
            }
            Action::LoadConfig { reply } => {
                let result = match &self.config_path {
                    Some(p) => config_file::load(p),
                    None => Err(vec![ConfigError {
                        path: String::new(),
                        message: "no config file to reload".into(),
                    }]),
                };
                self.learnt.push(Input::ConfigLoaded { result, reply });
            }
            Action::Notify(n) => self.notifier.send(&n),
            Action::Persist(procs) => self.persist(procs),
            Action::Release { keep_state } => {
                let failures = self.release(keep_state);
                self.learnt.push(Input::Released { failures });
            }
            Action::Logs {
                to: (conn, id),
                name,
                captured,
                lines,
                follow,
            } => {
                let reply = Reply::Logs {
                    lines: self.outputs.tail(&name, lines),
                    logs: name.clone(),
                    captured,
                };
                let line = ok_line(id.as_ref(), &reply);
                let mut got = Vec::new();
                if let Some(c) = self.control.as_mut() {
                    // A follower first: a client that already closed its sending side is kept
                    // for the lines to come instead of being done with its reply.
                    if follow {
                        c.follow(conn);
                        self.outputs.follow(conn, &name);
                    }
                    got = c.reply(conn, &line, self.poll.registry());
                }
                let inputs = self.incoming(got);
                self.learnt.extend(inputs);
            }
            Action::Exit { code } => self.exit_code = Some(code),
        }
        std::mem::take(&mut self.learnt)
    }

    fn scan(&mut self, req: &ScanRequest) -> Snapshot {
        // Membership first: a process that joins a cgroup after this read is also found by the
        // walk that follows, if it descends from a member.
        let groups = self.group_members(req);
        // Whose cgroup holds a process says whose it is: its environment (its REAPD_SERVICE
        // marker) is not read, and that read can stall for as long as a forking process holds
        // its memory map.
        let widened;
        let req = if groups.is_empty() {
            req
        } else {
            let mut r = req.clone();
            r.attributed.extend(groups.values().flatten().copied());
            widened = r;
            &widened
        };
        let mut snap = self.look(req, &groups);
        if snap.incomplete
            && out_of_fds(self.poll.as_raw_fd())
            && self.shed_client("scanning /proc")
        {
            snap = self.look(req, &groups);
        }
        // Read again after the look: a process forked into a cgroup since the first read is in
        // the look, and must not pass for one that moved out of it.
        let mut groups = groups;
        for (service, after) in self.group_members(req) {
            let members = groups.entry(service).or_default();
            members.extend(after);
            members.sort_unstable();
            members.dedup();
        }
        snap.groups = groups;
        snap
    }

    fn set_urgent(&mut self, urgent: bool) {
        self.priority.set(if urgent {
            Priority::Urgent
        } else {
            Priority::Normal
        });
    }
}

impl SysEdge {
    /// Drains the signal pipe: whether SIGCHLD was among them (reap then), and the others.
    pub(super) fn read_signals(&mut self) -> (bool, Vec<Input>) {
        let mut chld = false;
        let mut inputs = Vec::new();
        for sig in self.signals.pending() {
            if sig == Signal::SIGCHLD {
                chld = true;
            } else {
                inputs.push(Input::Signal(sig));
            }
        }
        (chld, inputs)
    }

    /// Accepts new connections (on a listener event), and those left waiting for a descriptor
    /// once one has been freed.
    pub(super) fn accept_clients(&mut self, event: bool) {
        let freed = std::mem::take(&mut self.fds_freed);
        if let Some(c) = self.control.as_mut() {
            if event {
                c.accept(self.poll.registry());
            } else {
                c.accept_again(self.poll.registry(), freed);
            }
        }
    }

    /// A crashed predecessor's state file, with every process still in its cgroups added (one
    /// that double-forked out of its service's tree is still in them).
    pub(super) fn predecessor(&mut self) -> Option<StateRecord> {
        let mut rec = self.state_path.as_deref().and_then(state_file::read)?;
        if let Some(dir) = rec.cgroup.as_deref().map(PathBuf::from) {
            for (owner, pid) in cgroup::left_in(&dir) {
                if pid == self.self_pid || rec.procs.iter().any(|r| r.pid == pid) {
                    continue;
                }
                if let Some(p) = procfs::read_stat(pid) {
                    rec.procs.push(Recorded {
                        owner,
                        pid,
                        start: p.start,
                    });
                }
            }
            self.predecessor_cgroup = Some(dir);
        }
        Some(rec)
    }

    /// The cgroup members of the services a scan asks about.
    fn group_members(&self, req: &ScanRequest) -> BTreeMap<String, Vec<Pid>> {
        let Some(c) = &self.cgroups else {
            return BTreeMap::new();
        };
        req.groups
            .iter()
            .filter_map(|svc| Some((svc.clone(), c.members(svc)?)))
            .collect()
    }

    /// A service cgroup's `cgroup.events` changed: the core hears of it once it is empty.
    pub(super) fn cgroup_changed(&mut self, n: usize) {
        if let Some(service) = self.cgroups.as_mut().and_then(|c| c.emptied(n)) {
            debug!("cgroup of {service} is empty (cgroup.events: populated 0)");
            self.learnt.push(Input::GroupEmpty(service));
        }
    }

    /// A pidfd became readable: the process exited. If it is reapd's child it is collected at
    /// once, through its pidfd (its exit status is learnt before its end); then it is forgotten.
    pub(super) fn exited(&mut self, pid: Pid) {
        // A newline written just before the exit counts: it is told before the exit.
        self.notified(pid);
        if let Some(w) = self.pidfds.get(&pid)
            && let Some((pid, status)) = w.fd.reap().and_then(reaped)
        {
            debug!("reaped pid {pid} ({status})");
            self.learnt.push(Input::Reaped { pid, status });
        }
        self.forget(pid);
    }

    /// A notification pipe is readable: a newline makes its service ready.
    pub(super) fn notified(&mut self, pid: Pid) {
        if let Notification::Ready(service) = self.notify_pipes.readable(self.poll.registry(), pid)
        {
            self.learnt.push(Input::Notified { service, pid });
        }
    }

    /// The process behind a pidfd is gone: close the pidfd and say so.
    pub(super) fn forget(&mut self, pid: Pid) {
        // A newline written just before the exit still counts.
        self.notified(pid);
        self.notify_pipes.close(self.poll.registry(), pid);
        if let Some(w) = self.pidfds.remove(&pid) {
            let _ = self.poll.registry().deregister(&mut SourceFd(&w.fd.raw()));
            self.fds_freed = true;
            self.learnt.push(Input::Gone(ProcId {
                pid,
                start: w.start,
            }));
        }
    }

    /// Hands the lines read for `logs -f` followers to the control socket.
    pub(super) fn pass_to_followers(&mut self) {
        let lines = std::mem::take(&mut self.outputs.to_followers);
        let mut got = Vec::new();
        if let Some(c) = self.control.as_mut() {
            for (conn, line) in lines {
                got.extend(c.send(conn, &line, self.poll.registry()));
            }
        }
        let inputs = self.incoming(got);
        self.learnt.extend(inputs);
    }

    pub(super) fn incoming(&mut self, got: Vec<Incoming>) -> Vec<Input> {
        got.into_iter()
            .map(|i| match i {
                Incoming::Request { conn, id, request } => Input::Request { conn, id, request },
                Incoming::Closed(conn) => {
                    self.fds_freed = true;
                    self.outputs.unfollow(conn);
                    Input::ConnClosed(conn)
                }
            })
            .collect()
    }

    /// The stop path found no free descriptor: closes a client (an idle one first, then a
    /// watcher) so that processes stay watched. False when there was none to close.
    pub(super) fn shed_client(&mut self, why: &str) -> bool {
        let Some(c) = self.control.as_mut() else {
            return false;
        };
        let Some((kind, got)) = c.shed_one(self.poll.registry()) else {
            return false;
        };
        warn!(
            "out of descriptors ({why}): closed {kind} of the control socket to keep watching \
             processes; raise the open-file limit (ulimit -n) to avoid this"
        );
        let inputs = self.incoming(got);
        self.learnt.extend(inputs);
        true
    }

    fn persist(&self, procs: Vec<Recorded>) {
        if let Some(path) = &self.state_path {
            state_file::write(
                path,
                &StateRecord {
                    reapd: Some((self.self_pid, self.self_start)),
                    procs,
                    cgroup: self
                        .cgroups
                        .as_ref()
                        .map(|c| c.base().display().to_string()),
                },
            );
        }
    }

    /// Says once why processes are being watched by rescanning instead of pidfds.
    fn short_of_fds(&mut self, why: &str) {
        if !self.warned_fds {
            self.warned_fds = true;
            warn!(
                "cannot watch every process through a pidfd ({why}): noticing their exit by rescanning \
                 /proc instead; raise the open-file limit (ulimit -n) to avoid this"
            );
        }
    }

    /// The end: the listener closes, the socket and lock go, and the state file unless survivors
    /// are kept in it. Returns what could not be removed.
    fn release(&mut self, keep_state: bool) -> Vec<String> {
        let mut failures = Vec::new();
        if let Some(path) = &self.state_path
            && !keep_state
            && let Err(e) = state_file::remove(path)
        {
            failures.push(format!("cannot remove state file {}: {e}", path.display()));
        }
        if let Some(c) = self.control.as_mut() {
            c.close_listener(self.poll.registry());
            if let Err(e) = c.remove_socket() {
                failures.push(format!("cannot remove socket {}: {e}", c.path().display()));
            }
        }
        if let Some(l) = self.lock.take()
            && let Err(e) = l.release()
        {
            failures.push(format!("cannot remove lock file: {e}"));
        }
        // A cgroup left behind costs nothing but a directory, and under a delegating service
        // manager moving back may be refused: a warning, not a failed shutdown.
        if let Some(dir) = self.predecessor_cgroup.take() {
            cgroup::remove_left(&dir);
        }
        if let Some(mut c) = self.cgroups.take() {
            for f in c.release(self.poll.registry()) {
                warn!("{f}");
            }
        }
        failures
    }

    pub(super) fn exit(&mut self, code: i32) -> i32 {
        // Everything the services wrote goes out before reapd does (bounded by FINAL_DRAIN).
        self.outputs.finish(self.poll.registry());
        self.pass_to_followers();
        if let Some(c) = self.control.as_mut() {
            c.flush_all(Instant::now() + FINAL_FLUSH);
        }
        logging::flush();
        code
    }
}

/// True when no descriptor can be opened right now; `open` is any open descriptor.
fn out_of_fds(open: RawFd) -> bool {
    // SAFETY: F_DUPFD_CLOEXEC duplicates an open descriptor (or fails); the copy is closed at
    // once.
    let fd = unsafe { libc::fcntl(open, libc::F_DUPFD_CLOEXEC, 0) };
    if fd >= 0 {
        // SAFETY: closing the descriptor we just created, which nothing else knows.
        unsafe { libc::close(fd) };
        return false;
    }
    matches!(
        io::Error::last_os_error().raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE)
    )
}

/// An exit `waitpid` or `waitid` reported, as reapd records it (`None` for a stop or continue).
fn reaped(w: WaitStatus) -> Option<(Pid, ExitStatus)> {
    match w {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), ExitStatus::Code(code))),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), ExitStatus::Signal(sig as i32))),
        _ => None,
    }
}
