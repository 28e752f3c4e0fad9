//! Every message round-trips through its JSON line; a corpus of malformed frames each yields
//! an error value with the right protocol code, never a panic.

use dsync_engine::{Checksum, ClientMsg, Delta, Edit, ErrorCode, Resume, ServerMsg};
use dsync_net::{
    decode_client, decode_server, encode_client, encode_server, DecodeError, LineBuffer,
};

const MAX_DELTA: usize = 1 << 20;

#[test]
fn every_message_roundtrips() {
    let client = vec![
        ClientMsg::Connect {
            protocol: 1,
            doc: "notes/today".into(),
            client_id: "c-1".into(),
            token: Some("t".into()),
            seq: 1,
            resume: Some(Resume {
                client_version: 4,
                server_version: 9,
                key: Some(dsync_engine::SessionKey([0xab; 16])),
            }),
            hints: true,
        },
        ClientMsg::ClientSync {
            doc: "d".into(),
            seq: 2,
            server_version: 0,
            edits: vec![
                Edit::Delta {
                    version: 0,
                    delta: Delta::diff("", "héllo\t%\n😀"),
                    checksum: Checksum::of("héllo\t%\n😀"),
                },
                Edit::Full {
                    version: 1,
                    text: "x".into(),
                    checksum: Checksum::of("x"),
                    base: None,
                },
                Edit::Full {
                    version: 2,
                    text: "xy".into(),
                    checksum: Checksum::of("xy"),
                    base: Some(dsync_engine::ResetBase {
                        checksum: Checksum::of("x"),
                        delta: Delta::diff("x", "xy"),
                    }),
                },
            ],
        },
        ClientMsg::Presence {
            doc: "d".into(),
            name: "ada ✎".into(),
            cursor: 7,
            anchor: 2,
        },
        ClientMsg::Close { doc: "d".into() },
        ClientMsg::Ping,
        ClientMsg::Pong,
    ];
    for m in client {
        let line = encode_client(&m);
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(decode_client(&line, MAX_DELTA).unwrap(), m);
    }
    let server = vec![
        ServerMsg::ConnectOk {
            doc: "d".into(),
            seq: 1,
            resumed: false,
            text: "a\nb".into(),
            client_version: 0,
            server_version: 0,
            read_only: false,
            session_key: Some(dsync_engine::SessionKey([0x5a; 16])),
        },
        ServerMsg::ServerSync {
            doc: "d".into(),
            seq: 3,
            client_version: 2,
            edits: vec![],
        },
        ServerMsg::Ping,
        ServerMsg::Pong,
        ServerMsg::Changed { doc: "d".into() },
        ServerMsg::Presence {
            doc: "d".into(),
            peers: vec![
                dsync_engine::PeerPresence {
                    id: "c1".into(),
                    user: "ada".into(),
                    name: "Ada".into(),
                    cursor: 3,
                    anchor: 3,
                },
                dsync_engine::PeerPresence {
                    id: "c2".into(),
                    user: String::new(),
                    name: String::new(),
                    cursor: 0,
                    anchor: 9,
                },
            ],
        },
    ];
    let errors = ErrorCode::ALL.into_iter().map(|code| ServerMsg::Error {
        doc: None,
        code,
        message: "m".into(),
        seq: (code == ErrorCode::SessionTaken).then_some(3),
    });
    for m in server.into_iter().chain(errors) {
        assert_eq!(decode_server(&encode_server(&m), MAX_DELTA).unwrap(), m);
    }
}

#[test]
fn malformed_frames_are_error_values() {
    let corpus: &[(&str, ErrorCode)] = &[
        ("", ErrorCode::BadMessage),
        ("not json", ErrorCode::BadMessage),
        ("{", ErrorCode::BadMessage),
        ("[]", ErrorCode::BadMessage),
        ("{}", ErrorCode::BadMessage),
        (r#"{"type":"launch_missiles"}"#, ErrorCode::BadMessage),
        (
            r#"{"type":"server_sync","doc":"d","seq":1,"client_version":0,"edits":[]}"#,
            ErrorCode::BadMessage,
        ),
        (r#"{"type":"connect","doc":"d"}"#, ErrorCode::BadMessage),
        (
            r#"{"type":"connect","protocol":-1,"doc":"d","client_id":"c","seq":1}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"client_sync","doc":"d","seq":"1","server_version":0,"edits":[]}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"client_sync","doc":"d","seq":1,"server_version":0,"edits":[{"version":0,"checksum":1}]}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"client_sync","doc":"d","seq":1,"server_version":0,"edits":[{"version":0,"delta":"=1","text":"x","checksum":1}]}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"client_sync","doc":"d","seq":1,"server_version":0,"edits":[{"version":0,"delta":"=x","checksum":1}]}"#,
            ErrorCode::BadDelta,
        ),
        (
            r#"{"type":"client_sync","doc":"d","seq":1,"server_version":0,"edits":[{"version":0,"delta":"+%zz","checksum":1}]}"#,
            ErrorCode::BadDelta,
        ),
        (
            r#"{"type":"client_sync","doc":"d","seq":1,"server_version":0,"edits":[{"version":0,"delta":"+%FF","checksum":1}]}"#,
            ErrorCode::BadDelta,
        ),
        (
            r#"{"type":"client_sync","doc":"d","seq":1,"server_version":0,"edits":[{"version":0,"delta":"=1","checksum":4294967296}]}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"client_sync","doc":"d","seq":1,"server_version":0,"edits":[{"version":0,"delta":"=1","checksum":1}]"#,
            ErrorCode::BadMessage,
        ),
        ("{\"type\":\"ping\"}\u{0}", ErrorCode::BadMessage),
    ];
    for (frame, code) in corpus {
        let e = decode_client(frame, MAX_DELTA).expect_err(frame);
        assert_eq!(e.code(), *code, "{frame:?}: {e}");
        assert!(!e.to_string().is_empty());
    }
    let unknown = decode_client(r#"{"type":"launch_missiles"}"#, MAX_DELTA).unwrap_err();
    assert_eq!(unknown, DecodeError::UnknownType("launch_missiles".into()));
    let big = format!(
        r#"{{"type":"client_sync","doc":"d","seq":1,"server_version":0,"edits":[{{"version":0,"delta":"+{}","checksum":1}}]}}"#,
        "a".repeat(100)
    );
    assert_eq!(
        decode_client(&big, 50).unwrap_err().code(),
        ErrorCode::TooManyEdits
    );
    let bad_code = r#"{"type":"error","code":"nope","message":"m"}"#;
    assert!(matches!(
        decode_server(bad_code, MAX_DELTA),
        Err(DecodeError::UnknownErrorCode(_))
    ));
}

#[test]
fn line_buffer_limits_frames_and_rejects_bad_utf8() {
    let mut b = LineBuffer::new(64);
    b.push(&[b'{', 0xff, 0xfe, b'}', b'\n']);
    assert_eq!(b.next_frame(), Some(Err(DecodeError::NotUtf8)));
    // An endless frame never grows the buffer past the limit.
    for _ in 0..100 {
        b.push(&[b'x'; 50]);
        assert_eq!(b.next_frame(), None);
        assert!(b.buffered() <= 64 + 50);
    }
    b.push(b"\n{\"type\":\"ping\"}\n");
    assert!(
        matches!(b.next_frame(), Some(Err(DecodeError::FrameTooLarge { len, .. })) if len >= 5000)
    );
    let ping = b.next_frame().unwrap().unwrap();
    assert_eq!(decode_client(&ping, MAX_DELTA).unwrap(), ClientMsg::Ping);
    // Byte-at-a-time delivery still frames correctly.
    let line = encode_client(&ClientMsg::Close { doc: "é".into() });
    for byte in line.as_bytes() {
        b.push(std::slice::from_ref(byte));
    }
    assert_eq!(
        decode_client(&b.next_frame().unwrap().unwrap(), MAX_DELTA).unwrap(),
        ClientMsg::Close { doc: "é".into() }
    );
}

/// Issue 11, "also seen": error messages repeated the peer's whole offending text (1 MiB per
/// line into the reply and the log). They repeat at most `MAX_ECHO_CHARS`; numbers past
/// 2^53 − 1 are refused, not clamped.
#[test]
fn errors_repeat_little_of_the_peer_and_big_numbers_are_refused() {
    let huge = "x".repeat(1 << 20);
    for frame in [
        format!("{{\"type\":\"{huge}\"}}"),
        format!("{{\"type\":\"connect\",\"protocol\":\"{huge}\"}}"),
        format!("{{\"type\":\"connect\",\"protocol\":1,\"doc\":{huge}}}"),
    ] {
        let e = decode_client(&frame, 1 << 20).unwrap_err().to_string();
        assert!(e.len() < 400, "{} bytes: {}", e.len(), &e[..200]);
    }
    let big = "{\"type\":\"client_sync\",\"doc\":\"d\",\"seq\":9007199254740992,\"server_version\":0,\"edits\":[]}";
    let e = decode_client(big, 1 << 20).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadMessage);
    assert!(e.to_string().contains("2^53"), "{e}");
    let max = big.replace("9007199254740992", "9007199254740991");
    assert!(decode_client(&max, 1 << 20).is_ok());
    // Many blank lines in one read cost one pass: none is a frame, nothing is kept.
    let mut b = LineBuffer::new(64);
    b.push(&vec![b'\n'; 4 << 20]);
    assert_eq!(b.next_frame(), None);
    assert_eq!(b.buffered(), 0);
}
