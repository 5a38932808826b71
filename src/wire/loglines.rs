//! Service output as lines: cutting a byte stream into bounded lines, and the bounded tail of
//! each service that `reapd ctl logs` reads.
//!
//! Owns: the line cap ([`MAX_LINE`]: a longer line is cut into pieces, each after the first
//! marked as a continuation), the tail's caps ([`TAIL_LINES`], [`TAIL_BYTES`]), and the shape of
//! a followed line on the control socket.
//! Must never: read a pipe, look at a clock or write anywhere; the edge feeds bytes and times in.

#![forbid(unsafe_code)]

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Longest piece of a line written or kept, in bytes: with the longest prefix (a 64-byte name,
/// a timestamp) a written line stays within 4096 bytes, which a pipe takes in one atomic write,
/// so reapd's output never has a line torn by another.
pub const MAX_LINE: usize = 3968;
/// Lines kept per service for `ctl logs`...
pub const TAIL_LINES: usize = 1000;
/// ...and bytes, whichever is reached first (the oldest lines go).
pub const TAIL_BYTES: usize = 256 * 1024;
/// Lines `ctl logs` shows when `-n` is not given.
pub const DEFAULT_LINES: usize = 20;

/// Which of a service's outputs a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Its standard output, written to reapd's.
    Stdout,
    /// Its standard error, written to reapd's.
    Stderr,
}

/// One line (or piece of a line too long to keep whole), newline excluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Its bytes, as the service wrote them.
    pub bytes: Vec<u8>,
    /// It continues the previous piece (that line was longer than [`MAX_LINE`]).
    pub continued: bool,
}

/// Cuts one stream into pieces: complete lines, and pieces of [`MAX_LINE`] bytes of a longer
/// one. Holds at most one partial line.
#[derive(Debug, Default)]
pub struct Splitter {
    partial: Vec<u8>,
    /// The next piece continues a cut line.
    continues: bool,
}

impl Splitter {
    /// Takes bytes read from the stream; hands complete pieces to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut impl FnMut(Piece)) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.partial.len();
            match bytes.iter().take(room + 1).position(|&b| b == b'\n') {
                Some(i) => {
                    let (line, rest) = bytes.split_at(i);
                    self.partial.extend_from_slice(line);
                    self.emit(out);
                    self.continues = false;
                    bytes = rest.get(1..).unwrap_or_default();
                }
                None if bytes.len() >= room => {
                    let (head, rest) = bytes.split_at(room);
                    self.partial.extend_from_slice(head);
                    self.emit(out);
                    self.continues = true;
                    bytes = rest;
                }
                None => {
                    self.partial.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
        }
    }

    /// The stream ended: a last line without its newline is handed out as it is.
    pub fn finish(&mut self, out: &mut impl FnMut(Piece)) {
        if !self.partial.is_empty() {
            self.emit(out);
        }
        self.continues = false;
    }

    fn emit(&mut self, out: &mut impl FnMut(Piece)) {
        let bytes = std::mem::take(&mut self.partial);
        // A line cut right before its newline ends with an empty piece: nothing to say.
        if bytes.is_empty() && self.continues {
            return;
        }
        out(Piece {
            bytes,
            continued: self.continues,
        });
    }
}

/// A line as kept in a tail and sent to `ctl logs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Which output.
    pub stream: Stream,
    /// The text (invalid UTF-8 replaced).
    pub line: String,
    /// When reapd read it, in ms since the Unix epoch.
    pub ts_ms: u64,
    /// It continues the previous line, which was cut at [`MAX_LINE`] bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continued: bool,
}

/// A followed line on the control socket (`ctl logs -f`): the line and its service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowedLine {
    /// The service.
    pub log: String,
    /// The line.
    #[serde(flatten)]
    pub line: LogLine,
}

/// The last lines of one service, bounded by count and bytes.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

impl Tail {
    /// Keeps a line, forgetting the oldest beyond the caps.
    pub fn push(&mut self, line: LogLine) {
        self.bytes += line.line.len();
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES || self.bytes > TAIL_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.line.len(),
                None => break,
            }
        }
    }

    /// The last `n` lines, oldest first.
    pub fn last(&self, n: usize) -> Vec<LogLine> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.iter().skip(skip).cloned().collect()
    }

    /// Lines kept.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Nothing kept.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], finish: bool) -> Vec<(String, bool)> {
        let mut s = Splitter::default();
        let mut got = Vec::new();
        let mut out =
            |p: Piece| got.push((String::from_utf8_lossy(&p.bytes).into_owned(), p.continued));
        for c in chunks {
            s.push(c, &mut out);
        }
        if finish {
            s.finish(&mut out);
        }
        got
    }

    #[test]
    fn lines_are_whole_across_reads_and_a_partial_last_line_comes_at_the_end() {
        assert_eq!(
            split(&[b"one\ntw", b"o\n\nthr", b"ee"], false),
            [
                ("one".into(), false),
                ("two".into(), false),
                (String::new(), false)
            ]
        );
        assert_eq!(
            split(&[b"a\nlast"], true).last(),
            Some(&("last".into(), false))
        );
        assert_eq!(split(&[b"a\n"], true).len(), 1);
    }

    #[test]
    fn a_long_line_is_cut_into_marked_pieces() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let mut input = long.clone();
        input.extend_from_slice(b"\nnext\n");
        let got = split(&[&input], true);
        let lens: Vec<(usize, bool)> = got.iter().map(|(s, c)| (s.len(), *c)).collect();
        assert_eq!(
            lens,
            [(MAX_LINE, false), (MAX_LINE, true), (10, true), (4, false)]
        );
        // Exactly the cap, then its newline: no empty continuation.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(split(&[&exact], true).len(), 1);
        // One byte at a time is the same.
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(split(&bytes, true), got);
    }

    #[test]
    fn the_tail_keeps_the_newest_within_its_caps() {
        let mut t = Tail::default();
        for i in 0..TAIL_LINES + 5 {
            t.push(LogLine {
                stream: Stream::Stdout,
                line: format!("{i}"),
                ts_ms: 0,
                continued: false,
            });
        }
        assert_eq!(t.len(), TAIL_LINES);
        let last = t.last(2);
        assert_eq!(last[0].line, format!("{}", TAIL_LINES + 3));
        assert_eq!(t.last(usize::MAX).len(), TAIL_LINES);
        let mut t = Tail::default();
        for _ in 0..200 {
            t.push(LogLine {
                stream: Stream::Stderr,
                line: "z".repeat(MAX_LINE),
                ts_ms: 0,
                continued: false,
            });
        }
        assert!(t.len() * MAX_LINE <= TAIL_BYTES && !t.is_empty());
    }
}
