//! The protocol's tests: every command parsed, bad requests explained, framing bounded.

use super::*;

fn err(line: &str) -> (ErrorCode, String) {
    let e = parse_request(line.as_bytes()).expect_err("should fail");
    (e.code, e.message)
}

#[test]
fn logs_takes_optional_lines_and_follow() {
    let p = |s: &str| parse_request(s.as_bytes()).expect("parses").request;
    assert_eq!(
        p(r#"{"cmd":"logs","name":"web"}"#),
        Request::Logs {
            name: "web".into(),
            lines: None,
            follow: false
        }
    );
    assert_eq!(
        p(r#"{"cmd":"logs","name":"web","lines":0,"follow":true}"#),
        Request::Logs {
            name: "web".into(),
            lines: Some(0),
            follow: true
        }
    );
    assert_eq!(
        err(r#"{"cmd":"logs","name":"web","lines":"5"}"#).1,
        "\"lines\" must be a non-negative integer, found \"5\""
    );
    assert_eq!(
        err(r#"{"cmd":"logs","name":"web","follow":1}"#).1,
        "\"follow\" must be true or false, found 1"
    );
    assert_eq!(
        err(r#"{"cmd":"stop","name":"web","follow":true}"#).1,
        "unknown field \"follow\" for \"stop\""
    );
    assert!(
        !Request::Logs {
            name: "web".into(),
            lines: None,
            follow: true
        }
        .is_mutating()
    );
}

#[test]
fn parses_every_command() {
    let p = |s: &str| parse_request(s.as_bytes()).expect("parses").request;
    assert_eq!(p(r#"{"cmd":"ping"}"#), Request::Ping);
    assert_eq!(p(r#"{"cmd":"list","id":7}"#), Request::List);
    assert_eq!(
        p(r#"{"cmd":"stop","name":"web"}"#),
        Request::Stop { name: "web".into() }
    );
    assert_eq!(
        p(r#"{"cmd":"signal","name":"web","signal":"hup"}"#),
        Request::Signal {
            name: "web".into(),
            signal: Signal::SIGHUP
        }
    );
    assert_eq!(
        p(r#"{"cmd":"signal","name":"web","signal":10}"#),
        Request::Signal {
            name: "web".into(),
            signal: Signal::SIGUSR1
        }
    );
    let env = parse_request(br#"{"id":{"b": [1, 2.50], "a":1},"cmd":"status"}"#).expect("parses");
    assert_eq!(
        env.id.as_ref().map(RequestId::as_json),
        Some(r#"{"b": [1, 2.50], "a":1}"#)
    );
}

#[test]
fn bad_requests_say_what_is_wrong() {
    assert_eq!(
        err(r#"{"cmd":"ping""#),
        (
            ErrorCode::BadRequest,
            "invalid JSON at column 13: EOF while parsing an object".into()
        )
    );
    assert_eq!(err("[1]").0, ErrorCode::BadRequest);
    assert_eq!(
        err(r#"{"cmd":"lst"}"#),
        (
            ErrorCode::UnknownCommand,
            format!(
                "unknown command \"lst\" (did you mean \"list\"?); commands: {}",
                commands::name_list()
            )
        )
    );
    assert_eq!(
        err(r#"{"cmd":"stop"}"#).1,
        "\"stop\" needs \"name\": the service to stop"
    );
    assert_eq!(
        err(r#"{"cmd":"stop","nme":"x"}"#).1,
        "unknown field \"nme\" for \"stop\" (did you mean \"name\"?)"
    );
    assert_eq!(
        err(r#"{"cmd":"signal","name":"x","signal":"NOPE"}"#).0,
        ErrorCode::BadRequest
    );
    assert_eq!(
        err(r#"{"id":3}"#).1,
        format!("missing \"cmd\"; one of: {}", commands::name_list())
    );
    let e = parse_request(b"{\"id\":3,\"cmd\":5}").expect_err("bad");
    assert_eq!(e.id, RequestId::from_json("3"));
    assert_eq!(err("\u{fffd}").0, ErrorCode::BadRequest);
    assert_eq!(
        parse_request(b"\xff").expect_err("bad").message,
        "request is not valid UTF-8 (byte 1)"
    );
}

#[test]
fn the_registry_decides_what_each_command_accepts() {
    use crate::wire::commands::COMMANDS;
    use serde_json::json;
    let sample = |kind: ArgKind| match kind {
        ArgKind::Service => json!("web"),
        ArgKind::Signal => json!("HUP"),
    };
    for spec in COMMANDS {
        let mut full = json!({ "cmd": spec.name });
        for a in spec.args {
            full[a.kind.field()] = sample(a.kind);
        }
        let env = parse_request(full.to_string().as_bytes()).expect("parses");
        assert_eq!(env.request.cmd(), spec.cmd, "{full}");
        assert_eq!(env.request.is_mutating(), spec.mutates, "{full}");
        for a in spec.args {
            let mut short = full.clone();
            short.as_object_mut().map(|o| o.remove(a.kind.field()));
            assert_eq!(
                err(&short.to_string()),
                (
                    ErrorCode::BadRequest,
                    format!("{:?} needs {:?}: {}", spec.name, a.kind.field(), a.what)
                )
            );
        }
        for kind in [ArgKind::Service, ArgKind::Signal] {
            if spec.arg(kind).is_none() {
                let mut more = full.clone();
                more[kind.field()] = sample(kind);
                assert!(
                    err(&more.to_string()).1.starts_with("unknown field"),
                    "{more}"
                );
            }
        }
    }
    assert_eq!(
        err(r#"{"cmd":"signal","name":"web"}"#).1,
        "\"signal\" needs \"signal\": the signal to send, a name such as \"HUP\" or a number"
    );
}

#[test]
fn ids_come_back_exactly_as_sent() {
    let id = |line: &str| parse_request(line.as_bytes()).map_or_else(|e| e.id, |env| env.id);
    let big = "123456789012345678901234567890";
    let got = id(&format!(r#"{{"cmd":"ping","id":{big}}}"#));
    assert_eq!(
        crate::wire::replies::ok_line(
            got.as_ref(),
            &crate::wire::replies::Reply::Pong { pong: true }
        ),
        format!("{{\"ok\":true,\"id\":{big},\"pong\":true}}\n")
    );
    assert_eq!(
        id(r#"{"id": 1.0e3 , "cmd":"ping"}"#)
            .as_ref()
            .map(RequestId::as_json),
        Some("1.0e3")
    );
    assert_eq!(
        id(r#"{"id":"\u0041","cmd":"nope"}"#)
            .as_ref()
            .map(RequestId::as_json),
        Some(r#""\u0041""#)
    );
    // An id read before the line breaks off is still echoed.
    assert_eq!(
        id(r#"{"id":[7, 8],"cmd":"pi"#)
            .as_ref()
            .map(RequestId::as_json),
        Some("[7, 8]")
    );
}

#[test]
fn repeated_keys_are_errors_naming_their_path() {
    let e = parse_request(br#"{"cmd":"stop","name":"a","name":"b","id":1}"#).expect_err("dup");
    assert_eq!(
        (
            e.code,
            e.message.as_str(),
            e.id.as_ref().map(RequestId::as_json)
        ),
        (
            ErrorCode::BadRequest,
            "name: defined twice; a request may give each key only once",
            Some("1")
        )
    );
    let e = parse_request(br#"{"cmd":"ping","id":{"k":1,"k":2}}"#).expect_err("nested");
    assert_eq!(
        e.message,
        "id.k: defined twice; a request may give each key only once"
    );
    assert_eq!(
        e.id.as_ref().map(RequestId::as_json),
        Some(r#"{"k":1,"k":2}"#)
    );
}

#[test]
fn long_words_are_clipped_and_get_no_suggestion() {
    let long = "x".repeat(60_000);
    for line in [
        format!(r#"{{"cmd":"{long}"}}"#),
        format!(r#"{{"cmd":"stop","{long}":1}}"#),
        format!(r#"{{"cmd":"stop","name":["{long}"]}}"#),
        format!(r#"{{"cmd":"signal","name":"a","signal":"{long}"}}"#),
    ] {
        let e = parse_request(line.as_bytes()).expect_err("bad");
        assert!(e.message.len() < 300, "{}", e.message);
        assert!(e.message.contains("xxx…"), "{}", e.message);
    }
}

#[test]
fn framing_handles_split_joined_and_oversized_lines() {
    let mut b = LineBuf::new(8);
    b.push(b"ab");
    assert_eq!(b.next_line(), None);
    b.push(b"c\nde\nf");
    assert_eq!(b.next_line(), Some(Ok(b"abc".to_vec())));
    assert_eq!(b.next_line(), Some(Ok(b"de".to_vec())));
    assert_eq!(b.next_line(), None);
    assert_eq!(b.pending(), 1);
    b.push(b"12345678");
    assert_eq!(b.next_line(), Some(Err(LineTooLong)));
    let mut b = LineBuf::new(4);
    b.push(b"12345\n");
    assert_eq!(b.next_line(), Some(Err(LineTooLong)));
    let mut b = LineBuf::new(4);
    b.push(b"1234\n\n");
    assert_eq!(b.next_line(), Some(Ok(b"1234".to_vec())));
    assert!(b.has_unscanned());
    assert_eq!(b.next_line(), Some(Ok(Vec::new())));
    assert!(!b.has_unscanned());
    assert_eq!(b.next_line(), None);
}

#[test]
fn framing_many_short_lines_after_a_partial_one() {
    let mut b = LineBuf::new(16);
    b.push(b"a\nbb\nccc");
    assert_eq!(b.next_line(), Some(Ok(b"a".to_vec())));
    assert!(b.has_unscanned());
    assert_eq!(b.next_line(), Some(Ok(b"bb".to_vec())));
    assert_eq!(b.next_line(), None);
    assert!(!b.has_unscanned());
    assert_eq!(b.pending(), 3);
    b.push(b"c\n");
    assert_eq!(b.next_line(), Some(Ok(b"cccc".to_vec())));
    assert_eq!(b.pending(), 0);
    b.shrink(0);
    assert_eq!(b.next_line(), None);
    // The limit counts the line, not what was handed out before it.
    b.push(&[b'x'; 16]);
    b.push(b"\n");
    assert_eq!(b.next_line(), Some(Ok(vec![b'x'; 16])));
}
