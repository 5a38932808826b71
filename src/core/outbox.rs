//! The outbox: actions the core's components queue for the edge, in order.
//!
//! Owns: the one queue every component writes to, with helpers that phrase the common actions
//! (an event, a reply, a signal) the same way everywhere.
//! Must never: reorder or drop an action: the edge performs them in the order they were queued.

use nix::sys::signal::Signal;

use crate::core::io::{Action, ReplyTo};
use crate::core::proctree::ProcId;
use crate::wire::events::Event;
use crate::wire::replies::{ErrorReply, Reply, error_line, ok_line};

/// The answer to a request: a reply, or an error.
pub type Answer = Result<Reply, ErrorReply>;

/// Actions queued for the edge.
#[derive(Debug, Default)]
pub struct Outbox {
    actions: Vec<Action>,
}

impl Outbox {
    /// Queues an action.
    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Tells a fact: logged, and sent to every watcher.
    pub fn event(&mut self, ev: Event) {
        self.actions.push(Action::Event(ev));
    }

    /// Answers a request.
    pub fn answer(&mut self, (conn, id): &ReplyTo, answer: Answer) {
        let line = match answer {
            Ok(reply) => ok_line(id.as_ref(), &reply),
            Err(err) => error_line(id.as_ref(), &err),
        };
        self.actions.push(Action::Reply { conn: *conn, line });
    }

    /// Sends a signal through the process's pidfd.
    pub fn signal(&mut self, proc: ProcId, signal: Signal) {
        self.actions.push(Action::Signal { proc, signal });
    }

    /// Everything queued so far, oldest first.
    #[must_use]
    pub fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }
}
