//! Environment files (`env_file`): `KEY=VALUE` lines, `#` comments and blank lines.
//!
//! Owns: the format and its errors, each naming the line. The value is everything after the
//! first `=`, taken as written (no quotes removed, no `$` expanded: the file says exactly what
//! the service gets); surrounding blanks of the key and a leading `export ` are tolerated so a
//! shell-style file reads as meant.
//! Must never: read the file (the edge does, bounded) or touch reapd's own environment.

#![forbid(unsafe_code)]

/// Parses an env file's text into its variables, in file order (a later line wins).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut vars = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((
                n,
                format!(
                    "expected KEY=VALUE, found {:?}",
                    crate::wire::text::clip(raw.trim_end())
                ),
            ));
        };
        let key = key.trim();
        let ok_first = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !ok_first || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((
                n,
                format!(
                    "invalid variable name {:?}: use letters, digits and '_', not starting with a digit",
                    crate::wire::text::clip(key)
                ),
            ));
        }
        if value.contains('\0') {
            return Err((n, format!("the value of {key} contains a NUL byte")));
        }
        vars.push((key.to_string(), value.trim_end_matches('\r').to_string()));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pairs_comments_and_blank_lines() {
        let text = "# db\n\nDB_HOST=db.local\n  export PORT=5432\nEMPTY=\nURL=a=b#c \n";
        assert_eq!(
            parse(text).unwrap(),
            [
                ("DB_HOST".into(), "db.local".into()),
                ("PORT".into(), "5432".into()),
                ("EMPTY".into(), String::new()),
                ("URL".into(), "a=b#c ".into()),
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let (line, msg) = parse("A=1\n\nnot a pair\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(msg.contains("expected KEY=VALUE"), "{msg}");
        let (line, msg) = parse("# x\n1A=2\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(msg.contains("invalid variable name \"1A\""), "{msg}");
        assert_eq!(parse("B-C=1").unwrap_err().0, 1);
    }
}
