//! Access control: a server with tokens refuses every connect without a valid one (and loads
//! nothing for it), binds sessions to the token's subject, and refuses a read-only client's
//! edits; the client stops on a refusal and refuses local edits once it knows it may only read.

use dsync_engine::access::issue;
use dsync_engine::{
    Access, ClientEvent, ClientMsg, Config, Delta, Edit, EngineError, ErrorCode, Grant, Operation,
    Rights, Secret,
};

use crate::harness::{Net, DOC};

const SECRET: Secret = Secret([42; 32]);
/// The wall time at the engine's time 0: 2026-11-29, in Unix ms.
const T0_MS: u64 = 1_796_000_000_000;
const TOKENS: Access = Access::Tokens {
    secret: SECRET,
    unix_ms_at_zero: T0_MS,
};

fn cfg() -> Config {
    Config {
        hints: false,
        max_idle_sync_ms: Config::default().sync_interval_ms,
        ..Config::default()
    }
}

fn token(subject: &str, doc: &str, rights: Rights) -> String {
    let grant = Grant {
        subject: subject.into(),
        doc: doc.into(),
        rights,
        expires_unix_s: T0_MS / 1000 + 3600,
    };
    issue(&SECRET, &grant).unwrap()
}

/// A network whose server requires tokens; client `i` presents `tokens[i]` (a token of
/// `subject`). Runs 5 s.
fn net(tokens: &[(Option<String>, &str)], initial: &str) -> Net {
    let mut net = Net::new(tokens.len(), cfg(), initial);
    net.set_access(TOKENS);
    for (i, (t, who)) in tokens.iter().enumerate() {
        net.clients[i].set_token(t.clone());
        net.subjects[i] = Some(who.to_string());
        net.clients[i].connected(net.now);
    }
    net.pump();
    run(&mut net, 5_000);
    net
}

/// Deliver and let timers run for `ms` (no convergence asked: some clients are refused).
fn run(net: &mut Net, ms: u64) {
    for _ in 0..ms / 100 {
        net.flush();
        net.advance(100);
    }
    net.flush();
}

fn errors(net: &Net, i: usize) -> Vec<(ErrorCode, String)> {
    net.events[i]
        .iter()
        .filter_map(|e| match e {
            ClientEvent::ServerError { code, message } => Some((*code, message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn every_bad_token_is_refused_with_its_reason_and_loads_nothing() {
    let other = issue(
        &Secret([1; 32]),
        &Grant {
            subject: "mallory".into(),
            doc: DOC.into(),
            rights: Rights::Write,
            expires_unix_s: u64::MAX,
        },
    )
    .unwrap();
    let expired = issue(
        &SECRET,
        &Grant {
            subject: "bob".into(),
            doc: DOC.into(),
            rights: Rights::Write,
            expires_unix_s: T0_MS / 1000 - 1,
        },
    )
    .unwrap();
    let cases = [
        (None, "requires a token"),
        (Some("not a token".to_string()), "malformed"),
        (Some(other), "signature"),
        (Some(expired), "expired"),
        (
            Some(token("bob", "another-doc", Rights::Write)),
            "for document",
        ),
    ];
    for (t, reason) in cases {
        let mut net = net(&[(t, "bob")], "private text");
        let errs = errors(&net, 0);
        assert_eq!(errs.len(), 1, "{reason}: {errs:?}");
        assert_eq!(errs[0].0, ErrorCode::Unauthorized);
        assert!(errs[0].1.contains(reason), "{reason}: {}", errs[0].1);
        // Nothing of the document reached the client, nothing was loaded or stored.
        assert_eq!(net.clients[0].engine().text().len(), 0);
        assert!(!net.clients[0].engine().is_connected());
        assert!(!net.server().is_loaded(DOC), "{reason}");
        assert_eq!(net.server().stats().unauthorized, 1);
        // The client does not ask again by itself: no timer, nothing sent.
        assert_eq!(net.clients[0].poll_timeout(), None);
        run(&mut net, 60_000);
        assert_eq!(net.server().stats().unauthorized, 1, "{reason}");
    }
}

#[test]
fn a_reader_sees_the_writers_text_and_cannot_edit() {
    let w = token("alice", DOC, Rights::Write);
    let r = token("bob", DOC, Rights::Read);
    let mut net = net(&[(Some(w), "alice"), (Some(r), "bob")], "hello");
    assert!(!net.clients[0].engine().read_only());
    assert!(net.clients[1].engine().read_only());
    net.type_at(0, 5, " world");
    net.settle(10_000);
    assert_eq!(net.master(), "hello world");
    assert_eq!(net.clients[1].engine().text().to_string(), "hello world");
    // The reader's engine refuses local edits outright: nothing is lost, nothing is queued.
    assert_eq!(net.clients[1].insert(0, "x"), Err(EngineError::ReadOnly));
    assert_eq!(net.clients[1].delete(0, 1), Err(EngineError::ReadOnly));
    assert!(errors(&net, 1).is_empty());
    // With nothing unsent, a reader that reconnects resumes its own session.
    net.reconnect(1);
    run(&mut net, 2_000);
    assert!(net.events[1].contains(&ClientEvent::Connected { resumed: true }));
    assert_eq!(net.clients[1].engine().client_id(), "c1");
}

#[test]
fn edits_sent_over_a_read_only_connection_are_refused() {
    let r = token("bob", DOC, Rights::Read);
    let mut net = net(&[(Some(r), "bob")], "hello");
    // An outside client ignoring `read_only` sends an edit anyway.
    let op = Operation::from_diff("hello", "hello!");
    let edit = Edit::Delta {
        version: 0,
        delta: Delta::from_operation(&op, "hello"),
        checksum: dsync_engine::Checksum::of("hello!"),
    };
    net.send_to_server(
        0,
        ClientMsg::ClientSync {
            doc: DOC.into(),
            seq: 100,
            server_version: 0,
            edits: vec![edit],
        },
    );
    assert_eq!(net.master(), "hello");
    assert_eq!(net.server().stats().read_only_refused, 1);
    net.flush();
    let refusal = errors(&net, 0);
    assert!(
        refusal
            .iter()
            .any(|(c, m)| *c == ErrorCode::ReadOnly && m.contains("only reading")),
        "{refusal:?}"
    );
    // Its polls (no edits) are still answered.
    net.settle(10_000);
    assert!(net.clients[0].engine().is_connected());
}

#[test]
fn a_client_id_under_another_subject_is_another_session() {
    // Both clients call themselves c0; their tokens name different subjects.
    let mut net = Net::new(2, cfg(), "shared");
    net.set_access(TOKENS);
    net.clients[1] = crate::harness::client(cfg(), "c0");
    for (i, who) in ["alice", "mallory"].iter().enumerate() {
        net.clients[i].set_token(Some(token(who, DOC, Rights::Write)));
        net.subjects[i] = Some(who.to_string());
        net.clients[i].connected(net.now);
    }
    net.pump();
    net.settle(10_000);
    // Neither was refused or renamed: they hold two sessions.
    for i in 0..2 {
        assert!(errors(&net, i).is_empty(), "{:?}", errors(&net, i));
        assert_eq!(net.clients[i].engine().client_id(), "c0");
    }
    assert!(net.server().session(DOC, "alice\u{1f}c0").is_some());
    assert!(net.server().session(DOC, "mallory\u{1f}c0").is_some());
    assert!(net.server().session(DOC, "c0").is_none());
    net.type_at(0, 6, "!");
    net.type_at(1, 0, "¡");
    net.settle(10_000);
    assert_eq!(net.master(), "¡shared!");
    net.converged().unwrap();
}

#[test]
fn a_token_turned_read_only_drops_unsent_typing_and_says_so() {
    let mut net = net(
        &[(Some(token("alice", DOC, Rights::Write)), "alice")],
        "base",
    );
    // Typing that never reached the server; then the client comes back with a read token.
    net.type_at(0, 4, " typed");
    net.clients[0].set_token(Some(token("alice", DOC, Rights::Read)));
    net.reconnect(0);
    net.settle(10_000);
    assert_eq!(net.master(), "base");
    assert_eq!(net.clients[0].engine().text().to_string(), "base");
    assert!(net.clients[0].engine().read_only());
    let errs = errors(&net, 0);
    assert!(
        errs.iter()
            .any(|(c, m)| *c == ErrorCode::ReadOnly && m.contains("dropped")),
        "{errs:?}"
    );
    net.converged().unwrap();
}

#[test]
fn tokens_hold_across_a_server_restart() {
    let w = token("alice", DOC, Rights::Write);
    let mut net = net(&[(Some(w), "alice"), (None, "nobody")], "kept");
    assert_eq!(errors(&net, 1)[0].0, ErrorCode::Unauthorized);
    net.type_at(0, 4, "!");
    run(&mut net, 5_000);
    net.crash_server();
    net.reconnect(0);
    net.reconnect(1);
    run(&mut net, 5_000);
    assert_eq!(net.master(), "kept!");
    assert_eq!(net.clients[0].engine().text().to_string(), "kept!");
    assert_eq!(
        net.server().stats().unauthorized,
        1,
        "the stranger is refused again"
    );
    assert_eq!(net.clients[1].engine().text().len(), 0);
}

#[test]
fn a_client_whose_id_is_taken_starts_afresh_under_a_new_id_within_the_limit() {
    // Two clients call themselves by the same long id; the second cannot prove the session is
    // its own. The id is 199 ASCII bytes, then a two-byte char across the 200-byte cut.
    let id = format!("{}é-and-more", "x".repeat(199));
    let mut net = Net::new(2, cfg(), "shared");
    for i in 0..2 {
        net.clients[i] = crate::harness::client(cfg(), &id);
    }
    net.clients[0].connected(net.now);
    net.pump();
    net.flush();
    net.type_at(0, 6, "!");
    // Client 1 is not connected yet: run the clock rather than wait for all to settle.
    for _ in 0..50 {
        net.flush();
        net.advance(100);
    }
    assert_eq!(net.master(), "shared!");
    net.clients[1].connected(net.now);
    net.pump();
    net.settle(10_000);
    net.type_at(1, 0, "¡");
    net.settle(10_000);
    let renamed = format!("{}~1", "x".repeat(199));
    assert_eq!(net.clients[0].engine().client_id(), id);
    assert_eq!(net.clients[1].engine().client_id(), renamed);
    assert!(net.server().session(DOC, &id).is_some());
    assert!(net.server().session(DOC, &renamed).is_some());
    assert_eq!(net.master(), "¡shared!");
    assert_eq!(net.server().stats().sessions_refused, 1);
    assert_eq!(net.clients[1].engine().stats().sessions_refused, 1);
    net.converged().unwrap();
}
