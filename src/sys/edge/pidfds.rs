//! Pidfds at the edge: taking a spawned child under watch, opening and registering a pidfd
//! for a process (verified against pid reuse by its start time, capped by the descriptor
//! budget), and signalling only through a pidfd.
//! Must never: signal a pid whose identity it has not verified, or hold more pidfds than the
//! budget allows.

use std::io;

use log::{debug, warn};
use mio::Interest;
use mio::unix::SourceFd;
use nix::sys::signal::Signal;

use super::{Reach, SysEdge, Watched};
use crate::core::io::Input;
use crate::core::proctree::{Pid, ProcId};
use crate::sys::pidfd::PidFd;
use crate::sys::procfs;
use crate::sys::tokens;

impl SysEdge {
    /// Takes a freshly spawned child under watch. It is our unreaped child, so its pid cannot
    /// have been reused yet and its `/proc` entry exists even if it already exited.
    pub(super) fn adopt_child(&mut self, pid: Pid) -> Result<ProcId, String> {
        let start = procfs::read_stat(pid)
            .map(|p| p.start)
            .ok_or_else(|| format!("pid {pid} vanished from /proc right after it was spawned"))?;
        let proc = ProcId { pid, start };
        // Beyond the pidfd cap a child of ours is still seen to exit, through SIGCHLD; the
        // descriptors stay for clients and the stop path.
        if self.watch_full() {
            self.short_of_fds("the pidfd cap (the open-file limit) is reached");
            return Ok(proc);
        }
        match PidFd::open(pid) {
            Ok(fd) => self.register(proc, fd),
            Err(e) => warn!("pidfd_open({pid}): {e}; relying on SIGCHLD for it"),
        }
        Ok(proc)
    }

    /// The pidfds' share of descriptors is used up. Services' output pipes count against it,
    /// so that they never eat into the stop path's reserve.
    pub(super) fn watch_full(&self) -> bool {
        self.pidfds.len() + self.outputs.open_pipes() >= self.watch_cap
    }

    pub(super) fn reached(&mut self, proc: ProcId, reach: Reach) {
        match reach {
            Reach::Yes => {}
            Reach::Gone => self.learnt.push(Input::Gone(proc)),
            Reach::Blind => self.learnt.push(Input::Unwatchable(proc)),
        }
    }

    pub(super) fn register(&mut self, proc: ProcId, fd: PidFd) {
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd.raw()),
            tokens::pidfd(proc.pid),
            Interest::READABLE,
        ) {
            warn!("cannot watch pid {}: {e}", proc.pid);
        }
        self.pidfds.insert(
            proc.pid,
            Watched {
                start: proc.start,
                fd,
            },
        );
    }

    /// Makes sure a pidfd is held for exactly this process, so its exit is announced.
    pub(super) fn watch(&mut self, proc: ProcId) -> Reach {
        match self.pidfds.get(&proc.pid) {
            Some(w) if w.start == proc.start => return Reach::Yes,
            Some(_) => self.forget(proc.pid),
            None => {}
        }
        // Keep descriptors for sockets and spawning: beyond the cap, fall back on rescans.
        if self.watch_full() {
            self.short_of_fds("the pidfd cap (the open-file limit) is reached");
            return Reach::Blind;
        }
        match self.open_pidfd(proc) {
            Ok(Some(fd)) => {
                self.register(proc, fd);
                Reach::Yes
            }
            Ok(None) => Reach::Gone,
            Err(e) => {
                self.short_of_fds(&e.to_string());
                Reach::Blind
            }
        }
    }

    /// Opens a verified pidfd; out of descriptors, closes a client to make room and tries once
    /// more.
    pub(super) fn open_pidfd(&mut self, proc: ProcId) -> io::Result<Option<PidFd>> {
        match PidFd::open_verified(proc) {
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                    && self.shed_client(&format!("watching pid {}: {e}", proc.pid)) =>
            {
                PidFd::open_verified(proc)
            }
            r => r,
        }
    }

    /// Signals one process through a pidfd: the one held for it, or else a short-lived one.
    pub(super) fn send(&mut self, proc: ProcId, signal: Signal) -> Reach {
        let reach = self.watch(proc);
        let transient;
        let fd = match (reach, self.pidfds.get(&proc.pid)) {
            (Reach::Gone, _) => return Reach::Gone,
            (Reach::Yes, Some(w)) => &w.fd,
            _ => match self.open_pidfd(proc) {
                Ok(Some(fd)) => {
                    transient = fd;
                    &transient
                }
                Ok(None) => return Reach::Gone,
                Err(e) => {
                    warn!("cannot send {} to pid {}: {e}", signal.as_str(), proc.pid);
                    return Reach::Blind;
                }
            },
        };
        match fd.send_signal(signal) {
            Ok(()) => {
                debug!("sent {} to pid {}", signal.as_str(), proc.pid);
                reach
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Reach::Gone,
            Err(e) => {
                warn!("cannot send {} to pid {}: {e}", signal.as_str(), proc.pid);
                reach
            }
        }
    }
}
