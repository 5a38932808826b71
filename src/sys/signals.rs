//! Signals: the self-pipe through which reapd receives them.
//!
//! Owns: the list of signals reapd acts on, blocking them from the moment reapd's code first runs,
//! and their registration with signal-hook-mio.
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

/// Blocks every signal in [`HANDLED`]. The reapd binary runs this from `.preinit_array`, before
/// the C library's and Rust's initialisation and before `main`, so a SIGTERM sent right after exec waits (pending)
/// until the handlers exist instead of killing reapd with its default action. What remains is
/// the time the kernel and the dynamic loader spend before any of reapd's code runs.
///
/// Only raw, async-signal-safe calls: nothing is initialised yet.
pub extern "C" fn block_handled_signals() {
    // The kernel's signal set: bit N-1 for signal N.
    let set: u64 = HANDLED
        .iter()
        .fold(0, |acc, &sig| acc | 1u64 << (sig as i32 - 1));
    // SAFETY: rt_sigprocmask reads an 8-byte set from our stack and writes nothing (no old set).
    // A raw system call needs no libc state, so this is safe to run before libc is initialised.
    // Failure leaves the mask as it was.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &set as *const u64,
            std::ptr::null_mut::<u64>(),
            std::mem::size_of::<u64>(),
        );
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
