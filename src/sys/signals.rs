//! Signals: their names, and the self-pipe through which reapd receives them.
//!
//! Owns: parsing and printing signal names (`TERM`, `SIGTERM`, `15`), the list of signals reapd
//! acts on, and their registration with signal-hook-mio.
//! Must never: act on a signal here. Received signals become [`crate::core::supervisor::Input::Signal`]
//! and the supervisor decides; a handler that did real work would race the loop.

use std::io;

use nix::sys::signal::Signal;

/// Signals reapd handles. As PID 1 a signal without a handler is never delivered at all, so
/// every signal reapd acts on (or wants to ignore safely) must be in this list.
pub const HANDLED: [Signal; 9] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
    // s6 and runit send SIGCONT right after SIGTERM; handling it keeps it harmless.
    Signal::SIGCONT,
];

/// Unblocks every signal. A parent may start reapd with signals blocked, and a blocked SIGTERM
/// would never reach the handlers.
pub fn unblock_all() -> io::Result<()> {
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )
    .map_err(io::Error::from)
}

/// The signal self-pipe, registered with mio.
pub struct SignalSource {
    inner: signal_hook_mio::v1_0::Signals,
}

impl std::fmt::Debug for SignalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignalSource")
    }
}

impl SignalSource {
    /// Installs handlers for every signal in [`HANDLED`] and ignores terminal job-control stops:
    /// reapd writes its log to stderr and must not be stopped for doing so from the background.
    pub fn install() -> io::Result<Self> {
        let inner = signal_hook_mio::v1_0::Signals::new(HANDLED.iter().map(|s| *s as i32))?;
        for s in [Signal::SIGTTIN, Signal::SIGTTOU] {
            // SAFETY: SIG_IGN installs no handler code; children get SIG_DFL back before exec.
            unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigIgn) }
                .map_err(io::Error::from)?;
        }
        Ok(SignalSource { inner })
    }

    /// Drains the self-pipe. A signal received many times is reported once: callers must treat
    /// each one as "at least one arrived" (SIGCHLD in particular coalesces).
    pub fn pending(&mut self) -> Vec<Signal> {
        self.inner
            .pending()
            .filter_map(|n| Signal::try_from(n).ok())
            .collect()
    }

    /// The mio source to register.
    pub fn source(&mut self) -> &mut signal_hook_mio::v1_0::Signals {
        &mut self.inner
    }
}
