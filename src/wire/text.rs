//! Text for people: "did you mean" suggestions and durations.
//!
//! Owns: the edit-distance suggestion every parser uses for misspelt keys, commands and names,
//! and [`duration`], the one way reapd writes a duration for people (logs, events told,
//! `reapd ctl`); the wire carries milliseconds ([`ms`]).
//! Must never: allocate or compute in proportion to untrusted input beyond a small bound: a
//! suggestion or an echo costs the same for a 60 000-character name as for a short one.

use std::time::Duration;

/// Longest word a suggestion is looked for: longer ones are no typo of a short name, and
/// comparing them would cost time in proportion to what a client chose to send.
pub const MAX_SUGGEST_LEN: usize = 64;
/// Most known words compared with one unknown word (those too different in length to be close
/// are passed over without counting).
pub const MAX_CANDIDATES: usize = 256;
/// Most characters of user-supplied text repeated in an error message.
pub const MAX_ECHO: usize = 64;

/// ` (did you mean "x"?)` when a known word is close to `word`, else an empty string.
///
/// Bounded: no suggestion for a word longer than [`MAX_SUGGEST_LEN`], and at most
/// [`MAX_CANDIDATES`] edit distances of at most that length each, however many words are known.
pub fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    if word.chars().nth(MAX_SUGGEST_LEN).is_some() {
        return String::new();
    }
    let word: Vec<char> = word.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut best: Option<(usize, &str)> = None;
    let mut compared = 0;
    for k in known {
        let len = k.chars().count();
        let limit = 2.max(len / 4);
        // The distance is at least the difference in length: no need to compute it.
        if len > MAX_SUGGEST_LEN || len.abs_diff(word.len()) > limit {
            continue;
        }
        if compared == MAX_CANDIDATES {
            break;
        }
        compared += 1;
        let kc: Vec<char> = k.chars().map(|c| c.to_ascii_lowercase()).collect();
        let d = edit_distance(&word, &kc);
        if d <= limit && best.is_none_or(|b| (d, k) < b) {
            best = Some((d, k));
        }
    }
    match best {
        Some((_, k)) => format!(" (did you mean {k:?}?)"),
        None => String::new(),
    }
}

/// `text` itself when short, else its first [`MAX_ECHO`] characters and an ellipsis: what an
/// error message may repeat of something a user sent.
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_ECHO) {
        None => std::borrow::Cow::Borrowed(text),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}…", text.get(..end).unwrap_or(""))),
    }
}

/// `text` clipped (see [`clip`]) and quoted like `{:?}` prints a string.
pub fn quoted(text: &str) -> String {
    format!("{:?}", clip(text))
}

fn edit_distance(a: &[char], b: &[char]) -> usize {
    // One row of the Levenshtein table at a time.
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = Vec::with_capacity(b.len() + 1);
    for (i, ca) in a.iter().enumerate() {
        cur.clear();
        cur.push(i + 1);
        for (pair, cb) in prev.windows(2).zip(b) {
            let (&[diag, up], Some(&left)) = (pair, cur.last()) else {
                continue;
            };
            cur.push((diag + usize::from(ca != cb)).min(up + 1).min(left + 1));
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().unwrap_or_default()
}

/// A duration in whole milliseconds, for the wire (saturating).
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration for people: the one format reapd writes durations in, in the log, in events told
/// by `wire::narrative` and in `reapd ctl`.
///
/// Exact where it matters and short where it does not: below a second in milliseconds
/// (`850 ms`), below a minute in seconds to the millisecond (`2.5 s`, `17.316 s`), which is
/// every timeout, delay and stop reapd has (all are at most 30 s); from a minute on, which only
/// uptimes reach, in the two largest units (`3 min 12 s`, `2 h 5 min`, `1 d 3 h`), the smaller
/// left out when it is zero (`2 min`). Units are spelt as the manual spells them, after a space.
/// `reapd ctl` rounds the figures that change while one reads them (an uptime, the budget left)
/// to a tenth of a second before writing them this way; the shape stays the same.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big} {big_unit}")
        } else {
            format!("{big} {big_unit} {small} {small_unit}")
        }
    };
    match s {
        _ if ms < 1000 => format!("{ms} ms"),
        0..60 if ms.is_multiple_of(1000) => format!("{s} s"),
        0..60 => {
            let frac = format!("{:03}", ms % 1000);
            format!("{s}.{} s", frac.trim_end_matches('0'))
        }
        60..3600 => two(s / 60, "min", s % 60, "s"),
        3600..86400 => two(s / 3600, "h", s / 60 % 60, "min"),
        _ => two(s / 86400, "d", s / 3600 % 24, "h"),
    }
}

/// [`duration`] of a count of milliseconds, as events carry them.
pub fn duration_ms(ms: u64) -> String {
    duration(Duration::from_millis(ms))
}

/// [`duration`], under the name `core` calls it by.
pub fn secs(d: Duration) -> String {
    duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_and_bounded() {
        assert_eq!(
            did_you_mean("lst", ["ping", "list"]),
            " (did you mean \"list\"?)"
        );
        assert_eq!(did_you_mean("zzzzzz", ["ping", "list"]), "");
        assert_eq!(did_you_mean("WEB", ["web"]), " (did you mean \"web\"?)");
        let long = "w".repeat(60_000);
        assert_eq!(did_you_mean(&long, ["web"]), "");
        // Only words of a near length are compared, and at most MAX_CANDIDATES of them.
        let many: Vec<String> = (0..10_000).map(|i| format!("s{i:05}")).collect();
        assert_eq!(
            did_you_mean("s0000", many.iter().map(String::as_str)),
            " (did you mean \"s00000\"?)"
        );
    }

    #[test]
    fn echoes_are_clipped() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        let c = clip(&long);
        assert_eq!(c.chars().count(), MAX_ECHO + 1);
        assert!(c.ends_with('…'));
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn durations_are_exact_below_a_minute_and_short_above() {
        let cases = [
            (0, "0 ms"),
            (7, "7 ms"),
            (850, "850 ms"),
            (1000, "1 s"),
            (2500, "2.5 s"),
            (17_316, "17.316 s"),
            (1_050, "1.05 s"),
            (30_000, "30 s"),
            (59_999, "59.999 s"),
            (60_000, "1 min"),
            (192_400, "3 min 12 s"),
            (3_600_000, "1 h"),
            (7_500_000, "2 h 5 min"),
            (86_400_000, "1 d"),
            (97_200_000, "1 d 3 h"),
        ];
        for (ms, want) in cases {
            assert_eq!(duration_ms(ms), want, "{ms} ms");
        }
        assert_eq!(duration(Duration::from_micros(1500)), "1 ms");
        assert_eq!(secs(Duration::from_millis(2500)), "2.5 s");
    }
}
