//! reapd as PID 1 of real containers. podman (with runc) builds `examples/Dockerfile` FROM
//! scratch out of the context `scripts/image-context` assembles (the static reapd, a static
//! busybox, no registry), runs it, and stops it with `podman stop`; it also plays
//! `examples/kubernetes/pod.yaml` with `podman kube play` and takes the pod down. Each time reapd
//! must exit 0 after a clean shutdown, and nothing of the container may be left on the host.
//!
//! Each test has a podman of its own: image storage, run root, lock files, event log and a
//! `containers.conf`, all under its temp dir, so tests never see each other's images or
//! containers. The [`Podman`] guard removes its pods, containers and images, kills by marker and
//! unmounts whatever is left, also when the test fails. The `containers.conf` holds what a
//! restricted machine needs (runc, the cgroupfs manager, no network, ulimits no higher than the
//! current hard limits) and the marker, in the environment of every process of a container that
//! `podman run` starts (a Pod's containers get the manifest's environment only, so the Pod test
//! plays a copy of the manifest that adds it).

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The image the manifest names; podman stores it as `localhost/reapd-demo:latest`.
const IMAGE: &str = "reapd-demo:latest";
/// `podman stop -t`: above reapd's 30 s bound, as the README tells users to set it.
const STOP_TIMEOUT_S: &str = "40";
/// Bound on one podman command on a loaded 2-core machine (a stop may take the whole 40 s).
const PODMAN_LIMIT: Duration = Duration::from_secs(90);
/// Bound on the services coming up, and on podman's helpers going away after a stop.
const SETTLE: Duration = Duration::from_secs(60);

/// The services of the image's config, `examples/container/reapd.json`.
fn example_services() -> Vec<String> {
    let path = repo_root().join("examples/container/reapd.json");
    let text = std::fs::read_to_string(&path).expect("examples/container/reapd.json");
    let config: Value = serde_json::from_str(&text).expect("the example config is JSON");
    let names: Vec<String> = config["services"]
        .as_object()
        .expect("services")
        .keys()
        .cloned()
        .collect();
    assert!(names.iter().any(|n| n == "web"), "{names:?}");
    names
}

/// A hard resource limit of this process (`u64::MAX` for unlimited).
fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the one struct we pass.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 || lim.rlim_max == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    lim.rlim_max
}

/// A TOML basic string: JSON's escapes are valid TOML escapes.
fn toml_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A podman of the test's own (see the module doc). Dropping it removes every pod, container and
/// image it made, kills whatever still carries the marker and unmounts what podman left mounted
/// under the test directory, which is then removed.
struct Podman {
    dir: TestDir,
    /// podman's run root: outside `dir`, whose path is too long for it (at most 50 bytes, for
    /// the sockets conmon makes there).
    runroot: PathBuf,
    marker: String,
}

impl Podman {
    /// Sets up the test's podman; None after a loud skip (or a failure under
    /// `REAPD_REQUIRE_ALL=1`) where podman, runc or a static busybox is missing.
    fn new(tag: &str) -> Option<Podman> {
        let ready = require(
            is_root(),
            "podman tests need root (rootless podman needs subordinate ids and a user namespace)",
        ) && require_tool("podman")
            && require_tool("runc")
            && require(
                Path::new("/bin/busybox").exists(),
                "/bin/busybox (busybox-static) is not installed",
            );
        if !ready {
            return None;
        }
        let dir = TestDir::new(tag);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let runroot = PathBuf::from(format!("/tmp/reapd-rr-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&runroot).expect("mkdir runroot");
        let podman = Podman {
            marker: dir.marker(),
            dir,
            runroot,
        };
        podman.configure();
        Some(podman)
    }

    /// Writes the test's `containers.conf`, `storage.conf` and `registries.conf`.
    fn configure(&self) {
        let dir = &self.dir;
        let path = |name: &str| dir.join(name).display().to_string();
        for sub in ["graphroot", "libpod", "cni", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        // runc sets the container's limits from inside, without CAP_SYS_RESOURCE (root here lacks
        // it), so they must not exceed the hard limits podman itself runs with; podman's default
        // for root (1048576) does. podman 4.3 also lowers its own RLIMIT_NPROC to 32768 when it
        // starts, hence the second cap.
        let nofile = hard_limit(libc::RLIMIT_NOFILE).min(1 << 20);
        let nproc = hard_limit(libc::RLIMIT_NPROC).min(32768);
        let conf = format!(
            "[containers]\n\
             netns = \"none\"\n\
             default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
             env = [\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\", \
                    \"TERM=xterm\", \"REAPD_TEST_MARKER={marker}\"]\n\
             \n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = {events}\n\
             tmp_dir = {tmp}\n\
             lock_type = \"file\"\n\
             stop_timeout = {STOP_TIMEOUT_S}\n\
             \n\
             [network]\n\
             network_config_dir = {cni}\n",
            marker = self.marker,
            events = toml_str(&path("events.log")),
            tmp = toml_str(&path("libpod")),
            cni = toml_str(&path("cni")),
        );
        dir.write("containers.conf", &conf);
        dir.write(
            "storage.conf",
            &format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = {}\nrunroot = {}\n",
                toml_str(&path("graphroot")),
                toml_str(&self.runroot.display().to_string()),
            ),
        );
        // No registry is reachable: short names resolve to local images only.
        dir.write("registries.conf", "unqualified-search-registries = []\n");
    }

    /// `podman` with the test's storage in its argv (so it, conmon and podman's cleanup processes
    /// all carry the marker: the image storage's path holds it) and the test's configuration
    /// files.
    fn cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.join("graphroot"))
            .arg("--runroot")
            .arg(&self.runroot)
            .args(["--storage-driver", "vfs"])
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("registries.conf"),
            )
            .env("TMPDIR", self.dir.join("tmp"))
            .env("REAPD_TEST_MARKER", &self.marker)
            // podman would hand a systemd notify socket on to the container.
            .env_remove("NOTIFY_SOCKET");
        cmd
    }

    fn run(&self, args: &[&str]) -> ToolRun {
        run_bounded(self.cmd().args(args), PODMAN_LIMIT)
    }

    /// Runs a podman command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(0),
            "podman {}: {}\n{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    /// Assembles the context with `scripts/image-context` and builds `examples/Dockerfile` in it
    /// as the manifest's image: no registry, no network.
    fn build_image(&self) {
        let bin = static_binary();
        let context = self.dir.join("context");
        let made = run_bounded(
            Command::new(repo_root().join("scripts/image-context"))
                .arg(&context)
                .env("REAPD_BIN", &bin),
            Duration::from_secs(60),
        );
        assert_eq!(
            made.code,
            Some(0),
            "scripts/image-context: {}\n{}",
            made.stdout,
            made.stderr
        );
        let dockerfile = repo_root()
            .join("examples/Dockerfile")
            .display()
            .to_string();
        let context = context.display().to_string();
        self.ok(&[
            "build",
            "--network",
            "none",
            "--pull=never",
            "-f",
            &dockerfile,
            "-t",
            IMAGE,
            &context,
        ]);
    }

    /// Whether this machine can start a container at all (a loud skip, or a failure under
    /// `REAPD_REQUIRE_ALL=1`, where it cannot).
    fn can_start_containers(&self) -> bool {
        let probe = self.run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/bin/busybox",
            IMAGE,
            "true",
        ]);
        require(
            probe.code == Some(0),
            &format!(
                "no container can start here: podman run exited {:?}: {}",
                probe.code,
                probe.stderr.trim()
            ),
        )
    }

    /// `reapd ctl --json list` inside the container, once every service runs; fails the test
    /// with what it saw if they do not within [`SETTLE`].
    fn wait_services_running(&self, container: &str) -> Value {
        let mut expected = example_services();
        expected.sort();
        let mut last = String::new();
        let up = wait_until(SETTLE, || {
            let run = self.run(&["exec", container, "/bin/reapd", "ctl", "--json", "list"]);
            last = format!("{run:?}");
            let Ok(list) = serde_json::from_str::<Value>(&run.stdout) else {
                return false;
            };
            let services = list["services"].as_array().cloned().unwrap_or_default();
            let mut running: Vec<String> = services
                .iter()
                .filter(|s| s["state"] == "running")
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect();
            running.sort();
            running == expected
        });
        assert!(
            up,
            "{expected:?} never all ran; last `ctl list`: {last}\nlogs:\n{}",
            self.logs(container)
        );
        let run = self.ok(&["exec", container, "/bin/reapd", "ctl", "--json", "list"]);
        serde_json::from_str(&run).expect("ctl --json list prints JSON")
    }

    /// The container's output (reapd logs to stderr).
    fn logs(&self, container: &str) -> String {
        let run = self.run(&["logs", container]);
        format!("{}{}", run.stdout, run.stderr)
    }

    /// What a test checks while the container runs: the table `reapd ctl list` prints, the web
    /// service serving `/srv` (it crash-looped when the image had no `/srv`), no restarts,
    /// `/tmp` usable by anyone, and the marker on reapd's host process, without which the final
    /// "nothing left" check would prove nothing.
    fn check_running(&self, container: &str) {
        let table = self.ok(&["exec", container, "/bin/reapd", "ctl", "list"]);
        for name in example_services() {
            assert!(
                table
                    .lines()
                    .any(|l| l.split_whitespace().take(2).eq([name.as_str(), "running"])),
                "{name} not running in `reapd ctl list`:\n{table}"
            );
        }
        let page = self.ok(&[
            "exec",
            container,
            "/bin/busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:8080/",
        ]);
        assert!(page.contains("busybox httpd under reapd"), "{page}");
        let list = self.ok(&["exec", container, "/bin/reapd", "ctl", "--json", "list"]);
        let list: Value = serde_json::from_str(&list).expect("JSON");
        for s in list["services"].as_array().expect("services") {
            assert_eq!(s["restarts"], 0, "a service restarted: {list}");
        }
        let tmp = self.ok(&[
            "exec",
            container,
            "/bin/busybox",
            "stat",
            "-c",
            "%a",
            "/tmp",
        ]);
        assert_eq!(tmp.trim(), "1777", "/tmp's mode");
        let pid: i32 = self
            .ok(&["inspect", "--format", "{{.State.Pid}}", container])
            .trim()
            .parse()
            .expect("a pid");
        let marked = live_with_marker(&self.marker);
        assert!(
            marked
                .iter()
                .any(|p| p.pid == pid && p.cmdline.starts_with("/bin/reapd")),
            "reapd (host pid {pid}) does not carry the marker: {marked:?}"
        );
    }

    /// Waits until no process carrying the marker is alive: the container's, conmon and podman's
    /// cleanup helpers (their argv names the test's storage).
    fn assert_nothing_left(&self, what: &str) {
        let gone = wait_until(SETTLE, || live_with_marker(&self.marker).is_empty());
        assert!(
            gone,
            "left on the host after {what}: {:?}",
            live_with_marker(&self.marker)
        );
        for args in [&["ps", "-a", "-q"][..], &["pod", "ps", "-q"][..]] {
            let out = self.ok(args);
            assert!(
                out.trim().is_empty(),
                "podman {} after {what}: {out}",
                args.join(" ")
            );
        }
    }
}

/// Runs a command for a cleanup, without output, bounded, and without panicking.
fn run_quietly(cmd: &mut Command, limit: Duration) {
    let Ok(mut child) = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return;
    };
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Mount points under `dir` (octal escapes of `/proc/self/mountinfo` decoded), deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| {
            let mut bytes = Vec::new();
            let mut it = m.bytes().peekable();
            while let Some(b) = it.next() {
                if b == b'\\' {
                    let oct: String = (0..3).filter_map(|_| it.next().map(char::from)).collect();
                    bytes.push(u8::from_str_radix(&oct, 8).unwrap_or(b'?'));
                } else {
                    bytes.push(b);
                }
            }
            PathBuf::from(std::ffi::OsStr::from_bytes(&bytes))
        })
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    found
}

impl Drop for Podman {
    fn drop(&mut self) {
        let cleanup: [&[&str]; 3] = [
            &["pod", "rm", "--all", "--force", "--time", "0"],
            &["rm", "--all", "--force", "--time", "0"],
            &["rmi", "--all", "--force"],
        ];
        for args in cleanup {
            run_quietly(self.cmd().args(args), Duration::from_secs(60));
        }
        kill_marked(&self.marker);
        let mut mounts = mounts_under(&self.runroot);
        mounts.extend(mounts_under(&self.dir.path));
        for m in mounts {
            let Ok(c) = std::ffi::CString::new(m.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: umount2 reads the NUL-terminated path; MNT_DETACH never blocks.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir_all(&self.runroot);
        // Dropping `dir` then removes the rest.
    }
}

#[test]
fn podman_runs_the_scratch_image_and_podman_stop_leaves_nothing() {
    let Some(podman) = Podman::new("podman-run") else {
        return;
    };
    let t0 = Instant::now();
    podman.build_image();
    let built = t0.elapsed();
    if !podman.can_start_containers() {
        return;
    }
    let name = "reapd-demo";
    podman.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "--stop-timeout",
        STOP_TIMEOUT_S,
        IMAGE,
    ]);
    podman.wait_services_running(name);
    podman.check_running(name);
    let stop = Instant::now();
    podman.ok(&["stop", "--time", STOP_TIMEOUT_S, name]);
    let stopped = stop.elapsed();
    let logs = podman.logs(name);
    let code = podman.ok(&["inspect", "--format", "{{.State.ExitCode}}", name]);
    assert_eq!(code.trim(), "0", "reapd's exit status; logs:\n{logs}");
    // From the host, the container's output is all an operator sees of reapd's shutdown.
    assert!(logs.contains("draining: SIGTERM"), "{logs}");
    assert!(logs.contains("done: clean"), "{logs}");
    podman.ok(&["rm", name]);
    podman.assert_nothing_left("podman stop");
    eprintln!(
        "podman run: image built in {built:?}, `podman stop` took {stopped:?}, {:?} in all",
        t0.elapsed()
    );
}

/// The pod's name, its container's name and the readiness probe's command, read from the
/// manifest (its `readinessProbe` is one exec'd command on a line, as a JSON-style flow list).
fn manifest_facts(text: &str) -> (String, String, Vec<String>) {
    let value = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {prefix:?} line in the manifest"))
    };
    let pod = value("  name: ");
    let container = value("    - name: ");
    let probe = text
        .split_once("readinessProbe:")
        .and_then(|(_, rest)| {
            rest.lines()
                .find_map(|l| l.trim().strip_prefix("command:"))
                .and_then(|c| serde_json::from_str::<Vec<String>>(c.trim()).ok())
        })
        .expect("readinessProbe with an exec command list");
    (pod, container, probe)
}

/// The manifest with `REAPD_TEST_MARKER=<marker>` in its container's environment.
fn with_marker(text: &str, marker: &str) -> String {
    let mut out = String::new();
    let mut added = false;
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        let body = line.trim_start();
        if !added && body.starts_with("image: ") {
            let indent = " ".repeat(line.len() - body.len());
            out.push_str(&format!(
                "{indent}env:\n{indent}  - name: REAPD_TEST_MARKER\n{indent}    value: \"{marker}\"\n"
            ));
            added = true;
        }
    }
    assert!(added, "no image line in the manifest");
    out
}

#[test]
fn podman_kube_plays_the_example_pod_and_takes_it_down_clean() {
    let Some(podman) = Podman::new("podman-kube") else {
        return;
    };
    // podman builds its pods' infra image locally out of catatonit.
    if !require_tool("catatonit") {
        return;
    }
    let t0 = Instant::now();
    podman.build_image();
    if !podman.can_start_containers() {
        return;
    }
    let manifest = repo_root().join("examples/kubernetes/pod.yaml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    assert!(text.contains(&format!("image: {IMAGE}")), "{text}");
    let (pod, container, probe) = manifest_facts(&text);
    // podman gives a pod's containers the manifest's environment only, not containers.conf's:
    // the test plays a copy that adds the marker.
    let manifest = podman
        .dir
        .write("pod.yaml", &with_marker(&text, &podman.marker));
    let manifest = manifest.display().to_string();
    // With the log outside the container's storage, it outlives `kube down`.
    let log = podman.dir.join("app.log");
    podman.ok(&[
        "kube",
        "play",
        "--network",
        "none",
        "--log-opt",
        &format!("path={}", log.display()),
        &manifest,
    ]);
    // podman names a pod's container <pod>-<container>.
    let ctr = format!("{pod}-{container}");
    // The kubelet's view: the probe (which podman 4.3 does not run itself) succeeds in the pod.
    let mut exec = vec!["exec", ctr.as_str()];
    exec.extend(probe.iter().map(String::as_str));
    let mut last = String::new();
    let ready = wait_until(SETTLE, || {
        let run = podman.run(&exec);
        last = format!("{run:?}");
        run.code == Some(0)
    });
    assert!(ready, "the readiness probe {probe:?} never passed: {last}");
    podman.wait_services_running(&ctr);
    podman.check_running(&ctr);
    let stop = Instant::now();
    // Before podman 5.1, `kube down` SIGKILLs the pod's containers at once, whatever their stop
    // timeout: stop the pod first, as the README says.
    podman.ok(&["pod", "stop", "--time", STOP_TIMEOUT_S, &pod]);
    podman.ok(&["kube", "down", &manifest]);
    let stopped = stop.elapsed();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    let died = podman.ok(&[
        "events",
        "--stream=false",
        "--filter",
        &format!("container={ctr}"),
        "--filter",
        "event=died",
        "--format",
        "{{.ContainerExitCode}}",
    ]);
    assert_eq!(
        died.split_whitespace().collect::<Vec<_>>(),
        ["0"],
        "reapd's exit status; log:\n{logs}"
    );
    // From the host, the container's log is all an operator sees of reapd's shutdown.
    assert!(logs.contains("draining: SIGTERM"), "{logs}");
    assert!(logs.contains("done: clean"), "{logs}");
    podman.assert_nothing_left("podman kube down");
    eprintln!(
        "podman kube: pod stop and kube down took {stopped:?}, {:?} in all",
        t0.elapsed()
    );
}
