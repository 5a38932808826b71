//! Starting processes: a clean slate for every service and hook.
//!
//! Owns: `fork`/`exec` through `std::process::Command`, with what runs between them: a new
//! session, an empty signal mask, default signal dispositions and the file limit reapd found,
//! then a service's own limits, umask and identity (`sys::identity`); and, for a service whose
//! output goes through reapd, the pipes its stdout and stderr are (`sys::output`).
//! Must never: leak one of reapd's descriptors into a child (everything reapd opens is
//! close-on-exec), or run anything but async-signal-safe calls between fork and exec.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::core::proctree::Pid;
use crate::sys::identity::{self, Prepared};
use crate::sys::output::PipePair;
use crate::sys::rlimits::{self, Nofile};
use crate::wire::config::Launch;

/// What to start.
#[derive(Debug)]
pub struct SpawnSpec<'a> {
    /// argv; the program is looked up in `PATH` when it has no slash.
    pub cmd: &'a [String],
    /// Variables added to (or replacing) reapd's environment.
    pub env: &'a [(String, String)],
    /// Working directory.
    pub cwd: Option<&'a PathBuf>,
    /// Keep reapd's stdin instead of `/dev/null`.
    pub inherit_stdin: bool,
    /// Hand this descriptor (reapd's, close-on-exec) to the child as the given number: the write
    /// end of a notification pipe.
    pub notify: Option<(RawFd, i32)>,
    /// Output, identity and limits.
    pub launch: &'a Launch,
    /// A cgroup's `cgroup.procs`, open for writing: the child joins that cgroup before anything
    /// else, so it never runs outside it.
    pub cgroup: Option<RawFd>,
}

/// A started process, with the read ends of its output pipes when its output goes through
/// reapd.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid.
    pub pid: Pid,
    /// stdout, stderr.
    pub output: Option<[std::os::fd::OwnedFd; 2]>,
}

/// What every child receives from reapd besides its spec: the open-file limit reapd found (it
/// raises its own soft limit to track many pidfds, but programs that use `select()` break above
/// 1024), and `/dev/null` as stdin, opened once at start-up.
#[derive(Debug)]
pub struct Spawner {
    nofile: Option<Nofile>,
    devnull: Option<std::fs::File>,
}

impl Spawner {
    /// Raises reapd's own soft `RLIMIT_NOFILE` to the hard limit, remembering the original, and
    /// opens `/dev/null` (close-on-exec).
    pub fn prepare() -> Spawner {
        let devnull = std::fs::File::open("/dev/null")
            .map_err(|e| {
                log::warn!(
                    "cannot open /dev/null ({e}); services get an empty pipe as stdin instead"
                );
            })
            .ok();
        Spawner {
            nofile: rlimits::raise_own_nofile(),
            devnull,
        }
    }

    /// Starts a process in its own session.
    pub fn spawn(&self, spec: &SpawnSpec<'_>) -> Result<Spawned, String> {
        // exec's ENOENT cannot tell a missing program from a missing working directory.
        if let Some(dir) = spec.cwd
            && !dir.is_dir()
        {
            return Err(format!(
                "working directory {} does not exist or is not a directory (check cwd)",
                dir.display()
            ));
        }
        // An empty pipe reads like /dev/null (immediate end of file) where the root has none:
        // std would otherwise open /dev/null itself and report its absence as a failed exec.
        let stdin = match (&self.devnull, spec.inherit_stdin) {
            (_, true) => Stdio::inherit(),
            (Some(null), false) => null
                .try_clone()
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::piped()),
            (None, false) => Stdio::piped(),
        };
        spawn(spec, stdin, self.nofile)
    }
}

fn spawn(spec: &SpawnSpec<'_>, stdin: Stdio, nofile: Option<Nofile>) -> Result<Spawned, String> {
    let Some((program, args)) = spec.cmd.split_first() else {
        return Err("empty command".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        // Readiness belongs to reapd; a service that saw NOTIFY_SOCKET could report for it.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("REAPD_SERVICE")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(stdin)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    if let Some(dir) = spec.cwd {
        cmd.current_dir(dir);
    }
    let mut output = None;
    if spec.launch.log.piped() {
        let PipePair {
            read,
            write: [out, err],
        } = PipePair::open().map_err(|e| format!("cannot open pipes for its output: {e}"))?;
        // The write ends go to the child only: `cmd` and with it these close when this returns.
        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        output = Some(read);
    }
    let prepared = Prepared::new(spec.launch);
    let notify = spec.notify;
    if let Some((_, to)) = notify
        && let Ok((soft, _)) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        && u64::try_from(to).is_ok_and(|fd| fd >= soft)
    {
        // dup2 would fail with a bare EBADF that reads like a problem with the program.
        return Err(format!(
            "ready.notify_fd {to} is not below the open-file limit ({soft}): choose a smaller \
             descriptor, or raise the limit (ulimit -n) of whoever starts reapd"
        ));
    }
    if let Some(fd) = spec.cgroup {
        // SAFETY: runs between fork and exec, first of the child's steps: one write(2) of a
        // static byte string to a descriptor the parent holds open until the spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                // "0" is the writer itself: the child moves into the cgroup before it execs.
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (setsid, sigprocmask, sigaction, dup2, fcntl, setrlimit, umask, setgroups, setgid,
    // setuid) on stack data and data prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // std keeps the parent's mask and ignored signals across exec; reset both so a
            // service can be stopped by the signals it is sent.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            reset_dispositions();
            if let Some((from, to)) = notify {
                // dup2 leaves the new descriptor open across exec; onto itself it changes
                // nothing, so the close-on-exec flag is cleared by hand.
                if from == to {
                    if libc::fcntl(to, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(from, to) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(Nofile { soft, hard }) = nofile {
                let lim = libc::rlimit {
                    rlim_cur: soft as libc::rlim_t,
                    rlim_max: hard as libc::rlim_t,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            // The service's own limits (nofile among them) win over the one reapd found.
            match &prepared {
                Some(p) => p.apply(),
                None => Ok(()),
            }
        });
    }
    match cmd.spawn() {
        // Dropping `Child` neither waits nor kills; reapd reaps every child with waitpid(-1).
        Ok(child) => Ok(Spawned {
            pid: Pid::try_from(child.id()).map_err(|_| "pid out of range".to_string())?,
            output,
        }),
        Err(e) => {
            if let Some(step) = identity::explain(&e, spec.launch) {
                return Err(step);
            }
            let cwd = spec
                .cwd
                .map(|d| format!(" in {}", d.display()))
                .unwrap_or_default();
            Err(format!("cannot execute {program:?}{cwd}: {e}"))
        }
    }
}

/// Resets every signal, real-time ones included, to its default action. Runs between fork and
/// exec, so it only makes raw system calls.
///
/// glibc refuses to touch signals 32 and 33 (its own thread signals), but a parent can still hand
/// them down ignored, so the kernel's `rt_sigaction` is called directly for every signal.
///
/// # Safety
///
/// Only in the child between `fork` and `exec` (in `pre_exec`): it replaces every handler of the
/// process, which would break any part of reapd that relies on one, and must stay
/// async-signal-safe (no allocation, no lock).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn reset_dispositions() {
    // The kernel's struct sigaction on these architectures: handler, flags, restorer, mask.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a valid signal number, a pointer to a live struct of the kernel's layout, no
        // old action, and the kernel's sigset size (8 bytes). Failure leaves the signal as it was.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

/// Elsewhere the kernel's layout differs: reset what glibc lets us reset.
///
/// # Safety
///
/// As above: only between `fork` and `exec`.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn reset_dispositions() {
    // SAFETY: sigaction with a zeroed struct (SIG_DFL) is async-signal-safe.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in (1..=libc::SIGRTMAX()).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP) {
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }
}

/// Marks every descriptor from 3 up close-on-exec, so nothing reapd inherited (a leaked lock, a
/// readiness fd) reaches a service. reapd's own descriptors are all opened close-on-exec anyway.
pub fn cloexec_inherited_fds() {
    // SAFETY: close_range only changes flags on descriptors; it touches no memory.
    let r = unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    };
    if r != 0 {
        // Kernels before 5.11: fall back to walking /proc/self/fd.
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            for fd in fds.into_iter().filter(|&fd| fd > 2) {
                // SAFETY: F_SETFD on a descriptor number; harmless if it was closed meanwhile.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

/// True if `fd` is an open descriptor.
pub fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}
