//! One test per pitfall of `docs/protocol.md` (section *Pitfalls*) that the engine could fall into. Pitfalls 6, 8, 13
//! and 14 are tested where they live (`delta.rs`, `dmp/`); the codec's side of 5 in
//! `malformed.rs`.

use dsync_engine::dmp::FuzzySettings;
use dsync_engine::merge::{merge, MergeStrategy};
use dsync_engine::{ClientMsg, Config, Edit, ServerMsg, ServerOutput};
use dsync_store::Store;

use crate::harness::{connect_msg, Net, DOC};

fn cfg() -> Config {
    Config::default()
}

/// Pitfall 1: The acknowledgement is the next expected version: an edit tagged v is dropped from the
/// client's stack when v < client_version, with two requests in flight.
#[test]
fn p1_ack_is_next_expected_version_with_two_requests_in_flight() {
    let mut net = Net::connected(1, cfg(), "");
    net.type_at(0, 0, "a");
    net.sync(0); // request 1: edit v0
    net.type_at(0, 1, "b");
    net.advance(2_000); // retransmit, request 2: edits v0, v1
    assert_eq!(net.up[0].len(), 2);
    net.deliver_up(0);
    net.deliver_up(0);
    // Reply 1 acknowledges v0 only (client_version 1); reply 2 acknowledges both (2).
    let acks: Vec<u64> = net.down[0]
        .iter()
        .map(|m| match m {
            ServerMsg::ServerSync { client_version, .. } => *client_version,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(acks, vec![1, 2]);
    net.deliver_down(0); // stale (old seq): ignored
    assert_eq!(net.clients[0].engine().pending().len(), 2);
    net.deliver_down(0);
    assert!(net.clients[0].engine().pending().is_empty());
    assert_eq!(net.master(), "ab");
    assert_eq!(net.server().stats().duplicates_skipped, 1);
}

/// Pitfall 2: The backup is refreshed on every accepted message, even one with no edits, so a reply
/// lost after a plain poll is recovered by rollback, not by a full reset.
#[test]
fn p2_backup_refreshed_on_polls() {
    let mut net = Net::connected(2, cfg(), "x");
    for round in 0..3 {
        net.type_at(1, 0, "B");
        net.sync(1);
        net.flush();
        net.sync(0); // a poll with no edits; its reply carries B
        net.deliver_up(0);
        net.drop_down(0);
        net.settle(10_000);
        assert_eq!(net.server().stats().rollbacks, round + 1);
    }
    assert_eq!(net.server().stats().resets, 0);
    assert_eq!(net.clients[0].engine().text(), "BBBx");
}

/// Pitfall 3: Restore the backup before filtering duplicates, and clear the server's pending edits:
/// the resent edit is a duplicate of the backup's n, not applied twice; the server edit is
/// recomputed against the restored shadow.
#[test]
fn p3_restore_before_filtering() {
    let mut net = Net::connected(2, cfg(), "12345");
    net.type_at(1, 5, "6");
    net.sync(1);
    net.flush();
    net.type_at(0, 0, "0");
    net.sync(0);
    net.deliver_up(0);
    net.drop_down(0);
    // More arrives at the master before the retransmit: the recomputed edit must include it.
    net.type_at(1, 6, "7");
    net.sync(1);
    net.flush();
    net.settle(10_000);
    assert_eq!(net.master(), "01234567");
    assert_eq!(net.server().stats().rollbacks, 1);
    assert_eq!(net.server().stats().resets, 0);
}

/// Pitfall 4: A message holding only duplicates is answered normally.
#[test]
fn p4_duplicates_still_get_a_normal_reply() {
    let mut net = Net::connected(1, cfg(), "");
    net.type_at(0, 0, "q");
    net.sync(0);
    net.deliver_up(0);
    net.drop_down(0);
    net.advance(2_000); // retransmit with the same (now duplicate) edit
    net.deliver_up(0);
    match net.down[0].front() {
        Some(ServerMsg::ServerSync { client_version, .. }) => assert_eq!(*client_version, 1),
        other => panic!("expected a normal server_sync, got {other:?}"),
    }
    assert_eq!(net.server().stats().resets, 0);
}

/// Pitfall 5: No empty delta is stacked on a non-empty stack.
#[test]
fn p5_no_empty_edits_stacked() {
    let mut net = Net::connected(1, cfg(), "");
    net.type_at(0, 0, "z");
    net.sync(0);
    net.drop_up(0);
    for _ in 0..3 {
        net.advance(2_000);
        net.drop_up(0);
    }
    assert_eq!(net.clients[0].engine().pending().len(), 1);
}

/// Pitfall 7: After a reset both sides use exactly the versions in the reset, so the client's next edit
/// is applied, not skipped as a duplicate (MobWrite's off-by-one).
#[test]
fn p7_reset_versions_are_explicit() {
    let mut net = Net::connected(1, cfg(), "r");
    net.type_at(0, 1, "1");
    net.sync(0);
    net.damage_until_reset(0);
    net.settle(10_000);
    net.type_at(0, 2, "2");
    net.sync(0);
    net.settle(10_000);
    assert_eq!(net.master(), "r12");
    assert_eq!(net.server().stats().duplicates_skipped, 0);
    assert_eq!(net.server().stats().resets, 1);
}

/// Pitfall 9: One request in flight: the sync interval does not start a second cycle while one is
/// outstanding; the shadow is exactly the string that was diffed.
#[test]
fn p9_one_request_in_flight() {
    let mut net = Net::connected(1, cfg(), "");
    net.type_at(0, 0, "a");
    net.sync(0);
    net.type_at(0, 1, "b"); // typed after the snapshot
    net.advance(1_500); // three sync intervals, less than the retransmit timeout
    assert_eq!(net.up[0].len(), 1);
    assert_eq!(net.clients[0].engine().shadow().text, "a");
    net.settle(10_000);
    assert_eq!(net.master(), "ab");
}

/// Pitfall 10: Merge, persist and reply are one step: the persist record holding the edit comes
/// before the acknowledgement.
#[test]
fn p10_persist_precedes_acknowledgement() {
    let mut net = Net::connected(1, cfg(), "");
    net.server_log.clear();
    net.type_at(0, 0, "durable");
    net.sync(0);
    net.deliver_up(0);
    let persist = net.server_log.iter().position(
        |o| matches!(o, ServerOutput::Persist(r) if r.text.as_ref().is_some_and(|t| *t == "durable")),
    );
    let ack = net.server_log.iter().position(|o| {
        matches!(
            o,
            ServerOutput::Send {
                msg: ServerMsg::ServerSync {
                    client_version: 1,
                    ..
                },
                ..
            }
        )
    });
    assert!(persist.unwrap() < ack.unwrap());
    assert_eq!(net.store().load("doc").unwrap().unwrap().text, "durable");
}

/// Pitfall 11: Line endings are normalised at the input edge, so no fix-up deltas bounce forever.
#[test]
fn p11_line_endings_normalised() {
    let mut net = Net::connected(2, cfg(), "a\r\nb");
    assert_eq!(net.master(), "a\nb");
    net.clients[0].set_text("x\r\ny\rz").unwrap();
    net.settle(10_000);
    assert_eq!(net.master(), "x\ny\nz");
    // Quiet afterwards: no edits travel in the next ten cycles.
    let before = net.server().stats().edits_applied;
    for _ in 0..10 {
        net.advance(500);
        net.flush();
    }
    assert_eq!(net.server().stats().edits_applied, before);
    net.converged().unwrap();
}

/// Pitfall 11 against a peer that does not normalise (issue 11.2): a valid edit inserting
/// `"\ra"` 100,000 times, merged past a concurrent change, leaves no `\r` in the master and
/// the exact changes still compose — the normalisation is its own exact change, read off one
/// scan. It used to be a diff of the raw text against the normalised one: quadratic, 24–27 s
/// of server time for 300,000 of them, while every other document waited.
#[test]
fn p11_raw_carriage_returns_from_a_peer_are_normalised_exactly() {
    let mut net = Net::connected(2, cfg(), "");
    let raw = dsync_engine::PeerId(99);
    net.send_as(raw, connect_msg(DOC, "raw"));
    // The master moves on past the raw peer's shadow ("" at 0/0).
    net.type_at(1, 0, "hello");
    net.sync(1);
    net.flush();
    assert_eq!(net.master(), "hello");
    let insert = "\ra".repeat(100_000);
    net.send_as(
        raw,
        ClientMsg::ClientSync {
            doc: "doc".into(),
            seq: 2,
            server_version: 0,
            edits: vec![Edit::Delta {
                version: 0,
                delta: dsync_engine::Delta::diff("", &insert),
                checksum: dsync_engine::Checksum::of(&insert),
            }],
        },
    );
    let master = net.master();
    assert!(!master.contains('\r'));
    assert_eq!(master.len(), 5 + 200_000);
    assert_eq!(master.matches("\na").count(), 100_000);
    assert!(
        master.starts_with("hello") || master.ends_with("hello"),
        "{}",
        &master[..20]
    );
    assert_eq!(net.server().stats().merge_fallbacks, 0);
    net.settle(60_000);
    net.converged().unwrap();
    assert_eq!(net.server().stats().link_fallbacks, 0);
}

/// Pitfall 12: A fuzzy patch whose text drifted far drops (counted) rather than landing in the wrong
/// place with the default threshold 0.4; three-way merge places it exactly.
#[test]
fn p12_drifted_fuzzy_patch_drops_instead_of_misplacing() {
    let base = "alpha beta gamma delta epsilon";
    let changed = "alpha beta GAMMA delta epsilon";
    let filler = "zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau ".repeat(30);
    let current = format!("{filler}alpha beta gamma delta epsilon");
    let fz = merge(
        MergeStrategy::FuzzyPatch,
        &FuzzySettings::default(),
        base,
        changed,
        &current,
    );
    assert_eq!(fz.patches_dropped, 1);
    assert_eq!(fz.text, current);
    let tw = merge(
        MergeStrategy::ThreeWay,
        &FuzzySettings::default(),
        base,
        changed,
        &current,
    );
    assert_eq!(tw.text, format!("{filler}alpha beta GAMMA delta epsilon"));
}

/// The server's log of exact master changes is trimmed to what sessions still need.
#[test]
fn master_change_log_stays_small_while_clients_keep_up() {
    let mut net = Net::connected(5, cfg(), "");
    let mut longest = 0;
    for round in 0..200 {
        for c in 0..5 {
            let len = net.clients[c].engine().text().len_chars();
            net.type_at(c, len.min(round % 7), "x");
            net.sync(c);
        }
        net.flush();
        longest = longest.max(net.server().log_len(crate::harness::DOC).unwrap());
    }
    net.settle(10_000);
    assert!(longest < 64, "log grew to {longest}");
}

/// Fuzzy patch: a client never drops a server patch. It holds the exact base of both changes,
/// so what the fuzzy patch cannot place in its text is merged exactly. Dropped at the client,
/// the server's change (here another user's deletion) would be reverted at the master by the
/// client's next diff, and a deletion that two clients dropped came back twice
/// (`scenarios/regressions/fuzzy-patch-reinsertion-min.ron`).
#[test]
fn fuzzy_client_merges_exactly_what_it_cannot_place() {
    let (base, changed, typed) = (
        "the 字quick b\nrow fox",
        "the 字uick brow fox",
        "the 字q漢uick b\nrow fox",
    );
    // The premise: the fuzzy patch alone cannot place the server's change in the typed text.
    let fz = merge(
        MergeStrategy::FuzzyPatch,
        &FuzzySettings::default(),
        base,
        changed,
        typed,
    );
    assert_eq!(fz.patches_dropped, 1, "premise: {fz:?}");

    let config = Config {
        merge: MergeStrategy::FuzzyPatch,
        ..cfg()
    };
    let mut net = Net::new(2, config, base);
    net.set_merge(MergeStrategy::FuzzyPatch);
    for i in 0..2 {
        net.clients[i].connected(net.now);
    }
    net.pump();
    net.settle(60_000);
    // Client 0 deletes the "q" and the "\n"; the master takes it.
    net.clients[0].set_text(changed).unwrap();
    net.sync(0);
    while net.deliver_up(0) || net.deliver_down(0) {}
    assert_eq!(net.master(), changed);
    // Client 1 asks, and types after the "q" while the answer (delete "q" and "\n") travels.
    net.sync(1);
    while net.deliver_up(1) {}
    net.type_at(1, 6, "漢");
    assert_eq!(net.clients[1].engine().text(), typed);
    while net.deliver_down(1) {}
    assert_eq!(net.clients[1].engine().text(), "the 字漢uick brow fox");
    net.settle(10_000);
    net.converged().unwrap();
    // Client 0's deletion stands and client 1's typing is kept.
    assert_eq!(net.master(), "the 字漢uick brow fox");
    assert_eq!(net.clients[1].engine().stats().patches_dropped, 0);
}

/// Client 0 types "0" to "5" at its end, one per retransmit interval, and every request is
/// lost: each retransmit stacks the typing since as a new edit. The most edits it stacked.
fn most_pending_while_requests_are_lost(net: &mut Net) -> usize {
    let mut most = 0;
    for k in 0..6 {
        let len = net.clients[0].engine().text().len_chars();
        net.type_at(0, len, &k.to_string());
        net.advance(net.config.retransmit_ms);
        while net.drop_up(0).is_some() {}
        most = most.max(net.clients[0].engine().pending().len());
    }
    most
}

/// A client stacks at most `max_pending_edits` unacknowledged edits; typing past that waits in
/// the local change and goes out once the server acknowledges, nothing lost.
#[test]
fn pending_edits_stop_at_their_limit_and_the_rest_waits() {
    let mut config = cfg();
    config.limits.max_pending_edits = 3;
    let mut net = Net::connected(2, config, "");
    let most = most_pending_while_requests_are_lost(&mut net);
    assert_eq!(most, 3, "the limit is reached and kept");
    net.settle(20_000);
    assert_eq!(net.master(), "012345");
}

/// Pending edits stop at `max_pending_bytes` too: what they hold (each one's text before it)
/// plus the shadow may reach the limit and not pass it.
#[test]
fn pending_edits_stop_at_their_byte_limit() {
    let mut config = cfg();
    config.limits.max_pending_bytes = 40;
    let mut net = Net::connected(1, config, "abcdefghij");
    let most = most_pending_while_requests_are_lost(&mut net);
    // At the fourth, the three stacked edits hold 10 + 11 + 12 = 33 bytes and the shadow 13:
    // 46 > 40, so it waits.
    assert_eq!(most, 3, "the byte limit is reached and kept");
    net.settle(20_000);
    assert_eq!(net.master(), "abcdefghij012345");
}

/// The document limit counts what an edit leaves: replacing text in a full document is
/// allowed, and growing it past the limit is refused with the size it would have had.
#[test]
fn a_full_document_takes_a_replacement_and_refuses_growth() {
    let mut config = cfg();
    config.limits = config.limits.with_document_bytes(20);
    let mut net = Net::connected(1, config, "");
    net.type_at(0, 0, &"a".repeat(20));
    net.settle(10_000);
    net.clients[0].edit_bytes(5, 5, "bbbbb").unwrap();
    net.settle(10_000);
    assert_eq!(net.master(), "aaaaabbbbbaaaaaaaaaa");
    let refused = net.clients[0].edit_bytes(0, 1, "xyz").unwrap_err();
    assert!(
        matches!(
            refused,
            dsync_engine::EngineError::DocumentTooLarge { len: 22, max: 20 }
        ),
        "{refused:?}"
    );
    assert_eq!(net.clients[0].engine().text(), "aaaaabbbbbaaaaaaaaaa");
}
