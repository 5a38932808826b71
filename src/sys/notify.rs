//! Telling the service manager about readiness and shutdown.
//!
//! Owns: the s6 `notification-fd` protocol (`--notify-fd N`: one newline once ready, then close)
//! and the systemd `sd_notify` datagrams (`READY=1`, `STOPPING=1`, `STATUS=...`) sent to
//! `$NOTIFY_SOCKET` (a leading `@` names the abstract namespace).
//! Must never: fail the daemon. A manager that went away only costs a debug line.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use log::{debug, warn};

use crate::core::io::Notice;

/// Where readiness and status go.
#[derive(Debug, Default)]
pub struct Notifier {
    ready_fd: Option<OwnedFd>,
    systemd: Option<SocketAddr>,
    ready_sent: bool,
}

impl Notifier {
    /// Takes ownership of `--notify-fd` (if given and open) and reads `NOTIFY_SOCKET` (if set).
    /// The descriptor is the service manager's gift to reapd: nothing else in reapd uses it.
    pub fn new(ready_fd: Option<RawFd>, notify_socket: Option<String>) -> Notifier {
        let ready_fd = ready_fd
            .filter(|&fd| crate::sys::spawn::fd_is_open(fd))
            .map(|fd| {
                // SAFETY: the descriptor is open (checked above) and reapd owns it from here on:
                // main parsed it from --notify-fd and nothing else refers to it.
                unsafe { OwnedFd::from_raw_fd(fd) }
            });
        let systemd = notify_socket.and_then(|s| {
            let addr = match s.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
                None => SocketAddr::from_pathname(&s),
            };
            addr.map_err(|e| warn!("NOTIFY_SOCKET={s:?} is unusable: {e}"))
                .ok()
        });
        Notifier {
            ready_fd,
            systemd,
            ready_sent: false,
        }
    }

    /// Delivers one notice.
    pub fn send(&mut self, notice: &Notice) {
        let msg = match notice {
            Notice::Ready => {
                if self.ready_sent {
                    return;
                }
                self.ready_sent = true;
                if let Some(fd) = self.ready_fd.take() {
                    let mut f = std::fs::File::from(fd);
                    // The newline is the whole protocol; closing the fd (dropping `f`) ends it.
                    if let Err(e) = f.write_all(b"\n") {
                        warn!("cannot write readiness to --notify-fd: {e}");
                    }
                }
                "READY=1".to_string()
            }
            Notice::Stopping => "STOPPING=1".to_string(),
            Notice::Status(s) => format!("STATUS={}", s.replace('\n', " ")),
        };
        if let Some(addr) = &self.systemd {
            let sent =
                UnixDatagram::unbound().and_then(|sock| sock.send_to_addr(msg.as_bytes(), addr));
            if let Err(e) = sent {
                debug!("NOTIFY_SOCKET: cannot send {msg:?}: {e}");
            }
        }
    }
}
