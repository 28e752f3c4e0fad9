//! Idle clients back off, and `changed` hints bring a remote change at once
//! (docs/protocol.md, *Hints and the idle back-off*).

use dsync_engine::{ClientMsg, Config, ServerMsg, ServerOutput};

use crate::harness::Net;

fn cfg() -> Config {
    Config::default()
}

/// Run `ms` of virtual time in 5 ms steps, every message delivered at once.
fn run(net: &mut Net, ms: u64) {
    for _ in 0..ms / 5 {
        net.advance(5);
        net.flush();
    }
}

/// Messages the server sent client `i` so far that `which` picks.
fn sent_to(net: &Net, i: usize, which: fn(&ServerMsg) -> bool) -> usize {
    let peer = net.peer_of[i];
    net.server_log
        .iter()
        .filter(|o| matches!(o, ServerOutput::Send { to, msg } if *to == peer && which(msg)))
        .count()
}

/// Replies to client `i`'s requests so far (its round trips).
fn round_trips(net: &Net, i: usize) -> usize {
    sent_to(net, i, |m| matches!(m, ServerMsg::ServerSync { .. }))
}

fn hints_to(net: &Net, i: usize) -> usize {
    sent_to(net, i, |m| matches!(m, ServerMsg::Changed { .. }))
}

#[test]
fn idle_clients_back_off_to_the_longest_cycle() {
    let mut net = Net::connected(2, cfg(), "hello");
    let before = round_trips(&net, 1);
    run(&mut net, 20_000);
    let polls = round_trips(&net, 1) - before;
    // Without the back-off: 40 polls in 20 s at 500 ms. With it: 1 s, 2 s, then every 2 s.
    assert!((8..=12).contains(&polls), "{polls} polls in 20 s");
    // Equal cycles: no back-off, the fixed cadence.
    let fixed = Config {
        max_idle_sync_ms: cfg().sync_interval_ms,
        ..cfg()
    };
    let mut net = Net::connected(2, fixed, "hello");
    let before = round_trips(&net, 1);
    run(&mut net, 20_000);
    let polls = round_trips(&net, 1) - before;
    assert!((38..=41).contains(&polls), "{polls} polls in 20 s");
}

#[test]
fn a_hint_brings_a_remote_change_at_once_and_typing_is_not_held_back() {
    let mut net = Net::connected(2, cfg(), "hello");
    run(&mut net, 10_000); // both idle at the longest cycle
    net.type_at(0, 5, " world");
    net.sync(0);
    let start = net.now;
    // c1 has it within a round trip, not after its 2 s idle cycle.
    while net.clients[1].engine().text() != "hello world" {
        run(&mut net, 5);
        assert!(net.now.ms_since(start) < 100, "c1 waited for its poll");
    }
    assert_eq!(hints_to(&net, 1), 1);
    assert_eq!(net.clients[1].engine().stats().hints, 1);
    assert!(net.clients[1].engine().stats().hinted_syncs >= 1);
    // Typing after a long idle stretch goes out within one short cycle.
    run(&mut net, 10_000);
    net.type_at(1, 0, "> ");
    let start = net.now;
    while net.master() != "> hello world" {
        run(&mut net, 5);
        assert!(
            net.now.ms_since(start) <= cfg().sync_interval_ms + 50,
            "typing waited for the idle cycle"
        );
    }
    net.settle(10_000);
}

#[test]
fn a_lost_hint_costs_at_most_one_idle_cycle() {
    let mut net = Net::connected(2, cfg(), "hello");
    run(&mut net, 10_000);
    net.type_at(0, 5, "!");
    net.sync(0);
    let start = net.now;
    // Deliver c0's request; the hint to c1 is lost.
    net.deliver_up(0);
    let lost = net.drop_down(1);
    assert!(matches!(lost, Some(ServerMsg::Changed { .. })), "{lost:?}");
    while net.clients[1].engine().text() != "hello!" {
        run(&mut net, 5);
        assert!(
            net.now.ms_since(start) <= cfg().max_idle_sync_ms + 50,
            "c1 waited longer than its idle cycle"
        );
    }
}

#[test]
fn a_client_is_hinted_once_until_it_asks_and_only_if_it_wants_hints() {
    let quiet = Config {
        hints: false,
        ..cfg()
    };
    let mut net = Net::connected(3, cfg(), "");
    // c2 does not ask for hints: replaced by a client that does not, on a new connection.
    net.clients[2] = crate::harness::client(quiet, "c2-quiet");
    net.reconnect(2);
    net.settle(10_000);
    let (hints_1, hints_2) = (hints_to(&net, 1), hints_to(&net, 2));
    // c1's requests are held back: however often c0 changes the document, c1 is hinted once.
    for k in 0..5 {
        net.type_at(0, k, "x");
        net.sync(0);
        net.deliver_up(0);
        net.deliver_down(0);
        while net.drop_up(1).is_some() {}
        while net.drop_up(2).is_some() {}
        net.down[2].retain(|m| !matches!(m, ServerMsg::Changed { .. }));
        net.advance(600);
    }
    assert_eq!(hints_to(&net, 1) - hints_1, 1);
    assert_eq!(hints_to(&net, 2) - hints_2, 0, "c2 never asked for hints");
    let asked = |m: &ClientMsg| matches!(m, ClientMsg::Connect { hints: true, .. });
    assert!(net
        .up
        .iter()
        .flatten()
        .all(|m| !matches!(m, ClientMsg::Connect { .. }) || asked(m)));
    net.settle(30_000);
    assert_eq!(net.master(), "xxxxx");
}

#[test]
fn idle_polls_of_an_unchanged_document_write_nothing_and_each_edit_is_counted_once() {
    let mut net = Net::connected(2, cfg(), "hello");
    let persists = |net: &Net| {
        net.server_log
            .iter()
            .filter(|o| matches!(o, ServerOutput::Persist(_)))
            .count()
    };
    let before = persists(&net);
    let polls = round_trips(&net, 0) + round_trips(&net, 1);
    run(&mut net, 10_000);
    assert!(
        round_trips(&net, 0) + round_trips(&net, 1) > polls + 4,
        "the clients polled"
    );
    assert_eq!(persists(&net), before, "an idle poll wrote to the store");
    // One edit: applied once, written, and the document stays quiet after it.
    let applied = net.server().stats().edits_applied;
    net.type_at(0, 5, "!");
    run(&mut net, 3_000);
    assert_eq!(net.master(), "hello!");
    assert_eq!(net.server().stats().edits_applied, applied + 1);
    let after_edit = persists(&net);
    assert!(after_edit > before);
    run(&mut net, 10_000);
    assert_eq!(
        persists(&net),
        after_edit,
        "polls after the edit wrote to the store"
    );
}
