//! The `reapd` binary: parses the command line and hands over to the daemon, `check` or `ctl`.

// As PID 1 a panic (with panic = "abort", any panic) takes the whole container down, so the
// daemon may contain nothing that can panic on input: no unwrap, expect, panic! or unchecked
// indexing. Unit tests are exempt (clippy.toml); integration tests are separate crates.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![deny(unsafe_code)]

use std::path::PathBuf;

use log::{error, warn};
use reapd::core::io::Mode;
use reapd::core::supervisor::SINGLE_NAME;
use reapd::ctl;
use reapd::sys::config_file;
use reapd::sys::event_loop::{self, Setup};
use reapd::sys::notify::Notifier;
use reapd::sys::signals::{self, SignalSource};
use reapd::sys::spawn::{self, Spawner};
use reapd::sys::{logging, procfs};
use reapd::wire::cli::{self, Command, RunArgs};
use reapd::wire::config::{Config, RestartPolicy, ServiceSpec};
use reapd::wire::exit::ExitCode;

/// The first code of reapd's that runs: blocks the signals reapd handles, so that one sent in the
/// instant after exec is held until the handlers are installed (see
/// `sys::signals::block_handled_signals`). It lives in the binary, not the library, so that
/// programs linking the library (the tests) keep their signals.
#[allow(unsafe_code)]
mod early {
    // SAFETY: `.preinit_array` entries are called once, before any other initialiser and before
    // `main`, with no arguments; the function is `extern "C"`, takes none, and only makes one raw
    // system call (no libc or Rust runtime state is needed).
    #[used]
    #[unsafe(link_section = ".preinit_array")]
    static BLOCK_SIGNALS_AT_LOAD: extern "C" fn() = reapd::sys::signals::block_handled_signals;
}

fn main() {
    std::process::exit(real_main());
}

/// Runs the command; returns the process's exit status (see [`ExitCode`]).
fn real_main() -> i32 {
    let command = match cli::parse(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reapd: {e}\nTry `reapd --help`.");
            return ExitCode::Usage.code();
        }
    };
    // Only the daemon holds its signals until the handlers exist; `ctl watch` must still die of
    // Ctrl-C.
    if !matches!(command, Command::Run(_)) {
        let _ = signals::unblock_all();
    }
    match command {
        Command::Help => {
            print!("{}", cli::usage());
            ExitCode::Success.code()
        }
        Command::Version => {
            println!("reapd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::Success.code()
        }
        Command::Check { config } => match config_file::load(&config) {
            Ok(cfg) => {
                for w in &cfg.warnings {
                    eprintln!("warning: {w}");
                }
                println!("{}: {}", config.display(), cfg.summary());
                ExitCode::Success.code()
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!(
                    "reapd: {}: {} error{}",
                    config.display(),
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
                ExitCode::Usage.code()
            }
        },
        Command::Ctl(args) => {
            let socket = cli::resolve_socket(
                args.socket.clone(),
                std::env::var_os("REAPD_SOCKET"),
                None,
                default_socket(),
            );
            ctl::run(&args, &socket).code()
        }
        Command::Run(args) => daemon(args),
    }
}

fn default_socket() -> PathBuf {
    cli::default_socket(
        nix::unistd::geteuid().as_raw(),
        std::env::var_os("XDG_RUNTIME_DIR"),
    )
}

/// Runs the daemon; returns its exit status: the shutdown's verdict, or why it could not start.
fn daemon(args: RunArgs) -> i32 {
    // Before anything else opens a descriptor: nothing inherited may leak into services.
    spawn::cloexec_inherited_fds();
    let level = args
        .log_level
        .clone()
        .or_else(|| std::env::var("REAPD_LOG").ok())
        .unwrap_or_else(|| "info".into());
    logging::init(&level);
    // As PID 1, a signal without a handler is dropped: install handlers before anything else.
    // Until now the signals reapd handles were blocked (see `early`); one that arrived meanwhile
    // is delivered to its handler when they are unblocked, and reapd acts on it before it starts
    // any service.
    let signals = match SignalSource::install() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return ExitCode::CannotStart.code();
        }
    };
    // A parent may also have started reapd with signals blocked: a blocked SIGTERM would never
    // reach the handlers.
    if let Err(e) = signals::unblock_all() {
        warn!("cannot unblock signals: {e}");
    }
    if procfs::read_stat(std::process::id() as i32).is_none() {
        error!(
            "cannot read /proc/self/stat: reapd needs /proc mounted to find and stop process trees"
        );
        return ExitCode::CannotStart.code();
    }
    let (mode, mut config) = match &args.config {
        Some(path) => match config_file::load(path) {
            Ok(c) => (Mode::Config, c),
            Err(errors) => {
                for e in &errors {
                    error!("{}: {e}", path.display());
                }
                return ExitCode::Usage.code();
            }
        },
        None => match single_command_config(&args) {
            Ok(c) => (Mode::Single, c),
            Err(e) => {
                error!("{e}");
                return ExitCode::Usage.code();
            }
        },
    };
    if let Some(ms) = args.shutdown_timeout
        && let Err(e) = config.set_shutdown_timeout(ms)
    {
        error!("--shutdown-timeout: {e}");
        return ExitCode::Usage.code();
    }
    if let Some(mode) = args.cgroups {
        config.cgroups = mode;
    }
    for w in std::mem::take(&mut config.warnings) {
        warn!("{w}");
    }
    let env_socket = std::env::var_os("REAPD_SOCKET").filter(|s| !s.is_empty());
    let socket = match mode {
        Mode::Config => Some(cli::resolve_socket(
            args.socket.clone(),
            env_socket,
            config.socket.clone(),
            default_socket(),
        )),
        // Several single-command instances may run side by side: a socket only on request.
        Mode::Single => args.socket.clone().or(env_socket.map(PathBuf::from)),
    };
    if let Some(s) = &socket
        && let Some(problem) = cli::socket_path_problem(s.as_os_str().len())
    {
        error!("socket path {} is too long: {problem}", s.display());
        return ExitCode::Usage.code();
    }
    if let Some(fd) = args.notify_fd
        && !spawn::fd_is_open(fd)
    {
        error!(
            "--notify-fd {fd}: descriptor {fd} is not open; the service manager must provide it"
        );
        return ExitCode::Usage.code();
    }
    become_subreaper();
    let spawner = Spawner::prepare();
    let notify_socket = std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|s| !s.is_empty());
    let notifier = Notifier::new(args.notify_fd, notify_socket);
    let setup = Setup {
        mode,
        config,
        config_path: args.config.clone(),
        socket,
        shutdown_override: args.shutdown_timeout,
        notifier,
        spawner,
        signals,
    };
    event_loop::run(setup)
}

fn single_command_config(args: &RunArgs) -> Result<Config, String> {
    let mut spec = ServiceSpec::new(SINGLE_NAME, args.command.clone());
    spec.restart = RestartPolicy::Never;
    if let Some(sig) = args.stop_signal {
        spec.stop_signal = sig;
    }
    let mut config = Config::default();
    if let Some(warning) = args.stop_timeout.and_then(|ms| spec.set_stop_timeout(ms)) {
        config.warnings.push(format!("--stop-timeout {warning}"));
    }
    if spec.cmd.first().is_none_or(|c| c.is_empty()) {
        return Err("-- needs a command to run".into());
    }
    config.services.push(spec);
    Ok(config)
}

/// Orphans of services must come back to reapd, or they escape shutdown and linger as zombies.
fn become_subreaper() {
    if std::process::id() == 1 {
        return;
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        warn!(
            "cannot become a child subreaper ({e}): processes that services orphan will be reparented \
             to PID 1 instead of reapd, so shutdown cannot find or reap them; run reapd as PID 1 or on Linux 3.4+"
        );
    }
}
