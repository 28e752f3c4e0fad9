//! Rules and limits at their edges, where the other tests' outcomes do not reach: which
//! server edits a client takes, what an early timer call does, which names and requests the
//! server refuses, what a restart keeps of a stored log with a gap, and the counters the
//! simulator judges a sweep by (`Stats`: a run with a merge fallback fails, a counter that
//! stays at zero means a path never ran). Each test pins one rule; breaking it fails here.

use dsync_engine::{
    Checksum, ClientEvent, ClientMsg, Config, Delta, Edit, EngineError, ErrorCode, Operation,
    PeerId, Rope, ServerMsg, ServerOutput,
};
use dsync_store::Store;

use crate::harness::{client, connect_msg, Net, DOC};

/// The fixed-cadence protocol these scripts were written against (as in `recovery.rs`).
fn cfg() -> Config {
    Config {
        hints: false,
        max_idle_sync_ms: Config::default().sync_interval_ms,
        ..Config::default()
    }
}

/// The error the server last sent to `peer`, if any.
fn last_error(net: &Net, peer: PeerId) -> Option<ErrorCode> {
    error_since(net, peer, 0)
}

/// The error the server last sent to `peer` since its `since`th output, if any.
fn error_since(net: &Net, peer: PeerId, since: usize) -> Option<ErrorCode> {
    net.server_log[since..].iter().rev().find_map(|o| match o {
        ServerOutput::Send {
            to,
            msg: ServerMsg::Error { code, .. },
        } if *to == peer => Some(*code),
        _ => None,
    })
}

/// Whether the server answered `peer`'s connect with `connect_ok`.
fn connected_ok(net: &Net, peer: PeerId) -> bool {
    net.server_log.iter().any(
        |o| matches!(o, ServerOutput::Send { to, msg: ServerMsg::ConnectOk { .. } } if *to == peer),
    )
}

/// Client 1 types `s` at `at` and the server takes it; client 0 does not hear of it yet.
fn other_types(net: &mut Net, at: usize, s: &str) {
    net.type_at(1, at, s);
    net.sync(1);
    net.flush();
}

/// Client 0 polls and its reply is held in the queue, not delivered.
fn poll_and_hold_reply(net: &mut Net) {
    net.sync(0);
    net.deliver_up(0);
    assert!(matches!(
        net.down[0].front(),
        Some(ServerMsg::ServerSync { .. })
    ));
}

fn reply_edits(net: &mut Net) -> &mut Vec<Edit> {
    match net.down[0].front_mut() {
        Some(ServerMsg::ServerSync { edits, .. }) => edits,
        other => panic!("expected a server_sync, got {other:?}"),
    }
}

/// An edit the client already applied, sent again ahead of a new one (a server resends its
/// whole unacknowledged stack): skipped as a duplicate, not taken for damage.
#[test]
fn a_server_edit_already_applied_is_skipped_not_taken_for_damage() {
    let mut net = Net::connected(2, cfg(), "x");
    other_types(&mut net, 0, "A");
    poll_and_hold_reply(&mut net);
    let first = reply_edits(&mut net)[0].clone();
    net.deliver_down(0);
    assert_eq!(net.clients[0].engine().text(), "Ax");
    other_types(&mut net, 2, "B");
    poll_and_hold_reply(&mut net);
    reply_edits(&mut net).insert(0, first);
    net.deliver_down(0);
    let c = net.clients[0].engine();
    assert_eq!(c.text(), "AxB");
    let stats = c.stats();
    assert_eq!(
        (stats.duplicates_skipped, stats.edits_applied),
        (1, 2),
        "{stats:?}"
    );
    assert_eq!((stats.corrupt_ignored, stats.resets), (0, 0), "{stats:?}");
    assert_eq!(net.clients[0].remote_changes(), 2);
    net.settle(10_000);
    net.converged().unwrap();
}

/// A reply is taken only for the document this client opened: one naming another document is
/// ignored, even with the `seq` the client awaits.
#[test]
fn a_reply_for_another_document_is_ignored() {
    let mut net = Net::connected(2, cfg(), "x");
    other_types(&mut net, 0, "A");
    poll_and_hold_reply(&mut net);
    let skipped = net.clients[0].engine().stats().stale_skipped;
    let mut other = net.down[0].front().cloned().expect("held");
    if let ServerMsg::ServerSync { doc, .. } = &mut other {
        *doc = "another".to_string();
    }
    net.down[0].push_front(other);
    net.deliver_down(0);
    assert_eq!(net.clients[0].engine().text(), "x");
    assert_eq!(net.clients[0].engine().stats().stale_skipped, skipped + 1);
    net.deliver_down(0);
    assert_eq!(net.clients[0].engine().text(), "Ax");
}

/// Server edits apply in version order without a gap: one from a version the client has not
/// reached is damage, even when its delta happens to fit the shadow and give the right text.
#[test]
fn a_server_edit_from_a_version_not_reached_is_not_applied_even_when_it_fits() {
    let mut net = Net::connected(2, cfg(), "x");
    other_types(&mut net, 0, "A");
    poll_and_hold_reply(&mut net);
    match &mut reply_edits(&mut net)[0] {
        Edit::Delta { version, .. } => *version += 1,
        other => panic!("expected a delta, got {other:?}"),
    }
    net.deliver_down(0);
    assert_eq!(net.clients[0].engine().text(), "x");
    assert_eq!(net.clients[0].engine().stats().corrupt_ignored, 1);
    net.settle(10_000);
    assert_eq!(net.clients[0].engine().text(), "Ax");
    net.converged().unwrap();
}

/// A driver may wake early (a spurious wake-up, another timer): the engine acts on its own
/// deadlines only, so a call before them sends nothing, with a request in flight or without.
#[test]
fn a_timer_call_before_the_deadline_sends_nothing() {
    let mut net = Net::connected(1, cfg(), "x");
    let early = |net: &mut Net| {
        let now = net.now;
        let due = net.clients[0].engine().poll_timeout().expect("a deadline");
        assert!(due > now, "{due:?} is not after {now:?}");
        net.clients[0].edit(|e| e.handle_timeout(now));
        net.pump();
        assert!(net.up[0].is_empty(), "sent early: {:?}", net.up[0]);
    };
    // Settled: no request in flight, the next sync not yet due.
    early(&mut net);
    // A request in flight (lost), its retransmit not yet due.
    net.type_at(0, 1, "y");
    net.sync(0);
    assert!(net.drop_up(0).is_some());
    early(&mut net);
    net.settle(10_000);
    assert_eq!(net.master(), "xy");
}

/// A client that reconnects resumes its session and counts it.
#[test]
fn a_reconnect_resumes_and_is_counted() {
    let mut net = Net::connected(1, cfg(), "x");
    net.reconnect(0);
    net.settle(10_000);
    assert!(net.events[0].contains(&ClientEvent::Connected { resumed: true }));
    assert_eq!(net.clients[0].engine().stats().resumes, 1);
}

/// A reset that names no base (a server that kept none) is merged by diff: typing survives
/// and the client counts the reset as inexact.
#[test]
fn a_reset_without_a_base_is_merged_by_diff_and_counted() {
    let mut net = Net::connected(1, cfg(), "r");
    net.type_at(0, 1, "1");
    net.sync(0);
    net.damage_until_reset(0);
    let mut stripped = 0;
    for m in net.down[0].iter_mut() {
        if let ServerMsg::ServerSync { edits, .. } = m {
            for e in edits.iter_mut() {
                if let Edit::Full { base, .. } = e {
                    *base = None;
                    stripped += 1;
                }
            }
        }
    }
    assert_eq!(stripped, 1, "one reset was sent");
    net.settle(10_000);
    assert_eq!(net.master(), "r1");
    assert_eq!(net.clients[0].engine().stats().inexact_resets, 1);
    net.converged().unwrap();
}

/// Names are 1 to `max_name_bytes` bytes without control characters, the document's and the
/// client's alike; each is checked on its own.
#[test]
fn a_connect_with_a_bad_document_or_client_name_is_refused() {
    let mut net = Net::connected(1, cfg(), "x");
    let max = net.config.limits.max_name_bytes;
    let cases = [
        (DOC.to_string(), "bell\u{7}".to_string(), false),
        (DOC.to_string(), "x".repeat(max + 1), false),
        (DOC.to_string(), String::new(), false),
        ("tab\tdoc".to_string(), "ok".to_string(), false),
        ("d".repeat(max + 1), "ok".to_string(), false),
        (DOC.to_string(), "x".repeat(max), true),
    ];
    for (k, (doc, id, ok)) in cases.into_iter().enumerate() {
        let peer = PeerId(100 + k as u64);
        net.send_as(peer, connect_msg(&doc, &id));
        if ok {
            assert!(connected_ok(&net, peer), "{doc:?} {id:?}");
        } else {
            assert_eq!(
                last_error(&net, peer),
                Some(ErrorCode::BadName),
                "{doc:?} {id:?}"
            );
            assert!(!connected_ok(&net, peer), "{doc:?} {id:?}");
        }
    }
}

/// At `max_documents` loaded, a connect that would load another document is refused with
/// `too_many_documents`; one to a loaded document still opens.
#[test]
fn a_connect_past_the_document_limit_is_refused() {
    let mut config = cfg();
    config.limits.max_documents = 1;
    let mut net = Net::connected(1, config, "x");
    net.send_as(PeerId(100), connect_msg("another", "c"));
    assert_eq!(
        last_error(&net, PeerId(100)),
        Some(ErrorCode::TooManyDocuments)
    );
    assert!(net.server().master("another").is_none());
    net.send_as(PeerId(101), connect_msg(DOC, "c9"));
    assert!(connected_ok(&net, PeerId(101)));
}

/// A message may carry `max_edits_per_message` edits and no more.
#[test]
fn a_request_with_more_edits_than_the_limit_is_refused() {
    let mut config = cfg();
    config.limits.max_edits_per_message = 3;
    let mut net = Net::connected(1, config, "x");
    for (copies, refused) in [(4, true), (3, false)] {
        net.type_at(0, 0, "a");
        net.sync(0);
        let before = net.server_log.len();
        let Some(ClientMsg::ClientSync { edits, .. }) = net.up[0].front_mut() else {
            panic!("expected a client_sync");
        };
        let edit = edits[0].clone();
        // The same edit again: a duplicate the server skips, if it takes the message.
        edits.resize(copies, edit);
        net.deliver_up(0);
        let code = error_since(&net, net.peer_of[0], before);
        assert_eq!(
            code == Some(ErrorCode::TooManyEdits),
            refused,
            "{copies} edits: {code:?}"
        );
        net.drop_down(0);
        net.settle(10_000);
    }
    assert_eq!(net.master(), "aax");
}

/// A session taken over by another connection (the client moved) is that connection's alone:
/// the old one, still open, can no longer sync it.
#[test]
fn a_session_that_moved_cannot_be_synced_from_its_old_connection() {
    let mut net = Net::connected(1, cfg(), "x");
    let old = net.peer_of[0];
    // The client's transport is replaced without the server hearing the old one close.
    net.peer_of[0] = PeerId(50);
    net.up[0].clear();
    net.down[0].clear();
    let _ = net.clients[0].lost();
    let now = net.now;
    net.clients[0].connected(now);
    net.pump();
    net.settle(10_000);
    let sv = net.clients[0].engine().stats().edits_applied;
    net.send_as(
        old,
        ClientMsg::ClientSync {
            doc: DOC.to_string(),
            seq: 1_000,
            server_version: sv,
            edits: Vec::new(),
        },
    );
    assert_eq!(last_error(&net, old), Some(ErrorCode::UnknownSession));
    // The old connection closing takes nothing from the one that holds the session.
    net.send_as(
        old,
        ClientMsg::Close {
            doc: DOC.to_string(),
        },
    );
    net.type_at(0, 1, "y");
    net.settle(10_000);
    assert_eq!(net.master(), "xy");
}

/// The server pings a connection that went quiet and drops it when it stays silent, also
/// when no other peer's traffic wakes the server in between.
#[test]
fn the_only_peer_going_silent_is_pinged_then_dropped() {
    let mut net = Net::connected(1, cfg(), "x");
    let peer = net.peer_of[0];
    let silent = net.config.silent_timeout_ms();
    for _ in 0..(silent / 500 + 4) {
        net.advance(500);
        net.up[0].clear();
        net.down[0].clear();
    }
    let pinged = net
        .server_log
        .iter()
        .any(|o| matches!(o, ServerOutput::Send { to, msg: ServerMsg::Ping } if *to == peer));
    let dropped = net
        .server_log
        .iter()
        .any(|o| matches!(o, ServerOutput::Disconnect { peer: p, .. } if *p == peer));
    assert!(pinged && dropped, "pinged {pinged}, dropped {dropped}");
    assert_eq!(net.server().peer_count(), 0);
}

/// The stored change log must run without a gap up to the stored version to index master
/// states: a log with a gap is dropped on load (sessions linked into it merge by diff once),
/// never used with the wrong changes at the wrong versions.
#[test]
fn a_stored_log_with_a_gap_is_dropped_on_load() {
    let mut net = Net::connected(2, cfg(), "|");
    for (k, s) in ["a", "b", "c"].into_iter().enumerate() {
        other_types(&mut net, k + 1, s);
    }
    // Client 0 has not synced since: its link keeps all three changes in the log.
    assert_eq!(net.server().version(DOC), Some(3));
    assert_eq!(net.server().log_len(DOC), Some(3));
    net.crash_server_then(|store| {
        let mut d = store.load(DOC).unwrap().expect("stored");
        assert_eq!(d.changes.len(), 3);
        d.changes.remove(1);
        store.insert(DOC, d);
    });
    net.reconnect(1);
    net.flush();
    assert_eq!(net.server().version(DOC), Some(3));
    assert_eq!(net.server().log_len(DOC), Some(0));
    net.reconnect(0);
    net.type_at(0, 0, "0");
    net.settle(20_000);
    assert_eq!(net.master(), "0|abc");
    net.converged().unwrap();
}

/// The log keeps at most `max_log_entries` changes: each one dropped while a session still
/// needed it is counted, and that session, idle past the log, merges by diff once and says
/// so; the text is still right.
#[test]
fn a_session_idle_past_the_log_merges_by_diff_and_says_so() {
    let mut config = cfg();
    config.limits.max_log_entries = 4;
    let mut net = Net::connected(2, config, "|");
    for k in 0..10 {
        other_types(&mut net, k + 1, &k.to_string());
        assert!(net.server().log_len(DOC) <= Some(4));
    }
    let stats = *net.server().stats();
    assert_eq!(
        (stats.log_overflows, stats.link_fallbacks),
        (6, 0),
        "{stats:?}"
    );
    // Client 0's change to the master is now known only by a diff; client 1's is exact.
    let exact = |id: &str| net.server().shadow_change(DOC, id).map(|c| c.1);
    assert_eq!((exact("c0"), exact("c1")), (Some(false), Some(true)));
    net.type_at(0, 0, "x");
    net.settle(20_000);
    assert_eq!(net.master(), "x|0123456789");
    assert_eq!(net.server().stats().link_fallbacks, 1);
    net.converged().unwrap();
}

/// A log no session needs stays small: it does not grow to `max_log_entries` while every
/// session keeps up.
#[test]
fn a_log_no_session_needs_stays_small() {
    let mut net = Net::connected(2, cfg(), "");
    for k in 0..100 {
        let at = net.clients[k % 2].engine().text().len_chars();
        net.type_at(k % 2, at, "z");
        net.settle(10_000);
    }
    assert_eq!(net.master(), "z".repeat(100));
    let len = net.server().log_len(DOC).expect("loaded");
    assert!(len < 32, "{len} entries kept");
}

/// The fuzzy merge drops a patch that no longer finds its place and counts it.
#[test]
fn a_fuzzy_patch_with_no_place_left_is_dropped_and_counted() {
    let mut net = Net::connected(2, cfg(), "the quick brown fox");
    net.set_merge(dsync_engine::MergeStrategy::FuzzyPatch);
    // Client 0 deletes "quick" while client 1 rewrites the whole sentence.
    net.clients[0].delete(4, 10).unwrap();
    net.clients[1]
        .set_text("a lazy dog sleeps all day long")
        .unwrap();
    net.sync(1);
    net.flush();
    net.settle(20_000);
    assert!(net.server().stats().patches_dropped >= 1);
    net.converged().unwrap();
}

/// Local edits check the document limit on what they leave: exactly the limit is taken, more
/// is refused with the length it would have had, for a whole new text as for an insertion.
#[test]
fn local_edits_stop_at_the_document_limit() {
    let mut config = cfg();
    config.limits = config.limits.with_document_bytes(20);
    let mut c = client(config, "c");
    assert_eq!(
        c.set_text(&"a".repeat(25)),
        Err(EngineError::DocumentTooLarge { len: 25, max: 20 })
    );
    c.set_text(&"a".repeat(20)).unwrap();
    // A byte edit counts what it deletes: 20 - 2 + 3 = 21 bytes.
    assert_eq!(
        c.edit_bytes(0, 2, "xyz"),
        Err(EngineError::DocumentTooLarge { len: 21, max: 20 })
    );
    c.set_text(&"a".repeat(18)).unwrap();
    assert_eq!(
        c.insert(3, "bcd"),
        Err(EngineError::DocumentTooLarge { len: 21, max: 20 })
    );
    c.insert(3, "bc").unwrap();
    assert_eq!(c.engine().text(), "aaabcaaaaaaaaaaaaaaa");
}

/// A byte edit must start and end on char boundaries: one ending inside a char is refused
/// and changes nothing.
#[test]
fn a_byte_edit_ending_inside_a_char_is_refused() {
    let mut c = client(cfg(), "c");
    c.set_text("aé😀").unwrap();
    for (at, del) in [(0, 2), (1, 1), (3, 2), (2, 1)] {
        assert_eq!(
            c.edit_bytes(at, del, "x"),
            Err(EngineError::BadPosition { at, len: 7 }),
            "at {at}, delete {del}"
        );
    }
    assert_eq!(c.engine().text(), "aé😀");
    c.edit_bytes(1, 2, "e").unwrap();
    assert_eq!(c.engine().text(), "ae😀");
}

/// The master holds no `\r`: text a client inserts with `\r\n` (another implementation may
/// send it) is kept with `\n`, also when nothing else changed since the client's shadow.
#[test]
fn a_carriage_return_a_client_sends_is_normalised() {
    let mut net = Net::new(0, cfg(), "");
    let peer = PeerId(100);
    net.send_as(peer, connect_msg(DOC, "raw"));
    assert!(connected_ok(&net, peer));
    let (base, new) = (Rope::from(""), Rope::from("a\r\nb"));
    let op = Operation::insertion(0, 0, "a\r\nb");
    net.send_as(
        peer,
        ClientMsg::ClientSync {
            doc: DOC.to_string(),
            seq: 2,
            server_version: 0,
            edits: vec![Edit::Delta {
                version: 0,
                delta: Delta::from_operation(&op, &base),
                checksum: Checksum::of(&new),
            }],
        },
    );
    assert_eq!(last_error(&net, peer), None);
    assert_eq!(net.master(), "a\nb");
}

/// A client that closes the document, the last one holding it, lets it leave memory; its
/// session stays resumable from the store.
#[test]
fn closing_the_last_session_unloads_the_document() {
    let mut net = Net::connected(1, cfg(), "x");
    net.type_at(0, 1, "y");
    net.settle(10_000);
    net.send_to_server(
        0,
        ClientMsg::Close {
            doc: DOC.to_string(),
        },
    );
    assert!(net.server().master(DOC).is_none(), "still loaded");
    assert!(net
        .store()
        .load(DOC)
        .unwrap()
        .is_some_and(|d| d.text == "xy"));
}

/// A session the server has sent an edit to is in use, also after a restart that forgot the
/// edit in flight (its backup is still the zero shadow): a connect without its key cannot
/// take it, and its own client resumes it.
#[test]
fn a_session_sent_an_edit_is_not_taken_by_a_keyless_connect_after_a_restart() {
    let mut net = Net::connected(2, cfg(), "x");
    other_types(&mut net, 0, "A");
    poll_and_hold_reply(&mut net);
    net.crash_server();
    let stranger = PeerId(100);
    net.send_as(stranger, connect_msg(DOC, "c0"));
    assert_eq!(last_error(&net, stranger), Some(ErrorCode::SessionTaken));
    assert!(!connected_ok(&net, stranger));
    net.reconnect(0);
    net.settle(10_000);
    assert!(net.events[0].contains(&ClientEvent::Connected { resumed: true }));
    assert_eq!(net.clients[0].engine().text(), "Ax");
    net.converged().unwrap();
}

/// A document created with a text (as `PUT /documents/{doc}` does) is stored whole and leaves
/// memory: nobody holds it yet.
#[test]
fn a_created_document_is_stored_and_released_from_memory() {
    let mut net = Net::connected(1, cfg(), "x");
    net.create_document("made", "some text");
    assert!(net.server().master("made").is_none(), "still loaded");
    let stored = net.store().load("made").unwrap().expect("stored");
    assert_eq!(stored.text, "some text");
}
