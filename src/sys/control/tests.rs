//! Unit tests of the connection budgets, backpressure and the socket and lock rules.

use super::*;
use std::io::BufRead;
use std::os::unix::net::UnixStream as StdStream;
use std::sync::atomic::{AtomicU32, Ordering};

static N: AtomicU32 = AtomicU32::new(0);

/// A listener in a fresh directory, a poll, and a way to connect clients.
struct Bench {
    poll: mio::Poll,
    control: Control,
    dir: PathBuf,
}

impl Bench {
    fn new(cap: usize) -> Bench {
        let dir = std::env::temp_dir().join(format!(
            "reapd-control-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("s.sock");
        let poll = mio::Poll::new().expect("poll");
        let listener = bind(&path).expect("bind");
        let control = Control::new(listener, path, poll.registry(), cap).expect("control");
        Bench { poll, control, dir }
    }

    fn connect(&mut self) -> StdStream {
        let s = StdStream::connect(self.control.path()).expect("connect");
        self.control.accept(self.poll.registry());
        s
    }

    /// Serves one turn of the next ready connection, answering every request with `reply`.
    fn serve(&mut self, reply: &str) -> (ConnId, usize) {
        let id = self.control.pop_ready().expect("a ready connection");
        let mut n = 0;
        while let Some(got) = self.control.next_request(id, self.poll.registry()) {
            if let Incoming::Request { conn, .. } = got {
                self.control.reply(conn, reply, self.poll.registry());
                n += 1;
            }
        }
        self.control.end_turn(id, self.poll.registry());
        (id, n)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_turn_takes_at_most_its_budget_and_comes_back_without_an_event() {
    let mut b = Bench::new(8);
    let mut c = b.connect();
    let lines = "{\"cmd\":\"ping\"}\n".repeat(LINES_PER_TURN * 3);
    c.write_all(lines.as_bytes()).expect("send");
    let mut served = 0;
    for _ in 0..3 {
        assert!(b.control.has_work(), "requests left, no event needed");
        let (_, n) = b.serve("{\"ok\":true}\n");
        assert_eq!(n, LINES_PER_TURN);
        served += n;
    }
    assert_eq!(served, LINES_PER_TURN * 3);
    // Nothing left: one more turn finds the socket empty and the queue stays empty.
    if b.control.has_work() {
        assert_eq!(b.serve("{\"ok\":true}\n").1, 0);
    }
    assert!(!b.control.has_work());
    let mut r = std::io::BufReader::new(c);
    for _ in 0..served {
        let mut line = String::new();
        r.read_line(&mut line).expect("reply");
        assert_eq!(line, "{\"ok\":true}\n");
    }
}

#[test]
fn a_client_that_does_not_read_is_paused_then_resumed_never_dropped() {
    let mut b = Bench::new(8);
    let c = b.connect();
    let big = format!("{}\n", "x".repeat(8 * 1024));
    // Write until the socket is full, serving meanwhile; replies are never read.
    let chunk = "{\"cmd\":\"ping\"}\n".repeat(256);
    let mut answered = 0;
    for _ in 0..10_000 {
        let _ = nix::sys::socket::send(
            std::os::fd::AsRawFd::as_raw_fd(&c),
            chunk.as_bytes(),
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        );
        if !b.control.has_work() {
            break;
        }
        answered += b.serve(&big).1;
    }
    assert!(!b.control.has_work(), "the flooder is paused, not served");
    let id = *b.control.conns.keys().next().expect("still connected");
    let conn = &b.control.conns[&id];
    assert!(conn.paused);
    assert!(conn.output.len() < OUTPUT_HIGH + big.len() * LINES_PER_TURN);
    // Reading lifts the pause: the queued input is served again without a new event.
    let mut r = std::io::BufReader::new(c);
    let mut got = 0;
    while got < answered {
        // What the loop does on a writable event: flush, and serve what the pause held.
        b.control.writable(id, b.poll.registry());
        while b.control.has_work() {
            answered += b.serve(&big).1;
        }
        let mut line = String::new();
        r.read_line(&mut line).expect("reply");
        got += 1;
    }
    assert!(got > 64, "{got}");
    assert!(b.control.conns.contains_key(&id), "never dropped");
}

#[test]
fn at_the_cap_a_client_waits_and_is_accepted_when_a_place_frees() {
    let mut b = Bench::new(2);
    let first = b.connect();
    let _second = b.connect();
    let mut third = b.connect();
    assert_eq!(b.control.conns.len(), 2);
    assert!(b.control.waiting_for_descriptor());
    third
        .write_all(b"{\"cmd\":\"ping\"}\n")
        .expect("queued in the backlog");
    drop(first);
    // The loop learns of the hang-up through an event; here directly.
    let gone = *b.control.conns.keys().next().expect("first");
    b.control.hang_up(gone, b.poll.registry());
    b.control.accept_again(b.poll.registry(), true);
    assert_eq!(b.control.conns.len(), 2);
    while b.control.has_work() {
        b.serve("{\"ok\":true}\n");
    }
    let mut r = std::io::BufReader::new(third);
    let mut line = String::new();
    r.read_line(&mut line).expect("served");
    assert_eq!(line, "{\"ok\":true}\n");
}

#[test]
fn shedding_closes_an_idle_client_before_a_watcher() {
    let mut b = Bench::new(8);
    let mut watcher = b.connect();
    watcher.write_all(b"{\"cmd\":\"watch\"}\n").expect("watch");
    let _idle = b.connect();
    while b.control.has_work() {
        b.serve("{\"ok\":true}\n");
    }
    let (kind, got) = b.control.shed_one(b.poll.registry()).expect("one");
    assert_eq!(kind, "an idle client");
    assert!(matches!(got.as_slice(), [Incoming::Closed(1)]));
    let (kind, _) = b.control.shed_one(b.poll.registry()).expect("another");
    assert_eq!(kind, "a watcher");
    assert!(b.control.shed_one(b.poll.registry()).is_none());
}

#[test]
fn a_socket_someone_listens_on_is_not_replaced() {
    let b = Bench::new(1);
    let err = bind(b.control.path()).expect_err("listening");
    assert!(
        err.to_string().contains("another process is listening on"),
        "{err}"
    );
    let stale = b.dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    assert!(bind(&stale).is_ok(), "a refused connection means stale");
}
