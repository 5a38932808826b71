//! Resource limits reapd reads and sets for itself.
//!
//! Owns: raising reapd's own open-file soft limit to its hard limit (it holds a pidfd per watched
//! process), remembering the original for the children, and reading the limit for the descriptor
//! budget.
//! Must never: hand a raised limit to a service: programs that use `select()` break above 1024,
//! so children get back the limit reapd was started with (`sys::spawn`).

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The open-file limit reapd was started with, to give back to every child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nofile {
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Raises reapd's own soft open-file limit to the hard limit; returns the original, or None if
/// the limit could not be read or raised.
pub fn raise_own_nofile() -> Option<Nofile> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).ok()?;
    Some(Nofile { soft, hard })
}

/// reapd's soft open-file limit now.
pub fn nofile_soft() -> usize {
    getrlimit(Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX))
        .unwrap_or(1024)
}
