//! Text for people: "did you mean" suggestions and durations.
//!
//! Owns: the edit-distance suggestion every parser uses for misspelt keys, commands and names,
//! and the one way reapd writes a duration in logs and plans.
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

/// `10 s`, `17.5 s`, `0.25 s`.
pub fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        let s = format!("{:.3}", d.as_secs_f64());
        format!("{} s", s.trim_end_matches('0'))
    }
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
}
