//! The control socket: the lock that makes one instance per socket, the listener, and the
//! per-connection buffers.
//!
//! Owns: `<socket>.lock` (flock; never followed through a symbolic link, always a regular
//! file), binding the socket 0600 (never over a socket someone listens on), accepting, reading
//! lines, queueing replies and events, and closing connections that misbehave.
//! Must never: let one client affect another or the daemon. Every buffer is bounded, every
//! socket non-blocking, and an error on one connection closes only that connection.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::core::supervisor::ConnId;
use crate::wire::protocol::{
    ErrorCode, LineBuf, LineTooLong, MAX_LINE, Request, parse_request, reply_err,
};

/// Most simultaneous client connections.
pub const MAX_CONNS: usize = 64;
/// Most bytes queued for one client before it is considered stuck and dropped.
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// The token of the listener.
pub const LISTENER: Token = Token(1);
const CONN_BASE: usize = 1 << 32;

/// The token of a connection.
pub fn conn_token(id: ConnId) -> Token {
    Token(CONN_BASE + id as usize)
}

/// The connection behind a token, if it is one.
pub fn token_conn(t: Token) -> Option<ConnId> {
    (t.0 >= CONN_BASE && t.0 < 2 * CONN_BASE).then(|| (t.0 - CONN_BASE) as ConnId)
}

/// Why reapd could not take the socket.
#[derive(Debug)]
pub enum StartError {
    /// Another live instance holds the lock.
    Locked {
        /// The lock file.
        lock: PathBuf,
        /// The holder's pid, as written in the lock file.
        holder: Option<String>,
    },
    /// Anything else, already phrased for the log.
    Other(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Locked { lock, holder } => write!(
                f,
                "another reapd (pid {}) holds {}: stop it first or use another --socket",
                holder.as_deref().unwrap_or("unknown"),
                lock.display()
            ),
            StartError::Other(s) => f.write_str(s),
        }
    }
}

/// The held instance lock.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

/// Opens (creating if need be) the lock file: never through a symbolic link, never blocking
/// on a FIFO, close-on-exec; then insists on a regular file with a single name.
fn open_lock_file(path: &Path) -> Result<File, StartError> {
    let refuse = |what: &str| {
        StartError::Other(format!(
            "lock file {} {what}; refusing to use it (remove it or choose another --socket)",
            path.display()
        ))
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refuse("is a symbolic link"),
            Some(libc::EISDIR) => refuse("is a directory"),
            Some(libc::ENXIO) => refuse("is a FIFO or a socket, not a regular file"),
            _ => {
                let hint = if e.kind() == io::ErrorKind::NotFound {
                    " (does the directory exist?)"
                } else {
                    ""
                };
                StartError::Other(format!(
                    "cannot open lock file {}: {e}{hint}",
                    path.display()
                ))
            }
        })?;
    let meta = file.metadata().map_err(|e| {
        StartError::Other(format!("cannot inspect lock file {}: {e}", path.display()))
    })?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_dir() {
            "a directory"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(refuse(&format!("is {kind}, not a regular file")));
    }
    if meta.nlink() > 1 {
        return Err(refuse(&format!(
            "has {} names (hard links), so writing it would change another file",
            meta.nlink()
        )));
    }
    Ok(file)
}

impl Lock {
    /// Takes `<socket>.lock` and writes our pid into it.
    ///
    /// The lock file is opened without following a symbolic link and must be a regular file
    /// with no other name, so the pid never lands in a file someone pointed the path at.
    ///
    /// The lock file is removed at exit. A second instance may have opened the old file just
    /// before that and then lock a file that no longer has a name, so after locking we check
    /// that the path still names the file we hold, and start over if it does not.
    pub fn acquire(socket: &Path) -> Result<Lock, StartError> {
        let mut path = socket.as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        for _ in 0..5 {
            let mut file = open_lock_file(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(StartError::Locked {
                        lock: path,
                        holder: (!holder.is_empty()).then(|| holder.to_string()),
                    });
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(StartError::Other(format!(
                        "cannot lock {}: {e}",
                        path.display()
                    )));
                }
            }
            let same = match (file.metadata(), fs::symlink_metadata(&path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                continue;
            }
            let pid = std::process::id();
            let written = file
                .set_len(0)
                .and_then(|()| file.write_all(format!("{pid}\n").as_bytes()));
            if let Err(e) = written {
                return Err(StartError::Other(format!(
                    "cannot write lock file {}: {e}",
                    path.display()
                )));
            }
            return Ok(Lock { file, path });
        }
        Err(StartError::Other(format!(
            "lock file {} keeps being replaced; is another reapd starting and stopping?",
            path.display()
        )))
    }

    /// Removes the lock file, then releases the lock (in that order, so nobody takes a lock on a
    /// file that is about to disappear without noticing).
    pub fn release(self) -> io::Result<()> {
        let r = fs::remove_file(&self.path);
        drop(self.file);
        r
    }
}

/// Binds the control socket with mode 0600. A socket file left by a dead instance is replaced;
/// a socket where another process is listening, or anything that is not a socket, is left alone.
pub fn bind(path: &Path) -> Result<UnixListener, StartError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // We hold the lock, so no reapd is listening here; but another program may be.
            match probe_listener(path) {
                Probe::Stale => {}
                Probe::Vanished => return bind_new(path),
                Probe::Listening => {
                    return Err(StartError::Other(format!(
                        "another process is listening on {}: refusing to replace its socket \
                         (stop that process or choose another --socket)",
                        path.display()
                    )));
                }
                Probe::Unknown(e) => {
                    return Err(StartError::Other(format!(
                        "cannot tell whether another process is listening on {} ({e}): refusing \
                         to replace it (remove it if it is stale, or choose another --socket)",
                        path.display()
                    )));
                }
            }
            fs::remove_file(path).map_err(|e| {
                StartError::Other(format!(
                    "cannot remove stale socket {}: {e}",
                    path.display()
                ))
            })?;
            warn!(
                "replaced stale socket {} left by an earlier instance",
                path.display()
            );
        }
        Ok(_) => {
            return Err(StartError::Other(format!(
                "{} exists and is not a socket; refusing to replace it (remove it or choose another --socket)",
                path.display()
            )));
        }
        Err(_) => {}
    }
    bind_new(path)
}

/// What a connection attempt says about an existing socket file.
#[derive(Debug)]
enum Probe {
    /// Refused: nobody listens, the file is a leftover.
    Stale,
    /// The file disappeared meanwhile.
    Vanished,
    /// Something accepted (or has a full backlog).
    Listening,
    /// Anything else: no conclusion, so nothing may be removed.
    Unknown(nix::errno::Errno),
}

/// Connects to `path` without blocking: only `ECONNREFUSED` proves that nobody listens.
fn probe_listener(path: &Path) -> Probe {
    use nix::errno::Errno;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let addr = match UnixAddr::new(path) {
        Ok(a) => a,
        Err(e) => return Probe::Unknown(e),
    };
    let fd = match socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    ) {
        Ok(fd) => fd,
        Err(e) => return Probe::Unknown(e),
    };
    let probe = match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        // EAGAIN: the listener's backlog is full, so it is very much alive.
        Ok(()) | Err(Errno::EAGAIN | Errno::EINPROGRESS) => Probe::Listening,
        Err(Errno::ECONNREFUSED) => Probe::Stale,
        Err(Errno::ENOENT) => Probe::Vanished,
        Err(e) => Probe::Unknown(e),
    };
    drop(fd);
    probe
}

fn bind_new(path: &Path) -> Result<UnixListener, StartError> {
    // The umask applies at bind time, so the socket never exists with wider permissions.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    bound.map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::NotFound {
            " (does the directory exist?)"
        } else {
            ""
        };
        StartError::Other(format!(
            "cannot bind control socket {}: {e}{hint}",
            path.display()
        ))
    })
}

/// Something a connection produced.
#[derive(Debug)]
pub enum Incoming {
    /// A well-formed request.
    Request {
        /// Connection.
        conn: ConnId,
        /// Its `id`.
        id: Option<serde_json::Value>,
        /// The request.
        request: Request,
    },
    /// The connection is gone.
    Closed(ConnId),
}

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    input: LineBuf,
    output: Vec<u8>,
    /// Requests passed on whose reply has not been queued yet.
    in_flight: usize,
    read_closed: bool,
    /// Close as soon as the output is flushed.
    closing: bool,
    watcher: bool,
    interest: Interest,
}

/// The listener and its connections.
#[derive(Debug)]
pub struct Control {
    listener: Option<UnixListener>,
    path: PathBuf,
    conns: BTreeMap<ConnId, Conn>,
    next_id: ConnId,
    allowed_uids: HashSet<u32>,
}

impl Control {
    /// Wraps a bound listener and registers it.
    pub fn new(
        mut listener: UnixListener,
        path: PathBuf,
        registry: &Registry,
    ) -> io::Result<Control> {
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        let allowed_uids = HashSet::from([0, nix::unistd::geteuid().as_raw()]);
        Ok(Control {
            listener: Some(listener),
            path,
            conns: BTreeMap::new(),
            next_id: 0,
            allowed_uids,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting connections; the socket file stays until exit.
    pub fn close_listener(&mut self, registry: &Registry) {
        if let Some(mut l) = self.listener.take() {
            let _ = registry.deregister(&mut l);
        }
    }

    /// Accepts every pending connection.
    pub fn accept(&mut self, registry: &Registry) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let mut stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ECONNABORTED, EMFILE...: this one connection is lost, the listener lives on.
                    warn!("accept on {}: {e}", self.path.display());
                    return;
                }
            };
            match nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
            {
                Ok(cred) if self.allowed_uids.contains(&cred.uid()) => {}
                Ok(cred) => {
                    warn!(
                        "refused control connection from uid {} (pid {})",
                        cred.uid(),
                        cred.pid()
                    );
                    let _ = stream.write_all(
                        reply_err(
                            None,
                            ErrorCode::Failed,
                            "permission denied: only root and reapd's own user may connect",
                        )
                        .as_bytes(),
                    );
                    continue;
                }
                Err(e) => {
                    // Whoever it is could not be checked: refuse rather than trust.
                    warn!("refused control connection: cannot read its peer credentials ({e})");
                    continue;
                }
            }
            if self.conns.len() >= MAX_CONNS {
                warn!("refused control connection: already {MAX_CONNS} clients");
                let msg = format!("too many clients (limit {MAX_CONNS}); try again later");
                let _ = stream
                    .write_all(reply_err(None, ErrorCode::TooManyConnections, &msg).as_bytes());
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            if let Err(e) = registry.register(&mut stream, conn_token(id), Interest::READABLE) {
                warn!("cannot watch a new control connection: {e}");
                continue;
            }
            debug!("control connection {id} opened");
            self.conns.insert(
                id,
                Conn {
                    stream,
                    input: LineBuf::new(MAX_LINE),
                    output: Vec::new(),
                    in_flight: 0,
                    read_closed: false,
                    closing: false,
                    watcher: false,
                    interest: Interest::READABLE,
                },
            );
        }
    }

    /// Reads what a connection sent and returns its complete requests.
    pub fn readable(&mut self, id: ConnId, registry: &Registry) -> Vec<Incoming> {
        let mut out = Vec::new();
        let Some(c) = self.conns.get_mut(&id) else {
            return out;
        };
        let mut buf = [0u8; 8192];
        while !c.read_closed && !c.closing {
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    c.read_closed = true;
                    if c.input.pending() > 0 {
                        debug!(
                            "control connection {id}: client left in the middle of a line; discarded"
                        );
                    }
                }
                Ok(n) => {
                    c.input.push(buf.get(..n).unwrap_or_default());
                    Self::take_lines(id, c, &mut out);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("control connection {id}: read: {e}");
                    c.read_closed = true;
                    c.closing = true;
                }
            }
        }
        out.extend(self.settle(id, registry));
        out
    }

    fn take_lines(id: ConnId, c: &mut Conn, out: &mut Vec<Incoming>) {
        while let Some(line) = c.input.next_line() {
            match line {
                Err(LineTooLong) => {
                    warn!(
                        "control connection {id}: request longer than {MAX_LINE} bytes; closing it"
                    );
                    let msg = format!(
                        "request line longer than {MAX_LINE} bytes; closing the connection"
                    );
                    c.output.extend_from_slice(
                        reply_err(None, ErrorCode::LineTooLong, &msg).as_bytes(),
                    );
                    c.closing = true;
                    return;
                }
                Ok(line) if line.iter().all(u8::is_ascii_whitespace) => {}
                Ok(line) => match parse_request(&line) {
                    Ok(env) => {
                        if env.request == Request::Watch {
                            c.watcher = true;
                        }
                        c.in_flight += 1;
                        out.push(Incoming::Request {
                            conn: id,
                            id: env.id,
                            request: env.request,
                        });
                    }
                    Err(e) => {
                        debug!("control connection {id}: {}", e.message);
                        c.output.extend_from_slice(
                            reply_err(e.id.as_ref(), e.code, &e.message).as_bytes(),
                        );
                    }
                },
            }
        }
    }

    /// Queues a reply to one request.
    pub fn reply(&mut self, id: ConnId, line: &str, registry: &Registry) -> Vec<Incoming> {
        if let Some(c) = self.conns.get_mut(&id) {
            c.in_flight = c.in_flight.saturating_sub(1);
            c.output.extend_from_slice(line.as_bytes());
        }
        self.settle(id, registry)
    }

    /// Queues an event line for every watcher.
    pub fn broadcast(&mut self, line: &str, registry: &Registry) -> Vec<Incoming> {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.watcher)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for id in ids {
            if let Some(c) = self.conns.get_mut(&id) {
                c.output.extend_from_slice(line.as_bytes());
            }
            out.extend(self.settle(id, registry));
        }
        out
    }

    /// The peer closed the connection completely: nothing more can be delivered.
    pub fn hang_up(&mut self, id: ConnId, registry: &Registry) -> Vec<Incoming> {
        self.drop_conn(id, registry)
    }

    /// The connection became writable.
    pub fn writable(&mut self, id: ConnId, registry: &Registry) -> Vec<Incoming> {
        self.settle(id, registry)
    }

    /// Closes a connection once its output is flushed.
    pub fn close_after_flush(&mut self, id: ConnId, registry: &Registry) -> Vec<Incoming> {
        if let Some(c) = self.conns.get_mut(&id) {
            c.closing = true;
        }
        self.settle(id, registry)
    }

    /// Closes every connection that is not watching, after flushing what it is owed.
    pub fn close_idle(&mut self, registry: &Registry) -> Vec<Incoming> {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.watcher)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .flat_map(|id| self.close_after_flush(id, registry))
            .collect()
    }

    /// Flushes what it can, decides whether the connection is finished, and keeps its mio
    /// interest in line with its state (WRITABLE only while output is pending).
    fn settle(&mut self, id: ConnId, registry: &Registry) -> Vec<Incoming> {
        let Some(c) = self.conns.get_mut(&id) else {
            return Vec::new();
        };
        let mut broken = false;
        while !c.output.is_empty() {
            match c.stream.write(&c.output) {
                Ok(0) => {
                    broken = true;
                    break;
                }
                Ok(n) => {
                    c.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("control connection {id}: write: {e}");
                    broken = true;
                    break;
                }
            }
        }
        if c.output.len() > MAX_OUTPUT {
            warn!(
                "control connection {id}: client is not reading ({} bytes queued); dropping it",
                c.output.len()
            );
            broken = true;
        }
        let finished =
            c.output.is_empty() && (c.closing || (c.read_closed && c.in_flight == 0 && !c.watcher));
        if broken || finished {
            return self.drop_conn(id, registry);
        }
        let want = if c.output.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if want != c.interest {
            c.interest = want;
            if let Err(e) = registry.reregister(&mut c.stream, conn_token(id), want) {
                debug!("control connection {id}: reregister: {e}");
                return self.drop_conn(id, registry);
            }
        }
        Vec::new()
    }

    fn drop_conn(&mut self, id: ConnId, registry: &Registry) -> Vec<Incoming> {
        match self.conns.remove(&id) {
            Some(mut c) => {
                let _ = registry.deregister(&mut c.stream);
                debug!("control connection {id} closed");
                vec![Incoming::Closed(id)]
            }
            None => Vec::new(),
        }
    }

    /// At exit: gives every connection a last chance to receive what it is owed, bounded by
    /// `until`, then closes them all.
    pub fn flush_all(&mut self, until: Instant) {
        for c in self.conns.values_mut() {
            let _ = c.stream.shutdown(std::net::Shutdown::Read);
        }
        for Conn { stream, output, .. } in self.conns.values_mut() {
            let stream: &UnixStream = stream;
            while !output.is_empty() && Instant::now() < until {
                match (&*stream).write(output) {
                    Ok(0) => break,
                    Ok(n) => {
                        output.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let left = until
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(100));
                        let mut pfd = [nix::poll::PollFd::new(
                            std::os::fd::AsFd::as_fd(stream),
                            nix::poll::PollFlags::POLLOUT,
                        )];
                        let ms = u16::try_from(left.as_millis()).unwrap_or(100);
                        if nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(ms)).unwrap_or(0)
                            == 0
                        {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        self.conns.clear();
    }

    /// Removes the socket file.
    pub fn remove_socket(&self) -> io::Result<()> {
        fs::remove_file(&self.path)
    }
}
