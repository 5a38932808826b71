//! Readiness and health checks at the system edge: the notification pipes services write their
//! newline to, and connection checks that never block.
//!
//! Owns: creating a notification pipe (both ends close-on-exec; the child's end is moved to the
//! service's chosen descriptor between fork and exec), watching its read end in the loop, and
//! connecting to a loopback TCP port or a Unix socket without waiting.
//! Must never: block the loop: a pipe is read within a small budget per event, and a connection
//! that does not complete within 2 ms (a full listen backlog) is a failed attempt, not a wait.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry};

use crate::core::proctree::Pid;
use crate::sys::tokens;
use crate::wire::config::Probe;

/// Most bytes a notification pipe may carry before its newline: a service that writes without
/// end cannot hold the loop.
const NOTIFY_READ_BUDGET: usize = 64 * 1024;

/// A pipe for `ready: {"notify_fd": N}`: reapd keeps the read end, the child gets the write end
/// as descriptor N.
#[derive(Debug)]
pub struct NotifyPipe {
    /// reapd's end, non-blocking.
    pub read: File,
    /// The child's end, closed in reapd once the child has it.
    pub write: OwnedFd,
}

impl NotifyPipe {
    /// A new pipe, both ends close-on-exec, the read end non-blocking.
    pub fn new() -> io::Result<NotifyPipe> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        nix::fcntl::fcntl(
            &r,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(io::Error::from)?;
        Ok(NotifyPipe {
            read: File::from(r),
            write: w,
        })
    }
}

/// The read ends of the pipes of running services, by the pid of the process that holds the
/// write end.
#[derive(Debug, Default)]
pub struct NotifyPipes {
    open: HashMap<Pid, (String, File)>,
}

/// What a notification pipe said.
#[derive(Debug, PartialEq, Eq)]
pub enum Notification {
    /// A newline: the service is ready.
    Ready(String),
    /// Nothing conclusive yet.
    Nothing,
}

impl NotifyPipes {
    /// Watches `read` for the service `name` whose process is `pid`.
    pub fn watch(&mut self, registry: &Registry, pid: Pid, name: &str, read: File) {
        if let Err(e) = registry.register(
            &mut SourceFd(&read.as_raw_fd()),
            tokens::notify(pid),
            Interest::READABLE,
        ) {
            log::warn!(
                "{name}: cannot watch its notification pipe ({e}); it will not become ready by it"
            );
            return;
        }
        self.open.insert(pid, (name.to_string(), read));
    }

    /// The pipe of `pid` is readable: a newline makes its service ready; the pipe is closed then,
    /// or at end of file (s6 does the same: readiness is said once). The loop's events are
    /// edge-triggered, so the pipe is read until it is empty, but never past
    /// [`NOTIFY_READ_BUDGET`]: a service that writes that much without a newline has its pipe
    /// closed (it will not become ready by it).
    pub fn readable(&mut self, registry: &Registry, pid: Pid) -> Notification {
        let Some((name, file)) = self.open.get_mut(&pid) else {
            return Notification::Nothing;
        };
        let mut buf = [0u8; 512];
        let mut read = 0;
        let ready = loop {
            match file.read(&mut buf) {
                Ok(0) => break false,
                Ok(n) if buf.get(..n).is_some_and(|b| b.contains(&b'\n')) => break true,
                Ok(n) => {
                    read += n;
                    if read >= NOTIFY_READ_BUDGET {
                        log::warn!(
                            "{name}: {read} bytes on its notification pipe without a newline; \
                             the pipe is closed, so it cannot become ready by it (ready_timeout_ms decides)"
                        );
                        break false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Notification::Nothing,
                Err(_) => break false,
            }
        };
        match self.close(registry, pid) {
            Some(name) if ready => Notification::Ready(name),
            _ => Notification::Nothing,
        }
    }

    /// Stops watching the pipe of `pid` (it exited, or said its word).
    pub fn close(&mut self, registry: &Registry, pid: Pid) -> Option<String> {
        let (name, file) = self.open.remove(&pid)?;
        let _ = registry.deregister(&mut SourceFd(&file.as_raw_fd()));
        Some(name)
    }
}

/// Tries a connection check at once: `Ok` when the connection is accepted. Never waits: a
/// loopback connection is accepted or refused within the call, and one that is neither (a full
/// backlog) counts as a failed attempt.
pub fn probe(probe: &Probe) -> Result<(), String> {
    match probe {
        Probe::Tcp(port) => tcp(*port),
        Probe::Unix(path) => unix(path),
        Probe::NotifyFd(_) | Probe::Exec(_) => Err("not a connection check".into()),
    }
}

fn tcp(port: u16) -> Result<(), String> {
    // IPv4 first; a server that listens on ::1 only is found on the second try.
    let v4 = connect_now(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    if v4.is_ok() {
        return v4;
    }
    connect_now(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).map_err(|v6| {
        format!(
            "tcp port {port}: {} (::1: {v6})",
            v4.err().unwrap_or_default()
        )
    })
}

fn connect_now(addr: SocketAddr) -> Result<(), String> {
    use nix::sys::socket::{SockaddrIn, SockaddrIn6, connect};
    let (fd, r) = match addr {
        SocketAddr::V4(a) => {
            let fd = socket(libc::AF_INET)?;
            let r = connect(fd.as_raw_fd(), &SockaddrIn::from(a));
            (fd, r)
        }
        SocketAddr::V6(a) => {
            let fd = socket(libc::AF_INET6)?;
            let r = connect(fd.as_raw_fd(), &SockaddrIn6::from(a));
            (fd, r)
        }
    };
    finish(fd, r)
}

fn unix(path: &Path) -> Result<(), String> {
    let fd = socket(libc::AF_UNIX)?;
    let sa = nix::sys::socket::UnixAddr::new(path)
        .map_err(|e| format!("unix socket {}: {e}", path.display()))?;
    let r = nix::sys::socket::connect(fd.as_raw_fd(), &sa);
    finish(fd, r).map_err(|e| format!("unix socket {}: {e}", path.display()))
}

/// A non-blocking, close-on-exec stream socket.
fn socket(domain: libc::c_int) -> Result<OwnedFd, String> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw: RawFd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(format!("socket: {}", io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a descriptor just returned by socket(2) and owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A connection attempt's outcome; the socket is closed either way (dropped), which a server
/// sees as a client that connected and left. A TCP connection in progress (loopback answers
/// within microseconds, but not within the call) is given [`CONNECT_GRACE`] to complete.
fn finish(fd: OwnedFd, r: nix::Result<()>) -> Result<(), String> {
    match r {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINPROGRESS) => completed(&fd),
        Err(nix::errno::Errno::EAGAIN) => {
            Err("the connection was not accepted at once (listen backlog full?)".into())
        }
        Err(e) => Err(e.desc().to_lowercase()),
    }
}

/// Longest a connection check waits for a connection in progress: a listener on loopback
/// completes it at once; one that does not (its backlog is full) fails the attempt.
const CONNECT_GRACE: Duration = Duration::from_millis(2);

fn completed(fd: &OwnedFd) -> Result<(), String> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let wait = libc::c_int::try_from(CONNECT_GRACE.as_millis()).unwrap_or(2);
    // SAFETY: one valid pollfd on the stack; the result is checked.
    let n = unsafe { libc::poll(&mut pfd, 1, wait) };
    if n <= 0 {
        return Err("the connection was not accepted in time (listen backlog full?)".into());
    }
    match nix::sys::socket::getsockopt(fd, nix::sys::socket::sockopt::SocketError) {
        Ok(0) => Ok(()),
        Ok(errno) => Err(nix::errno::Errno::from_raw(errno).desc().to_lowercase()),
        Err(e) => Err(e.desc().to_lowercase()),
    }
}
