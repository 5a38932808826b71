//! Log lines on stderr: `12:00:01.234 reapd[42]: info: web: started, pid 43`.
//!
//! Owns: the logger set-up (level filter in env_logger syntax), the line format, and telling
//! events in the log (rendered by `wire::narrative`, so the log and the events agree).
//! Must never: write anywhere but stderr; s6-log, svlogd, journald and `docker logs` collect it.

#![forbid(unsafe_code)]

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::wire::events::Event;
use crate::wire::narrative::{self, Level};

/// Installs the logger. `spec` uses env_logger syntax (`info`, `debug`, `reapd=trace`).
pub fn init(spec: &str) {
    let pid = std::process::id();
    let _ = env_logger::Builder::new()
        .parse_filters(spec)
        .target(env_logger::Target::Stderr)
        .format(move |buf, rec| {
            let level = rec.level().as_str().to_ascii_lowercase();
            writeln!(
                buf,
                "{} reapd[{pid}]: {level}: {}",
                clock(SystemTime::now()),
                rec.args()
            )
        })
        .try_init();
}

/// Tells an event in the log: its lines as the narrative renders them.
pub fn event(ev: &Event) {
    for (level, line) in narrative::lines(ev) {
        let level = match level {
            Level::Error => log::Level::Error,
            Level::Warn => log::Level::Warn,
            Level::Info => log::Level::Info,
            Level::Debug => log::Level::Debug,
        };
        log::log!(level, "{line}");
    }
}

/// Flushes buffered log output (before exit).
pub fn flush() {
    log::logger().flush();
}

/// UTC time of day with milliseconds.
pub fn clock(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clock_formats_utc_time_of_day() {
        let t = UNIX_EPOCH + Duration::from_millis(86_400_000 * 3 + 3_723_045);
        assert_eq!(clock(t), "01:02:03.045");
        assert_eq!(unix_ms(t), 86_400_000 * 3 + 3_723_045);
    }
}
