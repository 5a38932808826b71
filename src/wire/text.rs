//! Text for people: "did you mean" suggestions and durations.
//!
//! Owns: the edit-distance suggestion every parser uses for misspelt keys, commands and names,
//! and the one way reapd writes a duration in logs and plans.
//! Must never: allocate in proportion to untrusted input beyond what it is given.

use std::time::Duration;

/// ` (did you mean "x"?)` when a known word is close to `word`, else an empty string.
pub fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let best = known
        .into_iter()
        .map(|k| {
            (
                edit_distance(&word.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                k,
            )
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min();
    match best {
        Some((_, k)) => format!(" (did you mean {k:?}?)"),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // One row of the Levenshtein table at a time.
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (pair, cb) in prev.windows(2).zip(&b) {
            let (&[diag, up], Some(&left)) = (pair, cur.last()) else {
                continue;
            };
            cur.push((diag + usize::from(ca != *cb)).min(up + 1).min(left + 1));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or_default()
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
