//! One turn of the loop, written once: the event loop and the simulation both run it.
//!
//! Owns: the order of a turn and its budgets. A turn is:
//!
//! 1. **Inputs.** What woke the loop (signals, reaped children, processes gone, requests) is fed
//!    one input at a time; after each, every action the supervisor queued is performed at once,
//!    in order, and what performing it learns (a spawn's pid, a process already gone) is fed
//!    next.
//! 2. **Scans.** While the supervisor asks for a scan: reap first (so an exit status is known
//!    before a scan reports its process gone), then read `/proc` and feed the snapshot. After
//!    the first scan, scanning yields once [`SCAN_BUDGET`] is spent or a deadline is due: the poll
//!    timeout is zero while a scan is wanted, so the next turn carries on.
//! 3. **Ticks.** While a deadline has passed, feed a tick, then scan again: what one tick starts
//!    (a kill) is carried out by scans before the next tick (a report) can see it.
//! 4. **End of turn.** The state file and the service manager's status line are written at most
//!    once per turn, whatever happened in it.
//!
//! The loop then waits for [`poll_timeout`]: zero while a scan is wanted, else until the next
//! deadline, else for ever (an idle reapd makes no system calls).
//! Must never: decide anything. The supervisor decides; this only fixes the order in which it is
//! asked.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::core::io::{Action, Input, ScanRequest};
use crate::core::proctree::Snapshot;
use crate::core::supervisor::Supervisor;

/// How long one turn may spend scanning `/proc` before the loop lets other events and due
/// deadlines in: a fork storm keeps a stop asking for scans, and a stop timeout not acted on in
/// time would let the storm overrun the shutdown bound. One scan always completes.
pub const SCAN_BUDGET: Duration = Duration::from_millis(50);

/// Ticks per turn: several deadlines may have passed at once (a late wake-up), each gets its tick
/// with scans between them.
pub const MAX_TICKS: usize = 3;

/// The side of a turn that touches the world: `sys::event_loop` for real, `core::sim::World` in
/// tests.
pub trait Edge {
    /// The current time.
    fn now(&self) -> Instant;
    /// Collects every child that has exited (SIGCHLD coalesces: one signal may stand for many).
    fn reap(&mut self) -> Vec<Input>;
    /// Carries out one action; what it learns at once comes back as inputs.
    fn perform(&mut self, action: Action) -> Vec<Input>;
    /// Reads `/proc`.
    fn scan(&mut self, req: &ScanRequest) -> Snapshot;
    /// Runs reapd above ordinary processes (or not): the supervisor says so after each input.
    fn set_urgent(&mut self, urgent: bool) {
        let _ = urgent;
    }
}

/// One whole turn: the inputs, scans, ticks, and the end of the turn.
pub fn turn(sup: &mut Supervisor, edge: &mut impl Edge, inputs: Vec<Input>) {
    feed(sup, edge, inputs);
    settle(sup, edge);
}

/// Step 1: feeds inputs one at a time, performing every action before the next input.
pub fn feed(sup: &mut Supervisor, edge: &mut impl Edge, inputs: Vec<Input>) {
    let mut queue: VecDeque<Input> = inputs.into();
    while let Some(input) = queue.pop_front() {
        sup.handle(input, edge.now());
        // Before carrying out a stop's first signal: a fork storm must not starve it.
        edge.set_urgent(sup.urgent());
        for action in sup.take_actions() {
            queue.extend(edge.perform(action));
        }
    }
}

/// Steps 2 to 4: scans, ticks, and the end of the turn.
pub fn settle(sup: &mut Supervisor, edge: &mut impl Edge) {
    scans(sup, edge);
    for _ in 0..MAX_TICKS {
        if sup.exiting() || sup.deadline().is_none_or(|d| d > edge.now()) {
            break;
        }
        feed(sup, edge, vec![Input::Tick]);
        scans(sup, edge);
    }
    let end: Vec<Action> = sup
        .poll_persist()
        .into_iter()
        .chain(sup.poll_status())
        .collect();
    for action in end {
        let learnt = edge.perform(action);
        feed(sup, edge, learnt);
    }
}

/// Step 2: scans while the supervisor asks, within the budget.
fn scans(sup: &mut Supervisor, edge: &mut impl Edge) {
    let began = edge.now();
    for n in 0.. {
        if sup.scan_request().is_none() {
            return;
        }
        let now = edge.now();
        if n > 0
            && (now.saturating_duration_since(began) >= SCAN_BUDGET
                || sup.deadline().is_some_and(|d| d <= now))
        {
            return;
        }
        // Collect exited children first, so their exit status is known before the scan reports
        // them gone.
        let reaped = edge.reap();
        feed(sup, edge, reaped);
        let Some(req) = sup.scan_request() else {
            return;
        };
        let snap = edge.scan(&req);
        feed(sup, edge, vec![Input::Scanned(snap)]);
    }
}

/// How long the loop may wait for events after a turn.
pub fn poll_timeout(sup: &Supervisor, now: Instant) -> Option<Duration> {
    if sup.scan_request().is_some() {
        return Some(Duration::ZERO);
    }
    sup.deadline().map(|d| d.saturating_duration_since(now))
}
