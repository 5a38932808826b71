//! A temporary directory per test, the unique names that keep parallel tests apart, and paths of
//! the fixtures in `tests/fixtures`. Must never hand two tests the same name.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique token for this test: in the temp dir name, the env marker and fixture argv.
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("reapdtest-{tag}-{}-{n}-{nanos}", std::process::id())
}

/// A temporary directory removed on drop. Its unique name is the marker of whatever a test
/// starts in it ([`TestDir::marker`]).
#[derive(Debug)]
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        let path = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TestDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// Writes an executable shell script.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.write(name, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    /// The file's text, or "" while it does not exist.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.join(name)).unwrap_or_default()
    }

    /// Stdin on /dev/null, stdout and stderr into the file `name` here (read it back with
    /// [`TestDir::read`]): for a supervisor that runs reapd, whose log is then that file.
    pub fn log_into<'a>(&self, cmd: &'a mut Command, name: &str) -> &'a mut Command {
        let log = std::fs::File::create(self.join(name)).expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log file"))
            .stderr(log)
    }

    /// The marker of what runs for this directory: its unique name.
    pub fn marker(&self) -> String {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("reapdtest")
            .to_string()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Path of a fixture in `tests/fixtures`.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The repository's root (for examples, man pages and scripts).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Copies the regular files of `from` into a new directory `to`, keeping their modes (a service
/// directory of s6 or runit from `examples/`).
pub fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for e in std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("read {}: {e}", from.display()))
        .flatten()
    {
        if e.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::copy(e.path(), to.join(e.file_name()))
                .unwrap_or_else(|err| panic!("copy {}: {err}", e.path().display()));
        }
    }
}
