//! The static binary (`scripts/build-static`) in a root that holds nothing but reapd, a static
//! busybox and a config: no libc, no loader, no `/etc/passwd`. Only `/proc` is mounted.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

const BUSYBOX: &str = "/bin/busybox";

fn preconditions() -> bool {
    require(is_root(), "needs root for chroot and mount")
        && require_tool("chroot")
        && require_tool("mount")
        && require_tool("umount")
        && require_tool("ldd")
        && require(
            Path::new(BUSYBOX).exists(),
            &format!("{BUSYBOX} (busybox-static) is not installed"),
        )
}

/// The full path of `tool` in the test's `PATH`.
fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Whether something is mounted on `path` (a canonical path).
fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read("/proc/self/mountinfo").unwrap_or_default();
    info.split(|&b| b == b'\n').any(|line| {
        line.split(|&b| b == b' ')
            .nth(4)
            .is_some_and(|m| m == path.as_os_str().as_bytes())
    })
}

/// `/proc` mounted inside the test root; unmounted on drop (lazily if it is busy), also when the
/// test fails, so removing the test directory never walks into a live procfs.
struct ProcMount {
    target: PathBuf,
}

impl ProcMount {
    fn mount(target: &Path) -> ProcMount {
        let target = target.canonicalize().expect("canonical proc dir");
        let out = run_bounded(
            Command::new("mount")
                .args(["-t", "proc", "proc"])
                .arg(&target),
            SOON,
        );
        assert_eq!(out.code, Some(0), "mount proc: {out:?}");
        assert!(
            is_mounted(&target),
            "proc not mounted on {}",
            target.display()
        );
        ProcMount { target }
    }
}

impl Drop for ProcMount {
    fn drop(&mut self) {
        for args in [&[][..], &["-l"][..]] {
            if !is_mounted(&self.target) {
                return;
            }
            let _ = run_bounded(Command::new("umount").args(args).arg(&self.target), SOON);
        }
        if is_mounted(&self.target) {
            eprintln!("warning: could not unmount {}", self.target.display());
        }
    }
}

/// Makes the root: bin/{reapd,busybox,sh,sleep}, etc/reapd.json, empty run/ and proc/.
fn make_root(dir: &TestDir, with_dev_null: bool) -> PathBuf {
    let root = dir.join("root");
    for sub in ["bin", "etc", "run", "proc"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    let bin = static_binary();
    let ldd = run_bounded(Command::new("ldd").arg(&bin), SOON);
    let said = format!("{}{}", ldd.stdout, ldd.stderr);
    assert!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "{} is not static: {said}",
        bin.display()
    );
    std::fs::copy(&bin, root.join("bin/reapd")).expect("copy reapd");
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
    }
    let config = json!({ "services": {
        "pair": { "cmd": ["/bin/sh", "-c", "sleep 1000 | sleep 1000"] },
    }});
    std::fs::write(root.join("etc/reapd.json"), config.to_string()).expect("config");
    if with_dev_null {
        std::fs::create_dir_all(root.join("dev")).expect("mkdir dev");
        let path =
            std::ffi::CString::new(root.join("dev/null").as_os_str().as_bytes()).expect("path");
        // SAFETY: mknod reads the NUL-terminated path we pass.
        let r = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
        assert_eq!(r, 0, "mknod dev/null: {}", std::io::Error::last_os_error());
    }
    root
}

fn run_in_chroot(tag: &str, with_dev_null: bool) {
    if !preconditions() {
        return;
    }
    let dir = TestDir::new(tag);
    let marker = dir.marker();
    let root = make_root(&dir, with_dev_null);
    let _proc = ProcMount::mount(&root.join("proc"));
    let log = || dir.read("reapd.log");
    // PATH inside the root is /bin; find chroot itself with the test's PATH.
    let chroot = which("chroot").expect("chroot in PATH");
    let mut reapd = Marked::spawn(
        dir.log_into(&mut Command::new(chroot), "reapd.log")
            .arg(&root)
            .args([
                "/bin/reapd",
                "--config",
                "/etc/reapd.json",
                "--socket",
                "/run/reapd.sock",
            ])
            .env("PATH", "/bin")
            // Not debug: the readiness polls would drown the interesting lines.
            .env("REAPD_LOG", "info")
            .env_remove("REAPD_SOCKET")
            .env_remove("NOTIFY_SOCKET"),
        &marker,
    );
    // The socket is a file inside the root: reachable from outside through the host path.
    let socket = root.join("run/reapd.sock");
    let lock = lock_of(&socket);
    assert!(
        wait_ping(&socket, Duration::from_secs(20)),
        "no answer on {}; log:\n{}",
        socket.display(),
        log()
    );
    assert_eq!(
        std::fs::read_to_string(&lock).expect("lock").trim(),
        reapd.pid().to_string(),
        "chroot exec'd reapd"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/root", reapd.pid())).expect("root link"),
        root.canonicalize().expect("canonical root"),
        "reapd runs inside the root"
    );
    let running = wait_until(Duration::from_secs(20), || {
        request_at(&socket, r#"{"cmd":"list"}"#).is_ok_and(|v| {
            v["services"][0]["state"] == "running" && v["services"][0]["pid"].is_i64()
        }) && reapd
            .live_except(&[reapd.pid()])
            .iter()
            .filter(|p| p.cmdline == "sleep 1000")
            .count()
            == 2
    });
    assert!(
        running,
        "the busybox service never ran: {:?}; log:\n{}",
        request_at(&socket, r#"{"cmd":"list"}"#),
        log()
    );
    let mut w = watch_at(&socket);
    reapd.signal(libc::SIGTERM);
    let events = w.drain(Duration::from_secs(40));
    let st = reapd
        .wait_exit(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("reapd did not exit; log:\n{}", log()));
    assert_eq!(code_of(st), 0, "log:\n{}", log());
    assert_nothing_left(&socket, &live_with_marker(&marker), &log());
    assert_eq!(done_event(&events)["clean"], true, "{events:#?}");
}

#[test]
fn static_reapd_runs_busybox_services_in_a_chroot_with_dev_null() {
    run_in_chroot("chroot-devnull", true);
}

#[test]
fn static_reapd_runs_busybox_services_in_an_otherwise_empty_chroot() {
    run_in_chroot("chroot-empty", false);
}
