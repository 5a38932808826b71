//! Exit statuses: every status `reapd` exits with, for every way it runs.
//!
//! Owns: [`ExitCode`], the one table of what reapd's exit statuses mean and which number each
//! is. The daemon, `reapd check`, `reapd ctl` and the shutdown verdict (`core::report`) all
//! exit through it; man/reapd.8 (EXIT STATUS) documents it.
//! Must never: reuse a number for a different kind of outcome: 1 always means "it ran, but the
//! outcome is not what was asked for", 3 always "could not get going".

use crate::wire::events::ExitStatus;

/// How `reapd` ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: the shutdown was clean: every process verified gone, every cleanup step succeeded,
    /// within the bound.
    Clean,
    /// 0: `--help`, `--version`, `check` or `ctl` did what was asked.
    Success,
    /// 1: the shutdown finished but was not clean (survivors, a failed cleanup step, an overrun
    /// bound).
    NotClean,
    /// 1: `ctl`: the daemon answered with an error reply.
    ErrorReply,
    /// 2: a usage or configuration error.
    Usage,
    /// 3: the daemon could not start (the lock is held, the socket cannot be bound, `/proc` is
    /// missing, ...).
    CannotStart,
    /// 3: `ctl`: the daemon could not be reached (no socket, no reply, the stream broke).
    Unreachable,
    /// Single-command mode: the command's own status (128 + N when signal N killed it), when it
    /// exited by itself.
    Command(ExitStatus),
}

impl ExitCode {
    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Clean | ExitCode::Success => 0,
            ExitCode::NotClean | ExitCode::ErrorReply => 1,
            ExitCode::Usage => 2,
            ExitCode::CannotStart | ExitCode::Unreachable => 3,
            ExitCode::Command(status) => status.as_exit_code(),
        }
    }

    /// The status after a shutdown: clean or not.
    pub fn of_shutdown(clean: bool) -> ExitCode {
        if clean {
            ExitCode::Clean
        } else {
            ExitCode::NotClean
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_documented_number() {
        let codes = [
            (ExitCode::Clean, 0),
            (ExitCode::Success, 0),
            (ExitCode::NotClean, 1),
            (ExitCode::ErrorReply, 1),
            (ExitCode::Usage, 2),
            (ExitCode::CannotStart, 3),
            (ExitCode::Unreachable, 3),
            (ExitCode::Command(ExitStatus::Code(7)), 7),
            (ExitCode::Command(ExitStatus::Signal(9)), 137),
        ];
        for (exit, code) in codes {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
        assert_eq!(ExitCode::of_shutdown(true), ExitCode::Clean);
        assert_eq!(ExitCode::of_shutdown(false), ExitCode::NotClean);
    }
}
