//! The rules of a graceful stop, as named functions over a member's record.
//!
//! Owns: what a stop knows about each process ([`Member`], [`Signalled`]), who is left to an
//! ancestor (born after it got the signal), and who may have lost its signal in a fork-exec
//! window. (Who is due and the levels left are read from the records in one pass, in
//! `graceful`.)
//! Must never: look at anything but a member's record and what a scan shows of it.

use std::collections::HashMap;

use crate::core::proctree::ProcId;

/// What a stop knows about one process.
#[derive(Clone, Debug, Default)]
pub struct Member {
    /// The scan that first saw it.
    pub first_seen: u64,
    /// Its command name when last seen.
    pub comm: String,
    /// Its parent among the members when last seen.
    pub parent: Option<ProcId>,
    /// Stopped by reapd (held still, or frozen for the kill) and not continued since: it cannot
    /// fork, exit or act on a signal until it is.
    pub stopped: bool,
    /// Processes above it still waiting for their signal, as of the last scan: the levels that
    /// share what is left of the stop timeout once it is gone.
    pub waiting_above: usize,
    /// Its depth in the tree of members, as of the last full scan.
    pub depth: usize,
    /// Its state letter when last read (a full scan, or a check of held processes).
    pub state: char,
    /// When it got the stop signal, if it did.
    pub signalled: Option<Signalled>,
    /// Born after an ancestor got the stop signal: that ancestor's business, not the stop's,
    /// until the stop timeout.
    pub spared: bool,
    /// SIGKILLed.
    pub killed: bool,
    /// Known to be gone.
    pub gone: bool,
    /// A pidfd is held for it (or was asked for).
    pub watched: bool,
    /// No pidfd could be held: its exit is only noticed by rescanning.
    pub unwatchable: bool,
}

/// What reapd knew when it sent a member the stop signal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signalled {
    /// Its command name then (see [`lost_its_signal`]).
    pub comm: String,
    /// It was held (stopped, and seen stopped) until the signal: it started nothing between the
    /// scan that listed its children and the signal.
    pub held: bool,
    /// The boot clock, in clock ticks, at the last look before the signal (when known): the
    /// signal was sent at or after it.
    pub tick: Option<u64>,
}

/// Member records by process.
pub type Members = HashMap<ProcId, Member>;

/// Born after its nearest signalled ancestor got the stop signal, judged for a process first
/// seen after that signal: a trap's cleanup command, say, which is that ancestor's business until
/// the stop timeout. The process's own start time decides: a start in a tick later than the last
/// look before the signal is after it. Within the same tick the start time cannot tell, and the
/// hold can: an ancestor held until the signal started nothing in between, so whatever the
/// confirming scan did not list came after. An unheld ancestor's same-tick child counts as
/// before, and gets its own signal: a job GNU make started at that moment must not wait for a
/// make that does not forward SIGINT. While killing, nothing is spared.
pub fn born_after_signal(ancestor: Option<&Signalled>, start: u64, killing: bool) -> bool {
    let Some(sig) = ancestor.filter(|_| !killing) else {
        return false;
    };
    sig.held || sig.tick.is_some_and(|t| start > t)
}

/// Signalled between fork and exec, a child still runs its parent's code and handlers: a trap
/// handler takes the signal and exec then forgets it. A process whose command name changed since
/// it was signalled has exec'd since, and gets the signal once more.
pub fn lost_its_signal(member: &Member, comm_now: &str) -> bool {
    member
        .signalled
        .as_ref()
        .is_some_and(|s| s.comm != comm_now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn born_after_the_signal_is_read_from_the_start_time_or_the_hold() {
        let unheld = Signalled {
            comm: "make".into(),
            held: false,
            tick: Some(500),
        };
        assert!(born_after_signal(Some(&unheld), 501, false), "a later tick");
        assert!(
            !born_after_signal(Some(&unheld), 500, false),
            "the same tick as the last look: a job make may have started before; it is asked"
        );
        assert!(!born_after_signal(Some(&unheld), 499, false));
        let held = Signalled {
            held: true,
            ..unheld.clone()
        };
        assert!(
            born_after_signal(Some(&held), 500, false),
            "held: nothing in between"
        );
        assert!(
            !born_after_signal(None, 900, false),
            "no signalled ancestor"
        );
        assert!(
            !born_after_signal(Some(&held), 900, true),
            "nothing is spared from the kill"
        );
        let blind = Signalled {
            tick: None,
            ..unheld
        };
        assert!(
            !born_after_signal(Some(&blind), 900, false),
            "no clock, no hold: asked"
        );
    }

    #[test]
    fn a_changed_command_name_means_an_exec_that_may_have_lost_the_signal() {
        let signalled = Member {
            signalled: Some(Signalled {
                comm: "sh".into(),
                ..Signalled::default()
            }),
            ..Member::default()
        };
        assert!(lost_its_signal(&signalled, "sleep"));
        assert!(!lost_its_signal(&signalled, "sh"));
    }
}
