//! The state file, `<socket>.state`: what a reapd that dies without cleaning up (SIGKILL, a
//! crash, the machine's OOM killer) leaves for the next instance on the same socket.
//!
//! Owns: the file's format, one record per line, readable by people:
//!
//! ```text
//! # reapd state: processes to stop if this reapd dies without cleaning up
//! reapd 4242 1234567
//! cgroup /sys/fs/cgroup/reapd-4242
//! web 4243 1234570
//! cleanup[0] 4300 1234990
//! ```
//!
//! The first record is reapd itself; `cgroup`, when reapd contains services in cgroups, is the
//! directory that holds them (whatever is left in it belongs to the predecessor); each further
//! one names an owner (a service, a cleanup hook, or `survivor`) and a process by pid and start
//! time (clock ticks since boot, field 22 of `/proc/PID/stat`), so a reused pid is never
//! mistaken for it.
//! Must never: read or write the file (that is `sys::state_file`), or trust it: a line that does
//! not parse is skipped, and the reader checks every process against `/proc`.

use std::fmt::Write;

/// One process in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Service name, `cleanup[N]`, or `survivor`.
    pub owner: String,
    /// Its pid.
    pub pid: i32,
    /// Its start time in clock ticks since boot.
    pub start: u64,
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateRecord {
    /// The reapd that wrote it: pid and start time.
    pub reapd: Option<(i32, u64)>,
    /// The processes it was responsible for.
    pub procs: Vec<Recorded>,
    /// The cgroup directory holding its services' cgroups, when it had them.
    pub cgroup: Option<String>,
}

const HEADER: &str = "# reapd state: processes to stop if this reapd dies without cleaning up";

/// The file's text.
pub fn render(rec: &StateRecord) -> String {
    let mut out = format!("{HEADER}\n");
    if let Some((pid, start)) = rec.reapd {
        let _ = writeln!(out, "reapd {pid} {start}");
    }
    if let Some(dir) = rec.cgroup.as_ref().filter(|d| !d.contains('\n')) {
        let _ = writeln!(out, "cgroup {dir}");
    }
    for p in &rec.procs {
        let _ = writeln!(out, "{} {} {}", p.owner, p.pid, p.start);
    }
    out
}

/// Reads the file's text; lines that do not parse are skipped.
pub fn parse(text: &str) -> StateRecord {
    let mut rec = StateRecord::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(dir) = line.strip_prefix("cgroup ").filter(|d| d.starts_with('/')) {
            rec.cgroup = Some(dir.to_string());
            continue;
        }
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let [owner, pid, start] = f.as_slice() else {
            continue;
        };
        let (Ok(pid), Ok(start)) = (pid.parse::<i32>(), start.parse::<u64>()) else {
            continue;
        };
        if pid <= 1 {
            continue;
        }
        if *owner == "reapd" {
            rec.reapd = Some((pid, start));
        } else {
            rec.procs.push(Recorded {
                owner: owner.to_string(),
                pid,
                start,
            });
        }
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_junk() {
        let rec = StateRecord {
            reapd: Some((42, 1000)),
            procs: vec![
                Recorded {
                    owner: "web".into(),
                    pid: 43,
                    start: 1001,
                },
                Recorded {
                    owner: "cleanup[0]".into(),
                    pid: 50,
                    start: 1200,
                },
            ],
            cgroup: Some("/sys/fs/cgroup/my cg/reapd-42".into()),
        };
        assert_eq!(parse(&render(&rec)), rec);
        let junk = "reapd x 1\nweb 1 5\nweb 7\n\n# c\ndb 9 10 11\nok 12 13\n";
        assert_eq!(
            parse(junk),
            StateRecord {
                reapd: None,
                procs: vec![Recorded {
                    owner: "ok".into(),
                    pid: 12,
                    start: 13
                }],
                cgroup: None,
            }
        );
    }
}
