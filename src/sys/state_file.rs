//! Reading and writing the state file, `<socket>.state` (format: `wire::state_file`).
//!
//! Owns: the file's I/O: written whole to a temporary name and renamed over the old one, so a
//! reader never sees half a file; read with a size limit, without following symlinks and only if
//! it is a regular file, so nothing at that path can stall or mislead start-up.
//! Must never: fail the daemon. A state file that cannot be written costs a warning (crash
//! recovery is then unavailable); one that cannot be read is ignored with a warning.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use log::warn;

use crate::wire::state_file::{self, StateRecord};

/// Larger than any real state file (a line per process reapd started): anything bigger is not
/// one of reapd's.
const MAX_SIZE: u64 = 1024 * 1024;

/// `<socket>.state`.
pub fn path_for(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".state");
    PathBuf::from(p)
}

/// Reads a predecessor's state file, if there is one.
pub fn read(path: &Path) -> Option<StateRecord> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(
                "cannot read state file {}: {e}; processes a crashed reapd left are not looked for",
                path.display()
            );
            return None;
        }
    };
    let meta = file.metadata().ok()?;
    if !meta.file_type().is_file() || meta.len() > MAX_SIZE {
        warn!(
            "{} is not a state file written by reapd (not a regular file, or over {MAX_SIZE} bytes); ignoring it",
            path.display()
        );
        return None;
    }
    let mut text = String::new();
    if let Err(e) = (&mut file).take(MAX_SIZE).read_to_string(&mut text) {
        warn!("cannot read state file {}: {e}", path.display());
        return None;
    }
    Some(state_file::parse(&text))
}

/// Replaces the state file with `rec`.
pub fn write(path: &Path, rec: &StateRecord) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| -> io::Result<()> {
        let mut f: File = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&tmp)?;
        if !f.metadata()?.file_type().is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        f.write_all(state_file::render(rec).as_bytes())?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        warn!(
            "cannot write state file {} ({e}): if reapd dies without cleaning up, the next instance \
             will not know what to stop",
            path.display()
        );
        let _ = fs::remove_file(&tmp);
    }
}

/// Removes the state file after a clean shutdown.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() || m.file_type().is_fifo() => fs::remove_file(path),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
