//! Signals: their names, and the self-pipe through which reapd receives them.
//!
//! Owns: parsing and printing signal names (`TERM`, `SIGTERM`, `15`), the list of signals reapd
//! acts on, and their registration with signal-hook-mio.
//! Must never: act on a signal here. Received signals become [`crate::supervisor::Input::Signal`]
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

/// Signals that single-command mode forwards to the command's process group.
pub const FORWARDED: [Signal; 5] = [
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGQUIT,
];

/// Parses a signal given as `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty signal name".into());
    }
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal number {n}"));
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>()
        .map_err(|_| format!("unknown signal name {t:?} (use a name such as TERM or a number)"))
}

/// The conventional name of a signal number (`SIGTERM`), or `signal N` when it has none.
pub fn signal_name(signo: i32) -> String {
    match Signal::try_from(signo) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {signo}"),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigint"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("SIGHUP"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(
            parse_signal("TERMINATE")
                .unwrap_err()
                .contains("unknown signal name")
        );
        assert!(
            parse_signal("99")
                .unwrap_err()
                .contains("unknown signal number 99")
        );
        assert!(parse_signal("").is_err());
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(0), "signal 0");
    }
}
