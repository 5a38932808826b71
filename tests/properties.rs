//! Property tests of reapd's input parsers: request framing ([`LineBuf`]), request parsing and
//! config parsing. Whatever arrives, nothing panics, every line comes out whole or is refused as
//! too long, every error says where the problem is (a column or a JSON path), no error repeats
//! more than a bounded part of the input, and an `id` comes back exactly as sent.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use reapd::wire::config::{self, ConfigError, SERVICE_KEYS, TOP_KEYS};
use reapd::wire::protocol::{LineBuf, LineTooLong, MAX_LINE, RequestId, parse_request};

/// Longest error message any input may produce: fixed text plus clipped echoes.
const MAX_MESSAGE: usize = 600;

fn cfg() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Pieces of JSON (valid and not) that make parsers take their interesting paths more often
/// than random bytes would.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(":".to_string()),
        Just(",".to_string()),
        Just(" ".to_string()),
        Just("\"cmd\"".to_string()),
        Just("\"id\"".to_string()),
        Just("\"name\"".to_string()),
        Just("\"signal\"".to_string()),
        Just("\"ping\"".to_string()),
        Just("\"stop\"".to_string()),
        Just("\"signal\"".to_string()),
        Just("\"services\"".to_string()),
        Just("\"cmd\":[\"x\"]".to_string()),
        Just("\"after\"".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("123456789012345678901234567890".to_string()),
        Just("-1.5e300".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        any::<String>(),
        "[a-z]{1,8}".prop_map(|s| format!("\"{s}\"")),
    ]
}

fn jsonish() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..24).prop_map(|v| v.concat())
}

/// JSON text of an arbitrary value, written as a client might (spacing, exponents, big
/// integers, escapes), to be echoed untouched.
fn id_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "-?[1-9][0-9]{0,40}",
        "-?[0-9]\\.[0-9]{1,5}([eE][+-]?[0-9]{1,3})?",
        Just("0".to_string()),
        Just("null".to_string()),
        Just("false".to_string()),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        Just("\"\\u00e9\\n\"".to_string()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(" , "))),
            prop::collection::vec(("[a-z]{1,3}", inner), 0..4).prop_map(|v| {
                // Keys made unique: a repeated key is an error of its own (tested below).
                let mut seen = std::collections::BTreeSet::new();
                let parts: Vec<String> = v
                    .into_iter()
                    .filter(|(k, _)| seen.insert(k.clone()))
                    .map(|(k, v)| format!("\"{k}\" :{v}"))
                    .collect();
                format!("{{ {} }}", parts.join(","))
            }),
        ]
    })
}

/// Whether a request error says where the problem is: a column for bad JSON, else the key or
/// path at fault, or the whole line.
fn locates(message: &str) -> bool {
    if let Some(rest) = message.strip_prefix("invalid JSON at column ") {
        return rest
            .split(':')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n >= 1);
    }
    message.starts_with("request is not valid UTF-8 (byte ")
        || message.starts_with("a request must be a JSON object")
        || message.contains(": defined twice")
        || message.contains("\"cmd\"")
        || message.contains("\"name\"")
        || message.contains("\"signal\"")
        || message.starts_with("unknown field ")
        || message.starts_with("unknown command ")
        || message.starts_with("unknown signal ")
        || message.starts_with("empty signal name")
}

/// Whether a config error names its JSON path, or else the line and column of bad JSON, or
/// the document as a whole (the root is not an object).
fn config_error_locates(e: &ConfigError) -> bool {
    if !e.path.is_empty() {
        return true;
    }
    e.message.starts_with("invalid JSON at line ") || e.message.starts_with("expected an object")
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn framing_hands_out_whole_lines_or_refuses(
        chunks in prop::collection::vec(prop::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'a'), any::<u8>()], 0..40), 0..20),
        max in 1usize..16,
    ) {
        let mut b = LineBuf::new(max);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut pushed: Vec<u8> = Vec::new();
        let mut refused = false;
        'outer: for c in &chunks {
            b.push(c);
            pushed.extend_from_slice(c);
            while let Some(line) = b.next_line() {
                match line {
                    Ok(l) => {
                        prop_assert!(l.len() <= max);
                        prop_assert!(!l.contains(&b'\n'));
                        got.push(l);
                    }
                    Err(LineTooLong) => {
                        refused = true;
                        break 'outer;
                    }
                }
            }
            // Without a complete line, no more than `max` bytes wait.
            prop_assert!(b.pending() <= max);
        }
        // Every line handed out is a true line of the input, in order.
        let mut expected: Vec<Vec<u8>> =
            pushed.split(|&x| x == b'\n').map(<[u8]>::to_vec).collect();
        let tail = expected.pop().unwrap_or_default(); // after the last newline: not a line yet
        prop_assert!(got.len() <= expected.len());
        prop_assert_eq!(&expected[..got.len()], &got[..]);
        if refused {
            // What was refused is the next line, and it is too long.
            let next = expected.get(got.len()).unwrap_or(&tail);
            prop_assert!(next.len() > max, "{next:?} refused with max {max}");
        } else {
            prop_assert_eq!(got.len(), expected.len());
        }
    }

    #[test]
    fn any_bytes_give_a_request_or_an_error_that_locates_itself(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        if let Err(e) = parse_request(&bytes) {
            prop_assert!(locates(&e.message), "{}", e.message);
            prop_assert!(e.message.len() <= MAX_MESSAGE, "{}", e.message);
        }
    }

    #[test]
    fn jsonish_requests_parse_or_fail_with_a_located_bounded_error(line in jsonish()) {
        if let Err(e) = parse_request(line.as_bytes()) {
            prop_assert!(locates(&e.message), "{line:?}: {}", e.message);
            prop_assert!(e.message.len() <= MAX_MESSAGE, "{}", e.message);
            if let Some(id) = &e.id {
                prop_assert!(line.contains(id.as_json()));
            }
        }
    }

    #[test]
    fn ids_are_echoed_exactly(id in id_text(), cmd in prop_oneof![Just("ping"), Just("nope"), Just("stop")]) {
        prop_assume!(id.len() < MAX_LINE);
        let line = format!(r#"{{"cmd":"{cmd}", "id": {id} }}"#);
        let got = parse_request(line.as_bytes()).map_or_else(|e| e.id, |env| env.id);
        prop_assert_eq!(got.as_ref().map(RequestId::as_json), Some(id.as_str()));
    }

    #[test]
    fn a_repeated_request_key_is_named(key in prop_oneof![Just("cmd"), Just("id"), Just("name"), Just("x")]) {
        let line = format!(r#"{{"cmd":"stop","name":"a","id":1,"x":0,"{key}":2}}"#);
        let e = parse_request(line.as_bytes()).expect_err("a repeated key is refused");
        prop_assert_eq!(
            e.message,
            format!("{key}: defined twice; a request may give each key only once")
        );
        prop_assert_eq!(e.id.as_ref().map(RequestId::as_json), Some("1"));
    }

    #[test]
    fn any_config_text_gives_a_config_or_located_errors(text in prop_oneof![jsonish(), any::<String>()]) {
        if let Err(errors) = config::parse(&text) {
            prop_assert!(!errors.is_empty());
            for e in &errors {
                prop_assert!(config_error_locates(e), "{text:?}: {e}");
                prop_assert!(e.to_string().len() <= 2 * MAX_MESSAGE, "{e}");
            }
        }
    }

    #[test]
    fn configs_built_from_known_keys_give_located_errors_and_name_repeats(
        top in prop::collection::vec(
            (prop::sample::select(TOP_KEYS.to_vec()), fragment()), 0..4),
        services in prop::collection::vec((
            prop_oneof![Just("a".to_string()), Just("b".to_string()), "[a-z_ ]{1,5}"],
            prop::collection::vec((prop::sample::select(SERVICE_KEYS.to_vec()), prop_oneof![
                Just("[\"x\"]".to_string()),
                Just("[\"a\"]".to_string()),
                Just("\"x\"".to_string()),
                Just("5".to_string()),
                fragment(),
            ]), 0..5),
        ), 0..5),
    ) {
        let svc_text: Vec<String> = services
            .iter()
            .map(|(name, keys)| {
                let body: Vec<String> = keys.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
                format!("{}: {{{}}}", serde_json::to_string(name).unwrap_or_default(), body.join(", "))
            })
            .collect();
        let mut parts: Vec<String> = top
            .iter()
            .filter(|(k, _)| *k != "services")
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        parts.push(format!("\"services\": {{{}}}", svc_text.join(", ")));
        let text = format!("{{{}}}", parts.join(", "));
        let Err(errors) = config::parse(&text) else {
            return Ok(());
        };
        for e in &errors {
            prop_assert!(config_error_locates(e), "{text}: {e}");
        }
        let syntax_ok = serde_json::from_str::<serde_json::Value>(&text).is_ok();
        let mut names: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        if syntax_ok {
            for pair in names.windows(2) {
                if pair[0] == pair[1] && pair[0].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    let path = config::join("services", pair[0]);
                    prop_assert!(
                        errors.iter().any(|e| e.path == path && e.message.starts_with("defined twice")),
                        "{text}: {errors:?}"
                    );
                }
            }
        }
    }
}
