//! Teardown: the data of each stage of a shutdown, in one enum.
//!
//! Owns: what each stage works on. While draining, the current wave and the stop of orphans nobody
//! can attribute; while killing, the kill of everything left and the sweep's finds; then the
//! cleanup hooks; then the report (the last look, releasing the socket and lock). The phase
//! machine in `core::shutdown` says when a stage begins and how long it may take; this says what
//! it holds, so no stage's data outlives it.
//! Must never: start a stage's work itself: the supervisor does, through the one stop procedure.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::core::hooks::Hooks;
use crate::core::proctree::ProcId;
use crate::core::report::Pending;
use crate::core::stop::StopJob;
use crate::wire::events::Survivor;

/// The report's steps.
#[derive(Debug)]
pub enum Reporting {
    /// Waiting for the last look at `/proc`.
    LastLook(Pending),
    /// Waiting for the socket, lock and state file to be dealt with.
    Releasing {
        /// Still alive at the last look.
        survivors: Vec<Survivor>,
        /// What went wrong so far.
        failures: Vec<String>,
        /// How long the shutdown took, at the last look.
        took: Duration,
    },
    /// `done` is out; reapd exits.
    Done,
}

/// Where a shutdown stands, with what it works on.
#[derive(Debug)]
pub enum Teardown {
    /// No shutdown.
    Idle,
    /// Services stop as the stop graph allows.
    Draining {
        /// Orphans reparented to reapd whose service cannot be told, asked to stop as the
        /// shutdown begins; `None` before that and once they are gone.
        orphans: Option<StopJob>,
    },
    /// Everything left is frozen and killed; the sweep adds what it finds.
    Killing {
        /// The kill of whatever no service's own stop covers.
        leftovers: StopJob,
        /// The sweep's finds, once it has looked, with why each was chosen.
        swept: Option<BTreeMap<ProcId, String>>,
    },
    /// The cleanup commands run.
    Hooks(Hooks),
    /// The report.
    Reporting(Reporting),
}

impl Teardown {
    /// Every stop this stage runs.
    pub fn jobs(&self) -> impl Iterator<Item = &StopJob> {
        let (a, b) = match self {
            Teardown::Draining { orphans, .. } => (orphans.as_ref(), None),
            Teardown::Killing { leftovers, .. } => (Some(leftovers), None),
            Teardown::Hooks(h) => (None, h.reaper()),
            Teardown::Idle | Teardown::Reporting(_) => (None, None),
        };
        a.into_iter().chain(b)
    }

    /// The same, to feed them.
    pub fn jobs_mut(&mut self) -> impl Iterator<Item = &mut StopJob> {
        let (a, b) = match self {
            Teardown::Draining { orphans, .. } => (orphans.as_mut(), None),
            Teardown::Killing { leftovers, .. } => (Some(leftovers), None),
            Teardown::Hooks(h) => (None, h.reaper_mut()),
            Teardown::Idle | Teardown::Reporting(_) => (None, None),
        };
        a.into_iter().chain(b)
    }
}
