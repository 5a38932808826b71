//! `reapd ctl`: the friendly client for the control socket.
//!
//! Owns: connecting, sending one request, and printing replies for people (a table for `list`,
//! one line per event for `watch`) or unchanged JSON lines for scripts (`--json`).
//! Must never: hang. Every wait for the daemon is bounded, except `watch`, which ends when the
//! daemon closes the stream after `done`.

#![forbid(unsafe_code)]
// Indexing a `serde_json::Value` by key or position never panics (a missing entry is `Null`).
#![allow(clippy::indexing_slicing)]

use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::sys::logging::clock;
use crate::wire::cli::CtlArgs;

/// Longest wait for a reply. The daemon bounds every stop by 30 s, so this only fires when it is
/// wedged or the socket belongs to something else.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Exit status when the daemon answered with an error.
pub const EXIT_ERROR_REPLY: i32 = 1;
/// Exit status when the daemon could not be reached.
pub const EXIT_UNREACHABLE: i32 = 3;

/// Runs one ctl command against `socket`; returns the exit status.
pub fn run(args: &CtlArgs, socket: &Path) -> i32 {
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "reapd ctl: cannot connect to {}: {e}\n  is reapd running with this socket? choose another with --socket or REAPD_SOCKET",
                socket.display()
            );
            return EXIT_UNREACHABLE;
        }
    };
    let watch = args.command == "watch";
    let sent = stream
        .set_read_timeout(if watch { None } else { Some(REPLY_TIMEOUT) })
        .and_then(|()| stream.write_all(format!("{}\n", args.request).as_bytes()));
    if let Err(e) = sent {
        eprintln!("reapd ctl: cannot send to {}: {e}", socket.display());
        return EXIT_UNREACHABLE;
    }
    let mut reader = BufReader::new(stream);
    let style = Style::detect();
    let reply = match read_line(&mut reader) {
        Ok(Some(line)) => line,
        Ok(None) => {
            eprintln!(
                "reapd ctl: {} closed the connection without replying (is it shutting down?)",
                socket.display()
            );
            return EXIT_UNREACHABLE;
        }
        Err(e) => {
            eprintln!("reapd ctl: no reply from {}: {e}", socket.display());
            return EXIT_UNREACHABLE;
        }
    };
    let Ok(v) = serde_json::from_str::<Value>(&reply) else {
        eprintln!(
            "reapd ctl: {} answered something that is not JSON: {reply}",
            socket.display()
        );
        return EXIT_ERROR_REPLY;
    };
    if v["ok"] != Value::Bool(true) {
        if args.json {
            let _ = emit(&format!("{reply}\n"));
        }
        eprintln!(
            "reapd ctl: {}: {}",
            v["code"].as_str().unwrap_or("error"),
            v["error"].as_str().unwrap_or(&reply)
        );
        if let Some(errs) = v["errors"].as_array() {
            for e in errs {
                eprintln!("  {}", e.as_str().unwrap_or_default());
            }
        }
        return EXIT_ERROR_REPLY;
    }
    let first = if args.json {
        format!("{reply}\n")
    } else {
        describe_reply(&args.command, &v, &style)
    };
    // Whoever reads our output may stop early (`reapd ctl watch | head`): that ends us quietly.
    if emit(&first).is_err() {
        return 0;
    }
    if watch {
        let mut progress = Progress::default();
        loop {
            match read_line(&mut reader) {
                Ok(Some(line)) => {
                    let mut text = String::new();
                    if args.json {
                        text = format!("{line}\n");
                    } else if let Ok(ev) = serde_json::from_str::<Value>(&line) {
                        text = format!("{}\n", progress.describe_event(&ev, &style));
                        if let Some(p) = progress.progress_line(&ev, &style) {
                            text.push_str(&format!("{p}\n"));
                        }
                    }
                    if emit(&text).is_err() {
                        return 0;
                    }
                }
                Ok(None) => return 0,
                Err(e) => {
                    eprintln!("reapd ctl: watch ended: {e}");
                    return EXIT_UNREACHABLE;
                }
            }
        }
    }
    0
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

/// Terminal colours: only on a terminal, never with `NO_COLOR`.
#[derive(Debug)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Decides from stdout and the environment.
    pub fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: io::stdout().is_terminal() && !no_color,
        }
    }

    /// No colours at all.
    pub fn plain() -> Style {
        Style { color: false }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn state(&self, state: &str, width: usize) -> String {
        let padded = format!("{state:<width$}");
        match state {
            "running" => self.paint("32", &padded),
            "backoff" | "stopping" | "draining" => self.paint("33", &padded),
            "exited" | "killing" => self.paint("31", &padded),
            _ => padded,
        }
    }
}

/// `850ms`, `12s`, `3m12s`, `2h05m`, `1d03h`.
pub fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86400, s / 3600 % 24),
    }
}

fn exit_text(v: &Value) -> String {
    if let Some(c) = v["code"].as_i64() {
        format!("exit {c}")
    } else if let Some(s) = v["signal"].as_str() {
        s.to_string()
    } else {
        "-".into()
    }
}

/// Formats a successful reply for people.
pub fn describe_reply(command: &str, v: &Value, style: &Style) -> String {
    let name = v["name"].as_str().unwrap_or("?");
    match command {
        "ping" => "pong\n".into(),
        "list" => list_table(
            v["services"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default(),
            style,
        ),
        "status" => {
            let by_state = v["services"]["by_state"].as_object().map(|m| {
                m.iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            format!(
                "reapd {} (pid {}, {} mode): {} for {}; {} service{}{}\n",
                v["version"].as_str().unwrap_or("?"),
                v["pid"],
                v["mode"].as_str().unwrap_or("?"),
                style.state(v["state"].as_str().unwrap_or("?"), 0),
                human_ms(v["uptime_ms"].as_u64().unwrap_or(0)),
                v["services"]["total"],
                if v["services"]["total"].as_u64() == Some(1) {
                    ""
                } else {
                    "s"
                },
                by_state
                    .filter(|s| !s.is_empty())
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            )
        }
        "start" | "restart" => format!(
            "{name}: {} (pid {})\n",
            v["state"].as_str().unwrap_or("?"),
            v["pid"]
        ),
        "stop" => format!(
            "{name}: stopped ({} after {})\n",
            v["how"].as_str().unwrap_or("?"),
            human_ms(v["elapsed_ms"].as_u64().unwrap_or(0))
        ),
        "signal" => format!(
            "{name}: sent {} to pid {}\n",
            v["signal"].as_str().unwrap_or("?"),
            v["pid"]
        ),
        "reload" => format!(
            "reloaded: added {}, removed {}, changed {}\n",
            v["added"], v["removed"], v["changed"]
        ),
        "shutdown" => format!("shutting down ({})\n", v["state"].as_str().unwrap_or("?")),
        "watch" => format!(
            "watching reapd ({}); events follow\n",
            v["state"].as_str().unwrap_or("?")
        ),
        _ => format!("{v}\n"),
    }
}

/// The `ctl list` table.
pub fn list_table(services: &[Value], style: &Style) -> String {
    let rows: Vec<[String; 6]> = services
        .iter()
        .map(|s| {
            [
                s["name"].as_str().unwrap_or("?").to_string(),
                s["state"].as_str().unwrap_or("?").to_string(),
                s["pid"].as_i64().map_or("-".into(), |p| p.to_string()),
                s["uptime_ms"].as_u64().map_or("-".into(), human_ms),
                s["restarts"].to_string(),
                exit_text(&s["last_exit"]),
            ]
        })
        .collect();
    let head = ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: [&str; 6], state: String| {
        format!(
            "{:<w0$}  {}  {:>w2$}  {:>w3$}  {:>w4$}  {}\n",
            cells[0],
            state,
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            w0 = width[0],
            w2 = width[2],
            w3 = width[3],
            w4 = width[4]
        )
    };
    out.push_str(line(head, format!("{:<w$}", head[1], w = width[1])).trim_end());
    out.push('\n');
    for r in &rows {
        let cells = [
            r[0].as_str(),
            r[1].as_str(),
            r[2].as_str(),
            r[3].as_str(),
            r[4].as_str(),
            r[5].as_str(),
        ];
        out.push_str(line(cells, style.state(&r[1], width[1])).trim_end());
        out.push('\n');
    }
    out
}

/// Turns events into lines. Once the shutdown plan is known it also keeps each service's stop
/// state, so that every shutdown event can be followed by a progress line: every service in stop
/// order with where it stands, and the time left of the budget.
#[derive(Debug, Default)]
pub struct Progress {
    budget_end_ms: Option<u64>,
    /// Services in stop order, with their state.
    services: Vec<(String, StopState)>,
    /// The last progress line printed (nothing changed: nothing printed).
    last: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StopState {
    Waiting,
    Stopping { since_ms: u64, timeout_ms: u64 },
    Stopped { how: String, elapsed_ms: u64 },
}

impl Progress {
    /// The progress line that follows a shutdown event, if the event moved anything.
    pub fn progress_line(&mut self, ev: &Value, style: &Style) -> Option<String> {
        let ts = ev["ts_ms"].as_u64().unwrap_or(0);
        let service = ev["service"].as_str().unwrap_or_default();
        let mut set = |state: StopState| {
            if let Some((_, st)) = self.services.iter_mut().find(|(n, _)| n == service) {
                *st = state;
            }
        };
        // State changes are recorded on every event, but a line is printed only when a service
        // finishes or reapd changes phase: one line per step, not one per signal.
        match ev["event"].as_str().unwrap_or_default() {
            "stopping" => {
                set(StopState::Stopping {
                    since_ms: ts,
                    timeout_ms: ev["timeout_ms"].as_u64().unwrap_or(0),
                });
                return None;
            }
            "stopped" => set(StopState::Stopped {
                how: ev["how"].as_str().unwrap_or("?").to_string(),
                elapsed_ms: ev["elapsed_ms"].as_u64().unwrap_or(0),
            }),
            "killed" | "state" => {}
            _ => return None,
        }
        let end = self.budget_end_ms?;
        let cells: Vec<String> = self
            .services
            .iter()
            .map(|(name, st)| match st {
                StopState::Waiting => format!("{name} waiting"),
                StopState::Stopping {
                    since_ms,
                    timeout_ms,
                } => style.paint(
                    "33",
                    &format!(
                        "{name} stopping {}/{}",
                        human_ms(ts.saturating_sub(*since_ms)),
                        human_ms(*timeout_ms)
                    ),
                ),
                StopState::Stopped { how, elapsed_ms } if how == "killed" => style.paint(
                    "31",
                    &format!("{name} killed after {}", human_ms(*elapsed_ms)),
                ),
                StopState::Stopped { how, elapsed_ms } => {
                    style.paint("32", &format!("{name} {how} in {}", human_ms(*elapsed_ms)))
                }
            })
            .collect();
        let cells = cells.join(", ");
        if cells == self.last {
            return None;
        }
        self.last = cells.clone();
        Some(format!(
            "    progress: {cells} | {} left of the budget",
            human_ms(end.saturating_sub(ts))
        ))
    }

    /// One readable line for one event.
    pub fn describe_event(&mut self, ev: &Value, style: &Style) -> String {
        let ts = ev["ts_ms"].as_u64().unwrap_or(0);
        let when = clock(std::time::UNIX_EPOCH + Duration::from_millis(ts));
        let svc = ev["service"].as_str().unwrap_or("-");
        let pids = |v: &Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default()
        };
        let kind = ev["event"].as_str().unwrap_or("?");
        let text = match kind {
            "state" => format!(
                "reapd is {} ({})",
                style.state(ev["state"].as_str().unwrap_or("?"), 0),
                ev["reason"].as_str().unwrap_or("")
            ),
            "spawned" => format!("{svc}: started, pid {}", ev["pid"]),
            "spawn_failed" => format!(
                "{svc}: cannot start: {}",
                ev["error"].as_str().unwrap_or("")
            ),
            "exited" => {
                let after = ev["after_ms"]
                    .as_u64()
                    .map(|m| format!(" {} after the stop signal", human_ms(m)))
                    .unwrap_or_default();
                format!(
                    "{svc}: pid {} ended ({}){after}",
                    ev["pid"],
                    exit_text(&ev["status"])
                )
            }
            "restarting" => format!(
                "{svc}: restarting in {} (restart #{})",
                human_ms(ev["delay_ms"].as_u64().unwrap_or(0)),
                ev["restarts"]
            ),
            "stopping" => format!(
                "{svc}: stopping with {}, killed after {}",
                ev["signal"].as_str().unwrap_or("?"),
                human_ms(ev["timeout_ms"].as_u64().unwrap_or(0))
            ),
            "signalled" => format!(
                "{svc}: {} → {}",
                ev["signal"].as_str().unwrap_or("?"),
                pids(&ev["pids"])
            ),
            "killed" => format!(
                "{}: killed {} process(es): {}",
                ev["service"].as_str().unwrap_or("leftovers"),
                ev["count"],
                pids(&ev["pids"])
            ),
            "stopped" => format!(
                "{svc}: stopped ({}) in {}",
                ev["how"].as_str().unwrap_or("?"),
                human_ms(ev["elapsed_ms"].as_u64().unwrap_or(0))
            ),
            "shutdown_plan" => {
                self.budget_end_ms = Some(ts + ev["budget_ms"].as_u64().unwrap_or(0));
                self.services = ev["waves"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|w| w["services"].as_array().into_iter().flatten())
                    .filter_map(Value::as_str)
                    .map(|n| (n.to_string(), StopState::Waiting))
                    .collect();
                let waves: Vec<String> = ev["waves"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let names: Vec<&str> = w["services"]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        format!(
                            "wave {}: {} ({})",
                            i + 1,
                            names.join(", "),
                            human_ms(w["timeout_ms"].as_u64().unwrap_or(0))
                        )
                    })
                    .collect();
                format!(
                    "shutdown plan within {}: {}",
                    human_ms(ev["budget_ms"].as_u64().unwrap_or(0)),
                    if waves.is_empty() {
                        "nothing to stop".into()
                    } else {
                        waves.join("; ")
                    }
                )
            }
            "sweep" => format!(
                "sweep: pid {} ({}): {}",
                ev["pid"],
                ev["cmdline"].as_str().unwrap_or(""),
                ev["reason"].as_str().unwrap_or("")
            ),
            "cleanup" => format!(
                "cleanup {}: {} in {}",
                ev["cmd"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "))
                    .unwrap_or_default(),
                ev["result"].as_str().unwrap_or("?"),
                human_ms(ev["elapsed_ms"].as_u64().unwrap_or(0))
            ),
            "reloaded" => format!(
                "reloaded: added {}, removed {}, changed {}",
                ev["added"], ev["removed"], ev["changed"]
            ),
            "done" => {
                let survivors = ev["survivors"].as_array().map(Vec::len).unwrap_or(0);
                let verdict = if ev["clean"] == Value::Bool(true) {
                    style.paint("32", "clean")
                } else {
                    style.paint("31", "NOT clean")
                };
                format!(
                    "done: {verdict} in {}, {survivors} survivor(s), exit status {}",
                    human_ms(ev["elapsed_ms"].as_u64().unwrap_or(0)),
                    ev["exit_code"]
                )
            }
            _ => ev.to_string(),
        };
        let left = match (self.budget_end_ms, kind) {
            (Some(end), k) if k != "done" && k != "shutdown_plan" => {
                format!("  [{} left]", human_ms(end.saturating_sub(ts)))
            }
            _ => String::new(),
        };
        format!("{when} {text}{left}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn human_durations() {
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(12_400), "12s");
        assert_eq!(human_ms(192_000), "3m12s");
        assert_eq!(human_ms(7_500_000), "2h05m");
        assert_eq!(human_ms(97_200_000), "1d03h");
    }

    #[test]
    fn list_is_an_aligned_table() {
        let services = [
            json!({"name": "db", "state": "running", "pid": 4242, "restarts": 0, "last_exit": null, "uptime_ms": 192000}),
            json!({"name": "web-frontend", "state": "backoff", "pid": null, "restarts": 3, "last_exit": {"code": 1}, "uptime_ms": null}),
        ];
        let t = list_table(&services, &Style::plain());
        assert_eq!(
            t,
            "NAME          STATE     PID  UPTIME  RESTARTS  LAST EXIT\n\
             db            running  4242   3m12s         0  -\n\
             web-frontend  backoff     -       -         3  exit 1\n"
        );
    }

    #[test]
    fn events_read_as_sentences_with_budget_left() {
        let mut p = Progress::default();
        let s = Style::plain();
        let plan = json!({"event": "shutdown_plan", "budget_ms": 30000, "reserve_ms": 2500, "ts_ms": 1000,
            "waves": [{"services": ["web"], "requested_ms": 10000, "timeout_ms": 10000}]});
        assert!(
            p.describe_event(&plan, &s)
                .ends_with("shutdown plan within 30s: wave 1: web (10s)")
        );
        let sig = json!({"event": "signalled", "service": "web", "signal": "SIGTERM", "pids": [12, 11], "ts_ms": 3000});
        assert!(
            p.describe_event(&sig, &s)
                .ends_with("web: SIGTERM → 12 11  [28s left]")
        );
    }

    #[test]
    fn shutdown_progress_goes_service_by_service_with_the_budget_left() {
        let mut p = Progress::default();
        let s = Style::plain();
        let plan = json!({"event": "shutdown_plan", "budget_ms": 30000, "reserve_ms": 2500, "ts_ms": 1000,
            "waves": [{"services": ["web", "worker"], "requested_ms": 10000, "timeout_ms": 10000},
                      {"services": ["db"], "requested_ms": 20000, "timeout_ms": 17300}]});
        p.describe_event(&plan, &s);
        assert_eq!(
            p.progress_line(&plan, &s),
            None,
            "the plan line says it all"
        );
        let mut ev = |v: Value| {
            p.describe_event(&v, &s);
            p.progress_line(&v, &s)
        };
        ev(
            json!({"event": "stopping", "service": "web", "signal": "SIGTERM", "timeout_ms": 10000, "ts_ms": 1000}),
        );
        ev(
            json!({"event": "stopping", "service": "worker", "signal": "SIGTERM", "timeout_ms": 5000, "ts_ms": 1000}),
        );
        let line = ev(
            json!({"event": "stopped", "service": "web", "how": "exited", "elapsed_ms": 1200, "ts_ms": 2200}),
        );
        assert_eq!(
            line.as_deref(),
            Some(
                "    progress: web exited in 1s, worker stopping 1s/5s, db waiting | 28s left of the budget"
            )
        );
        let line = ev(
            json!({"event": "stopped", "service": "worker", "how": "killed", "elapsed_ms": 5000, "ts_ms": 6000}),
        );
        assert_eq!(
            line.as_deref(),
            Some(
                "    progress: web exited in 1s, worker killed after 5s, db waiting | 25s left of the budget"
            )
        );
        assert_eq!(
            ev(json!({"event": "spawned", "service": "x", "pid": 1, "ts_ms": 1})),
            None
        );
    }
}
