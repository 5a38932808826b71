//! The command line: `reapd`, `reapd check`, `reapd ctl`.
//!
//! Owns: argument parsing, the usage text, and where the socket path comes from (command line,
//! then `REAPD_SOCKET`, then the config file, then the default). `ctl`'s words and its part of
//! the usage text come from the command registry (`wire::commands`).
//! Must never: read files or the environment itself; `main.rs` passes those in.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::PathBuf;

use lexopt::prelude::*;
use nix::sys::signal::Signal;

use crate::wire::commands::{self, ArgKind, COMMANDS, Cmd, CommandSpec};
use crate::wire::config::CgroupMode;
use crate::wire::signal_names::parse_signal;

/// The usage text printed by `--help`.
pub fn usage() -> String {
    let mut out = USAGE_HEAD.to_string();
    for spec in COMMANDS {
        out.push_str(&format!("  {:<28}{}\n", spec.usage(), spec.about));
    }
    out.push_str(USAGE_TAIL);
    out
}

const USAGE_HEAD: &str = "\
reapd - a process supervisor whose shutdown leaves nothing behind

Usage:
  reapd [OPTIONS] --config FILE      supervise the services declared in FILE
  reapd [OPTIONS] -- CMD [ARGS...]   supervise one command (container entrypoint)
  reapd check --config FILE          validate FILE, print a summary or every error
  reapd ctl [--socket PATH] [--json] COMMAND [ARGS...]
                                     talk to a running reapd
  reapd ctl shutdown --wait          shut down, follow it, exit 0 only if it was clean
  reapd ctl wait --ready [--timeout MS]
                                     return once every service is ready

Options:
  -c, --config FILE           config file (JSON; see reapd.json(5))
  -s, --socket PATH           control socket (env REAPD_SOCKET; default /run/reapd.sock
                              as root, else $XDG_RUNTIME_DIR/reapd.sock, else
                              /tmp/reapd-$UID.sock; with -- CMD, none unless given)
      --shutdown-timeout MS   bound on the whole shutdown, at most 30000 (default 30000)
      --cgroups MODE          auto, off or required: cgroup v2 containment (overrides the
                              file's cgroups key; default auto)
      --log-level LEVEL       error, warn, info, debug or trace (env REAPD_LOG; default info)
      --notify-fd N           write a newline to fd N once ready, then close it (s6)
      --stop-signal SIG       with -- CMD: signal that stops the command (default TERM)
      --stop-timeout MS       with -- CMD: time before it is killed (default 10000)
  -h, --help                  print this help
  -V, --version               print the version

ctl commands:
";

const USAGE_TAIL: &str = "\
ctl options:
  -s, --socket PATH           socket to connect to (same default as above)
      --json                  print the daemon's JSON lines unchanged
  -n, --lines N               logs: how many of the last lines (default 20)
  -f, --follow                logs: then print new lines as they come

Exit status: 0 clean shutdown; 1 shutdown finished but not clean; 2 usage or config error;
3 could not start. With -- CMD: the command's own status when it exits by itself.
ctl: 0 done; 1 the daemon answered with an error, or: ready, not ready; wait, timed out;
shutdown --wait, not clean; 2 usage error; 3 the daemon cannot be reached.
See reapd(8) and reapd.json(5).
";

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Supervise.
    Run(RunArgs),
    /// Validate a config file.
    Check {
        /// The file.
        config: PathBuf,
    },
    /// Control client.
    Ctl(CtlArgs),
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// Options of the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunArgs {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// The command after `--`.
    pub command: Vec<String>,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--shutdown-timeout` in ms.
    pub shutdown_timeout: Option<u64>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--cgroups`.
    pub cgroups: Option<CgroupMode>,
    /// `--notify-fd`.
    pub notify_fd: Option<i32>,
    /// `--stop-signal`.
    pub stop_signal: Option<Signal>,
    /// `--stop-timeout` in ms.
    pub stop_timeout: Option<u64>,
}

/// Options of `reapd ctl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlArgs {
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
    /// The request to send, as a JSON line (newline excluded).
    pub request: String,
    /// The command.
    pub cmd: Cmd,
    /// `shutdown --wait`: follow the shutdown and exit with its verdict.
    pub wait: bool,
    /// `wait --timeout MS`: give up after this long.
    pub timeout_ms: Option<u64>,
}

/// Parses `argv` (program name first).
pub fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut argv: Vec<OsString> = argv.into_iter().collect();
    if argv.is_empty() {
        argv.push("reapd".into());
    }
    match argv.get(1).and_then(|a| a.to_str()) {
        Some("check") => parse_check(argv.into_iter().skip(1)),
        Some("ctl") => parse_ctl(argv.into_iter().skip(1)),
        _ => parse_run(argv),
    }
}

fn parse_run(mut argv: Vec<OsString>) -> Result<Command, String> {
    let mut command = Vec::new();
    if let Some(pos) = argv.iter().position(|a| a == "--") {
        for a in argv.split_off(pos).into_iter().skip(1) {
            command.push(
                a.into_string()
                    .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?,
            );
        }
    }
    let mut p = lexopt::Parser::from_iter(argv);
    let mut args = RunArgs {
        command,
        ..RunArgs::default()
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('c') | Long("config") => {
                args.config = Some(p.value().map_err(|e| e.to_string())?.into())
            }
            Short('s') | Long("socket") => {
                args.socket = Some(p.value().map_err(|e| e.to_string())?.into())
            }
            Long("shutdown-timeout") => {
                args.shutdown_timeout = Some(millis(&mut p, "--shutdown-timeout")?)
            }
            Long("stop-timeout") => args.stop_timeout = Some(millis(&mut p, "--stop-timeout")?),
            Long("log-level") => args.log_level = Some(text(&mut p)?),
            Long("cgroups") => {
                let v = text(&mut p)?;
                args.cgroups = Some(CgroupMode::parse(&v).ok_or_else(|| {
                    format!("--cgroups: expected auto, off or required, found {v:?}")
                })?);
            }
            Long("stop-signal") => {
                let v = text(&mut p)?;
                args.stop_signal =
                    Some(parse_signal(&v).map_err(|e| format!("--stop-signal: {e}"))?);
            }
            Long("notify-fd") => {
                let v = text(&mut p)?;
                let fd: i32 = v.parse().map_err(|_| {
                    format!("--notify-fd: expected a file descriptor number, found {v:?}")
                })?;
                if fd < 3 {
                    return Err(format!(
                        "--notify-fd: {fd} is stdin, stdout or stderr; use a descriptor of 3 or more"
                    ));
                }
                args.notify_fd = Some(fd);
            }
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Value(v) => {
                return Err(format!(
                    "unexpected argument {:?}; to supervise a single command write `reapd -- {}`",
                    v.to_string_lossy(),
                    v.to_string_lossy()
                ));
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    match (&args.config, args.command.is_empty()) {
        (Some(_), false) => Err("give either --config FILE or -- CMD, not both".into()),
        (None, true) => Err("nothing to supervise: give --config FILE or -- CMD [ARGS...] (see --help)".into()),
        (Some(_), true) if args.stop_signal.is_some() || args.stop_timeout.is_some() => {
            Err("--stop-signal and --stop-timeout apply to -- CMD; set stop_signal and stop_timeout_ms per service in the config file".into())
        }
        _ => Ok(Command::Run(args)),
    }
}

fn parse_check(argv: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut p = lexopt::Parser::from_iter(argv);
    let mut config = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('c') | Long("config") => {
                config = Some(p.value().map_err(|e| e.to_string())?.into())
            }
            Value(v) if config.is_none() => config = Some(v.into()),
            Short('h') | Long("help") => return Ok(Command::Help),
            other => return Err(other.unexpected().to_string()),
        }
    }
    config
        .map(|config| Command::Check { config })
        .ok_or_else(|| "check needs a file: reapd check --config FILE".into())
}

fn parse_ctl(argv: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut p = lexopt::Parser::from_iter(argv);
    let mut socket = None;
    let mut json = false;
    let mut wait = false;
    let mut ready = false;
    let mut timeout_ms = None;
    let mut words: Vec<String> = Vec::new();
    // Command options (`logs -f -n 50`), checked against the command once it is known.
    let mut options: Vec<(char, Option<String>)> = Vec::new();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('s') | Long("socket") => {
                socket = Some(p.value().map_err(|e| e.to_string())?.into())
            }
            Long("json") => json = true,
            Long("wait") => wait = true,
            Long("ready") => ready = true,
            Long("timeout") => match millis(&mut p, "--timeout")? {
                0 => {
                    return Err(
                        "--timeout: expected at least 1 ms (reapd ctl ready answers at once)"
                            .into(),
                    );
                }
                ms => timeout_ms = Some(ms),
            },
            Short('f') | Long("follow") => options.push(('f', None)),
            Short('n') | Long("lines") => options.push(('n', Some(text(&mut p)?))),
            Short('h') | Long("help") => return Ok(Command::Help),
            Value(v) => words.push(
                v.into_string()
                    .map_err(|v| format!("argument {v:?} is not valid UTF-8"))?,
            ),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let Some((word, rest)) = words.split_first() else {
        let all: Vec<String> = COMMANDS.iter().map(CommandSpec::usage).collect();
        return Err(format!("ctl needs a command: {}", all.join(", ")));
    };
    let Some(spec) = CommandSpec::find(word) else {
        return Err(format!(
            "unknown ctl command {word:?}{}; commands: {}",
            crate::wire::text::did_you_mean(word, commands::names()),
            commands::name_list()
        ));
    };
    if rest.len() != spec.args.len() {
        return Err(if spec.args.is_empty() {
            format!("{word} takes no arguments")
        } else {
            format!("usage: reapd ctl {}", spec.usage())
        });
    }
    if wait && spec.cmd != Cmd::Shutdown {
        return Err("--wait goes with shutdown: reapd ctl shutdown --wait".into());
    }
    if (ready || timeout_ms.is_some()) && spec.cmd != Cmd::Wait {
        return Err(
            "--ready and --timeout go with wait: reapd ctl wait --ready [--timeout MS]".into(),
        );
    }
    let mut request = serde_json::Map::new();
    request.insert("cmd".into(), spec.name.into());
    for (arg, value) in spec.args.iter().zip(rest) {
        let value = match arg.kind {
            ArgKind::Service => value.clone(),
            // Checked here, so that a typo is a usage error before anything is sent.
            ArgKind::Signal => parse_signal(value)?.as_str().to_string(),
        };
        request.insert(arg.kind.field().into(), value.into());
    }
    for (short, value) in options {
        let Some(o) = spec.options().iter().find(|o| o.short == short) else {
            return Err(format!("{word} takes no option -{short}"));
        };
        let v: serde_json::Value = match value {
            None => true.into(),
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| format!("-{short}: expected a number of lines, found {v:?}"))?
                .into(),
        };
        request.insert(o.field.into(), v);
    }
    Ok(Command::Ctl(CtlArgs {
        socket,
        json,
        request: serde_json::Value::Object(request).to_string(),
        cmd: spec.cmd,
        wait,
        timeout_ms,
    }))
}

fn text(p: &mut lexopt::Parser) -> Result<String, String> {
    p.value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|v| format!("{v:?} is not valid UTF-8"))
}

fn millis(p: &mut lexopt::Parser, opt: &str) -> Result<u64, String> {
    let v = text(p)?;
    v.parse()
        .map_err(|_| format!("{opt}: expected milliseconds as an integer, found {v:?}"))
}

/// The default control socket for a user.
pub fn default_socket(euid: u32, xdg_runtime_dir: Option<OsString>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from("/run/reapd.sock");
    }
    match xdg_runtime_dir.filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("reapd.sock"),
        None => PathBuf::from(format!("/tmp/reapd-{euid}.sock")),
    }
}

/// The longest path a Unix socket can be bound at: `sun_path` holds 108 bytes, the last a NUL.
pub const SOCKET_PATH_MAX: usize = 107;

/// Why a control socket path cannot be used, if it cannot (the one check for the command line,
/// `REAPD_SOCKET` and the config file).
pub fn socket_path_problem(len: usize) -> Option<String> {
    (len > SOCKET_PATH_MAX).then(|| {
        format!("{len} bytes long; a Unix socket path must be at most {SOCKET_PATH_MAX} bytes")
    })
}

/// Picks the socket path: command line, then `REAPD_SOCKET`, then the config file, then the
/// default.
pub fn resolve_socket(
    cli: Option<PathBuf>,
    env: Option<OsString>,
    file: Option<PathBuf>,
    default: PathBuf,
) -> PathBuf {
    cli.or_else(|| env.filter(|e| !e.is_empty()).map(PathBuf::from))
        .or(file)
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(
            std::iter::once("reapd")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    #[test]
    fn run_modes() {
        assert_eq!(
            p(&[
                "--config",
                "x.json",
                "--shutdown-timeout",
                "5000",
                "-s",
                "/tmp/s"
            ]),
            Ok(Command::Run(RunArgs {
                config: Some("x.json".into()),
                socket: Some("/tmp/s".into()),
                shutdown_timeout: Some(5000),
                ..RunArgs::default()
            }))
        );
        let Ok(Command::Run(a)) = p(&[
            "--stop-signal",
            "INT",
            "--",
            "sh",
            "-c",
            "exit 7",
            "--",
            "x",
        ]) else {
            panic!("parse")
        };
        assert_eq!(a.command, ["sh", "-c", "exit 7", "--", "x"]);
        assert_eq!(a.stop_signal, Some(Signal::SIGINT));
        let Ok(Command::Run(a)) = p(&["--cgroups", "off", "-c", "x"]) else {
            panic!("parse")
        };
        assert_eq!(a.cgroups, Some(CgroupMode::Off));
        let e = p(&["--cgroups", "maybe", "-c", "x"]).unwrap_err();
        assert!(
            e.contains("--cgroups: expected auto, off or required"),
            "{e}"
        );
        assert_eq!(p(&["-h"]), Ok(Command::Help));
        assert_eq!(p(&["--version"]), Ok(Command::Version));
    }

    #[test]
    fn usage_errors_explain_themselves() {
        assert!(p(&[]).unwrap_err().contains("nothing to supervise"));
        assert!(
            p(&["-c", "x", "--", "sleep"])
                .unwrap_err()
                .contains("not both")
        );
        assert!(p(&["sleep", "1"]).unwrap_err().contains("reapd -- sleep"));
        assert!(
            p(&["--shutdown-timeout", "10s", "-c", "x"])
                .unwrap_err()
                .contains("expected milliseconds")
        );
        assert!(
            p(&["--notify-fd", "1", "-c", "x"])
                .unwrap_err()
                .contains("3 or more")
        );
        assert!(p(&["--bogus"]).unwrap_err().contains("--bogus"));
        assert!(
            p(&["-c", "x", "--stop-timeout", "5"])
                .unwrap_err()
                .contains("apply to -- CMD")
        );
    }

    #[test]
    fn ctl_logs_takes_its_options_anywhere_and_only_logs_does() {
        let Ok(Command::Ctl(c)) = p(&["ctl", "-f", "logs", "web", "-n", "5"]) else {
            panic!()
        };
        assert_eq!(c.cmd, Cmd::Logs);
        let v: serde_json::Value = serde_json::from_str(&c.request).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"cmd": "logs", "name": "web", "follow": true, "lines": 5})
        );
        assert_eq!(
            p(&["ctl", "stop", "web", "-f"]),
            Err("stop takes no option -f".into())
        );
        assert_eq!(
            p(&["ctl", "logs", "web", "-n", "lots"]),
            Err("-n: expected a number of lines, found \"lots\"".into())
        );
        assert_eq!(
            p(&["ctl", "logs"]),
            Err("usage: reapd ctl logs NAME [-f] [-n N]".into())
        );
    }

    #[test]
    fn check_and_ctl() {
        assert_eq!(
            p(&["check", "--config", "a.json"]),
            Ok(Command::Check {
                config: "a.json".into()
            })
        );
        assert_eq!(
            p(&["check", "a.json"]),
            Ok(Command::Check {
                config: "a.json".into()
            })
        );
        let Ok(Command::Ctl(c)) = p(&["ctl", "--json", "stop", "web"]) else {
            panic!("parse")
        };
        assert!(c.json);
        assert_eq!(c.request, r#"{"cmd":"stop","name":"web"}"#);
        let Ok(Command::Ctl(c)) = p(&["ctl", "signal", "web", "hup", "-s", "/x"]) else {
            panic!("parse")
        };
        assert_eq!(
            c.request,
            r#"{"cmd":"signal","name":"web","signal":"SIGHUP"}"#
        );
        assert_eq!(c.socket, Some("/x".into()));
        assert!(
            p(&["ctl", "stop"])
                .unwrap_err()
                .contains("usage: reapd ctl stop NAME")
        );
        assert!(
            p(&["ctl", "lst"])
                .unwrap_err()
                .contains("did you mean \"list\"")
        );
        assert!(p(&["ctl"]).is_err());
        assert_eq!(
            p(&["ctl", "ping", "x"]),
            Err("ping takes no arguments".into())
        );
        assert_eq!(
            p(&["ctl", "signal", "web"]),
            Err("usage: reapd ctl signal NAME SIGNAL".into())
        );
        assert!(
            p(&["ctl", "signal", "web", "NOPE"])
                .unwrap_err()
                .contains("NOPE")
        );
    }

    #[test]
    fn ctl_takes_every_command_of_the_registry() {
        for spec in COMMANDS {
            let mut words = vec!["ctl", spec.name];
            words.extend(spec.args.iter().map(|a| match a.kind {
                ArgKind::Service => "web",
                ArgKind::Signal => "TERM",
            }));
            let Ok(Command::Ctl(c)) = p(&words) else {
                panic!("{words:?}")
            };
            assert_eq!(c.cmd, spec.cmd);
            // What ctl sends is a request the daemon accepts, for the same command.
            let env = crate::wire::protocol::parse_request(c.request.as_bytes()).expect(&c.request);
            assert_eq!(env.request.cmd(), spec.cmd);
        }
    }

    #[test]
    fn help_lists_every_command_with_its_arguments() {
        let text = usage();
        for spec in COMMANDS {
            let line = format!("  {:<28}{}\n", spec.usage(), spec.about);
            assert!(text.contains(&line), "{line}");
        }
        assert!(text.contains("ctl commands:\n  ping "), "{text}");
        assert!(text.contains("Exit status:"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
    }

    #[test]
    fn socket_precedence() {
        let d = default_socket(1000, Some("/run/user/1000".into()));
        assert_eq!(d, PathBuf::from("/run/user/1000/reapd.sock"));
        assert_eq!(default_socket(0, None), PathBuf::from("/run/reapd.sock"));
        assert_eq!(
            default_socket(1000, None),
            PathBuf::from("/tmp/reapd-1000.sock")
        );
        let r = |cli: Option<&str>, env: Option<&str>, file: Option<&str>| {
            resolve_socket(
                cli.map(Into::into),
                env.map(Into::into),
                file.map(Into::into),
                "/d".into(),
            )
        };
        assert_eq!(r(Some("/c"), Some("/e"), Some("/f")), PathBuf::from("/c"));
        assert_eq!(r(None, Some("/e"), Some("/f")), PathBuf::from("/e"));
        assert_eq!(r(None, None, Some("/f")), PathBuf::from("/f"));
        assert_eq!(r(None, Some(""), None), PathBuf::from("/d"));
    }
}
