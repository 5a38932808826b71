//! Prefixed logs: lines per second through reapd (a service's stdout → pipe → reapd → a file),
//! and reapd's own CPU time per MB of service output (`/proc/PID/stat` utime + stime).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;
use crate::{cpu_ticks, row};

/// Lines the service writes, each this long with its newline.
const LINES: usize = 500_000;
const LINE_BYTES: usize = 100;

pub fn prefixed_logs() {
    let dir = TestDir::new("bench-logs");
    let payload = "x".repeat(LINE_BYTES - 8);
    // The flood waits for a go file, so reapd's CPU is read before it starts.
    let script = dir.script(
        "flood.sh",
        &format!(
            "while [ ! -e \"$TEST_DIR/go\" ]; do sleep 0.01; done\n\
             awk 'BEGIN {{ for (i = 0; i < {LINES}; i++) printf \"%07d {payload}\\n\", i }}'\n\
             exec sleep 60\n"
        ),
    );
    let mut d = Daemon::builder_in(dir)
        .config(json!({"services": {"flood": {"cmd": [script], "log": "prefix"}}}))
        .start();
    let pid = d.pid();
    let expected = (LINES * ("flood | ".len() + LINE_BYTES)) as u64;
    let out = d.dir.join("stdout.log");
    let size = || std::fs::metadata(&out).map_or(0, |m| m.len());
    let before = cpu_ticks(pid);
    let t0 = Instant::now();
    d.dir.write("go", "");
    let done = wait_until(Duration::from_secs(120), || size() >= expected);
    let took = t0.elapsed();
    let ticks = cpu_ticks(pid) - before;
    assert!(done, "only {} of {expected} bytes arrived", size());
    let mb = (LINES * LINE_BYTES) as f64 / 1e6;
    // USER_HZ is 100 on Linux: a tick is 10 ms.
    let cpu_ms = ticks as f64 * 10.0;
    row(
        "prefixed logs: lines per second through reapd, 100 bytes",
        format!(
            "{:.0} ({LINES} lines in {} ms)",
            LINES as f64 / took.as_secs_f64(),
            took.as_millis()
        ),
    );
    row(
        "prefixed logs: reapd CPU per MB of service output",
        format!("{:.1} ms ({cpu_ms:.0} ms for {mb:.0} MB)", cpu_ms / mb),
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.exit_code(Duration::from_secs(40)), 0, "{}", d.log());
}
