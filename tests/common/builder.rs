//! [`DaemonBuilder`]: how a test starts reapd (see [`super::daemon`]). Every argument, the
//! environment, a wrapper, a blocked signal mask and a notify pipe are set here, and nowhere
//! else. Must never start reapd without the directory's marker in its environment.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::BIN;
use super::daemon::Daemon;
use super::dirs::TestDir;
use super::marked::Marked;

/// How to start reapd: [`Daemon::builder`], the settings, then [`DaemonBuilder::start`] or
/// [`DaemonBuilder::spawn`].
#[derive(Debug)]
pub struct DaemonBuilder {
    dir: TestDir,
    args: Vec<OsString>,
    command: Option<Vec<OsString>>,
    env: Vec<(OsString, OsString)>,
    wrapper: Vec<OsString>,
    blocked: Vec<i32>,
    notify_fd: Option<i32>,
    with_socket: bool,
    /// Leave `cgroups` to the config file even when `REAPD_TEST_CGROUPS` is set.
    config_cgroups: bool,
}

impl DaemonBuilder {
    /// The daemon's directory, for configs that name files in it.
    pub fn dir(&self) -> &TestDir {
        &self.dir
    }

    /// Writes `text` (a `serde_json::Value` or raw text) to `<dir>/config.json` and passes
    /// `--config` with its path.
    pub fn config(mut self, text: impl std::fmt::Display) -> Self {
        let path = self.dir.write("config.json", &text.to_string());
        self.args.push("--config".into());
        self.args.push(path.into());
        self
    }

    /// More arguments (after `--socket` and `--config`).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Single-command mode: `-- argv...` after every other argument.
    pub fn command<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command = Some(
            argv.into_iter()
                .map(|a| a.as_ref().to_os_string())
                .collect(),
        );
        self
    }

    /// An environment variable for reapd (and the wrapper). `REAPD_SOCKET` also tells the
    /// harness where the socket will be when there is no `--socket` ([`DaemonBuilder::no_socket`]).
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.into(), value.as_ref().to_os_string()));
        self
    }

    /// Starts reapd through `argv`, a prefix that ends by exec'ing its arguments (so its pid
    /// becomes reapd's; `unshare --fork` is the exception, and the test knows it), e.g.
    /// `["bash", "-c", "trap '' HUP; exec \"$@\"", "_"]` or `["prlimit", "--nofile=64:64", "--"]`.
    /// The wrapper sees the same environment as reapd.
    pub fn wrapper<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.wrapper = argv
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        self
    }

    /// Signals blocked in the mask reapd (or its wrapper) starts with.
    pub fn blocked_signals(mut self, signals: &[i32]) -> Self {
        self.blocked = signals.to_vec();
        self
    }

    /// Gives reapd the write end of a pipe as descriptor `fd` (for `--notify-fd`); the read end
    /// is [`Daemon::notify`]. The test keeps no copy of the write end, so the read end sees EOF
    /// once reapd (and anything it leaked it to) closes it.
    pub fn notify_pipe(mut self, fd: i32) -> Self {
        self.notify_fd = Some(fd);
        self
    }

    /// No `--socket` argument: reapd opens a socket only if its environment asks for one.
    pub fn no_socket(mut self) -> Self {
        self.with_socket = false;
        self
    }

    /// The config file's `cgroups` decides, whatever `REAPD_TEST_CGROUPS` says (for the tests of
    /// that key).
    pub fn config_cgroups(mut self) -> Self {
        self.config_cgroups = true;
        self
    }

    /// Starts reapd without waiting for anything.
    pub fn spawn(self) -> Daemon {
        let dir = self.dir;
        let marker = dir.marker();
        let from_env = self
            .env
            .iter()
            .find(|(k, _)| k == "REAPD_SOCKET")
            .map(|(_, v)| PathBuf::from(v));
        let socket = match from_env {
            Some(path) if !self.with_socket => path,
            _ => dir.join("s.sock"),
        };
        let log = std::fs::File::create(dir.join("reapd.log")).expect("log file");
        let out = std::fs::File::create(dir.join("stdout.log")).expect("stdout file");
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        if self.with_socket {
            cmd.arg("--socket").arg(&socket);
        }
        // The whole suite runs either way: REAPD_TEST_CGROUPS=off walks /proc only (a test's
        // own --cgroups, given later, still wins).
        if let Some(mode) =
            std::env::var_os("REAPD_TEST_CGROUPS").filter(|m| !m.is_empty() && !self.config_cgroups)
        {
            cmd.arg("--cgroups").arg(mode);
        }
        cmd.args(&self.args);
        if let Some(argv) = &self.command {
            cmd.arg("--").args(argv);
        }
        cmd.env("REAPD_LOG", "debug")
            .env("TEST_DIR", &dir.path)
            .env_remove("REAPD_SOCKET")
            .env_remove("NOTIFY_SOCKET")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log);
        if !self.blocked.is_empty() {
            block_signals(&mut cmd, self.blocked);
        }
        let pipe = self.notify_fd.map(|fd| pipe_as_fd(&mut cmd, fd));
        let proc = Marked::spawn(&mut cmd, &marker);
        // Only reapd holds the write end now.
        let notify = pipe.map(|(read, write)| {
            drop(write);
            std::fs::File::from(read)
        });
        Daemon {
            proc,
            dir,
            socket,
            marker,
            notify,
        }
    }

    /// Starts reapd and waits until it answers `ping`.
    pub fn start(self) -> Daemon {
        let d = self.spawn();
        d.wait_ready();
        d
    }
}

/// Blocks `signals` in the child's initial mask.
fn block_signals(cmd: &mut Command, signals: Vec<i32>) {
    // SAFETY: only sigemptyset, sigaddset and sigprocmask run between fork and exec, on a set
    // built on the stack; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &sig in &signals {
                libc::sigaddset(&mut set, sig);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A pipe whose write end the child gets as descriptor `target`: (read end, write end).
fn pipe_as_fd(cmd: &mut Command, target: i32) -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array. O_CLOEXEC keeps both ends out of
    // whatever other test threads spawn meanwhile.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe2"
    );
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let w = write.as_raw_fd();
    // SAFETY: only dup2 and fcntl run between fork and exec; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            if w == target {
                // dup2 onto itself would keep close-on-exec: clear it instead.
                if libc::fcntl(w, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(w, target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    (read, write)
}

impl Daemon {
    /// A builder for a reapd in a new directory named after `tag`.
    pub fn builder(tag: &str) -> DaemonBuilder {
        Daemon::builder_in(TestDir::new(tag))
    }

    /// A builder for a reapd in `dir` (which may hold what an earlier reapd left there).
    pub fn builder_in(dir: TestDir) -> DaemonBuilder {
        DaemonBuilder {
            dir,
            args: Vec::new(),
            command: None,
            env: Vec::new(),
            wrapper: Vec::new(),
            blocked: Vec::new(),
            notify_fd: None,
            with_socket: true,
            config_cgroups: false,
        }
    }
}
