//! Process file descriptors: the only way reapd signals a process.
//!
//! Owns: `pidfd_open` and `pidfd_send_signal` (glibc and nix wrap neither), and the identity check
//! that makes a pidfd safe to use for a pid read from `/proc`.
//! Must never: signal by bare pid. A pid can be recycled between reading `/proc` and `kill()`;
//! a pidfd refers to one process for its whole life.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use nix::sys::signal::Signal;

use crate::core::proctree::{Pid, ProcId};
use crate::sys::procfs::read_stat_checked;

/// A pidfd (close-on-exec, as the kernel always creates them).
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// Opens a pidfd for `pid`.
    pub fn open(pid: Pid) -> io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = RawFd::try_from(fd)
            .map_err(|_| io::Error::other("pidfd_open returned an out-of-range fd"))?;
        // SAFETY: the kernel just returned this fd to us and nothing else owns it.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Opens a pidfd for exactly this process: `Ok(None)` if it is gone (or the pid now belongs
    /// to another process), `Err` if it could not be checked (out of descriptors, ...).
    ///
    /// The start time is read again *after* opening: if it still matches, the pid referred to our
    /// process both before and after `pidfd_open`, so the pidfd cannot name an impostor.
    pub fn open_verified(id: ProcId) -> io::Result<Option<PidFd>> {
        let fd = match PidFd::open(id.pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(read_stat_checked(id.pid)?
            .filter(|now| now.start == id.start && !now.is_dead())
            .map(|_| fd))
    }

    /// Sends a signal. Fails with `ESRCH` once the process has been reaped; a zombie accepts
    /// (and ignores) signals.
    pub fn send_signal(&self, sig: Signal) -> io::Result<()> {
        // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig as libc::c_int,
                ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Collects the process if it is reapd's child and has exited: `waitid(P_PIDFD)` takes this
    /// one child directly, where `waitpid(-1)` walks every child (with thousands of children
    /// exiting at once, reaping them one `waitpid(-1)` at a time costs the square of their
    /// number). `None` when it is not reapd's child, or has not exited.
    pub fn reap(&self) -> Option<nix::sys::wait::WaitStatus> {
        use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
        match waitid(
            Id::PIDFd(self.0.as_fd()),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        ) {
            Ok(WaitStatus::StillAlive) | Err(_) => None,
            Ok(status) => Some(status),
        }
    }

    /// The raw fd, for registration with mio.
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::procfs::read_stat;

    #[test]
    fn opens_and_verifies_this_process() {
        let me = std::process::id() as Pid;
        let stat = read_stat(me).expect("own stat");
        let fd = PidFd::open_verified(stat.id())
            .expect("checked")
            .expect("verified");
        fd.send_signal(Signal::SIGCONT).expect("signal self");
        let other = ProcId {
            pid: me,
            start: stat.start + 1,
        };
        assert!(PidFd::open_verified(other).expect("checked").is_none());
    }
}
