//! One test per recovery path of `protocol.md`: each shows the state converges and no edit is
//! lost (or duplicated).

use dsync_engine::{
    Checksum, ClientEvent, ClientMsg, Config, Delta, Edit, PeerId, ServerMsg, ServerOutput,
    DAMAGED_MAX,
};

use dsync_store::Store;

use crate::harness::{client, first_edit_mut, flip_checksum, Net, DOC};
use dsync_node::ClientNodeOutput;

/// These tests script which message is lost, doubled or damaged, by its place in the queues:
/// they run the fixed-cadence protocol (no hints, no idle back-off), whose message sequence
/// they were written against. `hints.rs` tests hints and the back-off.
fn cfg() -> Config {
    Config {
        hints: false,
        max_idle_sync_ms: Config::default().sync_interval_ms,
        ..Config::default()
    }
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn lost_client_message_is_resent_from_pending() {
    let mut net = Net::connected(2, cfg(), "hello");
    net.type_at(0, 5, " world");
    net.sync(0);
    assert!(net.drop_up(0).is_some());
    net.settle(10_000);
    assert_eq!(net.master(), "hello world");
    assert_eq!(net.clients[1].engine().text(), "hello world");
    assert!(net.clients[0].engine().stats().retransmits >= 1);
}

#[test]
fn lost_server_reply_restores_backup_shadow() {
    let mut net = Net::connected(2, cfg(), "abc");
    net.type_at(1, 0, "B");
    net.sync(1);
    net.deliver_up(1);
    net.deliver_down(1);
    // Client 0 polls and also sends its own edit; the reply (which carries B) is lost.
    net.type_at(0, 3, "Z");
    net.sync(0);
    net.deliver_up(0);
    assert!(net.drop_down(0).is_some());
    net.settle(10_000);
    assert_eq!(net.master(), "BabcZ");
    assert_eq!(net.server().stats().rollbacks, 1);
    assert_eq!(net.server().stats().resets, 0);
    // Z was applied once: the resent copy was a duplicate.
    assert_eq!(net.server().stats().duplicates_skipped, 1);
}

#[test]
fn duplicated_client_message_is_skipped() {
    let mut net = Net::connected(1, cfg(), "x");
    net.type_at(0, 1, "Y");
    net.sync(0);
    net.duplicate_up(0);
    net.settle(10_000);
    assert_eq!(net.master(), "xY");
    assert_eq!(net.server().stats().stale_skipped, 1);
    assert_eq!(net.server().stats().resets, 0);
}

#[test]
fn duplicated_server_reply_is_skipped() {
    let mut net = Net::connected(2, cfg(), "x");
    net.type_at(1, 0, "A");
    net.sync(1);
    net.deliver_up(1);
    net.sync(0);
    net.deliver_up(0);
    net.duplicate_down(0);
    net.settle(10_000);
    assert_eq!(net.clients[0].engine().text(), "Ax");
    assert!(net.clients[0].engine().stats().stale_skipped >= 1);
    assert_eq!(count(&net.clients[0].engine().text().flat(), "A"), 1);
}

#[test]
fn reordered_stale_request_is_ignored() {
    let mut net = Net::connected(1, cfg(), "");
    net.type_at(0, 0, "X");
    net.sync(0);
    // No reply in time: the client types more and retransmits under a new seq.
    net.type_at(0, 1, "Y");
    net.advance(2_000);
    assert_eq!(net.up[0].len(), 2);
    net.reorder_up(0);
    net.settle(10_000);
    assert_eq!(net.master(), "XY");
    assert_eq!(net.server().stats().stale_skipped, 1);
}

/// Damage client `i`'s queued request and deliver it: the server refuses the edit once; the
/// client gets the refusal.
fn refuse_damaged(net: &mut Net, i: usize) {
    flip_checksum(first_edit_mut(net, i));
    net.deliver_up(i);
    net.deliver_down(i);
}

/// Damage client `i`'s resent request too: the server resets the session; the reset is lost.
fn lose_the_reset_after_a_second_damage(net: &mut Net, i: usize) {
    net.damage_next(i, flip_checksum);
    net.deliver_up(i);
    match net.drop_down(i) {
        Some(ServerMsg::ServerSync { edits, .. }) => {
            assert!(matches!(edits[0], Edit::Full { .. }), "{edits:?}")
        }
        other => panic!("expected the reset, got {other:?}"),
    }
}

/// Client 1 types `token` after the first token of "⟨a⟩⟨b⟩" and syncs it alone: to the server
/// and back to client 1, nobody else.
fn type_alone(net: &mut Net, token: &str) {
    net.type_at(1, 3, token);
    net.sync(1);
    while net.deliver_up(1) || net.deliver_down(1) {}
}

/// Client 1 types a token and takes it back, alone: the log moves on by two versions and the
/// master is where it started.
fn type_and_take_back(net: &mut Net) {
    type_alone(net, "⟨t⟩");
    net.clients[1].delete(3, 6).unwrap();
    net.sync(1);
    while net.deliver_up(1) || net.deliver_down(1) {}
}

/// Client 1 types enough for the log to be trimmed; the server crashes; both reconnect. Client
/// 0's "⟨x⟩" is in the master once, and no diff stood in for an exact change.
fn trim_crash_and_check_exact(net: &mut Net) {
    for k in 0..40 {
        type_alone(net, &format!("⟨y{k}⟩"));
    }
    net.crash_server();
    net.reconnect(0);
    net.reconnect(1);
    net.settle(30_000);
    let master = net.master();
    assert_eq!(count(&master, "⟨x⟩"), 1, "{master}");
    assert_eq!(count(&master, "⟨"), 43, "{master}");
    let stats = net.server().stats();
    assert_eq!(stats.link_fallbacks, 0, "{stats:?}");
}

fn misfit(e: &mut Edit) {
    if let Edit::Delta { delta, .. } = e {
        *delta = Delta::parse("=1000\t+!", 100).unwrap();
    }
}

#[test]
fn damaged_edit_is_ignored_once_and_resent() {
    let mut net = Net::connected(2, cfg(), "shared");
    net.type_at(0, 0, "mine ");
    net.sync(0);
    flip_checksum(first_edit_mut(&mut net, 0));
    net.settle(10_000);
    assert_eq!(net.master(), "mine shared");
    assert_eq!(net.server().stats().corrupt_ignored, 1);
    assert_eq!(net.server().stats().resets, 0);
}

#[test]
fn checksum_mismatch_twice_resets_and_keeps_local_typing() {
    let mut net = Net::connected(2, cfg(), "shared");
    net.type_at(0, 0, "mine ");
    net.sync(0);
    flip_checksum(first_edit_mut(&mut net, 0));
    net.deliver_up(0);
    net.damage_next(0, flip_checksum);
    net.settle(10_000);
    assert_eq!(net.master(), "mine shared");
    assert_eq!(net.server().stats().resets, 1);
    assert_eq!(net.clients[0].engine().stats().resets, 1);
}

/// A reset is a fresh start: one damaged edit right after it is refused once, like any first
/// damaged edit, not taken for a second failure (the count used to survive the reset).
#[test]
fn one_damaged_edit_after_a_reset_is_refused_once_not_reset_again() {
    let mut net = Net::connected(2, cfg(), "shared");
    net.type_at(0, 0, "mine ");
    net.sync(0);
    refuse_damaged(&mut net, 0);
    net.damage_next(0, flip_checksum);
    net.deliver_up(0);
    net.deliver_down(0);
    assert_eq!(net.server().stats().resets, 1);
    assert_eq!(net.clients[0].engine().stats().resets, 1);
    // The first request after the reset carries the re-merged typing: damage it once.
    let ignored = net.server().stats().corrupt_ignored;
    net.sync(0);
    flip_checksum(first_edit_mut(&mut net, 0));
    net.settle(10_000);
    assert_eq!(net.master(), "mine shared");
    assert_eq!(net.server().stats().corrupt_ignored, ignored + 1);
    assert_eq!(net.server().stats().resets, 1, "no second reset");
}

#[test]
fn delta_that_does_not_fit_twice_resets_and_keeps_local_typing() {
    let mut net = Net::connected(1, cfg(), "shared");
    net.type_at(0, 6, "!");
    net.sync(0);
    misfit(first_edit_mut(&mut net, 0));
    net.deliver_up(0);
    net.damage_next(0, misfit);
    net.settle(10_000);
    assert_eq!(net.master(), "shared!");
    assert_eq!(net.server().stats().resets, 1);
}

/// A reset that is lost and sent again must still name the client's pre-reset shadow exactly,
/// however far the master moved meanwhile. The change log used to be trimmed past the link the
/// resent reset needs; its base then came from a diff that split the simulator's tokens
/// (`scenarios/regressions/reset-under-corruption-min.ron`).
#[test]
fn a_resent_reset_stays_exact_after_the_log_moved_on() {
    let mut net = Net::connected(2, cfg(), "⟨a⟩⟨b⟩");
    // Client 1 types tokens at one place, delivered to the server and back to client 1 only.
    let type_alone = |net: &mut Net, k: usize| type_alone(net, &format!("⟨y{k}⟩"));
    // Client 0 types at the same place; its edit is damaged in transit and refused once.
    net.type_at(0, 3, "⟨x⟩");
    net.sync(0);
    refuse_damaged(&mut net, 0);
    // The master moves on; then the resent edit is damaged again: the server resets the
    // session, and the reset is lost.
    for k in 0..5 {
        type_alone(&mut net, k);
    }
    lose_the_reset_after_a_second_damage(&mut net, 0);
    // Client 1 goes on typing there: the log grows past its trimming threshold.
    for k in 5..40 {
        type_alone(&mut net, k);
    }
    net.settle(30_000);
    let master = net.master();
    assert!(
        master.starts_with("⟨a⟩") && master.ends_with("⟨b⟩"),
        "{master}"
    );
    assert_eq!(count(&master, "⟨x⟩"), 1, "{master}");
    for k in 0..40 {
        assert_eq!(count(&master, &format!("⟨y{k}⟩")), 1, "{master}");
    }
    assert_eq!(count(&master, "⟨"), 43, "{master}");
    assert_eq!(count(&master, "⟩"), 43, "{master}");
    // Exact all the way: no link was lost, no merge fell back to texts.
    let s = net.server().stats();
    assert_eq!((s.link_fallbacks, s.merge_fallbacks), (0, 0), "{s:?}");
    assert_eq!(net.clients[0].engine().stats().inexact_resets, 0);
    assert_eq!(net.clients[0].engine().stats().resets, 1);
}

#[test]
fn damaged_server_edit_is_ignored_once_then_resent() {
    let mut net = Net::connected(2, cfg(), "abc");
    net.type_at(1, 0, "B");
    net.sync(1);
    net.flush();
    net.sync(0);
    net.deliver_up(0);
    match net.down[0].front_mut() {
        Some(ServerMsg::ServerSync { edits, .. }) => flip_checksum(&mut edits[0]),
        other => panic!("unexpected {other:?}"),
    }
    net.settle(10_000);
    assert_eq!(net.clients[0].engine().text(), "Babc");
    assert_eq!(net.clients[0].engine().stats().corrupt_ignored, 1);
    assert_eq!(net.clients[0].engine().stats().resets, 0);
    assert_eq!(net.server().stats().rollbacks, 1);
}

#[test]
fn version_from_the_future_resets() {
    let mut net = Net::connected(1, cfg(), "v");
    net.type_at(0, 1, "2");
    net.sync(0);
    if let Edit::Delta { version, .. } = first_edit_mut(&mut net, 0) {
        *version += 5;
    }
    net.settle(10_000);
    assert_eq!(net.master(), "v2");
    assert_eq!(net.server().stats().resets, 1);
}

/// A reset the client never received is part of the session's durable state: a server that
/// restarts (or loads the document again) sends it again naming the same pre-reset shadow, so
/// the client re-merges its typing exactly. It used to be forgotten on reload; the next reset
/// then named the reset text itself, the client could not match it and merged by diff, which
/// split a token (swarm seed 558 of the corruption-storm profile).
#[test]
fn a_reset_the_client_never_saw_survives_a_server_restart() {
    let mut net = Net::connected(2, cfg(), "⟨a⟩⟨b⟩");
    net.type_at(0, 3, "⟨x⟩");
    net.sync(0);
    refuse_damaged(&mut net, 0);
    // The master moves on, so the reset's text is not client 0's shadow.
    type_alone(&mut net, "⟨y⟩");
    lose_the_reset_after_a_second_damage(&mut net, 0);
    net.crash_server();
    net.settle(30_000);
    let master = net.master();
    for t in ["⟨a⟩", "⟨x⟩", "⟨y⟩", "⟨b⟩"] {
        assert_eq!(count(&master, t), 1, "{master}");
    }
    assert_eq!(count(&master, "⟨"), 4, "{master}");
    assert_eq!(
        net.clients[0].engine().stats().inexact_resets,
        0,
        "the re-merge was exact"
    );
    assert_eq!(net.clients[0].engine().stats().resets, 1);
}

/// Full-text edits go from server to client only: one from a client is refused with
/// `bad_message` and changes nothing (the server used to take it as a diff against its shadow).
#[test]
fn a_full_text_edit_from_a_client_is_refused() {
    let mut net = Net::connected(1, cfg(), "keep me");
    net.sync(0);
    let m = match net.up[0].pop_front() {
        Some(ClientMsg::ClientSync {
            doc,
            seq,
            server_version,
            ..
        }) => ClientMsg::ClientSync {
            doc,
            seq,
            server_version,
            edits: vec![Edit::Full {
                version: 0,
                text: "hijacked".into(),
                checksum: Checksum::of("hijacked"),
                base: None,
            }],
        },
        other => panic!("expected a client_sync, got {other:?}"),
    };
    net.send_to_server(0, m);
    assert_eq!(net.master(), "keep me");
    match net.down[0].pop_front() {
        Some(ServerMsg::Error { code, message, .. }) => {
            assert_eq!(code, dsync_engine::ErrorCode::BadMessage);
            assert!(message.contains("server to client only"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Two clients' typing together passes the document limit: the server refuses the second
/// with `document_too_large` and resets that client, which drops the typing that can never be
/// accepted and says so, instead of merging it again and resending it after every reset.
#[test]
fn typing_past_the_document_limit_is_dropped_and_said_not_resent_forever() {
    let mut config = cfg();
    config.limits = config.limits.with_document_bytes(20);
    let mut net = Net::connected(2, config, "");
    net.type_at(0, 0, "aaaaaaaaaaaa");
    net.type_at(1, 0, "bbbbbbbbbbbb");
    net.sync(0);
    net.flush();
    net.sync(1);
    net.settle(20_000);
    assert_eq!(net.master(), "aaaaaaaaaaaa");
    assert!(
        net.events[1].contains(&ClientEvent::LocalChangeDropped {
            reason: dsync_engine::ErrorCode::DocumentTooLarge
        }),
        "{:?}",
        net.events[1]
    );
    assert_eq!(net.clients[1].engine().text(), "aaaaaaaaaaaa");
    assert!(net.clients[1].engine().is_settled());
    // Taking the server's text in place of the refused typing is a reset, counted once.
    assert_eq!(net.clients[1].engine().stats().resets, 1);
    // Nothing is resent after it settled.
    let sent_before = net.server().stats().edits_applied;
    net.advance(10_000);
    net.settle(5_000);
    assert_eq!(net.server().stats().edits_applied, sent_before);
}

/// The limit is inclusive: typing that fills the document exactly to it is sent and kept, at
/// the client as at the server.
#[test]
fn typing_that_fills_the_document_exactly_to_its_limit_is_kept() {
    let mut config = cfg();
    config.limits = config.limits.with_document_bytes(20);
    let mut net = Net::connected(2, config, "");
    net.type_at(0, 0, "aaaaaaaaaa");
    net.settle(20_000);
    net.type_at(1, 10, "bbbbbbbbbb");
    net.settle(20_000);
    assert_eq!(net.master(), "aaaaaaaaaabbbbbbbbbb");
    assert!(!net.events[1]
        .iter()
        .any(|e| matches!(e, ClientEvent::LocalChangeDropped { .. })));
}

#[test]
fn server_restart_resumes_persisted_sessions() {
    let mut net = Net::connected(2, cfg(), "base");
    net.type_at(0, 4, "X");
    net.sync(0);
    net.flush();
    assert_eq!(net.master(), "baseX");
    net.type_at(0, 5, "Y");
    net.sync(0);
    net.crash_server(); // the request carrying Y is lost with the server
    net.settle(20_000);
    assert_eq!(net.master(), "baseXY");
    assert_eq!(net.clients[1].engine().text(), "baseXY");
    assert!(net.server().stats().resumes >= 2);
    assert_eq!(net.server().stats().resets, 0);
}

#[test]
fn server_amnesia_resets_without_losing_or_duplicating_typing() {
    let mut net = Net::connected(1, cfg(), "base");
    // X reaches the master and is persisted, but its acknowledgement is lost.
    net.type_at(0, 4, "X");
    net.sync(0);
    net.deliver_up(0);
    net.drop_down(0);
    // Y is typed and never sent before the crash.
    net.type_at(0, 5, "Y");
    // The server crashes and forgets every session.
    net.crash_server_then(|store| {
        let mut forgot = store.load(DOC).unwrap().unwrap();
        forgot.sessions.clear();
        store.insert(DOC, forgot);
    });
    net.settle(20_000);
    assert_eq!(net.master(), "baseXY");
    assert_eq!(net.clients[0].engine().stats().resets, 1);
}

#[test]
fn client_restart_starts_from_the_server_text() {
    let mut net = Net::connected(2, cfg(), "abc");
    net.type_at(0, 3, "d");
    net.sync(0);
    net.flush();
    net.clients[1] = client(cfg(), "c1-restarted");
    net.reconnect(1);
    net.settle(10_000);
    assert_eq!(net.clients[1].engine().text(), "abcd");
}

#[test]
fn silent_peer_is_evicted_after_its_heartbeats() {
    let mut net = Net::connected(1, cfg(), "t");
    let ghost = PeerId(999);
    net.send_as(ghost, ClientMsg::Ping);
    let peers = net.server().peer_count();
    // Client 0 keeps syncing; the ghost says nothing more.
    for _ in 0..100 {
        net.advance(1_000);
        net.flush();
    }
    assert_eq!(net.server().peer_count(), peers - 1);
    let pinged = net.server_log.iter().any(|o| {
        matches!(o, ServerOutput::Send { to, msg: dsync_engine::ServerMsg::Ping } if *to == ghost)
    });
    let evicted = net
        .server_log
        .iter()
        .any(|o| matches!(o, ServerOutput::Disconnect { peer, .. } if *peer == ghost));
    assert!(pinged && evicted);
    net.converged().unwrap();
}

#[test]
fn silent_server_is_reported_by_the_client() {
    let mut c = client(cfg(), "c");
    let mut net = Net::connected(1, cfg(), "t");
    std::mem::swap(&mut c, &mut net.clients[0]);
    let start = net.now;
    let mut silent_at = None;
    for s in 1..=200 {
        let t = start.plus_ms(s * 1_000);
        c.handle_timeout(t);
        while let Some(o) = c.poll_output() {
            if o == ClientNodeOutput::Event(ClientEvent::ServerSilent) {
                silent_at.get_or_insert(t);
            }
        }
    }
    let at = silent_at.expect("client never noticed the silent server");
    assert_eq!(at.ms_since(start), 90_000);
    assert!(!c.engine().is_connected());
}

/// Damage client `i`'s next [`DAMAGED_MAX`] + 1 server replies, typing `typed(k)` before each
/// request and once more before each reply, which arrives after the next sync was due.
fn damage_replies(net: &mut Net, i: usize, typed: impl Fn(usize) -> String) {
    for k in 0..=DAMAGED_MAX as usize {
        net.type_at(i, 0, &typed(k));
        net.sync(i);
        net.deliver_up(i);
        match net.down[i].front_mut() {
            Some(ServerMsg::ServerSync { edits, .. }) if !edits.is_empty() => {
                flip_checksum(&mut edits[0])
            }
            other => panic!("expected the server's reply with an edit, got {other:?}"),
        }
        net.type_at(i, 0, "x");
        net.advance(cfg().sync_interval_ms);
        net.deliver_down(i);
    }
}

/// The resume values a `connect` carries, if it is one.
fn connect_resume(m: Option<&ClientMsg>) -> Option<Option<dsync_engine::Resume>> {
    match m {
        Some(ClientMsg::Connect { resume, .. }) => Some(*resume),
        _ => None,
    }
}

/// [`DAMAGED_MAX`] + 1 damaged server edits in a row make the client reconnect. With typing of
/// its own pending and its sync interval already past, it must wait for `connect_ok` before it
/// syncs again: it used to start a cycle while reconnecting and trip its own self-check (swarm
/// seeds 98415, 103834, 114816 and 167621 of the 200,000-seed soak).
#[test]
fn a_resync_after_damaged_replies_with_typing_pending_waits_for_the_reconnect() {
    let mut net = Net::connected(2, cfg(), "abc");
    net.type_at(1, 0, "B");
    net.sync(1);
    net.flush();
    let rounds = DAMAGED_MAX as usize + 1;
    damage_replies(&mut net, 0, |k| k.to_string());
    assert_eq!(
        net.clients[0].engine().stats().corrupt_ignored,
        DAMAGED_MAX as u64
    );
    assert!(
        connect_resume(net.up[0].back()).is_some(),
        "the last damaged reply makes the client reconnect: {:?}",
        net.up[0]
    );
    net.settle(10_000);
    let master = net.master();
    assert_eq!(count(&master, "x"), rounds, "{master}");
    for t in ["B", "abc"]
        .into_iter()
        .map(String::from)
        .chain((0..rounds).map(|k| k.to_string()))
    {
        assert_eq!(count(&master, &t), 1, "{master}");
    }
}

/// A resync first resumes the session: the server's shadow is intact (a damaged edit changes
/// nothing), so it resends what the client missed and the client's unacknowledged typing stays
/// exact. A fresh `connect` started a new session whose text could not say which of the
/// client's edits it held; the merge by diff split tokens (soak seeds 65079, 127393, 155874,
/// 159546). Only when edits still fail after the resumed resync does the client ask afresh.
#[test]
fn a_resync_resumes_first_and_asks_afresh_only_if_edits_still_fail() {
    let mut net = Net::connected(2, cfg(), "⟨a⟩⟨b⟩");
    // Client 1 types at the same place throughout, so every reply to client 0 has an edit.
    let other = |net: &mut Net, k: usize| type_alone(net, &format!("⟨y{k}⟩"));
    other(&mut net, 0);
    damage_replies(&mut net, 0, |k| format!("⟨x{k}⟩"));
    assert!(
        matches!(connect_resume(net.up[0].back()), Some(Some(_))),
        "first resync resumes: {:?}",
        net.up[0]
    );
    // Deliver the resumed connect and its reply, then damage every reply again.
    net.deliver_up(0);
    net.deliver_down(0);
    for k in 1..=DAMAGED_MAX as usize + 1 {
        other(&mut net, k);
    }
    damage_replies(&mut net, 0, |k| format!("⟨z{k}⟩"));
    assert!(
        matches!(connect_resume(net.up[0].back()), Some(None)),
        "a second resync with no edit applied between asks afresh: {:?}",
        net.up[0]
    );
    net.settle(30_000);
    let master = net.master();
    let tokens = 2 + 2 * (DAMAGED_MAX as usize + 1) + DAMAGED_MAX as usize + 2;
    assert_eq!(count(&master, "⟨"), tokens, "{master}");
    assert_eq!(count(&master, "⟩"), tokens, "{master}");
}

/// A client's poll that changes nothing but its link's index (the master moved and came back
/// to the client's shadow: a change and its undo) must still be written: the store is told to
/// forget the changes below the links in memory, and a stored link left behind points before
/// the stored log after a restart, so the client's typing then merges through a diff (swarm
/// seed 309224, `scenarios/regressions/unsaved-link-min.ron`).
#[test]
fn a_link_moved_by_an_idle_poll_survives_a_restart() {
    let mut net = Net::connected(2, cfg(), "⟨a⟩⟨b⟩");
    // Client 1 types a token and takes it back: the master is where it started.
    type_and_take_back(&mut net);
    assert_eq!(net.master(), "⟨a⟩⟨b⟩");
    // Client 0 polls: nothing to send either way, but its link now names version 2.
    net.sync(0);
    while net.deliver_up(0) || net.deliver_down(0) {}
    // Client 0 types offline while client 1 types enough for the log to be trimmed.
    net.type_at(0, 3, "⟨x⟩");
    trim_crash_and_check_exact(&mut net);
}

#[test]
fn a_document_created_with_a_text_is_stored_whole() {
    let mut net = crate::harness::Net::new(1, dsync_engine::Config::default(), "");
    net.create_document("fresh", "made with a text");
    let rec = net
        .server_log
        .iter()
        .find_map(|o| match o {
            dsync_engine::ServerOutput::Persist(r) if r.doc == "fresh" => Some(r.clone()),
            _ => None,
        })
        .expect("the creation is persisted");
    assert_eq!(
        rec.text.as_ref().map(String::from).as_deref(),
        Some("made with a text")
    );
    assert_eq!(rec.version, 0);
}

/// A reset the client acknowledged is over, in the store too: a server that restarts right
/// after the acknowledgement must not send it again (the acknowledging request may change
/// nothing else, and it alone has to be written).
#[test]
fn an_acknowledged_reset_is_not_sent_again_after_a_restart() {
    let mut net = Net::connected(2, cfg(), "shared");
    net.type_at(0, 0, "mine ");
    net.sync(0);
    refuse_damaged(&mut net, 0);
    net.damage_next(0, flip_checksum);
    net.deliver_up(0);
    // The reset arrives; the client's next request acknowledges it.
    net.deliver_down(0);
    assert_eq!(net.clients[0].engine().stats().resets, 1);
    net.sync(0);
    net.deliver_up(0);
    net.crash_server();
    net.settle(30_000);
    assert_eq!(net.master(), "mine shared");
    assert_eq!(
        net.clients[0].engine().stats().resets,
        1,
        "the reset came again"
    );
    net.converged().unwrap();
}

/// A refused edit moves the session's link too (to the master it was refused at), and that
/// move is written like any other: the store forgets the changes below the links in memory,
/// so a stored link left behind would point before the stored log after a restart.
#[test]
fn a_link_moved_by_a_refused_edit_survives_a_restart() {
    let mut net = Net::connected(2, cfg(), "⟨a⟩⟨b⟩");
    // Client 1 types a token and takes it back: the master is where it started.
    type_and_take_back(&mut net);
    assert_eq!(net.master(), "⟨a⟩⟨b⟩");
    // Client 0's first edit arrives damaged: refused, and its link now names version 2.
    net.type_at(0, 3, "⟨x⟩");
    net.sync(0);
    refuse_damaged(&mut net, 0);
    assert_eq!(net.master(), "⟨a⟩⟨b⟩");
    // Client 1 types enough for the log to be trimmed.
    trim_crash_and_check_exact(&mut net);
}

/// A peer whose refused edit never comes back (it polls instead) moves its backup link on the
/// next reply while its link stays put: that move is written too, or a restart would find the
/// backup linked to a change the store was told it may forget.
#[test]
fn a_poll_after_a_refused_edit_is_written() {
    let mut net = Net::connected(2, cfg(), "⟨a⟩⟨b⟩");
    // The log moves on past client 0's links, and the master is back where it started, so
    // the poll's reply has nothing to send that would make it written anyway.
    type_and_take_back(&mut net);
    net.sync(0);
    let Some(ClientMsg::ClientSync {
        doc,
        seq,
        server_version,
        ..
    }) = net.up[0].pop_front()
    else {
        panic!("expected a client_sync");
    };
    let full = Edit::Full {
        version: 0,
        text: "hijacked".into(),
        checksum: Checksum::of("hijacked"),
        base: None,
    };
    let sync = |seq, edits| ClientMsg::ClientSync {
        doc: doc.clone(),
        seq,
        server_version,
        edits,
    };
    net.send_to_server(0, sync(seq, vec![full]));
    // The harness checks after each commit that a restart would restore the session as it is.
    net.send_to_server(0, sync(seq + 1, Vec::new()));
    net.crash_server();
    net.reconnect(0);
    net.reconnect(1);
    net.settle(30_000);
    assert_eq!(net.master(), "⟨a⟩⟨b⟩");
}

/// A connect lost on the way, or its answer lost on the way back, is sent again after
/// `retransmit_ms`, and the client then syncs as if nothing had happened.
#[test]
fn a_lost_connect_or_connect_answer_is_retried() {
    for lose_answer in [false, true] {
        let mut net = Net::new(1, cfg(), "hello");
        net.clients[0].connected(net.now);
        net.pump();
        if lose_answer {
            net.deliver_up(0);
            assert!(net.drop_down(0).is_some(), "the answer was lost");
        } else {
            assert!(
                matches!(net.drop_up(0), Some(ClientMsg::Connect { .. })),
                "the connect was lost"
            );
        }
        assert!(!net.clients[0].engine().is_connected());
        // Nothing is sent again before the retransmit time; then the connect is.
        net.advance(cfg().retransmit_ms - 1);
        assert!(net.up[0].is_empty());
        net.advance(1);
        assert!(matches!(net.up[0].front(), Some(ClientMsg::Connect { .. })));
        net.settle(10_000);
        assert!(net.clients[0].engine().is_connected());
        net.type_at(0, 5, "!");
        net.settle(10_000);
        assert_eq!(net.master(), "hello!", "lose_answer: {lose_answer}");
    }
}

/// Merges are exact from the first request of a session on: its link starts at the master it
/// connected to, so a change made meanwhile reaches the client's shadow as the change it was,
/// not as a diff, which in a text of repeats puts it in the wrong place.
#[test]
fn a_new_sessions_first_edit_merges_exactly_past_a_change_made_meanwhile() {
    let mut net = Net::new(2, cfg(), "abab");
    for i in 0..2 {
        net.clients[i].connected(net.now);
    }
    net.pump();
    net.flush();
    assert!(net.clients.iter().all(|c| c.engine().is_connected()));
    // Client 1 types "ab" at the front: a diff of "abab" → "ababab" would say "at the end".
    net.type_at(1, 0, "ab");
    net.sync(1);
    while net.deliver_up(1) || net.deliver_down(1) {}
    assert_eq!(net.master(), "ababab");
    // Client 0 never heard of it and types "X" after the first "a" it sees.
    net.type_at(0, 1, "X");
    net.sync(0);
    net.settle(10_000);
    assert_eq!(net.master(), "abaXbab");
    assert_eq!(net.server().stats().link_fallbacks, 0);
}

/// A document whose every connection went leaves memory (the store holds all of it), so a
/// server's memory holds only documents in use; the next connect loads it again as it was.
#[test]
fn a_document_nobody_holds_leaves_memory_and_comes_back_whole() {
    let mut net = Net::connected(2, cfg(), "kept");
    net.type_at(0, 4, " safe");
    net.settle(10_000);
    net.drop_connection(0);
    assert!(net.server().is_loaded(DOC), "client 1 still holds it");
    net.drop_connection(1);
    assert!(!net.server().is_loaded(DOC));
    net.reconnect(0);
    net.reconnect(1);
    net.settle(10_000);
    assert_eq!(net.master(), "kept safe");
    net.type_at(1, 0, "all ");
    net.settle(10_000);
    assert_eq!(net.master(), "all kept safe");
}
