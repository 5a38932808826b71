//! The narrative: every event told as the lines a person reads.
//!
//! Owns: the one rendering of each [`Event`] for people, with its log level. The daemon's log
//! lines are these (`sys::logging` adds time and pid), and so are `reapd ctl watch`'s (`ctl`
//! adds time, colour and the shutdown's progress), so the log and a watcher tell the same story
//! and can never say something the events do not; adding an event does not compile until it is
//! rendered here. Durations are written by `wire::text::duration`.
//! Must never: decide anything or add a fact the event does not carry.

use crate::wire::events::{Event, Unheeded};
use crate::wire::text::duration_ms;

/// How loud a line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something failed; the shutdown may not be clean.
    Error,
    /// Something unusual that reapd handled.
    Warn,
    /// The normal course of things.
    Info,
    /// Details for debugging.
    Debug,
}

/// `pid 5`, `pids 5, 6`, `pids 1, …, 12 and 30 more`.
pub fn pid_list(pids: &[i32]) -> String {
    let shown: Vec<String> = pids.iter().take(12).map(ToString::to_string).collect();
    let more = pids.len().saturating_sub(12);
    if more > 0 {
        format!("pids {} and {more} more", shown.join(", "))
    } else {
        format!(
            "pid{} {}",
            if pids.len() == 1 { "" } else { "s" },
            shown.join(", ")
        )
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "es" })
}

/// The lines an event is told in, in order.
pub fn lines(ev: &Event) -> Vec<(Level, String)> {
    use Level::{Debug, Error, Info, Warn};
    let one = |level: Level, text: String| vec![(level, text)];
    match ev {
        Event::State { state, reason } => one(Info, format!("{state}: {reason}")),
        Event::AlreadyStopping { trigger, state } => one(
            Info,
            format!("{trigger} received while {state}: shutdown already under way"),
        ),
        Event::Unheeded { signal, why } => match why {
            Unheeded::Harmless => one(
                Debug,
                format!("{signal} received (harmless; supervisors send it after SIGTERM)"),
            ),
            Unheeded::NoAction => one(
                Info,
                format!("{signal} received; reapd takes no action on it"),
            ),
            Unheeded::ShuttingDown => one(Info, format!("{signal} ignored: shutdown under way")),
        },
        Event::Forwarded {
            signal,
            pgid: Some(pgid),
            count,
        } => one(
            Info,
            format!(
                "forwarding {signal} to process group {pgid} ({})",
                plural(*count, "process")
            ),
        ),
        Event::Forwarded {
            signal, pgid: None, ..
        } => one(
            Debug,
            format!("no command running; not forwarding {signal}"),
        ),
        Event::NoServices => one(
            Warn,
            "no services configured; add some and send SIGHUP (or `reapd ctl reload`)".into(),
        ),
        Event::Spawned { service, pid } => one(Info, format!("{service}: started, pid {pid}")),
        Event::SpawnFailed { service, error } => {
            one(Error, format!("{service}: cannot start: {error}"))
        }
        Event::Exited {
            service,
            pid,
            status,
            after_ms: Some(_),
        } => one(
            Info,
            format!("{service}: main process {pid} ended ({status}) while stopping"),
        ),
        Event::Exited {
            service,
            pid,
            status,
            after_ms: None,
        } => one(
            Info,
            format!("{service}: main process {pid} exited ({status})"),
        ),
        Event::Restarting {
            service, delay_ms, ..
        } => one(
            Info,
            format!("{service}: restarting in {}", duration_ms(*delay_ms)),
        ),
        Event::Waiting { service, on } => one(
            Info,
            format!("{service}: waiting for {} to be ready", on.join(", ")),
        ),
        Event::Ready {
            service,
            after_ms,
            check,
        } => one(
            Info,
            format!(
                "{service}: ready after {} ({check})",
                duration_ms(*after_ms)
            ),
        ),
        Event::NotReady {
            service,
            why,
            after_ms,
        } => one(
            Warn,
            format!(
                "{service}: not ready after {} ({why}); a failed start",
                duration_ms(*after_ms)
            ),
        ),
        Event::Completed { service, after_ms } => one(
            Info,
            format!("{service}: done after {}", duration_ms(*after_ms)),
        ),
        Event::Failed {
            service,
            why,
            essential,
        } => one(
            Error,
            if *essential {
                format!("{service}: failed ({why}); it is essential: shutting down")
            } else {
                format!("{service}: failed ({why}); `reapd ctl start {service}` starts it again")
            },
        ),
        Event::Health {
            service,
            status,
            failures,
            detail,
        } => match status.as_str() {
            "healthy" => one(Info, format!("{service}: healthy")),
            "unhealthy" => one(
                Warn,
                format!(
                    "{service}: unhealthy after {failures} failed checks ({detail}); restarting"
                ),
            ),
            _ => one(
                Warn,
                format!("{service}: health check failed ({detail}), {failures} in a row"),
            ),
        },
        Event::KeptDown { service, restart } => one(
            Info,
            format!("{service}: restart policy {restart} keeps it down"),
        ),
        Event::Stopping {
            service,
            signal,
            timeout_ms,
            scope,
        } => one(
            Info,
            format!(
                "{service}: stopping: {signal} to {}, killed after {}",
                match scope.as_str() {
                    "main" => "its main process",
                    "main-first" => "its main process, then the rest of its tree deepest first",
                    _ => "its whole tree, deepest first",
                },
                duration_ms(*timeout_ms)
            ),
        ),
        Event::Signalled {
            service,
            signal,
            pids,
        } => one(
            Info,
            format!(
                "{}: sent {signal} to {}",
                service
                    .as_deref()
                    .unwrap_or("processes of no known service"),
                pid_list(pids)
            ),
        ),
        Event::Killed { service, pids, .. } => one(
            Warn,
            format!(
                "{}: froze and killed {}: {}",
                service
                    .as_deref()
                    .unwrap_or("processes of no known service"),
                plural(pids.len(), "process"),
                pid_list(pids)
            ),
        ),
        Event::Stopped {
            service,
            how,
            elapsed_ms,
            leftovers,
            cgroup_empty,
        } => one(
            Info,
            format!(
                "{service}:{} stopped ({how}) after {}{}",
                if *leftovers {
                    " what its main process left behind:"
                } else {
                    ""
                },
                duration_ms(*elapsed_ms),
                if *cgroup_empty {
                    "; its cgroup is empty"
                } else {
                    ""
                }
            ),
        ),
        Event::Removed { service } => one(Info, format!("{service}: removed")),
        Event::SignalSent {
            service,
            pid,
            signal,
        } => one(
            Info,
            format!("{service}: sent {signal} to pid {pid} on request"),
        ),
        Event::ShutdownPlan {
            budget_ms,
            reserve_ms,
            services,
        } => {
            let mut parts: Vec<String> = services
                .iter()
                .map(|s| {
                    let after = if s.after.is_empty() {
                        String::new()
                    } else {
                        format!(" after {}", s.after.join(", "))
                    };
                    let t = if s.share_ms < s.requested_ms {
                        format!(
                            "{} → {}",
                            duration_ms(s.requested_ms),
                            duration_ms(s.share_ms)
                        )
                    } else {
                        duration_ms(s.requested_ms)
                    };
                    format!("{}{after}: {t}", s.service)
                })
                .collect();
            if parts.is_empty() {
                parts.push("no services to stop".into());
            }
            parts.push(format!(
                "reserve {} of {}",
                duration_ms(*reserve_ms),
                duration_ms(*budget_ms)
            ));
            one(Info, format!("shutdown plan: {}", parts.join("; ")))
        }
        Event::Sweep {
            pid,
            cmdline,
            reason,
        } => one(Warn, format!("sweep: pid {pid} ({cmdline}): {reason}")),
        Event::CleanupStarted {
            index,
            cmd,
            limit_ms,
        } => one(
            Info,
            format!(
                "cleanup[{index}]: running {:?} (at most {})",
                cmd.join(" "),
                duration_ms(*limit_ms)
            ),
        ),
        Event::CleanupOverran { index } => one(
            Warn,
            format!("cleanup[{index}]: still running at its deadline; killing it"),
        ),
        Event::Cleanup {
            index,
            cmd,
            ok: true,
            result,
            elapsed_ms,
        } => one(
            Info,
            format!(
                "cleanup[{index}] {:?}: {result} after {}",
                cmd.join(" "),
                duration_ms(*elapsed_ms)
            ),
        ),
        Event::Cleanup {
            index,
            cmd,
            ok: false,
            result,
            elapsed_ms,
        } => one(
            Error,
            format!(
                "cleanup[{index}] {:?} failed: {result} after {}",
                cmd.join(" "),
                duration_ms(*elapsed_ms)
            ),
        ),
        Event::Reloading { by } => one(Info, format!("{by}: reloading the config")),
        Event::Reloaded {
            added,
            removed,
            changed,
        } => one(
            Info,
            format!(
                "reload: added [{}], removed [{}], changed [{}]",
                added.join(", "),
                removed.join(", "),
                changed.join(", ")
            ),
        ),
        Event::ReloadRejected { errors, .. } => {
            let mut out = vec![(
                Error,
                "reload rejected; the running services are unchanged:".to_string(),
            )];
            out.extend(errors.iter().map(|e| (Error, format!("  {e}"))));
            out
        }
        Event::ConfigWarning { warning } => one(Warn, warning.clone()),
        Event::Recovering {
            predecessor,
            services,
        } => one(
            Warn,
            format!(
                "a reapd (pid {}) on this socket died without cleaning up; stopping what it left \
                 running of {} before starting anything",
                predecessor.map_or("unknown".into(), |p| p.to_string()),
                services.join(", ")
            ),
        ),
        Event::LeftByPredecessor { service, pids } => one(
            Warn,
            format!(
                "{service}: left running by the predecessor: {}",
                pid_list(pids)
            ),
        ),
        Event::Recovered { service, how } => one(
            Info,
            format!("{service}: the predecessor's processes are gone ({how})"),
        ),
        Event::Done {
            clean,
            within_bound,
            elapsed_ms,
            bound_ms,
            exit_code,
            survivors,
            failures,
        } => {
            let mut out: Vec<(Level, String)> = failures
                .iter()
                .map(|f| (Error, format!("not clean: {f}")))
                .collect();
            out.extend(survivors.iter().map(|s| {
                (
                    Error,
                    format!("survivor: pid {} state {} ({})", s.pid, s.state, s.cmdline),
                )
            }));
            out.push((
                Info,
                format!(
                    "done: {} after {} ({} the bound of {}), {} survivor{}, exit status {exit_code}",
                    if *clean { "clean" } else { "NOT clean" },
                    duration_ms(*elapsed_ms),
                    if *within_bound { "within" } else { "OVER" },
                    duration_ms(*bound_ms),
                    survivors.len(),
                    if survivors.len() == 1 { "" } else { "s" }
                ),
            ));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::events::tests::one_of_each;

    #[test]
    fn every_event_is_told_in_at_least_one_line() {
        for ev in one_of_each() {
            let told = lines(&ev);
            assert!(!told.is_empty(), "{ev:?}");
            assert!(told.iter().all(|(_, l)| !l.is_empty()), "{ev:?}");
        }
    }

    #[test]
    fn durations_are_written_for_people() {
        let stopped = Event::Stopped {
            service: "web".into(),
            how: "exited".into(),
            elapsed_ms: 1234,
            leftovers: false,
            cgroup_empty: false,
        };
        assert_eq!(
            lines(&stopped),
            [(
                Level::Info,
                "web: stopped (exited) after 1.234 s".to_string()
            )]
        );
        let restarting = Event::Restarting {
            service: "web".into(),
            delay_ms: 400,
            restarts: 2,
        };
        assert_eq!(
            lines(&restarting),
            [(Level::Info, "web: restarting in 400 ms".to_string())]
        );
    }

    #[test]
    fn pid_lists_stay_short() {
        assert_eq!(pid_list(&[5]), "pid 5");
        assert_eq!(pid_list(&[5, 6]), "pids 5, 6");
        let many: Vec<i32> = (1..=20).collect();
        assert!(pid_list(&many).ends_with("12 and 8 more"));
    }
}
