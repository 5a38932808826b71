//! Services' output through reapd (`"log": "prefix"`): the pipes, reading them, and writing
//! whole lines as `name | line` to reapd's stdout and stderr.
//!
//! Owns: the read ends of every service's pipes (non-blocking, close-on-exec, registered in the
//! loop), the per-service tail `ctl logs` reads, the followers of `ctl logs -f`, and two sinks,
//! reapd's stdout and stderr, each with a bounded buffer.
//! Must never: block the loop. A pipe is read at most [`PIPE_BUDGET`] bytes per turn (the rest
//! next turn, which comes without waiting), so a flooding service cannot starve the loop. A sink
//! is only written when `poll` says it can take a write, at most 4096 bytes of whole lines at a
//! time (a pipe takes that atomically, so no line is ever torn by another writer). A sink whose
//! reader does not keep up fills its buffer to [`SINK_HIGH`]; then the pipes feeding it are no
//! longer read (the services block in `write`, as they would on a full terminal of their own)
//! until it drains below [`SINK_LOW`]. At exit, what is left is read and written for at most
//! [`FINAL_DRAIN`]; whatever a sink nobody reads cannot take by then is counted in the log.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant, SystemTime};

use log::warn;
use mio::unix::SourceFd;
use mio::{Interest, Registry};

use crate::core::io::ConnId;
use crate::sys::logging;
use crate::sys::tokens;
use crate::wire::config::LogMode;
use crate::wire::loglines::{FollowedLine, LogLine, Piece, Splitter, Stream, Tail};

/// Bytes read from one pipe per loop turn.
pub const PIPE_BUDGET: usize = 64 * 1024;
/// A sink's buffer past which the pipes feeding it wait...
pub const SINK_HIGH: usize = 1024 * 1024;
/// ...until it is below this.
pub const SINK_LOW: usize = 256 * 1024;
/// Longest time exiting spends on the last output.
pub const FINAL_DRAIN: Duration = Duration::from_secs(2);
/// One write to a sink: a pipe takes up to this much at once, whole.
const ATOMIC_WRITE: usize = 4096;
const READ_CHUNK: usize = 16 * 1024;

/// One pipe's read end.
struct Pipe {
    service: String,
    stream: Stream,
    mode: LogMode,
    file: File,
    splitter: Splitter,
}

/// reapd's stdout or stderr, with what is waiting to be written to it.
struct Sink {
    fd: RawFd,
    buf: VecDeque<u8>,
    /// Registered for writability while it cannot take more.
    waiting: bool,
    /// Its reader is gone (`EPIPE`) or it failed: lines are dropped (they stay in the tails).
    broken: bool,
    /// Pipes feeding it were held back because it was full.
    held: bool,
}

/// Every pipe, tail, follower and sink.
pub struct Outputs {
    pipes: HashMap<u64, Pipe>,
    next_id: u64,
    tails: HashMap<String, Tail>,
    followers: HashMap<ConnId, String>,
    sinks: [Sink; 2],
    /// Pipes that may hold more than their budget let us read.
    pending: BTreeSet<u64>,
    /// Lines for followers, to be handed to the control socket.
    pub to_followers: Vec<(ConnId, String)>,
    /// Services removed from the config whose pipes have not ended yet: their tails go then.
    removed: BTreeSet<String>,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("pipes", &self.pipes.len())
            .finish_non_exhaustive()
    }
}

impl Default for Outputs {
    fn default() -> Self {
        let sink = |fd| Sink {
            fd,
            buf: VecDeque::new(),
            waiting: false,
            broken: false,
            held: false,
        };
        Outputs {
            pipes: HashMap::new(),
            next_id: 0,
            tails: HashMap::new(),
            followers: HashMap::new(),
            sinks: [sink(libc::STDOUT_FILENO), sink(libc::STDERR_FILENO)],
            pending: BTreeSet::new(),
            to_followers: Vec::new(),
            removed: BTreeSet::new(),
        }
    }
}

/// A pair of pipes for a service: the read ends (non-blocking, close-on-exec) for reapd, the
/// write ends (blocking: the service's writes must wait, not fail) for the child.
#[derive(Debug)]
pub struct PipePair {
    /// stdout, stderr read ends.
    pub read: [OwnedFd; 2],
    /// stdout, stderr write ends.
    pub write: [OwnedFd; 2],
}

impl PipePair {
    /// Opens both pipes.
    pub fn open() -> io::Result<PipePair> {
        let (r1, w1) = pipe()?;
        let (r2, w2) = pipe()?;
        Ok(PipePair {
            read: [r1, r2],
            write: [w1, w2],
        })
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // SAFETY: F_SETFL on a descriptor we own; it touches no memory.
    if unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r, w))
}

impl Outputs {
    /// Takes the read ends of a service's pipes under watch.
    pub fn adopt(&mut self, service: &str, mode: LogMode, read: [OwnedFd; 2], registry: &Registry) {
        for (fd, stream) in read.into_iter().zip([Stream::Stdout, Stream::Stderr]) {
            let id = self.next_id;
            self.next_id += 1;
            if let Err(e) = registry.register(
                &mut SourceFd(&fd.as_raw_fd()),
                tokens::pipe(id),
                Interest::READABLE,
            ) {
                warn!("cannot watch the output of {service}: {e}; it is read at exit only");
            }
            self.pipes.insert(
                id,
                Pipe {
                    service: service.to_string(),
                    stream,
                    mode,
                    file: File::from(fd),
                    splitter: Splitter::default(),
                },
            );
            // Whatever it wrote before the registration is read now.
            self.pending.insert(id);
        }
        self.tails.entry(service.to_string()).or_default();
        self.removed.remove(service);
    }

    /// Pipe read ends held (descriptors).
    pub fn open_pipes(&self) -> usize {
        self.pipes.len()
    }

    /// Some pipe has more to read than its budget allowed: the next turn should not wait.
    pub fn has_work(&self) -> bool {
        !self.pending.is_empty()
    }

    /// A pipe became readable: it is read with the others (`read_pending`), once per turn.
    pub fn readable(&mut self, id: u64) {
        self.pending.insert(id);
    }

    /// Reads every pipe with more to read, each within its budget.
    pub fn read_pending(&mut self, registry: &Registry) {
        let ids: Vec<u64> = self.pending.iter().copied().collect();
        for id in ids {
            self.read_one(id, PIPE_BUDGET, registry);
        }
    }

    /// A sink can take more.
    pub fn writable(&mut self, which: usize, registry: &Registry) {
        if let Some(s) = self.sinks.get_mut(which)
            && s.waiting
        {
            s.waiting = false;
            let _ = registry.deregister(&mut SourceFd(&s.fd));
        }
        self.flush(which, None, registry);
    }

    /// The pipes a full sink held back are read again (it drained, or broke).
    fn resume(&mut self, which: usize) {
        let held: Vec<u64> = self
            .pipes
            .iter()
            .filter(|(_, p)| sink_of(p.stream) == which)
            .map(|(id, _)| *id)
            .collect();
        self.pending.extend(held);
    }

    /// Reads one pipe: up to `budget` bytes, to end of file, or until it would block.
    fn read_one(&mut self, id: u64, budget: usize, registry: &Registry) {
        let mut chunk = [0u8; READ_CHUNK];
        let mut taken = 0;
        loop {
            let Some(stream) = self.pipes.get(&id).map(|p| p.stream) else {
                self.pending.remove(&id);
                return;
            };
            let which = sink_of(stream);
            if self.full(which) {
                // Backpressure: left in the pipe until the sink drains (see `flush`).
                self.sink_mut(which).held = true;
                self.pending.remove(&id);
                return;
            }
            if taken >= budget {
                return;
            }
            let Some(p) = self.pipes.get_mut(&id) else {
                return;
            };
            match p.file.read(&mut chunk) {
                Ok(0) => {
                    self.close(id, registry);
                    return;
                }
                Ok(n) => {
                    taken += n;
                    let mut pieces = Vec::new();
                    p.splitter
                        .push(chunk.get(..n).unwrap_or_default(), &mut |piece| {
                            pieces.push(piece)
                        });
                    let (service, stream, mode) = (p.service.clone(), p.stream, p.mode);
                    for piece in pieces {
                        self.line(&service, stream, mode, piece);
                    }
                    self.flush(which, None, registry);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.pending.remove(&id);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("cannot read the output of {}: {e}", p.service);
                    self.close(id, registry);
                    return;
                }
            }
        }
    }

    /// End of file (or a failed read): the last partial line goes out, the pipe is closed.
    fn close(&mut self, id: u64, registry: &Registry) {
        self.pending.remove(&id);
        let Some(mut p) = self.pipes.remove(&id) else {
            return;
        };
        let _ = registry.deregister(&mut SourceFd(&p.file.as_raw_fd()));
        let mut pieces = Vec::new();
        p.splitter.finish(&mut |piece| pieces.push(piece));
        for piece in pieces {
            self.line(&p.service, p.stream, p.mode, piece);
        }
        self.flush(sink_of(p.stream), None, registry);
        if self.removed.contains(&p.service) {
            self.forget_tail(&p.service);
        }
    }

    /// One line: into the tail, to followers, and to the sink.
    fn line(&mut self, service: &str, stream: Stream, mode: LogMode, piece: Piece) {
        let now = SystemTime::now();
        let text = String::from_utf8_lossy(&piece.bytes).into_owned();
        let line = LogLine {
            stream,
            line: text,
            ts_ms: logging::unix_ms(now),
            continued: piece.continued,
        };
        for (conn, _) in self.followers.iter().filter(|(_, s)| *s == service) {
            let followed = FollowedLine {
                log: service.to_string(),
                line: line.clone(),
            };
            if let Ok(mut json) = serde_json::to_string(&followed) {
                json.push('\n');
                self.to_followers.push((*conn, json));
            }
        }
        if let Some(tail) = self.tails.get_mut(service) {
            tail.push(line);
        }
        let sink = self.sink_mut(sink_of(stream));
        if sink.broken {
            return;
        }
        if mode == LogMode::PrefixTime {
            sink.buf.extend(logging::clock(now).as_bytes());
            sink.buf.push_back(b' ');
        }
        sink.buf.extend(service.as_bytes());
        sink.buf
            .extend(if piece.continued { b" + " } else { b" | " });
        sink.buf.extend(&piece.bytes);
        sink.buf.push_back(b'\n');
    }

    /// Writes what a sink holds while it can take it without blocking, or, with a deadline,
    /// waiting for it until then. Without a deadline, a sink that cannot take more is watched
    /// for writability (see [`Outputs::writable`]).
    fn flush(&mut self, which: usize, until: Option<Instant>, registry: &Registry) {
        let sink = self.sink_mut(which);
        let outcome = sink.write_out(until);
        if let Err(e) = &outcome {
            warn!(
                "cannot write services' output to {}: {e}; their lines are dropped from now on \
                 (`reapd ctl logs` still has them)",
                if which == 0 { "stdout" } else { "stderr" }
            );
            sink.broken = true;
            sink.buf = VecDeque::new();
        }
        if matches!(outcome, Ok(false)) && until.is_none() && !sink.waiting {
            sink.waiting = registry
                .register(
                    &mut SourceFd(&sink.fd),
                    tokens::sink(which),
                    Interest::WRITABLE,
                )
                .is_ok();
        }
        if sink.held && (sink.broken || sink.buf.len() < SINK_LOW) {
            sink.held = false;
            self.resume(which);
        }
    }

    /// Exiting: reads what is left in every pipe (all services are gone, so their pipes end,
    /// unless a process kept outside the stop still holds one), then writes it all, within
    /// [`FINAL_DRAIN`].
    pub fn finish(&mut self, registry: &Registry) {
        let until = Instant::now() + FINAL_DRAIN;
        let ids: Vec<u64> = self.pipes.keys().copied().collect();
        for id in ids {
            while Instant::now() < until {
                self.pending.insert(id);
                self.read_one(id, PIPE_BUDGET, registry);
                let Some(p) = self.pipes.get(&id) else {
                    break;
                };
                let which = sink_of(p.stream);
                if self.full(which) {
                    // Make room, waiting for the sink's reader at most until the deadline.
                    self.flush(which, Some(until), registry);
                } else if !self.pending.contains(&id) {
                    // Nothing more now, though a writer still holds it open.
                    break;
                }
            }
            self.pending.remove(&id);
            // A pipe still open (a process kept out of the stop holds it) has its partial line
            // written now.
            if let Some(p) = self.pipes.get_mut(&id) {
                let mut pieces = Vec::new();
                p.splitter.finish(&mut |piece| pieces.push(piece));
                let (service, stream, mode) = (p.service.clone(), p.stream, p.mode);
                for piece in pieces {
                    self.line(&service, stream, mode, piece);
                }
            }
        }
        for which in 0..2 {
            self.flush(which, Some(until), registry);
            let left = self.sink(which).buf.len();
            if left > 0 {
                warn!(
                    "{left} bytes of services' output were not written: reapd's {} is not being \
                     read",
                    if which == 0 { "stdout" } else { "stderr" }
                );
            }
        }
    }

    /// The tail of a service.
    pub fn tail(&self, service: &str, n: usize) -> Vec<LogLine> {
        self.tails
            .get(service)
            .map(|t| t.last(n))
            .unwrap_or_default()
    }

    /// A connection follows a service's new lines.
    pub fn follow(&mut self, conn: ConnId, service: &str) {
        self.followers.insert(conn, service.to_string());
    }

    /// A connection went away.
    pub fn unfollow(&mut self, conn: ConnId) {
        self.followers.remove(&conn);
    }

    /// Forgets the tail of a service removed from the config.
    pub fn forget_tail(&mut self, service: &str) {
        if self.pipes.values().any(|p| p.service == service) {
            self.removed.insert(service.to_string());
        } else {
            self.tails.remove(service);
            self.removed.remove(service);
        }
    }
}

impl Outputs {
    /// stdout (0) or stderr (anything else).
    fn sink(&self, which: usize) -> &Sink {
        let [out, err] = &self.sinks;
        if which == 0 { out } else { err }
    }

    /// The sink has as much waiting as it may: its pipes wait.
    fn full(&self, which: usize) -> bool {
        let s = self.sink(which);
        s.buf.len() >= SINK_HIGH && !s.broken
    }

    fn sink_mut(&mut self, which: usize) -> &mut Sink {
        let [out, err] = &mut self.sinks;
        if which == 0 { out } else { err }
    }
}

fn sink_of(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Sink {
    /// Writes what it holds while the descriptor takes it: true when all is written, false when
    /// it cannot take more now (or by `until`), an error when it failed for good.
    fn write_out(&mut self, until: Option<Instant>) -> io::Result<bool> {
        while !self.buf.is_empty() && !self.broken {
            let wait_ms = until.map_or(0, |t| {
                i32::try_from(t.saturating_duration_since(Instant::now()).as_millis())
                    .unwrap_or(i32::MAX)
            });
            if !ready_for_write(self.fd, wait_ms) {
                return Ok(false);
            }
            // Whole lines only, up to one atomic write (every rendered line fits in one).
            let (a, b) = self.buf.as_slices();
            let mut out: Vec<u8> = Vec::with_capacity(ATOMIC_WRITE);
            out.extend(a.iter().chain(b).take(ATOMIC_WRITE));
            let cut = out
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(out.len(), |i| i + 1);
            // SAFETY: writing from a live buffer of at least `cut` bytes to a descriptor number.
            let n = unsafe { libc::write(self.fd, out.as_ptr().cast(), cut) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    // Someone else made the description non-blocking: as full as a full pipe.
                    io::ErrorKind::WouldBlock if until.is_some_and(|t| Instant::now() < t) => {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    io::ErrorKind::WouldBlock => return Ok(false),
                    _ => return Err(e),
                }
            }
            self.buf
                .drain(..usize::try_from(n).unwrap_or(0).min(self.buf.len()));
        }
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            // Give a flood's memory back.
            self.buf = VecDeque::new();
        }
        Ok(true)
    }
}

/// True when `fd` can take a write now, waiting up to `wait_ms` for it.
fn ready_for_write(fd: RawFd, wait_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack; poll only writes its revents.
    let r = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
    // POLLERR/POLLHUP: let the write report what is wrong.
    r > 0
}
