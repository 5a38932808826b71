//! What `reapd ctl` prints for people: replies and events, typed, with colour on a terminal.
//!
//! Owns: [`Style`] (colour or not), the rendering of every [`Reply`] (the `list` table, the
//! `status` summary, one line for the rest), of an [`ErrorReply`], and of a watched [`Event`]:
//! the narrative's lines (`wire::narrative`, the daemon's log lines too) with ctl's timestamp,
//! colour and the budget left.
//! Must never: render a reply or an event by guessing at its fields: each is matched whole, so a
//! new variant does not compile until it is shown here.

use std::time::{Duration, UNIX_EPOCH};

use crate::sys::logging::clock;
use crate::wire::events::Event;
use crate::wire::loglines::{LogLine, Stream};
use crate::wire::narrative::{self, Level};
use crate::wire::replies::{ErrorReply, Reply, ServiceRow, StatusReply, Usage};
use crate::wire::text::duration_ms;

/// Terminal colours: only on a terminal, never with `NO_COLOR` (decided in `ctl::run`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    color: bool,
}

/// The colours ctl uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    /// Running, clean, done well.
    Green,
    /// Waiting, stopping, warned.
    Yellow,
    /// Killed, failed, not clean.
    Red,
    /// Details.
    Dim,
}

impl Style {
    /// Colour when `color` is true.
    pub fn new(color: bool) -> Style {
        Style { color }
    }

    /// No colours at all.
    pub fn plain() -> Style {
        Style { color: false }
    }

    /// `text` in `colour`, when colours are on.
    pub fn paint(&self, colour: Option<Colour>, text: &str) -> String {
        let code = match colour {
            Some(Colour::Green) => "32",
            Some(Colour::Yellow) => "33",
            Some(Colour::Red) => "31",
            Some(Colour::Dim) => "2",
            None => return text.to_string(),
        };
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A service's or the daemon's state, padded to `width`, in its colour.
    fn state(&self, state: &str, width: usize) -> String {
        self.paint(state_colour(state), &format!("{state:<width$}"))
    }
}

/// The colour of a service's or the daemon's state.
fn state_colour(state: &str) -> Option<Colour> {
    match state {
        "running" | "cleaned_up" => Some(Colour::Green),
        "backoff" | "stopping" | "draining" => Some(Colour::Yellow),
        "exited" | "killing" => Some(Colour::Red),
        _ => None,
    }
}

/// A successful reply for people, newline included.
pub fn reply(reply: &Reply, style: &Style) -> String {
    match reply {
        Reply::Pong { .. } => "pong\n".into(),
        Reply::Status(s) => status(s, style),
        Reply::List { services } => list_table(services, style),
        Reply::Service {
            name,
            state,
            pid,
            how,
            elapsed_ms,
        } => {
            let detail = match (how, elapsed_ms, pid) {
                (Some(how), Some(ms), _) => format!(" ({how} after {})", duration_ms(*ms)),
                (Some(how), None, _) => format!(" ({how})"),
                (None, _, Some(pid)) => format!(" (pid {pid})"),
                (None, _, None) => String::new(),
            };
            format!("{name}: {}{detail}\n", style.state(state, 0))
        }
        Reply::SignalSent { name, pid, signal } => format!("{name}: sent {signal} to pid {pid}\n"),
        Reply::Reloaded {
            added,
            removed,
            changed,
        } => format!(
            "reloaded: added [{}], removed [{}], changed [{}]\n",
            added.join(", "),
            removed.join(", "),
            changed.join(", ")
        ),
        Reply::Watching { state, .. } => format!("watching reapd ({state}); events follow\n"),
        Reply::ShuttingDown { state } => format!("shutting down ({})\n", style.state(state, 0)),
        Reply::Ready { ready: true, .. } => "ready\n".into(),
        Reply::Ready { not_ready, .. } => format!("not ready: {}\n", not_ready.join(", ")),
        Reply::Logs {
            logs,
            captured,
            lines,
        } => {
            if !captured && lines.is_empty() {
                return format!(
                    "{logs}: its output is not read by reapd (\"log\": \"inherit\"); set \"log\": \
                     \"prefix\" to keep its last lines\n"
                );
            }
            lines.iter().map(|l| log_line(logs, l, style)).collect()
        }
    }
}

/// A service's output line for people: `12:00:01.234 web | text`, `+` for the rest of a cut
/// line, stderr's in red.
pub fn log_line(service: &str, l: &LogLine, style: &Style) -> String {
    let when = clock(UNIX_EPOCH + Duration::from_millis(l.ts_ms));
    let sep = if l.continued { '+' } else { '|' };
    let colour = match l.stream {
        Stream::Stdout => None,
        Stream::Stderr => Some(Colour::Red),
    };
    format!("{when} {service} {sep} {}\n", style.paint(colour, &l.line))
}

/// An error reply for people (stderr), newline included.
pub fn error(err: &ErrorReply) -> String {
    let mut out = format!("reapd ctl: {}: {}\n", err.code.as_str(), err.error);
    for e in &err.errors {
        out.push_str(&format!("  {e}\n"));
    }
    out
}

/// The `ctl status` summary.
pub fn status(s: &StatusReply, style: &Style) -> String {
    let by_state: Vec<String> = s
        .services
        .by_state
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    let containment = if s.containment.is_empty() {
        String::new()
    } else {
        format!("; {}", s.containment)
    };
    let used: String = s
        .usage
        .iter()
        .map(|(name, u)| format!("  {name}: {}\n", usage(u)))
        .collect();
    format!(
        "reapd {} (pid {}, {} mode): {} for {}; {} service{}{}{containment}\n{used}",
        s.version,
        s.pid,
        s.mode,
        style.state(&s.state, 0),
        duration_ms(rough(s.uptime_ms)),
        s.services.total,
        if s.services.total == 1 { "" } else { "s" },
        if by_state.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_state.join(", "))
        }
    )
}

/// The `ctl list` table.
pub fn list_table(services: &[ServiceRow], style: &Style) -> String {
    let head = ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"];
    let rows: Vec<[String; 6]> = services
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.state.clone(),
                s.pid.map_or("-".into(), |p| p.to_string()),
                s.uptime_ms.map_or("-".into(), |ms| duration_ms(rough(ms))),
                s.restarts.to_string(),
                s.last_exit.map_or("-".into(), |e| e.to_string()),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let [w0, w1, w2, w3, w4, w5] = width;
    // A last column only where cgroups were read.
    let usages: Vec<String> = services
        .iter()
        .map(|s| s.usage.as_ref().map(usage).unwrap_or_default())
        .collect();
    let with_usage = usages.iter().any(|u| !u.is_empty());
    // The state cell comes padded, then coloured: escapes must not count towards the width.
    let line = |[name, state, pid, uptime, restarts, exit]: [&str; 6], used: &str| {
        let l = if with_usage {
            format!(
                "{name:<w0$}  {state}  {pid:>w2$}  {uptime:>w3$}  {restarts:>w4$}  {exit:<w5$}  {used}"
            )
        } else {
            format!("{name:<w0$}  {state}  {pid:>w2$}  {uptime:>w3$}  {restarts:>w4$}  {exit}")
        };
        format!("{}\n", l.trim_end())
    };
    let [h0, h1, h2, h3, h4, h5] = head;
    let mut out = line([h0, &format!("{h1:<w1$}"), h2, h3, h4, h5], "CGROUP USAGE");
    for ([name, state, pid, uptime, restarts, exit], used) in rows.iter().zip(&usages) {
        out.push_str(&line(
            [name, &style.state(state, w1), pid, uptime, restarts, exit],
            used,
        ));
    }
    out
}

/// What a cgroup used, in a few words: `memory 8.0 MiB, cpu 1.2 s, 3 pids` (what exists).
pub fn usage(u: &Usage) -> String {
    let mut parts = Vec::new();
    if let Some(b) = u.memory_bytes {
        parts.push(format!("memory {:.1} MiB", b as f64 / (1024.0 * 1024.0)));
    }
    if let Some(us) = u.cpu_usec {
        parts.push(format!("cpu {}", duration_ms(us / 1000)));
    }
    if let Some(p) = u.pids {
        parts.push(format!("{p} pids"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// The lines a watched event is shown in: the narrative's, each after the time of the event,
/// the first followed by the budget left (`left_ms`) while a shutdown runs.
pub fn event(ev: &Event, ts_ms: u64, left_ms: Option<u64>, style: &Style) -> String {
    let when = clock(UNIX_EPOCH + Duration::from_millis(ts_ms));
    let accent = accent(ev);
    let mut out = String::new();
    for (i, (level, text)) in narrative::lines(ev).into_iter().enumerate() {
        let colour = match level {
            Level::Error => Some(Colour::Red),
            Level::Warn => Some(Colour::Yellow),
            Level::Info => accent,
            Level::Debug => Some(Colour::Dim),
        };
        out.push_str(&format!("{when} {}", style.paint(colour, &text)));
        if let (0, Some(left)) = (i, left_ms) {
            out.push_str(&format!("  [{} left]", duration_ms(rough(left))));
        }
        out.push('\n');
    }
    out
}

/// A line ctl could not read as an event (from a newer reapd): shown as it came.
pub fn raw_event(line: &str) -> String {
    format!("{line}\n")
}

/// The colour of an event's ordinary (info) lines: what the reader's eye should catch.
fn accent(ev: &Event) -> Option<Colour> {
    match ev {
        Event::State { state, .. } => state_colour(state),
        Event::Done { clean: true, .. } | Event::Recovered { .. } => Some(Colour::Green),
        Event::Done { clean: false, .. } | Event::Killed { .. } => Some(Colour::Red),
        Event::Stopping { .. } | Event::AlreadyStopping { .. } => Some(Colour::Yellow),
        Event::Unheeded { .. }
        | Event::Forwarded { .. }
        | Event::NoServices
        | Event::Spawned { .. }
        | Event::SpawnFailed { .. }
        | Event::Exited { .. }
        | Event::Restarting { .. }
        | Event::KeptDown { .. }
        | Event::Waiting { .. }
        | Event::Ready { .. }
        | Event::NotReady { .. }
        | Event::Completed { .. }
        | Event::Failed { .. }
        | Event::Health { .. }
        | Event::Signalled { .. }
        | Event::Stopped { .. }
        | Event::Removed { .. }
        | Event::SignalSent { .. }
        | Event::ShutdownPlan { .. }
        | Event::Sweep { .. }
        | Event::CleanupStarted { .. }
        | Event::CleanupOverran { .. }
        | Event::Cleanup { .. }
        | Event::Reloading { .. }
        | Event::Reloaded { .. }
        | Event::ReloadRejected { .. }
        | Event::ConfigWarning { .. }
        | Event::Recovering { .. }
        | Event::LeftByPredecessor { .. } => None,
    }
}

/// A figure that changes while one reads it (an uptime, a countdown, a stop under way), for
/// [`duration_ms`]: from a second on, down to a tenth of a second, since the milliseconds are
/// noise; below, as it is.
pub fn rough(ms: u64) -> u64 {
    if ms < 1000 { ms } else { ms / 100 * 100 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::events::ExitStatus;
    use crate::wire::events::tests::one_of_each;
    use crate::wire::replies::{ErrorCode, ServiceCounts, ok_line};

    fn row(name: &str, state: &str, pid: Option<i32>) -> ServiceRow {
        ServiceRow {
            ready: false,
            why: None,
            health: None,
            last_check: None,
            name: name.into(),
            state: state.into(),
            pid,
            restarts: 0,
            last_exit: None,
            uptime_ms: pid.map(|_| 192_000),
            usage: None,
        }
    }

    #[test]
    fn list_is_an_aligned_table() {
        let mut flaky = row("web-frontend", "backoff", None);
        flaky.restarts = 3;
        flaky.last_exit = Some(ExitStatus::Code(1));
        let mut killed = row("x", "exited", None);
        killed.last_exit = Some(ExitStatus::Signal(9));
        let t = list_table(
            &[row("db", "running", Some(4242)), flaky, killed],
            &Style::plain(),
        );
        assert_eq!(
            t,
            "NAME          STATE     PID      UPTIME  RESTARTS  LAST EXIT\n\
             db            running  4242  3 min 12 s         0  -\n\
             web-frontend  backoff     -           -         3  exit 1\n\
             x             exited      -           -         0  killed by SIGKILL\n"
        );
        assert_eq!(
            list_table(&[], &Style::plain()),
            "NAME  STATE  PID  UPTIME  RESTARTS  LAST EXIT\n"
        );
    }

    #[test]
    fn every_reply_reads_back_from_its_line_and_is_told_in_one_line() {
        let service = |how: Option<&str>, pid| Reply::Service {
            name: "web".into(),
            state: if how.is_some() { "stopped" } else { "running" }.into(),
            pid,
            how: how.map(Into::into),
            elapsed_ms: how.map(|_| 1200),
        };
        let replies = [
            (Reply::Pong { pong: true }, "pong"),
            (
                Reply::Status(StatusReply {
                    state: "running".into(),
                    pid: 7,
                    version: "0.1.0".into(),
                    mode: "config".into(),
                    uptime_ms: 192_000,
                    services: ServiceCounts {
                        total: 5,
                        by_state: [("backoff".into(), 1), ("running".into(), 4)].into(),
                    },
                    containment: "/proc walk: no cgroup2 mount".into(),
                    cgroups: false,
                    usage: std::collections::BTreeMap::new(),
                }),
                "reapd 0.1.0 (pid 7, config mode): running for 3 min 12 s; 5 services (1 backoff, 4 running); /proc walk: no cgroup2 mount",
            ),
            (
                Reply::List {
                    services: vec![row("db", "running", Some(4))],
                },
                "NAME  STATE    PID      UPTIME  RESTARTS  LAST EXIT",
            ),
            (service(None, Some(42)), "web: running (pid 42)"),
            (
                service(Some("exited"), None),
                "web: stopped (exited after 1.2 s)",
            ),
            (
                Reply::SignalSent {
                    name: "web".into(),
                    pid: 42,
                    signal: "SIGHUP".into(),
                },
                "web: sent SIGHUP to pid 42",
            ),
            (
                Reply::Reloaded {
                    added: vec!["a".into(), "b".into()],
                    removed: vec![],
                    changed: vec!["c".into()],
                },
                "reloaded: added [a, b], removed [], changed [c]",
            ),
            (
                Reply::Watching {
                    watching: true,
                    state: "running".into(),
                },
                "watching reapd (running); events follow",
            ),
            (
                Reply::ShuttingDown {
                    state: "draining".into(),
                },
                "shutting down (draining)",
            ),
        ];
        for (r, first_line) in replies {
            let line = ok_line(None, &r);
            let back: Reply = serde_json::from_str(&line).expect(&line);
            assert_eq!(back, r, "{line}");
            let text = reply(&back, &Style::plain());
            assert_eq!(text.lines().next(), Some(first_line), "{text}");
        }
    }

    #[test]
    fn live_figures_are_rough_from_a_second_on() {
        assert_eq!(rough(7), 7);
        assert_eq!(rough(999), 999);
        assert_eq!(rough(3_093), 3_000);
        assert_eq!(rough(27_849), 27_800);
    }

    #[test]
    fn errors_name_their_code_and_every_config_error() {
        let mut e = ErrorReply::new(ErrorCode::ConfigError, "2 errors");
        e.errors = vec!["a: x".into(), "b: y".into()];
        assert_eq!(
            error(&e),
            "reapd ctl: config_error: 2 errors\n  a: x\n  b: y\n"
        );
    }

    #[test]
    fn every_event_is_shown_as_the_narrative_tells_it() {
        for ev in one_of_each() {
            let shown = event(&ev, 3_723_045, None, &Style::plain());
            let told = narrative::lines(&ev);
            assert_eq!(shown.lines().count(), told.len(), "{ev:?}");
            for (line, (_, text)) in shown.lines().zip(&told) {
                assert_eq!(line, format!("01:02:03.045 {text}"));
            }
        }
    }

    #[test]
    fn the_budget_left_follows_the_first_line_and_colour_only_when_asked() {
        let ev = Event::Signalled {
            service: Some("web".into()),
            signal: "SIGTERM".into(),
            pids: vec![12, 11],
        };
        assert_eq!(
            event(&ev, 0, Some(27_849), &Style::plain()),
            "00:00:00.000 web: sent SIGTERM to pids 12, 11  [27.8 s left]\n"
        );
        let done = Event::Done {
            clean: true,
            within_bound: true,
            elapsed_ms: 1200,
            bound_ms: 30_000,
            exit_code: 0,
            survivors: vec![],
            failures: vec![],
        };
        let plain = event(&done, 0, None, &Style::plain());
        assert_eq!(
            plain,
            "00:00:00.000 done: clean after 1.2 s (within the bound of 30 s), 0 survivors, exit status 0\n"
        );
        let coloured = event(&done, 0, None, &Style::new(true));
        assert!(coloured.contains("\x1b[32mdone: clean"), "{coloured}");
        assert!(!plain.contains('\x1b'));
    }
}
