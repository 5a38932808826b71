//! The final report: who survived, whether the shutdown was clean, and the exit status.
//!
//! Owns: the rules of the verdict: a survivor is anything reapd signalled or spawned that is still
//! alive at the last look, and any live descendant of reapd it did not know about; a shutdown is
//! clean only with no survivor, no failed step and within its bound; and which exit status that
//! makes (the command's own in single-command mode).
//! Must never: take "could not look" for "gone": a process the last look could not read stays a
//! survivor.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::core::proctree::{ProcId, Snapshot};
use crate::wire::events::{ExitStatus, Survivor};
use crate::wire::exit::ExitCode;

/// What the shutdown knows before its last look: the processes that may still live, and what
/// went wrong.
#[derive(Debug, Default)]
pub struct Pending {
    /// Processes reapd signalled, spawned or killed and never saw gone, with a description.
    pub candidates: BTreeMap<ProcId, String>,
    /// Failed steps, each in a sentence.
    pub failures: Vec<String>,
}

/// The verdict.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    /// No survivor, no failure, within the bound.
    pub clean: bool,
    /// The shutdown took no longer than its bound.
    pub within_bound: bool,
    /// What is still alive.
    pub survivors: Vec<Survivor>,
    /// reapd's exit status, an [`ExitCode`]'s number.
    pub exit_code: i32,
}

/// Survivors after the last look: candidates still alive (or unreadable: an incomplete look
/// proves nothing), and live descendants of reapd nobody knew of.
pub fn survivors(pending: &Pending, last: &Snapshot) -> Vec<Survivor> {
    let describe = |id: ProcId, known: &str| match last.get(id) {
        Some(p) => Survivor {
            pid: id.pid,
            state: p.state.to_string(),
            cmdline: p.cmdline.clone().unwrap_or_else(|| {
                if known.is_empty() {
                    p.describe()
                } else {
                    known.to_string()
                }
            }),
        },
        None => Survivor {
            pid: id.pid,
            state: "?".into(),
            cmdline: known.to_string(),
        },
    };
    let mut out: Vec<Survivor> = pending
        .candidates
        .iter()
        .filter(|(id, _)| match last.get(**id) {
            Some(p) => !p.is_dead(),
            None => last.incomplete,
        })
        .map(|(id, d)| describe(*id, d))
        .collect();
    for pid in last.descendants(last.self_pid) {
        if let Some(p) = last.procs.get(&pid).filter(|p| !p.is_dead())
            && !out.iter().any(|s| s.pid == pid)
        {
            out.push(describe(p.id(), ""));
        }
    }
    out
}

/// The verdict from the survivors, the failures, the time taken against the bound, and (in
/// single-command mode) the command's own exit status.
pub fn verdict(
    survivors: Vec<Survivor>,
    failures: &[String],
    took: Duration,
    bound: Duration,
    command: Option<ExitStatus>,
) -> Verdict {
    let within_bound = took <= bound;
    let clean = survivors.is_empty() && failures.is_empty() && within_bound;
    // A command that failed keeps its own status; one that succeeded becomes 1 if the cleanup
    // after it was not clean.
    let exit = match command {
        Some(status) if !status.success() || clean => ExitCode::Command(status),
        _ => ExitCode::of_shutdown(clean),
    };
    Verdict {
        clean,
        within_bound,
        survivors,
        exit_code: exit.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::proctree::tests::proc;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn clean_only_with_nothing_left_nothing_failed_and_within_the_bound() {
        assert_eq!(verdict(vec![], &[], MS(10), MS(10), None).exit_code, 0);
        let over = verdict(vec![], &[], MS(11), MS(10), None);
        assert!(!over.clean && !over.within_bound);
        assert_eq!(over.exit_code, 1);
        assert_eq!(
            verdict(vec![], &["x".into()], MS(1), MS(10), None).exit_code,
            1
        );
    }

    #[test]
    fn single_command_mode_exits_with_the_commands_status() {
        let v =
            |st, failures: &[String]| verdict(vec![], failures, MS(1), MS(9), Some(st)).exit_code;
        assert_eq!(v(ExitStatus::Code(7), &[]), 7);
        assert_eq!(v(ExitStatus::Signal(9), &[]), 137);
        assert_eq!(v(ExitStatus::Code(0), &[]), 0);
        assert_eq!(
            v(ExitStatus::Code(0), &["hook".into()]),
            1,
            "clean-up failed"
        );
        assert_eq!(
            v(ExitStatus::Code(3), &["hook".into()]),
            3,
            "its own failure wins"
        );
    }

    #[test]
    fn survivors_are_candidates_still_alive_and_unknown_descendants() {
        let me = 10;
        let stuck = proc(20, me, 20);
        let mut zombie = proc(21, me, 21);
        zombie.state = 'Z';
        let stray = proc(22, 20, 20);
        let pending = Pending {
            candidates: BTreeMap::from([
                (stuck.id(), "stuck".to_string()),
                (zombie.id(), "zombie".into()),
                (ProcId { pid: 99, start: 1 }, "gone".into()),
            ]),
            failures: vec![],
        };
        let snap = Snapshot::new(me, [proc(me, 1, me), stuck, zombie, stray]);
        let pids: Vec<i32> = survivors(&pending, &snap).iter().map(|s| s.pid).collect();
        assert_eq!(pids, [20, 22]);
        // A look that could not read everything proves nothing about the one it missed.
        let mut blind = Snapshot::new(me, [proc(me, 1, me)]);
        blind.incomplete = true;
        let pids: Vec<i32> = survivors(&pending, &blind).iter().map(|s| s.pid).collect();
        assert_eq!(pids, [20, 21, 99]);
    }
}
