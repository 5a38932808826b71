//! The command registry: every control command in one table.
//!
//! Owns: [`COMMANDS`], each command's name, arguments, usage line, whether it mutates (refused
//! once shutdown began) and what it does. The request parser (`wire::protocol`), the `reapd ctl`
//! parser and the `--help` text (`wire::cli`) and the documentation checks (`tests/docs.rs`) all
//! read this table, so a command is declared once and cannot be known to one of them only.
//! Must never: parse or validate values (the parsers do that); it only says what there is.

/// A control command, as the core and `ctl` match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmd {
    /// Liveness check.
    Ping,
    /// Daemon summary.
    Status,
    /// Per-service table.
    List,
    /// Start a stopped service.
    Start,
    /// Stop a service.
    Stop,
    /// Stop then start a service.
    Restart,
    /// Send a signal to a service's main process.
    Signal,
    /// Re-read the config file.
    Reload,
    /// Shut the daemon down.
    Shutdown,
    /// Stream events.
    Watch,
    /// Whether every service that should run is ready.
    Ready,
    /// Answer once every service that should run is ready.
    Wait,
    /// A service's recent output, optionally followed.
    Logs,
}

/// What an argument holds, which decides its JSON key, its placeholder and how it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// A configured service's name (`"name"`, a non-empty string).
    Service,
    /// A signal, by name (`HUP`, `SIGHUP`) or number (`"signal"`).
    Signal,
}

impl ArgKind {
    /// The request's JSON key.
    pub fn field(self) -> &'static str {
        match self {
            ArgKind::Service => "name",
            ArgKind::Signal => "signal",
        }
    }

    /// Its placeholder in a usage line.
    pub fn placeholder(self) -> &'static str {
        match self {
            ArgKind::Service => "NAME",
            ArgKind::Signal => "SIGNAL",
        }
    }
}

/// One argument of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arg {
    /// What it holds.
    pub kind: ArgKind,
    /// What it is, said after `"stop" needs "name": ` when it is missing.
    pub what: &'static str,
}

/// One control command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// Which command.
    pub cmd: Cmd,
    /// The `"cmd"` value and the `ctl` word.
    pub name: &'static str,
    /// Its arguments, in the order `ctl` takes them.
    pub args: &'static [Arg],
    /// Changes what runs: refused with `shutting_down` once shutdown began.
    pub mutates: bool,
    /// What it does, in a line (the `--help` text).
    pub about: &'static str,
}

const fn service(what: &'static str) -> Arg {
    Arg {
        kind: ArgKind::Service,
        what,
    }
}

const PING: CommandSpec = CommandSpec {
    cmd: Cmd::Ping,
    name: "ping",
    args: &[],
    mutates: false,
    about: "check that reapd answers",
};
const STATUS: CommandSpec = CommandSpec {
    cmd: Cmd::Status,
    name: "status",
    args: &[],
    mutates: false,
    about: "reapd's state, uptime and services by state",
};
const LIST: CommandSpec = CommandSpec {
    cmd: Cmd::List,
    name: "list",
    args: &[],
    mutates: false,
    about: "every service: state, pid, uptime, restarts, last exit",
};
const START: CommandSpec = CommandSpec {
    cmd: Cmd::Start,
    name: "start",
    args: &[service("the service to start")],
    mutates: true,
    about: "start a service; answers once it runs",
};
const STOP: CommandSpec = CommandSpec {
    cmd: Cmd::Stop,
    name: "stop",
    args: &[service("the service to stop")],
    mutates: true,
    about: "stop a service as shutdown would; answers once it is gone",
};
const RESTART: CommandSpec = CommandSpec {
    cmd: Cmd::Restart,
    name: "restart",
    args: &[service("the service to restart")],
    mutates: true,
    about: "stop, then start a service; answers once it runs again",
};
const SIGNAL: CommandSpec = CommandSpec {
    cmd: Cmd::Signal,
    name: "signal",
    args: &[
        service("the service to signal"),
        Arg {
            kind: ArgKind::Signal,
            what: "the signal to send, a name such as \"HUP\" or a number",
        },
    ],
    mutates: true,
    about: "send a signal to a service's main process",
};
const RELOAD: CommandSpec = CommandSpec {
    cmd: Cmd::Reload,
    name: "reload",
    args: &[],
    mutates: true,
    about: "re-read the config file, like SIGHUP",
};
const SHUTDOWN: CommandSpec = CommandSpec {
    cmd: Cmd::Shutdown,
    name: "shutdown",
    args: &[],
    mutates: false,
    about: "stop everything and exit, like SIGTERM",
};
const WATCH: CommandSpec = CommandSpec {
    cmd: Cmd::Watch,
    name: "watch",
    args: &[],
    mutates: false,
    about: "follow events as they happen, until the shutdown is done",
};

const READY: CommandSpec = CommandSpec {
    cmd: Cmd::Ready,
    name: "ready",
    args: &[],
    mutates: false,
    about: "whether every service that should run is ready",
};
const WAIT: CommandSpec = CommandSpec {
    cmd: Cmd::Wait,
    name: "wait",
    args: &[],
    mutates: false,
    about: "answer once every service that should run is ready",
};

const LOGS: CommandSpec = CommandSpec {
    cmd: Cmd::Logs,
    name: "logs",
    args: &[service("the service whose output to show")],
    mutates: false,
    about: "a service's last lines (log \"prefix\"); -f follows",
};

/// A flag a command takes besides its arguments (`ctl logs NAME -n 50 -f`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdOption {
    /// Its request field.
    pub field: &'static str,
    /// Its `ctl` flag.
    pub short: char,
    /// Its value's placeholder; `None` for a switch (`true` when given).
    pub value: Option<&'static str>,
}

/// The options of `logs`.
pub const LOGS_OPTIONS: &[CmdOption] = &[
    CmdOption {
        field: "follow",
        short: 'f',
        value: None,
    },
    CmdOption {
        field: "lines",
        short: 'n',
        value: Some("N"),
    },
];

/// Every command, in the order replies and docs list them.
pub const COMMANDS: &[CommandSpec] = &[
    PING, STATUS, LIST, START, STOP, RESTART, SIGNAL, RELOAD, SHUTDOWN, WATCH, READY, WAIT, LOGS,
];

impl Cmd {
    /// Its entry in [`COMMANDS`].
    pub fn spec(self) -> &'static CommandSpec {
        match self {
            Cmd::Ping => &PING,
            Cmd::Status => &STATUS,
            Cmd::List => &LIST,
            Cmd::Start => &START,
            Cmd::Stop => &STOP,
            Cmd::Restart => &RESTART,
            Cmd::Signal => &SIGNAL,
            Cmd::Reload => &RELOAD,
            Cmd::Shutdown => &SHUTDOWN,
            Cmd::Watch => &WATCH,
            Cmd::Ready => &READY,
            Cmd::Wait => &WAIT,
            Cmd::Logs => &LOGS,
        }
    }

    /// The `"cmd"` value.
    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

impl CommandSpec {
    /// The command with the `"cmd"` value `name`.
    pub fn find(name: &str) -> Option<&'static CommandSpec> {
        COMMANDS.iter().find(|s| s.name == name)
    }

    /// Its argument of this kind.
    pub fn arg(&self, kind: ArgKind) -> Option<&'static Arg> {
        self.args.iter().find(|a| a.kind == kind)
    }

    /// Its options besides the arguments.
    pub fn options(&self) -> &'static [CmdOption] {
        match self.cmd {
            Cmd::Logs => LOGS_OPTIONS,
            _ => &[],
        }
    }

    /// `stop NAME`, `signal NAME SIGNAL`, `logs NAME [-f] [-n N]`.
    pub fn usage(&self) -> String {
        let mut out = self.name.to_string();
        for a in self.args {
            out.push(' ');
            out.push_str(a.kind.placeholder());
        }
        for o in self.options() {
            match o.value {
                Some(v) => out.push_str(&format!(" [-{} {v}]", o.short)),
                None => out.push_str(&format!(" [-{}]", o.short)),
            }
        }
        out
    }
}

/// Every command name, in table order.
pub fn names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|s| s.name)
}

/// `ping, status, ...`: every command name.
pub fn name_list() -> String {
    names().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Cmd; 13] = [
        Cmd::Ping,
        Cmd::Status,
        Cmd::List,
        Cmd::Start,
        Cmd::Stop,
        Cmd::Restart,
        Cmd::Signal,
        Cmd::Reload,
        Cmd::Shutdown,
        Cmd::Watch,
        Cmd::Ready,
        Cmd::Wait,
        Cmd::Logs,
    ];

    #[test]
    fn every_command_has_exactly_one_entry_under_one_name() {
        assert_eq!(COMMANDS.len(), ALL.len());
        for cmd in ALL {
            assert_eq!(
                COMMANDS.iter().filter(|s| s.cmd == cmd).count(),
                1,
                "{cmd:?}"
            );
            assert_eq!(cmd.spec().cmd, cmd);
            assert_eq!(CommandSpec::find(cmd.name()).map(|s| s.cmd), Some(cmd));
            assert_eq!(
                format!("{cmd:?}").to_lowercase(),
                cmd.name(),
                "the variant is the name"
            );
        }
        assert_eq!(CommandSpec::find("nope"), None);
    }

    #[test]
    fn usage_lines_name_each_argument() {
        let usage: Vec<String> = COMMANDS.iter().map(CommandSpec::usage).collect();
        assert_eq!(
            usage,
            [
                "ping",
                "status",
                "list",
                "start NAME",
                "stop NAME",
                "restart NAME",
                "signal NAME SIGNAL",
                "reload",
                "shutdown",
                "watch",
                "ready",
                "wait",
                "logs NAME [-f] [-n N]"
            ]
        );
        assert_eq!(
            name_list(),
            "ping, status, list, start, stop, restart, signal, reload, shutdown, watch, ready, wait, logs"
        );
    }

    #[test]
    fn what_changes_what_runs_mutates() {
        let mutating: Vec<&str> = COMMANDS
            .iter()
            .filter(|s| s.mutates)
            .map(|s| s.name)
            .collect();
        assert_eq!(mutating, ["start", "stop", "restart", "signal", "reload"]);
        for s in COMMANDS {
            assert!(!s.about.is_empty() && s.about.len() < 60, "{}", s.name);
            for a in s.args {
                assert!(a.what.starts_with("the "), "{}: {}", s.name, a.what);
                assert_eq!(s.arg(a.kind), Some(a));
            }
        }
    }
}
