//! The socket's path and its lock: one instance per socket, and nothing anyone else owns is
//! touched.
//!
//! Owns: `<socket>.lock` (flock; opened without following a symbolic link, and it must be a
//! regular file with a single name), and binding the socket 0600 (the umask is set around
//! `bind`, never `chmod` after), replacing a socket file only when nobody listens on it.
//! Must never: delete or overwrite what another process owns: a socket someone listens on, a
//! symlink's target, a file that is not reapd's.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use log::warn;
use mio::net::UnixListener;

/// Why reapd could not take the socket.
#[derive(Debug)]
pub enum StartError {
    /// Another live instance holds the lock.
    Locked {
        /// The lock file.
        lock: PathBuf,
        /// The holder's pid, as written in the lock file.
        holder: Option<String>,
    },
    /// Anything else, already phrased for the log.
    Other(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Locked { lock, holder } => write!(
                f,
                "another reapd (pid {}) holds {}: stop it first or use another --socket",
                holder.as_deref().unwrap_or("unknown"),
                lock.display()
            ),
            StartError::Other(s) => f.write_str(s),
        }
    }
}

/// The held instance lock.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

/// Opens (creating if need be) the lock file: never through a symbolic link, never blocking
/// on a FIFO, close-on-exec; then insists on a regular file with a single name.
fn open_lock_file(path: &Path) -> Result<File, StartError> {
    let refuse = |what: &str| {
        StartError::Other(format!(
            "lock file {} {what}; refusing to use it (remove it or choose another --socket)",
            path.display()
        ))
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refuse("is a symbolic link"),
            Some(libc::EISDIR) => refuse("is a directory"),
            Some(libc::ENXIO) => refuse("is a FIFO or a socket, not a regular file"),
            _ => {
                let hint = if e.kind() == io::ErrorKind::NotFound {
                    " (does the directory exist?)"
                } else {
                    ""
                };
                StartError::Other(format!(
                    "cannot open lock file {}: {e}{hint}",
                    path.display()
                ))
            }
        })?;
    let meta = file.metadata().map_err(|e| {
        StartError::Other(format!("cannot inspect lock file {}: {e}", path.display()))
    })?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_dir() {
            "a directory"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(refuse(&format!("is {kind}, not a regular file")));
    }
    if meta.nlink() > 1 {
        return Err(refuse(&format!(
            "has {} names (hard links), so writing it would change another file",
            meta.nlink()
        )));
    }
    Ok(file)
}

impl Lock {
    /// Takes `<socket>.lock` and writes our pid into it.
    ///
    /// The lock file is opened without following a symbolic link and must be a regular file
    /// with no other name, so the pid never lands in a file someone pointed the path at.
    ///
    /// The lock file is removed at exit. A second instance may have opened the old file just
    /// before that and then lock a file that no longer has a name, so after locking we check
    /// that the path still names the file we hold, and start over if it does not.
    pub fn acquire(socket: &Path) -> Result<Lock, StartError> {
        let mut path = socket.as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        for _ in 0..5 {
            let mut file = open_lock_file(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(StartError::Locked {
                        lock: path,
                        holder: (!holder.is_empty()).then(|| holder.to_string()),
                    });
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(StartError::Other(format!(
                        "cannot lock {}: {e}",
                        path.display()
                    )));
                }
            }
            let same = match (file.metadata(), fs::symlink_metadata(&path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                continue;
            }
            let pid = std::process::id();
            let written = file
                .set_len(0)
                .and_then(|()| file.write_all(format!("{pid}\n").as_bytes()));
            if let Err(e) = written {
                return Err(StartError::Other(format!(
                    "cannot write lock file {}: {e}",
                    path.display()
                )));
            }
            return Ok(Lock { file, path });
        }
        Err(StartError::Other(format!(
            "lock file {} keeps being replaced; is another reapd starting and stopping?",
            path.display()
        )))
    }

    /// Removes the lock file, then releases the lock (in that order, so nobody takes a lock on a
    /// file that is about to disappear without noticing).
    pub fn release(self) -> io::Result<()> {
        let r = fs::remove_file(&self.path);
        drop(self.file);
        r
    }
}

/// Binds the control socket with mode 0600. A socket file left by a dead instance is replaced;
/// a socket where another process is listening, or anything that is not a socket, is left alone.
pub fn bind(path: &Path) -> Result<UnixListener, StartError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // We hold the lock, so no reapd is listening here; but another program may be.
            match probe_listener(path) {
                Probe::Stale => {}
                Probe::Vanished => return bind_new(path),
                Probe::Listening => {
                    return Err(StartError::Other(format!(
                        "another process is listening on {}: refusing to replace its socket \
                         (stop that process or choose another --socket)",
                        path.display()
                    )));
                }
                Probe::Unknown(e) => {
                    return Err(StartError::Other(format!(
                        "cannot tell whether another process is listening on {} ({e}): refusing \
                         to replace it (remove it if it is stale, or choose another --socket)",
                        path.display()
                    )));
                }
            }
            fs::remove_file(path).map_err(|e| {
                StartError::Other(format!(
                    "cannot remove stale socket {}: {e}",
                    path.display()
                ))
            })?;
            warn!(
                "replaced stale socket {} left by an earlier instance",
                path.display()
            );
        }
        Ok(_) => {
            return Err(StartError::Other(format!(
                "{} exists and is not a socket; refusing to replace it (remove it or choose another --socket)",
                path.display()
            )));
        }
        Err(_) => {}
    }
    bind_new(path)
}

/// What a connection attempt says about an existing socket file.
#[derive(Debug)]
enum Probe {
    /// Refused: nobody listens, the file is a leftover.
    Stale,
    /// The file disappeared meanwhile.
    Vanished,
    /// Something accepted (or has a full backlog).
    Listening,
    /// Anything else: no conclusion, so nothing may be removed.
    Unknown(nix::errno::Errno),
}

/// Connects to `path` without blocking: only `ECONNREFUSED` proves that nobody listens.
fn probe_listener(path: &Path) -> Probe {
    use nix::errno::Errno;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let addr = match UnixAddr::new(path) {
        Ok(a) => a,
        Err(e) => return Probe::Unknown(e),
    };
    let fd = match socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    ) {
        Ok(fd) => fd,
        Err(e) => return Probe::Unknown(e),
    };
    let probe = match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        // EAGAIN: the listener's backlog is full, so it is very much alive.
        Ok(()) | Err(Errno::EAGAIN | Errno::EINPROGRESS) => Probe::Listening,
        Err(Errno::ECONNREFUSED) => Probe::Stale,
        Err(Errno::ENOENT) => Probe::Vanished,
        Err(e) => Probe::Unknown(e),
    };
    drop(fd);
    probe
}

fn bind_new(path: &Path) -> Result<UnixListener, StartError> {
    // The umask applies at bind time, so the socket never exists with wider permissions.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    bound.map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::NotFound {
            " (does the directory exist?)"
        } else {
            ""
        };
        StartError::Other(format!(
            "cannot bind control socket {}: {e}{hint}",
            path.display()
        ))
    })
}
