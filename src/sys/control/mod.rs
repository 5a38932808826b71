//! The control socket: the lock that makes one instance per socket, the listener, and the
//! per-connection buffers.
//!
//! Owns: `<socket>.lock` (flock; never followed through a symbolic link, always a regular
//! file), binding the socket 0600 (never over a socket someone listens on), accepting (up to
//! the cap), reading lines in per-turn slices, queueing replies and events, and closing
//! connections that misbehave.
//! Must never: let one client affect another or the daemon. Every buffer is bounded, every
//! socket non-blocking, and an error on one connection closes only that connection. A client
//! that sends faster than it reads is slowed down (its requests wait in its socket), never
//! dropped; only a watcher, which cannot be slowed down, is dropped when it stops reading.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::{self};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry};

use crate::core::io::ConnId;
use crate::sys::tokens;
use crate::wire::protocol::{LineBuf, LineTooLong, MAX_LINE, Request, RequestId, parse_request};
use crate::wire::replies::{ErrorCode, reply_err};

/// Most simultaneous client connections, however many descriptors the open-file limit
/// allows (the event loop derives the actual cap from it).
pub const MAX_CONNS: usize = 64;
/// Bytes read from one connection per loop turn: a client that writes without pause is served
/// in slices, between everyone else.
pub const READ_BUDGET: usize = 64 * 1024;
/// Request lines taken from one connection per loop turn.
pub const LINES_PER_TURN: usize = 64;
/// Replies queued for a client past which its requests are no longer read (backpressure)...
pub const OUTPUT_HIGH: usize = 256 * 1024;
/// ...until it has taken all but this much.
pub const OUTPUT_LOW: usize = 64 * 1024;
/// Requests of one client still waiting for their reply (a `stop` waits for the process to
/// exit) past which its requests are no longer read.
pub const MAX_IN_FLIGHT: usize = 64;
/// Events queued for a watcher that does not read, past which it is dropped: a watcher cannot
/// be slowed down, since events do not wait.
pub const MAX_WATCHER_OUTPUT: usize = 1024 * 1024;
/// One read.
const READ_CHUNK: usize = 16 * 1024;
/// Replies of the connection being served are written at the end of its turn, or sooner
/// once this much has piled up.
const FLUSH_AT: usize = 32 * 1024;
/// An emptied buffer keeps at most this much memory.
const KEEP_CAPACITY: usize = 4 * 1024;
/// Connections accepted per loop turn.
const ACCEPTS_PER_TURN: usize = 64;

/// Something a connection produced.
#[derive(Debug)]
pub enum Incoming {
    /// A well-formed request.
    Request {
        /// Connection.
        conn: ConnId,
        /// Its `id`.
        id: Option<RequestId>,
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
    /// Follows a service's output (`logs -f`): kept, and dropped when it stops reading, like a
    /// watcher, but sent no events.
    follower: bool,
    interest: Interest,
    /// The socket may hold bytes not read yet: the last read did not end in `WouldBlock`, or a
    /// readiness event came since. Edge-triggered polling announces new bytes only once.
    unread: bool,
    /// Backpressure: its requests are not read until it has taken most of its replies.
    paused: bool,
    /// In the ready queue.
    queued: bool,
    /// Bytes read and lines taken during its current turn.
    turn_bytes: usize,
    turn_lines: usize,
}

impl Conn {
    /// Whether serving it again may produce a request without a new readiness event.
    fn has_input(&self) -> bool {
        (self.unread && !self.read_closed) || self.input.has_unscanned()
    }

    /// Updates the backpressure state; true when reading may resume.
    fn update_pause(&mut self) -> bool {
        if self.paused {
            if self.output.len() <= OUTPUT_LOW && self.in_flight < MAX_IN_FLIGHT {
                self.paused = false;
                return true;
            }
        } else if self.output.len() >= OUTPUT_HIGH || self.in_flight >= MAX_IN_FLIGHT {
            self.paused = true;
        }
        false
    }
}

/// Whether connections may be waiting in the listen backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backlog {
    /// Accept drained it (or there is no listener).
    Empty,
    /// The per-turn accept budget ran out: accept again next turn.
    Budget,
    /// At the connection cap or out of descriptors: accept again once a descriptor frees (a
    /// connection or a pidfd closes), without waiting for another client to connect.
    Blocked,
}

/// The listener and its connections.
#[derive(Debug)]
pub struct Control {
    listener: Option<UnixListener>,
    path: PathBuf,
    conns: BTreeMap<ConnId, Conn>,
    next_id: ConnId,
    allowed_uids: HashSet<u32>,
    /// Most connections at once, from the descriptor budget (at most [`MAX_CONNS`]).
    conn_cap: usize,
    backlog: Backlog,
    /// Connections with input to serve, in turn order (round robin).
    ready: VecDeque<ConnId>,
    /// The connection being served: its replies are flushed when its turn ends.
    serving: Option<ConnId>,
    /// Where reads land before framing (allocated once).
    scratch: Vec<u8>,
}

impl Control {
    /// Wraps a bound listener and registers it. At most `conn_cap` clients are connected at
    /// once. At [`MAX_CONNS`] further ones are refused with `too_many_connections`; below it
    /// (the open-file limit set the cap) they wait in the listen backlog until one leaves.
    pub fn new(
        mut listener: UnixListener,
        path: PathBuf,
        registry: &Registry,
        conn_cap: usize,
    ) -> io::Result<Control> {
        registry.register(&mut listener, tokens::LISTENER, Interest::READABLE)?;
        let allowed_uids = HashSet::from([0, nix::unistd::geteuid().as_raw()]);
        Ok(Control {
            listener: Some(listener),
            path,
            conns: BTreeMap::new(),
            next_id: 0,
            allowed_uids,
            conn_cap: conn_cap.clamp(1, MAX_CONNS),
            backlog: Backlog::Empty,
            ready: VecDeque::new(),
            serving: None,
            scratch: vec![0; READ_CHUNK],
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
        self.backlog = Backlog::Empty;
    }

    /// Whether the loop must come back without waiting: connections with input to serve, or
    /// an accept budget that ran out.
    pub fn has_work(&self) -> bool {
        !self.ready.is_empty() || self.backlog == Backlog::Budget
    }

    /// Whether connections wait for a descriptor (or a place under the cap) to be freed.
    pub fn waiting_for_descriptor(&self) -> bool {
        self.backlog == Backlog::Blocked
    }

    /// Accepts again where the last attempt stopped: at its per-turn budget, or (when
    /// `freed`, a descriptor has been closed since) at the cap or for want of descriptors.
    pub fn accept_again(&mut self, registry: &Registry, freed: bool) {
        match self.backlog {
            Backlog::Budget => self.accept(registry),
            Backlog::Blocked if freed => self.accept(registry),
            _ => {}
        }
    }

    /// Accepts pending connections, up to the cap and a per-turn budget.
    pub fn accept(&mut self, registry: &Registry) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else {
                self.backlog = Backlog::Empty;
                return;
            };
            let full = self.conns.len() >= self.conn_cap;
            if full && self.conn_cap < MAX_CONNS {
                // The cap comes from the open-file limit: wait for a descriptor, like EMFILE.
                if self.backlog != Backlog::Blocked {
                    debug!(
                        "{} clients connected, all the open-file limit allows: further ones wait \
                         until one leaves",
                        self.conns.len()
                    );
                }
                self.backlog = Backlog::Blocked;
                return;
            }
            let mut stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.backlog = Backlog::Empty;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    if self.backlog != Backlog::Blocked {
                        warn!(
                            "cannot accept a control connection on {}: {e}; it waits until a \
                             descriptor is freed",
                            self.path.display()
                        );
                    }
                    self.backlog = Backlog::Blocked;
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and the like: this one connection is lost, the rest wait.
                    debug!("accept on {}: {e}", self.path.display());
                    continue;
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
            if full {
                warn!("refused control connection: already {MAX_CONNS} clients");
                let msg = format!("too many clients (limit {MAX_CONNS}); try again later");
                let _ = stream
                    .write_all(reply_err(None, ErrorCode::TooManyConnections, &msg).as_bytes());
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let Some(token) = tokens::conn(id) else {
                warn!("refused control connection: connection ids are used up");
                continue;
            };
            if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
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
                    follower: false,
                    interest: Interest::READABLE,
                    // It may have written before we registered it: look once.
                    unread: true,
                    paused: false,
                    queued: true,
                    turn_bytes: 0,
                    turn_lines: 0,
                },
            );
            self.ready.push_back(id);
        }
        self.backlog = Backlog::Budget;
    }

    /// The connection has something to read (or its peer stopped sending): queue it for a
    /// turn, unless backpressure holds it.
    pub fn readable(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.unread = true;
            if !c.queued && !c.paused && !c.closing {
                c.queued = true;
                self.ready.push_back(id);
            }
        }
    }

    /// How many connections wait for a turn.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// The next connection to serve, with a fresh per-turn budget.
    pub fn pop_ready(&mut self) -> Option<ConnId> {
        while let Some(id) = self.ready.pop_front() {
            if let Some(c) = self.conns.get_mut(&id) {
                c.queued = false;
                c.turn_bytes = 0;
                c.turn_lines = 0;
                self.serving = Some(id);
                return Some(id);
            }
        }
        None
    }

    /// The next request of the connection being served, reading more if needed; `None` when
    /// it has nothing more for this turn (no input, its read or line budget is spent, or its
    /// replies are piling up). A closed connection comes back as [`Incoming::Closed`].
    pub fn next_request(&mut self, id: ConnId, registry: &Registry) -> Option<Incoming> {
        loop {
            let c = self.conns.get_mut(&id)?;
            if c.closing || c.turn_lines >= LINES_PER_TURN {
                return None;
            }
            if c.paused || c.output.len() >= OUTPUT_HIGH || c.in_flight >= MAX_IN_FLIGHT {
                // Hand over what the client can take before deciding to hold it.
                if let Some(closed) = self.settle(id, registry).pop() {
                    return Some(closed);
                }
                if self.conns.get(&id).is_none_or(|c| c.paused) {
                    return None;
                }
                continue;
            }
            match c.input.next_line() {
                Some(Err(LineTooLong)) => {
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
                    return self.settle(id, registry).pop();
                }
                Some(Ok(line)) => {
                    c.turn_lines += 1;
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match parse_request(&line) {
                        Ok(env) => {
                            if env.request == Request::Watch {
                                c.watcher = true;
                            }
                            c.in_flight += 1;
                            return Some(Incoming::Request {
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
                    }
                }
                None if c.read_closed => return self.settle(id, registry).pop(),
                None if !c.unread || c.turn_bytes >= READ_BUDGET => return None,
                None => {
                    let want = READ_CHUNK.min(READ_BUDGET - c.turn_bytes);
                    let buf = self.scratch.get_mut(..want).unwrap_or_default();
                    match c.stream.read(buf) {
                        Ok(0) => {
                            c.read_closed = true;
                            c.unread = false;
                            if c.input.pending() > 0 && !c.input.has_unscanned() {
                                debug!(
                                    "control connection {id}: client left in the middle of a line; discarded"
                                );
                            }
                        }
                        Ok(n) => {
                            c.turn_bytes += n;
                            c.input.push(buf.get(..n).unwrap_or_default());
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            c.unread = false;
                            c.input.shrink(KEEP_CAPACITY);
                            return None;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            debug!("control connection {id}: read: {e}");
                            c.read_closed = true;
                            c.closing = true;
                            return self.settle(id, registry).pop();
                        }
                    }
                }
            }
        }
    }

    /// Ends the turn of the connection being served: flushes its replies and puts it back in
    /// line if it has more to say and may say it.
    pub fn end_turn(&mut self, id: ConnId, registry: &Registry) -> Vec<Incoming> {
        if self.serving == Some(id) {
            self.serving = None;
        }
        let out = self.settle(id, registry);
        if let Some(c) = self.conns.get_mut(&id) {
            c.input.shrink(KEEP_CAPACITY);
            if !c.queued && !c.paused && !c.closing && c.has_input() {
                c.queued = true;
                self.ready.push_back(id);
            }
        }
        out
    }

    /// Queues a reply to one request.
    pub fn reply(&mut self, id: ConnId, line: &str, registry: &Registry) -> Vec<Incoming> {
        let Some(c) = self.conns.get_mut(&id) else {
            return Vec::new();
        };
        c.in_flight = c.in_flight.saturating_sub(1);
        c.output.extend_from_slice(line.as_bytes());
        // Replies to the connection being served go out together when its turn ends.
        if self.serving == Some(id) && c.output.len() < FLUSH_AT {
            return Vec::new();
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

    /// Makes a connection a follower of output lines (`logs -f`).
    pub fn follow(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.follower = true;
        }
    }

    /// Queues a line for one follower.
    pub fn send(&mut self, id: ConnId, line: &str, registry: &Registry) -> Vec<Incoming> {
        let Some(c) = self.conns.get_mut(&id) else {
            return Vec::new();
        };
        c.output.extend_from_slice(line.as_bytes());
        self.settle(id, registry)
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
            .filter(|(_, c)| !c.watcher && !c.follower)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .flat_map(|id| self.close_after_flush(id, registry))
            .collect()
    }

    /// Out of descriptors on the stop path: closes one connection to free its descriptor, an
    /// idle client first, then a watcher, then any other. Returns what kind it was.
    pub fn shed_one(&mut self, registry: &Registry) -> Option<(&'static str, Vec<Incoming>)> {
        let idle = |c: &Conn| {
            !c.watcher && c.in_flight == 0 && c.output.is_empty() && c.input.pending() == 0
        };
        let pick = self
            .conns
            .iter()
            .find(|(_, c)| idle(c))
            .map(|(id, _)| (*id, "an idle client"))
            .or_else(|| {
                self.conns
                    .iter()
                    .filter(|(_, c)| c.watcher)
                    .max_by_key(|(_, c)| c.output.len())
                    .map(|(id, _)| (*id, "a watcher"))
            })
            .or_else(|| {
                self.conns
                    .iter()
                    .max_by_key(|(_, c)| c.output.len())
                    .map(|(id, _)| (*id, "a client"))
            });
        let (id, kind) = pick?;
        Some((kind, self.drop_conn(id, registry)))
    }

    /// Flushes what it can, decides whether the connection is finished, applies
    /// backpressure, and keeps its mio interest in line with its state (WRITABLE only while
    /// output is pending).
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
        if c.output.is_empty() && c.output.capacity() > KEEP_CAPACITY {
            // Give a flood's memory back.
            c.output = Vec::new();
        }
        // A watcher cannot be slowed down (events do not wait for it): past the limit it goes.
        if (c.watcher || c.follower) && c.output.len() > MAX_WATCHER_OUTPUT {
            warn!(
                "control connection {id}: watcher or follower is not reading ({} bytes of events queued); dropping it",
                c.output.len()
            );
            broken = true;
        }
        let finished = c.output.is_empty()
            && (c.closing
                || (c.read_closed
                    && !c.input.has_unscanned()
                    && c.in_flight == 0
                    && !c.watcher
                    && !c.follower));
        if broken || finished {
            return self.drop_conn(id, registry);
        }
        if c.update_pause() && !c.queued && !c.closing && c.has_input() && self.serving != Some(id)
        {
            c.queued = true;
            self.ready.push_back(id);
        }
        let want = if c.output.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if want != c.interest {
            c.interest = want;
            let registered = match tokens::conn(id) {
                Some(token) => registry.reregister(&mut c.stream, token, want),
                None => Err(io::Error::other("no token")),
            };
            if let Err(e) = registered {
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
                if self.serving == Some(id) {
                    self.serving = None;
                }
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

mod socket;
#[cfg(test)]
mod tests;

pub use socket::{Lock, StartError, bind};
