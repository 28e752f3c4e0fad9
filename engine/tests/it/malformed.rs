//! A corpus of malformed deltas: each is an error, never a panic or a silent misapply.

use dsync_engine::{Delta, DeltaError};

#[test]
fn malformed_deltas_are_errors() {
    type Check = fn(&DeltaError) -> bool;
    let parse_errors: &[(&str, Check)] = &[
        ("*3", |e| matches!(e, DeltaError::BadOperation(_))),
        ("3", |e| matches!(e, DeltaError::BadOperation(_))),
        ("=", |e| matches!(e, DeltaError::BadCount(_))),
        ("=-1", |e| matches!(e, DeltaError::BadCount(_))),
        ("=+1", |e| matches!(e, DeltaError::BadCount(_))),
        ("= 1", |e| matches!(e, DeltaError::BadCount(_))),
        ("=1.5", |e| matches!(e, DeltaError::BadCount(_))),
        ("=99999999999999999999", |e| {
            matches!(e, DeltaError::BadCount(_))
        }),
        ("-x", |e| matches!(e, DeltaError::BadCount(_))),
        ("+%", |e| matches!(e, DeltaError::BadEscape(_))),
        ("+%4", |e| matches!(e, DeltaError::BadEscape(_))),
        ("+%zz", |e| matches!(e, DeltaError::BadEscape(_))),
        ("+%C3", |e| matches!(e, DeltaError::BadUtf8)),
        ("+%ED%A0%80", |e| matches!(e, DeltaError::BadUtf8)), // a lone surrogate in UTF-8
        ("+%FF", |e| matches!(e, DeltaError::BadUtf8)),
    ];
    for (text, check) in parse_errors {
        let e = Delta::parse(text, 1000).expect_err(text);
        assert!(check(&e), "{text:?} gave {e:?}");
        assert!(!e.to_string().is_empty());
    }
    assert!(matches!(
        Delta::parse(&"=1\t".repeat(100), 50),
        Err(DeltaError::TooLarge { .. })
    ));

    let apply_errors: &[(&str, &str)] = &[
        ("=4", "abc"),          // too long
        ("=2", "abc"),          // too short
        ("-4", "abc"),          // delete past the end
        ("=1\t-1", "a😀"),      // splits a surrogate pair (delete)
        ("=2", "a😀"),          // splits a surrogate pair (keep)
        ("+x", "abc"),          // covers nothing
        ("=1\t+x\t=1", "ab😀"), // counts sum short
    ];
    for (delta, text) in apply_errors {
        let d = Delta::parse(delta, 1000).unwrap();
        assert!(d.apply(text).is_err(), "{delta:?} on {text:?}");
    }
}

/// Each node reads deltas against its own engine's `max_delta_bytes`: a delta over it is a bad
/// frame, refused before anything is applied, even when the frame itself is within its limit.
#[test]
fn a_delta_over_the_configured_maximum_is_a_bad_frame_at_both_nodes() {
    use dsync_engine::{Checksum, ClientMsg, Config, Edit, PeerId, ServerMsg, Time};
    use dsync_node::{ClientNode, ClientNodeConfig, ClientNodeOutput, Output, ServerNode};

    let mut config = Config::default();
    config.limits = config.limits.with_document_bytes(20);
    let (max_delta, max_frame) = (config.limits.max_delta_bytes, config.limits.frame_bytes());
    let long = format!("+{}", "a".repeat(max_delta));
    let delta = Delta::parse(&long, usize::MAX).unwrap();
    let edit = Edit::Delta {
        version: 0,
        delta,
        checksum: Checksum::of(""),
    };

    let mut client = ClientNode::new(config, ClientNodeConfig::for_engine(&config), "c0", "doc");
    let msg = ServerMsg::ServerSync {
        doc: "doc".into(),
        seq: 1,
        client_version: 0,
        edits: vec![edit.clone()],
    };
    let line = dsync_net::encode_server(&msg);
    assert!(line.len() < max_frame, "the frame itself fits");
    client.receive_datagram(Time(0), line.as_bytes());
    let bad = std::iter::from_fn(|| client.poll_output())
        .find_map(|o| match o {
            ClientNodeOutput::BadFrame(e) => Some(e.to_string()),
            _ => None,
        })
        .expect("the client refuses the frame");
    assert!(bad.contains("maximum"), "{bad}");
    assert_eq!(client.engine().text(), "");

    let mut server = ServerNode::new(config, dsync_store::MemStore::new(), max_frame, [7; 32]);
    let msg = ClientMsg::ClientSync {
        doc: "doc".into(),
        seq: 1,
        server_version: 0,
        edits: vec![edit],
    };
    let line = dsync_net::encode_client(&msg);
    assert!(line.len() < max_frame, "the frame itself fits");
    server.receive_datagram(Time(0), PeerId(1), line.as_bytes());
    let Ok((server, released)) = server.commit(0) else {
        panic!("the in-memory store never fails");
    };
    let refused = released.outputs.iter().any(|o| {
        matches!(o, Output::Send { msg: ServerMsg::Error { message, .. }, .. } if message.contains("maximum"))
    });
    assert!(refused, "{:?}", released.outputs);
    assert_eq!(server.engine().stats().edits_applied, 0);
}
