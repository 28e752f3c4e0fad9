//! The limits fit together on the real wire: for texts within a document limit, every delta
//! fits `Limits::worst_delta_bytes` and every frame the protocol sends fits
//! `Limits::frame_bytes`, whatever the characters (worst cases: quotes and control characters,
//! which JSON escapes; CJK and astral characters, which percent-encoding triples; one-char
//! operations, which cost a count and a tab each).

use dsync_engine::{Checksum, Delta};
use dsync_engine::{Edit, Limits, Operation, ResetBase, ServerMsg};
use dsync_net::{decode_server, encode_server, LineBuffer};
use proptest::prelude::*;

/// The frames that carry the most text: a `connect_ok` with the whole document, and a reset
/// with the whole document and the delta from the old shadow.
fn frames(old: &str, new: &str) -> (String, String, Delta) {
    let delta = Delta::from_operation(&Operation::from_diff(old, new), old);
    let open = encode_server(&ServerMsg::ConnectOk {
        doc: "d".repeat(256),
        seq: dsync_net::MAX_WIRE_INT,
        resumed: false,
        text: new.to_string(),
        client_version: dsync_net::MAX_WIRE_INT,
        server_version: dsync_net::MAX_WIRE_INT,
        session_key: Some(dsync_engine::SessionKey([0xff; 16])),
        read_only: true,
    });
    let reset = encode_server(&ServerMsg::ServerSync {
        doc: "d".repeat(256),
        seq: dsync_net::MAX_WIRE_INT,
        client_version: dsync_net::MAX_WIRE_INT,
        edits: vec![Edit::Full {
            version: dsync_net::MAX_WIRE_INT,
            text: new.to_string(),
            checksum: Checksum::of(new),
            base: Some(ResetBase {
                checksum: Checksum::of(old),
                delta: delta.clone(),
            }),
        }],
    });
    (open, reset, delta)
}

fn check(old: &str, new: &str) -> Result<(), TestCaseError> {
    // Documents of 0 bytes are not a limit anyone can set (`validate` refuses a zero), so two
    // empty texts are checked against the smallest one, 1 byte (a CI run drew "" and "").
    let doc = old.len().max(new.len()).max(1);
    let limits = Limits::default().with_document_bytes(doc);
    prop_assert!(limits.validate().is_ok());
    let (open, reset, delta) = frames(old, new);
    let wire = delta.to_string();
    prop_assert!(
        wire.len() <= Limits::worst_delta_bytes(doc),
        "delta of {} bytes for documents of {doc}",
        wire.len()
    );
    for frame in [&open, &reset] {
        prop_assert!(
            frame.len() <= limits.frame_bytes(),
            "frame of {} bytes over {}",
            frame.len(),
            limits.frame_bytes()
        );
        // And it goes through the codec with exactly those limits.
        let mut buf = LineBuffer::new(limits.frame_bytes());
        buf.push(frame.as_bytes());
        let line = buf
            .next_frame()
            .expect("a whole frame")
            .expect("within the limit");
        prop_assert!(decode_server(&line, limits.max_delta_bytes).is_ok());
    }
    Ok(())
}

#[test]
fn worst_case_texts_fit() {
    let n = 2_000;
    let cases: Vec<(String, String)> = vec![
        // Every char its own operation: keep one, delete one.
        ("ab".repeat(n), "a".repeat(n)),
        // Every other char replaced by a three-byte char that percent-encoding triples.
        ("ab".repeat(n), "a漢".repeat(n)),
        // Quotes and control characters, which JSON escapes (up to six bytes a byte).
        (String::new(), "\"".repeat(n)),
        (String::new(), "\u{1}".repeat(n)),
        ("x\u{1}".repeat(n), "\u{1}y".repeat(n)),
        // Astral characters: two UTF-16 units, four bytes.
        ("😀a".repeat(n), "a😀".repeat(n)),
        // Nothing at all (the property test drew it once and the check itself was wrong).
        (String::new(), String::new()),
    ];
    for (old, new) in cases {
        check(&old, &new).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_change_between_documents_within_the_limit_fits(
        old in "[ab\"\u{1}漢😀\\\\ ]{0,60}",
        new in "[ab\"\u{1}漢😀\\\\ ]{0,60}",
    ) {
        check(&old, &new)?;
    }
}
