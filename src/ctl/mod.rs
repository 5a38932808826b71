//! `reapd ctl`: the friendly client for the control socket.
//!
//! Owns: connecting, sending one request, reading the reply into its type
//! (`wire::replies`) and each watched line into a `wire::events::Event`, and printing them for
//! people (`render`, `progress`) or unchanged for scripts (`--json`); and its exit status.
//! Must never: hang, or drop a line it cannot read. Every wait for the daemon is bounded, except
//! `watch`, which ends when the daemon closes the stream after `done`; a reply or event from a
//! newer reapd that does not read as a known type is printed as it came.

#![forbid(unsafe_code)]

pub mod progress;
pub mod render;

use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::ctl::progress::Progress;
use crate::ctl::render::Style;
use crate::wire::cli::CtlArgs;
use crate::wire::commands::Cmd;
use crate::wire::events::Event;
use crate::wire::exit::ExitCode;
use crate::wire::loglines::FollowedLine;
use crate::wire::replies::{ErrorReply, Reply};

/// Longest wait for a reply. The daemon bounds every stop by 30 s, so this only fires when it is
/// wedged or the socket belongs to something else.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one ctl command against `socket`.
pub fn run(args: &CtlArgs, socket: &Path) -> ExitCode {
    // `shutdown --wait` watches first, so not one event of the shutdown is missed.
    let mut watcher = None;
    if args.wait {
        match request(socket, r#"{"cmd":"watch"}"#, None) {
            Ok((reader, _)) => watcher = Some(reader),
            Err(message) => {
                eprintln!("reapd ctl: {message}");
                return ExitCode::Unreachable;
            }
        }
    }
    // `logs -f` streams like `watch`, its lines in their own shape.
    let logs = args.cmd == Cmd::Logs
        && serde_json::from_str::<Value>(&args.request)
            .is_ok_and(|r| r.get("follow") == Some(&Value::Bool(true)));
    let watch = args.cmd == Cmd::Watch || logs;
    let limit = match args.cmd {
        _ if watch => None,
        Cmd::Wait => args.timeout_ms.map(Duration::from_millis),
        _ => Some(REPLY_TIMEOUT),
    };
    let (mut reader, line) = match request(socket, &args.request, limit) {
        Ok(r) => r,
        Err(message) if args.cmd == Cmd::Wait && message.starts_with(TIMED_OUT) => {
            eprintln!(
                "reapd ctl: not every service was ready within {} ms (reapd ctl ready names them)",
                args.timeout_ms.unwrap_or(0)
            );
            return ExitCode::ErrorReply;
        }
        Err(message) => {
            eprintln!("reapd ctl: {message}");
            return ExitCode::Unreachable;
        }
    };
    let style = Style::new(io::stdout().is_terminal() && !no_color());
    let Some(answer) = read_reply(&line) else {
        eprintln!(
            "reapd ctl: {} answered something that is not JSON: {line}",
            socket.display()
        );
        return ExitCode::ErrorReply;
    };
    // Whoever reads our output may stop early (`reapd ctl watch | head`): that ends us quietly.
    let shown = match (&answer, args.json) {
        (Answer::Ok(Reply::Ready { ready: false, .. }), false) if args.cmd == Cmd::Wait => Ok(()),
        (_, true) | (Answer::Unknown, false) => emit(&format!("{line}\n")),
        (Answer::Ok(reply), false) => emit(&render::reply(reply, &style)),
        (Answer::Error(_) | Answer::UnknownError(_), false) => Ok(()),
    };
    match answer {
        Answer::Error(err) => {
            eprint!("{}", render::error(&err));
            return ExitCode::ErrorReply;
        }
        Answer::UnknownError(v) => {
            eprintln!(
                "reapd ctl: {}",
                v.get("error").and_then(Value::as_str).unwrap_or(&line)
            );
            return ExitCode::ErrorReply;
        }
        // A probe: "not ready" is a failure; a wait that cannot end says why on stderr.
        Answer::Ok(Reply::Ready {
            ready: false,
            not_ready,
        }) => {
            if args.cmd == Cmd::Wait {
                eprintln!(
                    "reapd ctl: not ready, and none of it is on its way any more: {} (see reapd ctl list)",
                    not_ready.join(", ")
                );
            }
            return ExitCode::ErrorReply;
        }
        Answer::Ok(_) | Answer::Unknown => {}
    }
    if let Some(mut w) = watcher {
        return match follow(&mut w, args.json, false, &style) {
            Followed::Done { clean: true } => ExitCode::Clean,
            Followed::Done { clean: false } => ExitCode::NotClean,
            Followed::Ended => {
                eprintln!("reapd ctl: the stream ended before reapd said it was done");
                ExitCode::Unreachable
            }
            Followed::ReaderLeft => ExitCode::Success,
            Followed::Broken => ExitCode::Unreachable,
        };
    }
    if shown.is_err() || !watch {
        return ExitCode::Success;
    }
    match follow(&mut reader, args.json, logs, &style) {
        Followed::Broken => ExitCode::Unreachable,
        _ => ExitCode::Success,
    }
}

/// How following a watch stream ended.
#[derive(Debug, PartialEq, Eq)]
enum Followed {
    /// reapd said `done`, then closed the stream.
    Done {
        /// Its verdict.
        clean: bool,
    },
    /// The stream ended without `done`.
    Ended,
    /// Whoever reads our output went away.
    ReaderLeft,
    /// The stream broke.
    Broken,
}

/// The start of the error of a wait that timed out.
const TIMED_OUT: &str = "timed out";

/// Connects, sends the request line and reads the reply line.
fn request(
    socket: &Path,
    request: &str,
    limit: Option<Duration>,
) -> Result<(BufReader<UnixStream>, String), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to {}: {e}\n  is reapd running with this socket? choose another with \
             --socket or REAPD_SOCKET",
            socket.display()
        )
    })?;
    // `watch` waits as long as reapd runs (its reply is the first line all the same), `wait`
    // as long as asked.
    stream
        .set_read_timeout(limit)
        .and_then(|()| stream.write_all(format!("{request}\n").as_bytes()))
        .map_err(|e| format!("cannot send to {}: {e}", socket.display()))?;
    let mut reader = BufReader::new(stream);
    match read_line(&mut reader) {
        Ok(Some(line)) => Ok((reader, line)),
        Ok(None) => Err(format!(
            "{} closed the connection without replying (is it shutting down?)",
            socket.display()
        )),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!("{TIMED_OUT}: no reply from {}", socket.display()))
        }
        Err(e) => Err(format!("no reply from {}: {e}", socket.display())),
    }
}

/// A reply line, read.
#[derive(Debug)]
enum Answer {
    /// `{"ok": true, ...}` as a known reply.
    Ok(Reply),
    /// `{"ok": true, ...}` of a shape this ctl does not know (a newer reapd).
    Unknown,
    /// `{"ok": false, ...}`.
    Error(ErrorReply),
    /// `{"ok": false, ...}` with a code this ctl does not know.
    UnknownError(Value),
}

/// A reply line read, or `None` when it is not JSON at all.
fn read_reply(line: &str) -> Option<Answer> {
    let v: Value = serde_json::from_str(line).ok()?;
    Some(if v.get("ok") == Some(&Value::Bool(true)) {
        Reply::deserialize(&v).map_or(Answer::Unknown, Answer::Ok)
    } else {
        ErrorReply::deserialize(&v).map_or(Answer::UnknownError(v), Answer::Error)
    })
}

/// An event line: the event and its timestamp, or `None` for a line this ctl cannot read.
fn read_event(line: &str) -> Option<(Event, u64)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let ts_ms = v.get("ts_ms").and_then(Value::as_u64).unwrap_or(0);
    Event::deserialize(&v).ok().map(|ev| (ev, ts_ms))
}

/// Prints watched events, or followed output lines, until the daemon closes the stream.
fn follow(reader: &mut impl BufRead, json: bool, logs: bool, style: &Style) -> Followed {
    let mut progress = Progress::default();
    let mut verdict = None;
    loop {
        let line = match read_line(reader) {
            Ok(Some(line)) => line,
            Ok(None) => {
                return verdict.map_or(Followed::Ended, |clean| Followed::Done { clean });
            }
            Err(e) => {
                eprintln!("reapd ctl: watch ended: {e}");
                return Followed::Broken;
            }
        };
        if let Some((Event::Done { clean, .. }, _)) = read_event(&line) {
            verdict = Some(clean);
        }
        let text = if json {
            format!("{line}\n")
        } else if logs {
            match serde_json::from_str::<FollowedLine>(&line) {
                Ok(f) => render::log_line(&f.log, &f.line, style),
                Err(_) => format!("{line}\n"),
            }
        } else {
            show_event(&line, &mut progress, style)
        };
        if emit(&text).is_err() {
            return Followed::ReaderLeft;
        }
    }
}

/// One watched line for people: the event, and the progress line after it when it moved the
/// shutdown.
fn show_event(line: &str, progress: &mut Progress, style: &Style) -> String {
    let Some((ev, ts_ms)) = read_event(line) else {
        return render::raw_event(line);
    };
    let shown = progress.observe(&ev, ts_ms, style);
    let mut text = render::event(&ev, ts_ms, shown.left_ms, style);
    if let Some(p) = shown.line {
        text.push_str(&p);
        text.push('\n');
    }
    text
}

/// `NO_COLOR` set and not empty (no-color.org).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Writes to stdout and flushes; fails once the reader is gone.
fn emit(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = String::new();
    match r.read_line(&mut line)? {
        0 => Ok(None),
        _ => Ok(Some(line.trim_end_matches(['\n', '\r']).to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::events::event_line;
    use crate::wire::events::tests::one_of_each;
    use crate::wire::replies::{ErrorCode, error_line, ok_line};

    #[test]
    fn every_event_reads_back_from_its_line_and_is_shown() {
        let mut p = Progress::default();
        for ev in one_of_each() {
            let line = event_line(&ev, 3_723_045);
            let line = line.trim_end();
            assert_eq!(read_event(line), Some((ev.clone(), 3_723_045)), "{line}");
            let shown = show_event(line, &mut p, &Style::plain());
            assert!(shown.starts_with("01:02:03.045 "), "{shown}");
        }
    }

    #[test]
    fn a_line_from_a_newer_reapd_is_printed_as_it_came() {
        let mut p = Progress::default();
        for line in [
            r#"{"event":"teleported","service":"web","ts_ms":5}"#,
            r#"{"event":"spawned","service":"web","ts_ms":5}"#,
            "not json",
        ] {
            assert_eq!(read_event(line), None);
            assert_eq!(
                show_event(line, &mut p, &Style::plain()),
                format!("{line}\n")
            );
        }
        // A field added to a known event is no reason not to show it.
        let extra = r#"{"event":"spawned","service":"web","pid":4,"ts_ms":0,"cgroup":"x"}"#;
        assert_eq!(
            show_event(extra, &mut p, &Style::plain()),
            "00:00:00.000 web: started, pid 4\n"
        );
    }

    #[test]
    fn replies_read_as_their_types() {
        let pong = ok_line(None, &Reply::Pong { pong: true });
        assert!(matches!(
            read_reply(pong.trim_end()),
            Some(Answer::Ok(Reply::Pong { pong: true }))
        ));
        let err = error_line(None, &ErrorReply::new(ErrorCode::NotRunning, "web is down"));
        assert!(matches!(
            read_reply(err.trim_end()),
            Some(Answer::Error(ErrorReply {
                code: ErrorCode::NotRunning,
                ..
            }))
        ));
        assert!(matches!(
            read_reply(r#"{"ok":true,"teleported":1}"#),
            Some(Answer::Unknown)
        ));
        assert!(matches!(
            read_reply(r#"{"ok":false,"code":"new_code","error":"x"}"#),
            Some(Answer::UnknownError(_))
        ));
        assert!(read_reply("<html>").is_none());
    }
}
