//! Reading the config file: the one way start-up, `reapd check` and every reload get its text,
//! and the text of the env files it names (`env_file`), under the same rules.
//!
//! Owns: opening the path (symlinks followed, close-on-exec, non-blocking, never becoming a
//! controlling terminal), refusing anything that is not a regular file, and the size limit.
//! Must never: block. A reload runs on the event loop's thread, so a FIFO with no writer, a
//! device that never ends (`/dev/zero`) or a huge file at the config path would freeze reapd,
//! shutdown included; all of them are refused with an error instead.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::wire::config::{self, Config, ConfigError, join};
use crate::wire::env_file;

/// Largest accepted config file. A config of 10 000 services is about 1 MiB; the limit leaves
/// room for four times that while keeping a reload's read and parse on the loop thread short.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Reads and validates a config file for start-up, `reapd check` or a reload.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = read(path).map_err(|message| {
        vec![ConfigError {
            path: String::new(),
            message,
        }]
    })?;
    let mut config = config::parse(&text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let errors = merge_env_files(&mut config, base);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// Reads each service's `env_file` (a relative path is taken from the config file's directory)
/// and merges its variables under the service's `env`, which wins. Read at every load, so an
/// error shows in `reapd check` and refuses a reload, and a changed file counts as a changed
/// service at reload.
fn merge_env_files(config: &mut Config, base: &Path) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for s in &mut config.services {
        let Some(file) = &s.launch.env_file else {
            continue;
        };
        let file = base.join(file);
        let at = join(&join("services", &s.name), "env_file");
        let vars = read(&file).and_then(|text| {
            env_file::parse(&text)
                .map_err(|(line, message)| format!("{} line {line}: {message}", file.display()))
        });
        match vars {
            Ok(vars) => {
                // A later line of the file wins over an earlier one; `env` over both.
                let from_file: std::collections::BTreeMap<String, String> =
                    vars.into_iter().collect();
                for (k, v) in from_file {
                    s.env.entry(k).or_insert(v);
                }
            }
            Err(message) => errors.push(ConfigError { path: at, message }),
        }
    }
    errors
}

/// The text of the config file, or why it cannot be had (a sentence naming the file).
pub fn read(path: &Path) -> Result<String, String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    // Look before opening: opening a device can have effects of its own (a tape rewinds, a
    // terminal becomes ours), and a FIFO is refused without touching it.
    let before = std::fs::metadata(path).map_err(cannot)?;
    refuse_unless_regular(path, &before)?;
    // O_NONBLOCK: if the path was swapped for a FIFO since the look above, open and read return
    // at once instead of waiting for a writer. O_NOCTTY: as PID 1 or a session leader, opening
    // a terminal must not make it reapd's. std adds O_CLOEXEC.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(cannot)?;
    // What counts is the file actually opened, not what the path named a moment ago.
    let meta = file.metadata().map_err(cannot)?;
    refuse_unless_regular(path, &meta)?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_big(path, &format!("{} bytes", meta.len())));
    }
    read_bounded(path, file)
}

/// Reads at most one byte more than the limit, so a file that grew after `fstat` is still
/// refused instead of read without end.
fn read_bounded(path: &Path, file: File) -> Result<String, String> {
    let mut raw = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if raw.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big(path, &format!("over {MAX_CONFIG_BYTES} bytes")));
    }
    String::from_utf8(raw).map_err(|e| {
        format!(
            "cannot read {}: not UTF-8 text (invalid byte at offset {}); save the file as UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

fn refuse_unless_regular(path: &Path, meta: &Metadata) -> Result<(), String> {
    let ft = meta.file_type();
    let what = if ft.is_file() {
        return Ok(());
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "not a file reapd knows"
    };
    Err(format!(
        "cannot read {}: it is {what}, not a regular file; reapd reads its config and env files \
         only from regular files (a symlink to one is fine): write it to a file and point to that",
        path.display()
    ))
}

fn too_big(path: &Path, size: &str) -> String {
    format!(
        "cannot read {}: it is {size}, and a config or env file may have at most \
         {MAX_CONFIG_BYTES} bytes (4 MiB); is this the right file?",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("reapd-config-file-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn regular_files_and_symlinks_to_them_are_read() {
        let dir = tmp("ok");
        let file = dir.join("c.json");
        std::fs::write(&file, r#"{"services":{}}"#).expect("write");
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        assert_eq!(read(&file).as_deref(), Ok(r#"{"services":{}}"#));
        assert_eq!(read(&link).as_deref(), Ok(r#"{"services":{}}"#));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fifos_devices_directories_and_big_files_are_refused() {
        let dir = tmp("refused");
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let e = read(&fifo).expect_err("fifo");
        assert!(
            e.contains("it is a FIFO (named pipe), not a regular file"),
            "{e}"
        );
        let e = read(Path::new("/dev/zero")).expect_err("device");
        assert!(e.contains("it is a character device"), "{e}");
        let e = read(&dir).expect_err("directory");
        assert!(e.contains("it is a directory"), "{e}");
        let big = dir.join("big.json");
        File::create(&big)
            .and_then(|f| f.set_len(MAX_CONFIG_BYTES + 10))
            .expect("sparse file");
        let e = read(&big).expect_err("too big");
        assert!(
            e.contains(&format!("it is {} bytes", MAX_CONFIG_BYTES + 10)),
            "{e}"
        );
        let exact = dir.join("exact.json");
        File::create(&exact)
            .and_then(|f| f.set_len(MAX_CONFIG_BYTES))
            .expect("sparse file");
        assert!(read(&exact).is_ok(), "a file of exactly the limit is read");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
