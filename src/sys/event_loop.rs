//! The event loop: the only owner of `mio::Poll`, and the only place actions become syscalls.
//!
//! Owns: waiting for readiness (the signal self-pipe, the listener, connections, one pidfd per
//! watched process), turning it into the core's inputs, the single reaper (`waitpid(-1,
//! WNOHANG)` until nothing is left), and carrying out the core's actions as the [`Edge`] of
//! `core::turn`, whose order every turn follows.
//! Must never: decide anything, or wake up on a timer of its own: the poll timeout is the core's
//! next deadline, so an idle reapd makes no system calls at all. The one exception is a broken
//! `epoll_wait`: the core is told (it then stops everything), and the loop keeps turning on a
//! bounded sleep until reapd exits, because a supervisor must never abandon its tree.
//!
//! Descriptors are budgeted once, from the open-file limit: what start-up opened, a reserve for
//! the stop path, a cap on clients, and the rest for pidfds. When the stop path still runs out,
//! clients are closed before a process goes unwatched.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::{Events, Interest, Poll};

use crate::core::io::{Containment, Input, Mode};
use crate::core::proctree::Pid;
use crate::core::supervisor::Supervisor;
use crate::core::turn::{self, Edge};
use crate::sys::cgroup::Cgroups;
use crate::sys::control::{self, Control, Lock};
use crate::sys::edge::{Resources, SysEdge};
use crate::sys::notify::Notifier;
use crate::sys::rlimits;
use crate::sys::signals::SignalSource;
use crate::sys::spawn::Spawner;
use crate::sys::state_file;
use crate::sys::timer::PreciseTimer;
use crate::sys::tokens::{self, Source};
use crate::wire::config::{CgroupMode, Config};
use crate::wire::exit::ExitCode;

/// How long one turn may spend serving clients (checked between requests)...
const CLIENTS_PER_TURN: Duration = Duration::from_millis(10);
/// ...and one client within it.
const CLIENT_PER_TURN: Duration = Duration::from_millis(2);
/// Descriptors kept free for the stop path at all times: a `/proc` scan holds two (the
/// directory and one file), signalling a process without a held pidfd one, spawning a clean-up
/// hook a few (stdin, the exec-error pipe), re-reading the config one; with room to spare.
pub const STOP_RESERVE: usize = 16;
/// With `epoll_wait` broken, the longest the loop sleeps between turns: often enough to notice
/// exits by rescanning, rarely enough not to spin.
const BROKEN_LOOP_NAP: Duration = Duration::from_millis(100);

/// Everything the loop needs, prepared by `main`.
#[derive(Debug)]
pub struct Setup {
    /// Config file or single command.
    pub mode: Mode,
    /// The validated config (single-command mode: one service).
    pub config: Config,
    /// Where to re-read the config on reload.
    pub config_path: Option<PathBuf>,
    /// Control socket to bind, if any.
    pub socket: Option<PathBuf>,
    /// `--shutdown-timeout`, which keeps overriding the file on reload.
    pub shutdown_override: Option<u64>,
    /// Readiness channels.
    pub notifier: Notifier,
    /// What every child receives (file limit, stdin).
    pub spawner: Spawner,
    /// The installed signal handlers.
    pub signals: SignalSource,
}

/// Runs reapd until it exits; returns the exit status.
pub fn run(setup: Setup) -> i32 {
    let Setup {
        mode,
        config,
        config_path,
        socket,
        shutdown_override,
        notifier,
        spawner,
        mut signals,
    } = setup;
    let self_pid = std::process::id() as Pid;
    let Some((cgroups, containment)) = contain(config.cgroups, self_pid) else {
        return ExitCode::CannotStart.code();
    };
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            error!("cannot create the event loop (epoll): {e}");
            return ExitCode::CannotStart.code();
        }
    };
    if let Err(e) = poll
        .registry()
        .register(signals.source(), tokens::SIGNALS, Interest::READABLE)
    {
        error!("cannot watch the signal pipe: {e}");
        return ExitCode::CannotStart.code();
    }
    let (control, lock, budget) = match &socket {
        None => (None, None, FdBudget::new(open_fds(), false)),
        Some(path) => {
            let lock = match Lock::acquire(path) {
                Ok(l) => l,
                Err(e) => {
                    error!("cannot start: {e}");
                    return ExitCode::CannotStart.code();
                }
            };
            let listener = match control::bind(path) {
                Ok(l) => l,
                Err(e) => {
                    error!("cannot start: {e}");
                    let _ = lock.release();
                    return ExitCode::CannotStart.code();
                }
            };
            // Counted now, with the lock and the listener open.
            let budget = FdBudget::new(open_fds(), true);
            match Control::new(listener, path.clone(), poll.registry(), budget.conns) {
                Ok(c) => (Some(c), Some(lock), budget),
                Err(e) => {
                    error!("cannot start: cannot watch the control socket: {e}");
                    let _ = std::fs::remove_file(path);
                    let _ = lock.release();
                    return ExitCode::CannotStart.code();
                }
            }
        }
    };
    debug!(
        "descriptors: limit {}, {} open at start, {STOP_RESERVE} reserved for the stop path, up \
         to {} clients, up to {} pidfds",
        budget.limit, budget.base, budget.conns, budget.pidfds
    );
    if let Some(c) = &control {
        info!("control socket {}", c.path().display());
    }
    let mut sup = Supervisor::new(mode, config, shutdown_override, self_pid, Instant::now());
    sup.set_containment(containment);
    let mut edge = SysEdge::new(Resources {
        poll,
        signals,
        control,
        lock,
        notifier,
        spawner,
        config_path,
        self_pid,
        state_path: socket.as_deref().map(state_file::path_for),
        watch_cap: budget.pidfds,
        cgroups,
    });
    // A SIGCHLD delivered before the handler existed is lost, but its zombie is not; and a stop
    // signal that arrived during start-up (held blocked until the handlers existed) is acted on
    // before anything is started.
    let mut first = edge.reap();
    first.extend(edge.read_signals().1);
    turn::feed(&mut sup, &mut edge, first);
    // We hold the lock: a state file left at this socket is a predecessor's that died without
    // cleaning up.
    let predecessor = edge.predecessor();
    turn::turn(&mut sup, &mut edge, vec![Input::Start { predecessor }]);
    turn_loop(&mut sup, &mut edge)
}

/// Finds how services can be contained, as `mode` asks; `None` when `required` cannot be met.
fn contain(mode: CgroupMode, self_pid: Pid) -> Option<(Option<Cgroups>, Containment)> {
    let (cgroups, describe) = match mode {
        CgroupMode::Off => (None, "/proc walk: cgroups off".to_string()),
        CgroupMode::Auto | CgroupMode::Required => match Cgroups::detect(self_pid) {
            Ok(c) => {
                let d = c.describe();
                (Some(c), d)
            }
            Err(why) if mode == CgroupMode::Required => {
                error!(
                    "cannot start: cgroups are required (\"cgroups\": \"required\"), but {why}; \
                     make the cgroup v2 hierarchy writable (see reapd(8), CGROUPS) or use \"auto\""
                );
                return None;
            }
            Err(why) => (None, format!("/proc walk: {why}")),
        },
    };
    info!("containment: {describe}");
    let containment = Containment {
        cgroups: cgroups.is_some(),
        describe,
    };
    Some((cgroups, containment))
}

fn turn_loop(sup: &mut Supervisor, edge: &mut SysEdge) -> i32 {
    let mut events = Events::with_capacity(256);
    let mut broken = false;
    // Without it, a deadline closer than a millisecond waits a whole one.
    let mut timer = PreciseTimer::new(edge.poll.registry())
        .map_err(|e| warn!("no precise timer (timerfd: {e}): short waits last a millisecond"))
        .ok();
    loop {
        if let Some(code) = edge.exit_code {
            return edge.exit(code);
        }
        let busy = edge.outputs.has_work()
            || edge
                .control
                .as_ref()
                .is_some_and(|c| c.has_work() || (edge.fds_freed && c.waiting_for_descriptor()));
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            turn::poll_timeout(sup, Instant::now())
        };
        let mut inputs = Vec::new();
        if broken {
            std::thread::sleep(timeout.unwrap_or(BROKEN_LOOP_NAP).min(BROKEN_LOOP_NAP));
            events.clear();
        } else {
            if let Some(t) = timer.as_mut() {
                t.before_poll(timeout);
            }
            let polled = edge.poll.poll(&mut events, timeout);
            if let Some(t) = timer.as_mut() {
                t.after_poll();
            }
            match polled {
                Ok(()) => {}
                // A signal arrived during epoll_wait, which is never restarted; it is in the pipe.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // No event can be waited for any more: the core stops everything, the loop
                    // turns on a nap from now on (signals and children are still read below).
                    error!("event loop failure: epoll_wait: {e}");
                    broken = true;
                    events.clear();
                    inputs.push(Input::LoopFailed {
                        error: e.to_string(),
                    });
                }
            }
        }
        let mut reap = broken;
        let mut accept = false;
        for ev in events.iter() {
            match tokens::source(ev.token()) {
                Source::Signals => {
                    let (chld, sigs) = edge.read_signals();
                    reap |= chld;
                    inputs.extend(sigs);
                }
                Source::Listener => accept = true,
                // It only ends the wait; the turn looks at the core's deadlines.
                Source::Timer => {}
                Source::Conn(conn) => {
                    let Some(c) = edge.control.as_mut() else {
                        continue;
                    };
                    let mut got = Vec::new();
                    if ev.is_write_closed() || ev.is_error() {
                        // The peer is gone altogether (not merely done sending): a watcher that
                        // left would otherwise hold its slot until the next event fails to write.
                        got.extend(c.hang_up(conn, edge.poll.registry()));
                    } else {
                        // Reading happens in the client's turn, within its budget.
                        if ev.is_readable() || ev.is_read_closed() {
                            c.readable(conn);
                        }
                        if ev.is_writable() {
                            got.extend(c.writable(conn, edge.poll.registry()));
                        }
                    }
                    inputs.extend(edge.incoming(got));
                }
                // A child of reapd is collected through its pidfd; SIGCHLD still reaps the others.
                Source::Pidfd(pid) => edge.exited(pid),
                Source::Pipe(id) => edge.outputs.readable(id),
                Source::Sink(which) => edge.outputs.writable(which, edge.poll.registry()),
                Source::Notify(pid) => edge.notified(pid),
                Source::Cgroup(n) => edge.cgroup_changed(n),
                // Sporadic events of sources already gone.
                Source::Unknown => {}
            }
        }
        if broken {
            inputs.extend(edge.read_signals().1);
        }
        // Services' output is read (each pipe within its budget) before the turn's inputs are
        // told, so a service's last lines come before the news of its exit.
        edge.outputs.read_pending(edge.poll.registry());
        edge.pass_to_followers();
        if reap {
            inputs.extend(edge.reap());
        }
        inputs.append(&mut edge.learnt);
        turn::feed(sup, edge, inputs);
        edge.accept_clients(accept);
        serve_clients(sup, edge);
        turn::settle(sup, edge);
    }
}

/// Gives connections with input their turn, round robin: each at most its read and request
/// budget and [`CLIENT_PER_TURN`], all together about [`CLIENTS_PER_TURN`]. Each request reaches
/// the core (and its reply the connection) before the next is read. Who is left over goes first
/// next turn, which comes without waiting.
fn serve_clients(sup: &mut Supervisor, edge: &mut SysEdge) {
    let start = Instant::now();
    let queued = edge.control.as_ref().map_or(0, Control::ready_len);
    for _ in 0..queued {
        if start.elapsed() >= CLIENTS_PER_TURN || edge.exit_code.is_some() {
            return;
        }
        let Some(id) = edge.control.as_mut().and_then(Control::pop_ready) else {
            return;
        };
        let own = Instant::now();
        loop {
            let Some(c) = edge.control.as_mut() else {
                return;
            };
            let Some(got) = c.next_request(id, edge.poll.registry()) else {
                break;
            };
            let inputs = edge.incoming(vec![got]);
            turn::feed(sup, edge, inputs);
            if own.elapsed() >= CLIENT_PER_TURN {
                break;
            }
        }
        let got = edge
            .control
            .as_mut()
            .map(|c| c.end_turn(id, edge.poll.registry()))
            .unwrap_or_default();
        let inputs = edge.incoming(got);
        turn::feed(sup, edge, inputs);
    }
}

/// How the open-file limit is shared: what start-up opened, [`STOP_RESERVE`] for the stop
/// path, a quarter of the rest (at most [`control::MAX_CONNS`]) for clients, the remainder for
/// pidfds. Processes beyond the pidfd cap are watched by rescanning `/proc`; clients beyond the
/// cap wait in the listen backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FdBudget {
    limit: usize,
    base: usize,
    conns: usize,
    pidfds: usize,
}

impl FdBudget {
    fn new(base: usize, with_socket: bool) -> FdBudget {
        FdBudget::split(rlimits::nofile_soft(), base, with_socket)
    }

    fn split(limit: usize, base: usize, with_socket: bool) -> FdBudget {
        let spare = limit.saturating_sub(base.saturating_add(STOP_RESERVE));
        let conns = if with_socket {
            (spare / 4).clamp(1, control::MAX_CONNS)
        } else {
            0
        };
        FdBudget {
            limit,
            base,
            conns,
            pidfds: spare.saturating_sub(conns),
        }
    }
}

/// Descriptors open now (inherited ones included), or a pessimistic guess.
fn open_fds() -> usize {
    match std::fs::read_dir("/proc/self/fd") {
        // The directory's own descriptor is listed too.
        Ok(dir) => dir.count().saturating_sub(1),
        Err(_) => 32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_budget_keeps_a_reserve_and_caps_clients() {
        let b = FdBudget::split(64, 10, true);
        assert_eq!(b.conns + b.pidfds + b.base + STOP_RESERVE, 64);
        assert!(b.conns >= 1 && b.conns < 16, "{b:?}");
        assert!(b.pidfds > b.conns, "{b:?}");
        let b = FdBudget::split(1 << 20, 10, true);
        assert_eq!(b.conns, control::MAX_CONNS);
        let b = FdBudget::split(20, 10, true);
        assert_eq!((b.conns, b.pidfds), (1, 0), "{b:?}");
        let b = FdBudget::split(64, 10, false);
        assert_eq!(b.conns, 0);
        assert_eq!(b.pidfds, 38);
    }
}
