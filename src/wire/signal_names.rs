//! Signal names: parsing `TERM`, `SIGTERM`, `sigterm` or `15`, and printing `SIGTERM`.
//!
//! Owns: the one spelling of signals on the command line, in the config file and on the wire.
//! Must never: send or handle a signal; that is `sys::signals`.

use nix::sys::signal::Signal;

/// Parses a signal given as `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty signal name".into());
    }
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal number {n}"));
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>().map_err(|_| {
        format!(
            "unknown signal name {} (use a name such as TERM or a number)",
            crate::wire::text::quoted(t)
        )
    })
}

/// The conventional name of a signal number (`SIGTERM`), or `signal N` when it has none.
pub fn signal_name(signo: i32) -> String {
    match Signal::try_from(signo) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {signo}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigint"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("SIGHUP"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(
            parse_signal("TERMINATE")
                .unwrap_err()
                .contains("unknown signal name")
        );
        assert!(
            parse_signal("99")
                .unwrap_err()
                .contains("unknown signal number 99")
        );
        assert!(parse_signal("").is_err());
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(0), "signal 0");
    }
}
