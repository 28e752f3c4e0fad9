//! Presence: cursors relayed between the clients that send them, never stored, gone with the
//! connection (docs/protocol.md, *Presence*).

use dsync_engine::{ClientMsg, Config, ServerMsg, ServerOutput, MAX_PRESENCE_NAME_BYTES};

use crate::harness::{Net, DOC};

/// Presence messages the server sent client `i`.
fn presence_to(net: &Net, i: usize) -> usize {
    let peer = net.peer_of[i];
    net.server_log
        .iter()
        .filter(|o| {
            matches!(o, ServerOutput::Send { to, msg: ServerMsg::Presence { .. } } if *to == peer)
        })
        .count()
}

/// (name, cursor, anchor) of the others as client `i` knows them.
fn seen_by(net: &Net, i: usize) -> Vec<(String, u64, u64)> {
    net.clients[i]
        .engine()
        .others()
        .iter()
        .map(|p| (p.name.clone(), p.cursor, p.anchor))
        .collect()
}

fn persists(net: &Net) -> usize {
    net.server_log
        .iter()
        .filter(|o| matches!(o, ServerOutput::Persist(_)))
        .count()
}

fn presence(net: &mut Net, i: usize, name: &str, cursor: u64, anchor: u64) {
    net.clients[i].set_presence(name, cursor, anchor);
    net.pump();
    net.flush();
}

#[test]
fn cursors_reach_the_others_and_leave_with_the_connection() {
    let mut net = Net::connected(3, Config::default(), "hello world");
    let stored = persists(&net);
    presence(&mut net, 0, "alice", 5, 0);
    presence(&mut net, 1, "bob", 11, 11);
    assert_eq!(seen_by(&net, 0), vec![("bob".into(), 11, 11)]);
    assert_eq!(seen_by(&net, 1), vec![("alice".into(), 5, 0)]);
    assert_eq!(
        presence_to(&net, 2),
        0,
        "a client that sends no presence gets none"
    );
    assert!(net.clients[2].engine().others().is_empty());

    // Moving again is relayed; saying the same again is not.
    let before = presence_to(&net, 1);
    presence(&mut net, 0, "alice", 6, 6);
    assert_eq!(seen_by(&net, 1), vec![("alice".into(), 6, 6)]);
    presence(&mut net, 0, "alice", 6, 6);
    assert_eq!(presence_to(&net, 1), before + 1);

    // Nothing of it is stored, and the texts are untouched.
    assert_eq!(persists(&net), stored, "presence wrote to the store");
    assert_eq!(net.master(), "hello world");
    net.converged().unwrap();

    // Alice's connection goes: Bob's list empties; she comes back and is listed again (her
    // presence is sent again after her connect).
    net.reconnect(0);
    net.flush();
    assert_eq!(seen_by(&net, 1), vec![("alice".into(), 6, 6)]);
    net.drop_connection(0);
    net.flush();
    assert!(seen_by(&net, 1).is_empty(), "{:?}", seen_by(&net, 1));
    assert!(
        seen_by(&net, 0).is_empty(),
        "a lost connection forgets the others"
    );
}

#[test]
fn presence_is_bounded_and_needs_an_open_document() {
    let mut net = Net::connected(2, Config::default(), "abc");
    // A long name is cut; positions past the text are clamped by the sender.
    let long = "é".repeat(MAX_PRESENCE_NAME_BYTES);
    presence(&mut net, 0, &long, 99, 99);
    presence(&mut net, 1, "b", 0, 0);
    let seen = seen_by(&net, 1);
    assert_eq!(seen.len(), 1);
    assert!(seen[0].0.len() <= MAX_PRESENCE_NAME_BYTES && seen[0].0.starts_with('é'));
    assert_eq!((seen[0].1, seen[0].2), (3, 3));

    // Presence for a document this connection has not opened is refused, and loads nothing.
    net.send_to_server(
        0,
        ClientMsg::Presence {
            doc: "elsewhere".into(),
            name: "x".into(),
            cursor: 0,
            anchor: 0,
        },
    );
    net.pump();
    let refused = net.server_log.iter().any(|o| {
        matches!(o, ServerOutput::Send { msg: ServerMsg::Error { code, doc: Some(d), .. }, .. }
            if code.as_str() == "unknown_session" && d == "elsewhere")
    });
    assert!(refused);
    assert!(net.server().master("elsewhere").is_none());
    assert!(net.server().master(DOC).is_some());
}

#[test]
fn a_presence_list_for_another_document_or_after_the_connection_went_is_ignored() {
    let mut net = Net::connected(2, Config::default(), "abc");
    presence(&mut net, 0, "a", 1, 1);
    presence(&mut net, 1, "b", 2, 2);
    let list = |doc: &str| ServerMsg::Presence {
        doc: doc.into(),
        peers: vec![dsync_engine::PeerPresence {
            id: "x".into(),
            user: String::new(),
            name: "stranger".into(),
            cursor: 0,
            anchor: 0,
        }],
    };
    let now = net.now;
    let skipped = net.clients[0].engine().stats().stale_skipped;
    net.clients[0].handle_message(now, list("elsewhere"));
    assert_eq!(seen_by(&net, 0), vec![("b".into(), 2, 2)]);
    assert_eq!(net.clients[0].engine().stats().stale_skipped, skipped + 1);
    // A list that arrives after the connection went (a late datagram) is not taken either.
    net.drop_connection(0);
    net.clients[0].handle_message(now, list(DOC));
    assert!(seen_by(&net, 0).is_empty());
    assert_eq!(net.clients[0].engine().stats().stale_skipped, skipped + 2);
}

#[test]
fn a_name_is_cut_at_a_char_boundary_below_the_limit() {
    let mut net = Net::connected(2, Config::default(), "abc");
    // 1 + 2 × 40 bytes: byte 64 falls inside an "é".
    let name = format!("a{}", "é".repeat(40));
    presence(&mut net, 0, &name, 0, 0);
    presence(&mut net, 1, "b", 0, 0);
    let seen = &seen_by(&net, 1)[0].0;
    assert_eq!(seen.len(), MAX_PRESENCE_NAME_BYTES - 1);
    assert!(name.starts_with(seen.as_str()));
    // A name of exactly the limit is kept whole; one byte more loses one byte.
    for (len, kept) in [
        (MAX_PRESENCE_NAME_BYTES, MAX_PRESENCE_NAME_BYTES),
        (MAX_PRESENCE_NAME_BYTES + 1, MAX_PRESENCE_NAME_BYTES),
    ] {
        presence(&mut net, 0, &"x".repeat(len), 0, 0);
        assert_eq!(seen_by(&net, 1)[0].0.len(), kept, "a name of {len} bytes");
    }
}
