//! The end of a shutdown: what may still live, the last look at `/proc`, the verdict, `done`,
//! and the exit.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::core::io::Action;
use crate::core::proctree::Snapshot;
use crate::core::report::{self, Pending};
use crate::core::teardown::{Reporting, Teardown};
use crate::wire::events::Event;
use crate::wire::state_file::Recorded;
use crate::wire::text::{ms, secs};

use super::Supervisor;

impl Supervisor {
    // ----- the end -----------------------------------------------------------------------------

    /// The bound is reached or everything is done: what may still live is listed, and the last
    /// look at `/proc` decides.
    pub(super) fn finish(&mut self, now: Instant) {
        let mut pending = Pending {
            candidates: self.tracking.touched.clone(),
            failures: Vec::new(),
        };
        for s in self.services.iter() {
            if let Some(m) = s.main() {
                pending
                    .candidates
                    .entry(m)
                    .or_insert_with(|| s.spec.cmd.join(" "));
            }
        }
        if let Teardown::Hooks(h) = &mut self.teardown
            && let Some((proc, cmd)) =
                h.abandon(&self.cfg.cleanup, now, &mut self.out, &mut self.failures)
        {
            // A hook still running at the deadline: killed now, listed unless the look finds it
            // gone.
            self.out.signal(proc, Signal::SIGKILL);
            pending.candidates.entry(proc).or_insert(cmd);
        } else if !matches!(self.teardown, Teardown::Hooks(_)) && !self.cfg.cleanup.is_empty() {
            self.failures.push(format!(
                "{} cleanup command(s) not run: no time left",
                self.cfg.cleanup.len()
            ));
        }
        // A stop that could not see all its processes never proved them gone: the last look may
        // not see them either (they are what could not be read), so it is said here.
        for s in self.services.iter() {
            if s.job().is_some_and(|j| !j.is_done() && j.is_blind()) {
                self.failures.push(format!(
                    "{}: its stop could not see every process of it to the end (the process table could not be read completely)",
                    s.name()
                ));
            }
        }
        pending.failures = std::mem::take(&mut self.failures);
        let proven = self.nothing_left_seen && pending.candidates.is_empty();
        self.teardown = Teardown::Reporting(Reporting::LastLook(pending));
        if proven {
            // The last complete scan already showed nothing of reapd alive, and every process
            // it signalled was seen gone: that scan was the last look.
            self.last_look(&Snapshot::new(self.self_pid, Vec::new()), now);
        }
    }

    /// The last look at `/proc`: who survived; then the socket, lock and state file.
    pub(super) fn last_look(&mut self, snap: &Snapshot, now: Instant) {
        let Teardown::Reporting(Reporting::LastLook(pending)) =
            std::mem::replace(&mut self.teardown, Teardown::Reporting(Reporting::Done))
        else {
            return;
        };
        let survivors = report::survivors(&pending, snap);
        let mut pending = pending;
        if snap.incomplete {
            pending.failures.push(
                "the last look at /proc could not read every process: survivors may be missing from this report"
                    .into(),
            );
        }
        let took = self
            .shutdown
            .started()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if !survivors.is_empty() {
            // Kept for the next instance on this socket, which stops them before it starts.
            let recorded = survivors
                .iter()
                .filter_map(|s| snap.procs.get(&s.pid))
                .map(|p| Recorded {
                    owner: "survivor".into(),
                    pid: p.pid,
                    start: p.start,
                })
                .collect();
            self.out.push(Action::Persist(recorded));
        }
        self.out.push(Action::Release {
            keep_state: !survivors.is_empty(),
        });
        self.teardown = Teardown::Reporting(Reporting::Releasing {
            survivors,
            failures: pending.failures,
            took,
        });
    }

    /// The socket, lock and state file are dealt with: the verdict, `done`, and exit.
    pub(super) fn released(&mut self, more: Vec<String>) {
        let Teardown::Reporting(Reporting::Releasing {
            survivors,
            mut failures,
            took,
        }) = std::mem::replace(&mut self.teardown, Teardown::Reporting(Reporting::Done))
        else {
            return;
        };
        failures.extend(more);
        let bound = self.shutdown.budget();
        let verdict = report::verdict(survivors, &failures, took, bound, self.command_status);
        if !verdict.within_bound {
            failures.push(format!(
                "the shutdown took {} and overran its bound of {}",
                secs(took),
                secs(bound)
            ));
        }
        self.out.event(Event::Done {
            clean: verdict.clean,
            within_bound: verdict.within_bound,
            elapsed_ms: ms(took),
            bound_ms: ms(bound),
            exit_code: verdict.exit_code,
            survivors: verdict.survivors,
            failures,
        });
        self.shutdown.exited();
        self.out.push(Action::Exit {
            code: verdict.exit_code,
        });
    }
}
