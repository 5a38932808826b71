//! Poll tokens: which source a readiness event belongs to.
//!
//! Owns: the one layout of `mio::Token` values: the kind of source in the low three bits, its
//! number above them (the signal pipe and the listener, a connection's id, a pidfd's or a
//! notification pipe's pid, an output pipe's number, a service cgroup's number). Pids are at
//! most 2^22 on Linux and connection ids, pipe and cgroup numbers are allocated from 0, so every
//! value fits a 32-bit `usize` as well as a 64-bit one.
//! Must never: let two live sources share a token.

use mio::Token;

use crate::core::io::ConnId;
use crate::core::proctree::Pid;

const KIND_BITS: u32 = 3;
const FIXED: usize = 0;
const CONN: usize = 1;
const PIDFD: usize = 2;
const NOTIFY: usize = 3;
/// Services' output: reapd's stdout and stderr (numbers 0 and 1) and the pipes (2 up).
const OUTPUT: usize = 4;
const CGROUP: usize = 5;

/// The signal self-pipe.
pub const SIGNALS: Token = Token(FIXED);
/// The control socket's listener.
pub const LISTENER: Token = Token((1 << KIND_BITS) | FIXED);
/// The precise wake-up timer.
pub const TIMER: Token = Token((2 << KIND_BITS) | FIXED);

/// What a token stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The signal self-pipe.
    Signals,
    /// The listener.
    Listener,
    /// The precise wake-up timer.
    Timer,
    /// A control connection.
    Conn(ConnId),
    /// A process's pidfd.
    Pidfd(Pid),
    /// A service's output pipe, by its number.
    Pipe(u64),
    /// reapd's stdout (0) or stderr (1), waited on while full.
    Sink(usize),
    /// The notification pipe of a service's main process, by its pid.
    Notify(Pid),
    /// A service cgroup's `cgroup.events`, by its number in `sys::cgroup`.
    Cgroup(usize),
    /// Nothing reapd registered (a stale event).
    Unknown,
}

/// The token of a connection; `None` once ids no longer fit (after billions of connections on a
/// 32-bit machine), when the connection is refused.
pub fn conn(id: ConnId) -> Option<Token> {
    let id = usize::try_from(id).ok()?;
    id.checked_mul(1 << KIND_BITS).map(|v| Token(v | CONN))
}

/// The token of a pidfd.
pub fn pidfd(pid: Pid) -> Token {
    Token((usize::try_from(pid).unwrap_or(0) << KIND_BITS) | PIDFD)
}

/// The token of an output pipe; pipe numbers are allocated from 0 and stay far below 2^28.
pub fn pipe(id: u64) -> Token {
    let value = usize::try_from(id)
        .unwrap_or(usize::MAX >> KIND_BITS)
        .saturating_add(2);
    Token((value << KIND_BITS) | OUTPUT)
}

/// The token of reapd's stdout (0) or stderr (1).
pub fn sink(which: usize) -> Token {
    Token((which << KIND_BITS) | OUTPUT)
}

/// The token of a notification pipe.
pub fn notify(pid: Pid) -> Token {
    Token((usize::try_from(pid).unwrap_or(0) << KIND_BITS) | NOTIFY)
}

/// The token of a service cgroup's `cgroup.events`.
pub fn cgroup(n: usize) -> Token {
    Token((n << KIND_BITS) | CGROUP)
}

/// What a token stands for.
pub fn source(t: Token) -> Source {
    let value = t.0 >> KIND_BITS;
    match t.0 & ((1 << KIND_BITS) - 1) {
        FIXED if t == SIGNALS => Source::Signals,
        FIXED if t == LISTENER => Source::Listener,
        FIXED if t == TIMER => Source::Timer,
        CONN => Source::Conn(value as ConnId),
        PIDFD => Pid::try_from(value).map_or(Source::Unknown, Source::Pidfd),
        OUTPUT if value < 2 => Source::Sink(value),
        OUTPUT => Source::Pipe((value - 2) as u64),
        NOTIFY => Pid::try_from(value).map_or(Source::Unknown, Source::Notify),
        CGROUP => Source::Cgroup(value),
        _ => Source::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_none_collide() {
        assert_eq!(source(SIGNALS), Source::Signals);
        assert_eq!(source(LISTENER), Source::Listener);
        assert_eq!(source(TIMER), Source::Timer);
        for id in [0, 1, 7, 1 << 20] {
            assert_eq!(conn(id).map(source), Some(Source::Conn(id)));
        }
        for pid in [1, 2, 4_194_304] {
            assert_eq!(source(pidfd(pid)), Source::Pidfd(pid));
            assert_eq!(source(notify(pid)), Source::Notify(pid));
            assert_ne!(notify(pid), pidfd(pid));
            assert_ne!(Some(pidfd(pid)), conn(pid as ConnId));
        }
        assert_eq!(source(sink(1)), Source::Sink(1));
        assert_eq!(source(pipe(0)), Source::Pipe(0));
        assert_eq!(source(pipe(77)), Source::Pipe(77));
        assert_ne!(pipe(0), sink(1));
        assert_eq!(source(cgroup(5)), Source::Cgroup(5));
        assert_eq!(source(Token(2)), Source::Pidfd(0));
    }
}
