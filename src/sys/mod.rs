//! The system edge: the only place reapd makes system calls.
//!
//! Owns: the event loop (the only `mio::Poll`), the control socket, the signal self-pipe, pidfds,
//! reading the config file and `/proc`, cgroups, spawning, readiness notification and logging.
//! Must never: decide anything. It turns readiness into the core's inputs and carries out the
//! core's actions.

pub mod cgroup;
pub mod checks;
pub mod config_file;
pub mod control;
pub mod edge;
pub mod event_loop;
pub mod identity;
pub mod logging;
pub mod notify;
pub mod output;
pub mod pidfd;
pub mod priority;
pub mod procfs;
pub mod rlimits;
pub mod signals;
pub mod spawn;
pub mod state_file;
pub mod timer;
pub mod tokens;
