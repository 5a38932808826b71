//! Shared helpers for the integration tests: a temporary directory per test, the real `reapd`
//! binary started with a unique marker, bounded waits, control-socket clients, and `/proc`
//! lookups that find a test's processes by its marker (never by name).
//!
//! Every process a test starts carries `REAPD_TEST_MARKER=<marker>` in its environment or the
//! marker in its argv. Dropping a [`Daemon`] (also when a test fails) SIGKILLs, by pid, every
//! process that carries its marker, so nothing outlives a test.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_reapd");

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub const SOON: Duration = Duration::from_secs(10);

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

/// A temporary directory removed on drop.
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

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.join(name)).unwrap_or_default()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Path of a fixture script in `tests/fixtures`.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One process seen in `/proc`.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    /// Threads in the group: a `Z` leader with more than one is alive.
    pub threads: u32,
    pub cmdline: String,
}

impl Proc {
    /// Alive as a thread group: not a zombie, or a zombie leader whose other threads run on.
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X') || self.threads > 1
    }
}

/// Threads of a process (field 20 of `/proc/<pid>/stat`).
pub fn thread_count(pid: i32) -> Option<u32> {
    let raw = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = String::from_utf8_lossy(&raw[close + 1..]).to_string();
    rest.split_whitespace().nth(17)?.parse().ok()
}

/// A process's (state, ppid) from `/proc/<pid>/stat`.
pub fn stat_fields(pid: i32) -> Option<(char, i32)> {
    let raw = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = String::from_utf8_lossy(&raw[close + 1..]).to_string();
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// A process's (ppid, process group, session) from `/proc/<pid>/stat`.
pub fn stat_ids(pid: i32) -> Option<(i32, i32, i32)> {
    let raw = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = String::from_utf8_lossy(&raw[close + 1..]).to_string();
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f.get(1)?.parse().ok()?,
        f.get(2)?.parse().ok()?,
        f.get(3)?.parse().ok()?,
    ))
}

/// Every process whose environment or command line contains `marker`, zombies included.
pub fn procs_with_marker(marker: &str) -> Vec<Proc> {
    let mut out = Vec::new();
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let hit = |hay: &[u8]| hay.windows(marker.len()).any(|w| w == marker.as_bytes());
        if (hit(&env) || hit(&cmd))
            && let Some((state, ppid)) = stat_fields(pid)
        {
            let cmdline = String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .trim()
                .to_string();
            out.push(Proc {
                pid,
                ppid,
                state,
                threads: thread_count(pid).unwrap_or(1),
                cmdline,
            });
        }
    }
    out
}

/// Marker processes that are still alive (not zombies; a zombie leader with live threads is
/// alive).
pub fn live_with_marker(marker: &str) -> Vec<Proc> {
    procs_with_marker(marker)
        .into_iter()
        .filter(Proc::is_alive)
        .collect()
}

/// SIGKILLs, by pid, every live process carrying `marker` (repeatedly, to beat forks).
pub fn kill_marked(marker: &str) {
    for _ in 0..50 {
        let live = live_with_marker(marker);
        if live.is_empty() {
            return;
        }
        for p in &live {
            // SIGSTOP first so a forking process cannot outrun the kill.
            unsafe { libc::kill(p.pid, libc::SIGSTOP) };
        }
        for p in &live {
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The exit status as a shell would show it (code, or 128 + signal).
pub fn code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A running reapd. Dropping it kills reapd and every process carrying its marker (by pid),
/// then removes its directory.
pub struct Daemon {
    pub proc: Marked,
    pub dir: TestDir,
    pub socket: PathBuf,
    pub marker: String,
}

/// How to start reapd.
pub struct Start<'a> {
    pub args: Vec<String>,
    pub env: Vec<(&'a str, String)>,
    pub with_socket: bool,
}

/// The command that starts reapd for a test: through `wrapper` (if any), with the test's
/// socket, arguments, marker, debug logging, and output going to files in `dir`. Returns it with
/// the marker and the socket path.
fn daemon_command(
    dir: &TestDir,
    wrapper: &[&str],
    start: &Start<'_>,
) -> (Command, String, PathBuf) {
    let marker = marker_of(dir);
    let socket = dir.join("s.sock");
    let log = std::fs::File::create(dir.join("reapd.log")).expect("log file");
    let out = std::fs::File::create(dir.join("stdout.log")).expect("stdout file");
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    if start.with_socket {
        cmd.arg("--socket").arg(&socket);
    }
    cmd.args(&start.args)
        .env("REAPD_TEST_MARKER", &marker)
        .env("REAPD_LOG", "debug")
        .env("TEST_DIR", &dir.path)
        .env_remove("REAPD_SOCKET")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(log);
    for (k, v) in &start.env {
        cmd.env(k, v);
    }
    (cmd, marker, socket)
}

impl Daemon {
    /// Starts reapd with this config text and waits until it answers `ping`.
    pub fn start(tag: &str, config: &str) -> Daemon {
        let d = Daemon::start_config(tag, config, &[]);
        d.wait_ready();
        d
    }

    /// Writes `config` into `dir`, starts reapd on it with `extra` arguments and waits until it
    /// answers `ping`. Fixtures can live in `dir` (a config may name files in it).
    pub fn start_in(dir: TestDir, config: &Value, extra: &[&str]) -> Daemon {
        let path = dir.write("config.json", &config.to_string());
        let mut args = vec!["--config".to_string(), path.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let d = Daemon::spawn_in(
            dir,
            Start {
                args,
                env: Vec::new(),
                with_socket: true,
            },
        );
        d.wait_ready();
        d
    }

    /// Starts reapd with this config and extra arguments, without waiting.
    pub fn start_config(tag: &str, config: &str, extra: &[&str]) -> Daemon {
        let dir = TestDir::new(tag);
        let cfg = dir.write("config.json", config);
        let mut args = vec!["--config".to_string(), cfg.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Daemon::spawn_in(
            dir,
            Start {
                args,
                env: Vec::new(),
                with_socket: true,
            },
        )
    }

    /// Starts reapd in single-command mode (`-- CMD...`) with a control socket.
    pub fn start_single(tag: &str, opts: &[&str], cmd: &[&str]) -> Daemon {
        let dir = TestDir::new(tag);
        let mut args: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        args.push("--".into());
        args.extend(cmd.iter().map(|s| s.to_string()));
        Daemon::spawn_in(
            dir,
            Start {
                args,
                env: Vec::new(),
                with_socket: true,
            },
        )
    }

    /// Starts reapd in `dir` with full control over its arguments.
    pub fn spawn_in(dir: TestDir, start: Start<'_>) -> Daemon {
        Daemon::spawn_wrapped(dir, &[], &[], start)
    }

    /// Like [`Daemon::spawn_in`], but reapd is started through `wrapper`, an argv prefix that
    /// must end by exec'ing its arguments (so the wrapper's pid becomes reapd's), e.g.
    /// `["bash", "-c", "trap '' HUP; exec 7</dev/null; exec \"$@\"", "_"]`; and with the signals
    /// in `blocked` blocked in the initial signal mask. For tests of what services must not
    /// inherit from whoever started reapd. The wrapper sees the same environment as reapd.
    pub fn spawn_wrapped(
        dir: TestDir,
        wrapper: &[&str],
        blocked: &[i32],
        start: Start<'_>,
    ) -> Daemon {
        let (mut cmd, marker, socket) = daemon_command(&dir, wrapper, &start);
        if !blocked.is_empty() {
            let blocked = blocked.to_vec();
            // SAFETY: only sigemptyset, sigaddset and sigprocmask run between fork and exec, on
            // a set built on the stack; the closure allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    for &sig in &blocked {
                        libc::sigaddset(&mut set, sig);
                    }
                    if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("spawn reapd");
        Daemon::adopt(child, dir, socket, marker)
    }

    /// Wraps a freshly spawned reapd so that dropping it kills everything carrying `marker`.
    fn adopt(child: Child, dir: TestDir, socket: PathBuf, marker: String) -> Daemon {
        Daemon {
            proc: Marked {
                child,
                marker: marker.clone(),
                status: None,
            },
            dir,
            socket,
            marker,
        }
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Waits until the daemon answers `ping` on its socket.
    pub fn wait_ready(&self) {
        let ok = wait_until(SOON, || {
            UnixStream::connect(&self.socket)
                .ok()
                .and_then(|s| request_on(s, r#"{"cmd":"ping"}"#).ok())
                .is_some_and(|v| v["ok"] == Value::Bool(true))
        });
        assert!(ok, "reapd did not become ready; log:\n{}", self.log());
    }

    /// Sends one request line and returns the parsed reply.
    pub fn request(&self, line: &str) -> Value {
        let s = UnixStream::connect(&self.socket).unwrap_or_else(|e| {
            panic!(
                "connect {}: {e}\nlog:\n{}",
                self.socket.display(),
                self.log()
            )
        });
        request_on(s, line).unwrap_or_else(|e| panic!("request {line}: {e}\nlog:\n{}", self.log()))
    }

    /// Opens a `watch` stream.
    pub fn watch(&self) -> Watcher {
        let s = UnixStream::connect(&self.socket).expect("connect for watch");
        let mut w = Watcher::new(s);
        w.send(r#"{"cmd":"watch"}"#);
        let first = w.next_line(SOON).expect("watch reply");
        assert_eq!(first["ok"], Value::Bool(true), "{first}");
        w
    }

    pub fn signal(&self, sig: i32) {
        self.proc.signal(sig);
    }

    /// Waits for reapd to exit; None if it did not within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.proc.wait_exit(limit)
    }

    /// Waits for exit and returns the shell-style code, failing the test if it hangs.
    pub fn exit_code(&mut self, limit: Duration) -> i32 {
        match self.wait_exit(limit) {
            Some(st) => code_of(st),
            None => panic!("reapd did not exit within {limit:?}; log:\n{}", self.log()),
        }
    }

    pub fn log(&self) -> String {
        self.dir.read("reapd.log")
    }

    /// Asserts the daemon left nothing behind: no socket, no lock, no marked process alive.
    pub fn assert_clean_exit(&mut self) {
        let code = self.exit_code(Duration::from_secs(40));
        assert_eq!(code, 0, "exit status; log:\n{}", self.log());
        assert!(!self.socket.exists(), "socket left behind");
        assert!(
            !self.dir.join("s.sock.lock").exists(),
            "lock file left behind"
        );
        let left = live_with_marker(&self.marker);
        assert!(
            left.is_empty(),
            "processes left behind: {left:?}\nlog:\n{}",
            self.log()
        );
    }

    /// The service's main pid from `list`.
    pub fn pid_of(&self, service: &str) -> Option<i32> {
        let v = self.request(r#"{"cmd":"list"}"#);
        v["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == service)?["pid"]
            .as_i64()
            .map(|p| p as i32)
    }

    /// Waits until `list` shows the service in `state`.
    pub fn wait_state(&self, service: &str, state: &str) {
        let ok = wait_until(SOON, || {
            let v = self.request(r#"{"cmd":"list"}"#);
            v["services"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|s| s["name"] == service && s["state"] == state)
            })
        });
        assert!(
            ok,
            "{service} never reached {state}; list: {}\nlog:\n{}",
            self.request(r#"{"cmd":"list"}"#),
            self.log()
        );
    }
}

fn request_on(s: UnixStream, line: &str) -> Result<Value, String> {
    let mut w = Watcher::new(s);
    w.send(line);
    w.next_line(SOON).ok_or_else(|| "no reply".to_string())
}

/// A connection that reads JSON lines with a timeout.
pub struct Watcher {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Watcher {
    pub fn new(stream: UnixStream) -> Watcher {
        let reader = BufReader::new(stream.try_clone().expect("clone stream"));
        Watcher { stream, reader }
    }

    pub fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next line as JSON, or None at EOF or after `limit`.
    pub fn next_line(&mut self, limit: Duration) -> Option<Value> {
        self.stream.set_read_timeout(Some(limit)).ok()?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => serde_json::from_str(&line).ok(),
        }
    }

    /// Reads events until one matches `pred` (returned) or `limit` passes; collects all seen.
    pub fn until(
        &mut self,
        limit: Duration,
        seen: &mut Vec<Value>,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            let left = end
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let v = self.next_line(left)?;
            seen.push(v.clone());
            if pred(&v) {
                return Some(v);
            }
        }
        None
    }

    /// Reads until EOF (or `limit`), returning every line.
    pub fn drain(&mut self, limit: Duration) -> Vec<Value> {
        let mut all = Vec::new();
        let end = Instant::now() + limit;
        while Instant::now() < end {
            match self.next_line(
                end.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ) {
                Some(v) => all.push(v),
                None => break,
            }
        }
        all
    }

    /// True once the peer has closed the connection (read returns EOF).
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(50)));
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// `reapd check --config FILE`: (exit code, stdout, stderr).
pub fn check(path: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(path)
        .output()
        .expect("run check");
    (
        code_of(out.status),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Whether an external tool is installed; when it is not, say so loudly, and fail instead of
/// skipping under `REAPD_REQUIRE_ALL=1`.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let msg =
            format!("SKIPPED: `{tool}` is not installed (run scripts/test, which installs it)");
        if std::env::var("REAPD_REQUIRE_ALL").is_ok_and(|v| v == "1") {
            panic!("{msg}; REAPD_REQUIRE_ALL=1 forbids skipping");
        }
        eprintln!("\n*** {msg} ***\n");
    }
    found
}

/// From a `chain.sh` log: level → time (seconds) of its first line containing `kind`
/// ("started", "got TERM", "exiting").
pub fn chain_times(text: &str, kind: &str) -> std::collections::BTreeMap<u32, f64> {
    let mut out = std::collections::BTreeMap::new();
    for l in text.lines().filter(|l| l.contains(kind)) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let (Some(level), Some(t)) = (
            f.get(1).and_then(|s| s.parse().ok()),
            f.last().and_then(|s| s.parse().ok()),
        ) {
            out.entry(level).or_insert(t);
        }
    }
    out
}

/// Lines of a fixture log that contain `needle`.
pub fn lines_with(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Every event of `kind` in `events`.
pub fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

// ----- Running reapd under other tools: s6, runit, socat, unshare, chroot, a notify pipe -----

/// The marker of a test directory: its unique name, as [`Daemon`] uses it.
pub fn marker_of(dir: &TestDir) -> String {
    dir.path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("reapdtest")
        .to_string()
}

/// Like [`require_tool`] for any other precondition (root, a namespace, a static binary): when
/// `ok` is false, say loudly that the test is skipped, or fail under `REAPD_REQUIRE_ALL=1`.
pub fn require(ok: bool, what: &str) -> bool {
    if !ok {
        let msg = format!("SKIPPED: {what}");
        if std::env::var("REAPD_REQUIRE_ALL").is_ok_and(|v| v == "1") {
            panic!("{msg}; REAPD_REQUIRE_ALL=1 forbids skipping");
        }
        eprintln!("\n*** {msg} ***\n");
    }
    ok
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Sends one request line to the control socket at `socket` and returns the parsed reply.
pub fn request_at(socket: &Path, line: &str) -> Result<Value, String> {
    let s =
        UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    request_on(s, line)
}

/// Waits until a reapd answers `ping` on `socket`.
pub fn wait_ping(socket: &Path, limit: Duration) -> bool {
    wait_until(limit, || {
        request_at(socket, r#"{"cmd":"ping"}"#).is_ok_and(|v| v["pong"] == Value::Bool(true))
    })
}

/// What a tool run by [`run_bounded`] did.
#[derive(Debug)]
pub struct ToolRun {
    /// Shell-style exit code; None if it had to be killed at the time limit.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a short-lived tool with piped output, SIGKILLing it if it outlives `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> ToolRun {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = collect(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = collect(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let end = Instant::now() + limit;
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(code_of(st));
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // A grandchild that kept the pipes open must not hang the test: give up on its output.
    let join = |h: std::thread::JoinHandle<String>| {
        let until = Instant::now() + Duration::from_secs(5);
        while !h.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            h.join().unwrap_or_default()
        } else {
            "<output still open>".to_string()
        }
    };
    ToolRun {
        code,
        stdout: join(out),
        stderr: join(err),
    }
}

/// Builds (or finds up to date) the static binary (`scripts/build-static`, as used in minimal
/// images); once per test process.
pub fn static_binary() -> PathBuf {
    static BUILT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.as_ref() {
        return p.clone();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Always run the script: cargo makes it a no-op when the binary is up to date, and a stale
    // binary would test yesterday's code. A cold build takes a while.
    let run = run_bounded(
        Command::new(root.join("scripts/build-static")).current_dir(root),
        Duration::from_secs(900),
    );
    assert_eq!(
        run.code,
        Some(0),
        "scripts/build-static failed: {}\n{}",
        run.stdout,
        run.stderr
    );
    // The script's last line starts with the binary's path (it honours CARGO_TARGET_DIR).
    let bin = run
        .stdout
        .lines()
        .last()
        .and_then(|l| l.split_once(':'))
        .map(|(path, _)| root.join(path))
        .expect("scripts/build-static names its binary");
    assert!(bin.exists(), "{} missing after the build", bin.display());
    *built = Some(bin.clone());
    bin
}

/// The largest shutdown bound reapd accepts, from `reapd --help` ("at most N").
pub fn max_shutdown_ms() -> u64 {
    let help = run_bounded(Command::new(BIN).arg("--help"), SOON).stdout;
    let line = help
        .lines()
        .find(|l| l.contains("--shutdown-timeout"))
        .expect("--shutdown-timeout in --help");
    line.split("at most ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bound in {line:?}"))
}

/// A process tree a test started (a supervisor, `unshare`, `chroot`, `socat`) with
/// `REAPD_TEST_MARKER=<marker>` in its environment. Dropping it (also when the test fails)
/// kills the child and then, by pid, every live process that carries the marker.
#[derive(Debug)]
pub struct Marked {
    pub child: Child,
    pub marker: String,
    pub status: Option<ExitStatus>,
}

impl Marked {
    /// Spawns `cmd` with the marker in its environment.
    pub fn spawn(cmd: &mut Command, marker: &str) -> Marked {
        let child = cmd
            .env("REAPD_TEST_MARKER", marker)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Marked {
            child,
            marker: marker.to_string(),
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: kill has no memory effects; the child is unreaped, so its pid is its own.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    /// Waits for the child to exit; None if it did not within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                return self.status;
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Live marked processes other than the ones in `except`.
    pub fn live_except(&self, except: &[i32]) -> Vec<Proc> {
        live_with_marker(&self.marker)
            .into_iter()
            .filter(|p| !except.contains(&p.pid))
            .collect()
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        kill_marked(&self.marker);
    }
}

/// Every process (marked or not) whose parent is `ppid`, zombies included.
pub fn children_of(ppid: i32) -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let (state, parent) = stat_fields(pid)?;
            (parent == ppid).then(|| Proc {
                pid,
                ppid: parent,
                state,
                threads: thread_count(pid).unwrap_or(1),
                cmdline: String::from_utf8_lossy(
                    &std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default(),
                )
                .replace('\0', " ")
                .trim()
                .to_string(),
            })
        })
        .collect()
}

/// Zombies whose parent is `ppid`: children it has not reaped.
pub fn zombies_of(ppid: i32) -> Vec<Proc> {
    children_of(ppid)
        .into_iter()
        .filter(|p| !p.is_alive())
        .collect()
}

impl Daemon {
    /// Like [`Daemon::spawn_in`], plus a pipe whose write end reapd gets as descriptor
    /// `target_fd` (for `--notify-fd`); returns the read end. The test keeps no copy of the
    /// write end, so the read end sees EOF once reapd (and anything it leaked it to) closes it.
    pub fn spawn_with_pipe(
        dir: TestDir,
        target_fd: i32,
        start: Start<'_>,
    ) -> (Daemon, std::fs::File) {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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
        let (mut cmd, marker, socket) = daemon_command(&dir, &[], &start);
        let w = write.as_raw_fd();
        // SAFETY: only dup2 and fcntl run between fork and exec; nothing is allocated.
        unsafe {
            cmd.pre_exec(move || {
                if w == target_fd {
                    // dup2 onto itself would keep close-on-exec: clear it instead.
                    if libc::fcntl(w, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(w, target_fd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn reapd");
        drop(write);
        (
            Daemon::adopt(child, dir, socket, marker),
            std::fs::File::from(read),
        )
    }
}

/// Reads from `file` until EOF or `limit`, whichever comes first. Returns (bytes, saw EOF).
pub fn read_until_eof(file: &mut std::fs::File, limit: Duration) -> (Vec<u8>, bool) {
    use std::os::fd::AsRawFd;
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, false);
        }
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll reads and writes the one pollfd we pass.
        let n = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
        if n <= 0 {
            continue;
        }
        let mut buf = [0u8; 256];
        match file.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (got, true),
        }
    }
}

/// Compiles a C fixture from `tests/fixtures` into `dir` with the system C compiler; None (after
/// a loud skip, or a failure under `REAPD_REQUIRE_ALL=1`) when there is no compiler.
pub fn compile_fixture(dir: &TestDir, source: &str) -> Option<PathBuf> {
    if !require_tool("cc") {
        return None;
    }
    let out = dir.join(source.trim_end_matches(".c"));
    let run = run_bounded(
        Command::new("cc")
            .args(["-O2", "-pthread", "-o"])
            .arg(&out)
            .arg(fixture(source)),
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "cc {source}: {}", run.stderr);
    Some(out)
}

// ----- Fork bombs: always inside a pids cgroup, with a watchdog that can kill by cgroup -----

/// A pids-capped cgroup (plus a freezer, on cgroup v1) for a fork-bomb test. Processes enter it
/// through [`PidsCage::enter`]. A watchdog thread, running at real-time priority so the storm
/// cannot starve it, kills everything in the cage by cgroup once its deadline passes, and
/// dropping the cage does the same at once, whatever reapd did or failed to do. The watchdog only
/// touches cgroup files and `kill()`: reading a storm process's `environ` or `cmdline` could block
/// on its memory-map lock for minutes.
pub struct PidsCage {
    pids: PathBuf,
    freezer: Option<PathBuf>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    watchdog: Option<std::thread::JoinHandle<()>>,
}

impl PidsCage {
    /// A cage holding at most `max` tasks, emptied by force after `limit`; None after a loud skip
    /// (or a failure under `REAPD_REQUIRE_ALL=1`) where no pids controller is writable or the
    /// watchdog cannot get real-time priority.
    pub fn new(tag: &str, max: u32, limit: Duration) -> Option<PidsCage> {
        let name = unique(tag);
        let v1 = Path::new("/sys/fs/cgroup/pids");
        let v1_freezer = Path::new("/sys/fs/cgroup/freezer");
        let made: Option<(PathBuf, Option<PathBuf>)> = if v1.join("cgroup.procs").exists() {
            let pids = v1.join(&name);
            let freezer = v1_freezer
                .join("cgroup.procs")
                .exists()
                .then(|| v1_freezer.join(&name));
            (std::fs::create_dir(&pids).is_ok()
                && freezer
                    .as_ref()
                    .is_none_or(|f| std::fs::create_dir(f).is_ok()))
            .then_some((pids, freezer))
        } else {
            // cgroup v2: a child of our own cgroup where the pids controller is available.
            let own = std::fs::read_to_string("/proc/self/cgroup")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
                });
            own.and_then(|own| {
                let base = Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/'));
                let ok = std::fs::read_to_string(base.join("cgroup.controllers"))
                    .is_ok_and(|c| c.split_whitespace().any(|w| w == "pids"));
                let pids = base.join(&name);
                (ok && std::fs::create_dir(&pids).is_ok()).then_some((pids, None))
            })
        };
        let made =
            made.filter(|(pids, _)| std::fs::write(pids.join("pids.max"), max.to_string()).is_ok());
        if !require(
            made.is_some(),
            "no writable pids cgroup to cap a fork bomb with",
        ) {
            return None;
        }
        let (pids, freezer) = made?;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (p, f) = (pids.clone(), freezer.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<bool>();
        let watchdog = std::thread::spawn(move || {
            let _ = ready_tx.send(realtime_priority());
            // Woken early by the cage's drop (or its sender going away), or at the deadline.
            let _ = rx.recv_timeout(limit);
            empty_cgroup(&p, f.as_deref());
        });
        let cage = PidsCage {
            pids,
            freezer,
            stop: Some(tx),
            watchdog: Some(watchdog),
        };
        let rt = ready_rx.recv().unwrap_or(false);
        require(
            rt,
            "cannot give the fork-bomb watchdog real-time priority (needs root)",
        )
        .then_some(cage)
    }

    /// A shell command that moves the shell running it into the cage (then `&& exec ...`).
    pub fn enter(&self) -> String {
        let mut enter = format!("echo $$ > {}", self.pids.join("cgroup.procs").display());
        if let Some(f) = &self.freezer {
            enter.push_str(&format!(
                " && echo $$ > {}",
                f.join("cgroup.procs").display()
            ));
        }
        enter
    }

    /// Tasks in the cage now.
    pub fn members(&self) -> Vec<i32> {
        cgroup_members(&self.pids)
    }
}

fn cgroup_members(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills every task of a cgroup until none is left, then removes it (and its v1 freezer twin).
fn empty_cgroup(pids: &Path, freezer: Option<&Path>) {
    // cgroup v2 has cgroup.kill; v1 freezes first so nothing can fork while being killed.
    let _ = std::fs::write(pids.join("cgroup.kill"), "1");
    let state = |s: &str| {
        if let Some(f) = freezer {
            let _ = std::fs::write(f.join("freezer.state"), s);
        }
    };
    state("FROZEN");
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let members = cgroup_members(pids);
        if members.is_empty() {
            break;
        }
        for p in members {
            // SAFETY: kill by pid, only of processes in this test's own cgroup.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        // A v1-frozen task dies of SIGKILL only once thawed.
        state("THAWED");
        std::thread::sleep(Duration::from_millis(20));
        state("FROZEN");
    }
    state("THAWED");
    wait_until(Duration::from_secs(10), || {
        std::fs::remove_dir(pids).is_ok() || !pids.exists()
    });
    if let Some(f) = freezer {
        let _ = std::fs::remove_dir(f);
    }
}

/// Runs the calling thread above every ordinary process (`SCHED_FIFO`; what it starts does not
/// inherit it). False where that is not permitted.
pub fn realtime_priority() -> bool {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sched_setscheduler reads the struct we pass; pid 0 is the calling thread.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param) == 0
    }
}

impl Drop for PidsCage {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(w) = self.watchdog.take() {
            let _ = w.join();
        }
    }
}
