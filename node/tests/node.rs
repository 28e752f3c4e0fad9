//! The nodes' contracts: the batch rule, framing, decoding, loading, backoff, quiet detection.

use dsync_engine::{
    ClientEvent, ClientMsg, Config, ErrorCode, PeerId, PersistRecord, ServerMsg, StoredDocument,
    Time,
};
use dsync_net::encode_client;
use dsync_node::{ClientNode, ClientNodeConfig, ClientNodeOutput, Output, ServerNode};
use dsync_store::{MemStore, Store, StoreError};

const DOC: &str = "doc";

fn store_with(text: &str) -> MemStore {
    let mut s = MemStore::new();
    s.insert(
        DOC,
        StoredDocument {
            text: text.into(),
            ..StoredDocument::default()
        },
    );
    s
}

fn connect(seq: u64) -> ClientMsg {
    ClientMsg::Connect {
        protocol: dsync_engine::PROTOCOL_VERSION,
        doc: DOC.into(),
        client_id: "c0".into(),
        token: None,
        seq,
        resume: None,
        hints: false,
    }
}

fn sends(outputs: &[Output]) -> Vec<&ServerMsg> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { msg, .. } => Some(msg),
            Output::Disconnect { .. } => None,
        })
        .collect()
}

/// A store whose commits fail (a full disk) until told otherwise.
#[derive(Debug)]
struct FullDisk {
    inner: MemStore,
    full: bool,
}

impl Store for FullDisk {
    fn load(&self, doc: &str) -> Result<Option<StoredDocument>, StoreError> {
        self.inner.load(doc)
    }
    fn commit(&mut self, records: &[PersistRecord], now_ms: u64) -> Result<(), StoreError> {
        if self.full {
            return Err(StoreError::Io("no space left on device".into()));
        }
        self.inner.commit(records, now_ms)
    }
    fn documents(&self) -> Result<Vec<String>, StoreError> {
        self.inner.documents()
    }
}

#[test]
fn a_committed_batch_releases_its_replies_and_the_store_holds_it() {
    let cfg = Config::default();
    let mut node = ServerNode::new(cfg, store_with("hello"), 1 << 20, [7; 32]);
    let line = encode_client(&connect(1));
    node.receive_bytes(Time(0), PeerId(1), line.as_bytes());
    let (node, released) = node.commit(0).expect("the in-memory store commits");
    assert!(!released.records.is_empty(), "a new session is persisted");
    match sends(&released.outputs)[..] {
        [ServerMsg::ConnectOk { text, .. }] => assert_eq!(text, "hello"),
        ref other => panic!("{other:?}"),
    }
    let stored = node.store().load(DOC).unwrap().unwrap();
    assert_eq!(
        stored.sessions.len(),
        1,
        "the session is durable before the reply is out"
    );
    let st = node.stats();
    assert_eq!(
        (st.frames, st.loads, st.commits, st.load_failures),
        (1, 1, 1, 0)
    );
    // The line each send carries is the encoded message.
    for o in &released.outputs {
        if let Output::Send { msg, line, .. } = o {
            assert_eq!(*line, dsync_net::encode_server(msg));
        }
    }
}

#[test]
fn a_failed_commit_releases_nothing_and_keeps_only_the_store() {
    let cfg = Config::default();
    let disk = FullDisk {
        inner: store_with("hello"),
        full: true,
    };
    let mut node = ServerNode::new(cfg, disk, 1 << 20, [7; 32]);
    node.receive_bytes(Time(0), PeerId(1), encode_client(&connect(1)).as_bytes());
    let failed = match node.commit(0) {
        Ok(_) => panic!("a full disk cannot commit"),
        Err(f) => f,
    };
    assert!(failed.error.to_string().contains("no space left"));
    // Nothing of the batch is durable: the session the connect opened is not in the store.
    let stored = failed.store.load(DOC).unwrap().unwrap();
    assert!(stored.sessions.is_empty());
    // A node started again on the same store serves the client once the disk has room.
    let mut disk = failed.store;
    disk.full = false;
    let mut node = ServerNode::new(cfg, disk, 1 << 20, [7; 32]);
    node.receive_bytes(Time(5), PeerId(2), encode_client(&connect(2)).as_bytes());
    let (_, released) = node.commit(5).unwrap();
    assert!(matches!(
        sends(&released.outputs)[..],
        [ServerMsg::ConnectOk { .. }]
    ));
}

#[test]
fn frames_split_at_every_byte_decode_the_same() {
    let cfg = Config::default();
    let line = encode_client(&connect(1));
    let bytes = line.as_bytes();
    for cut in 1..bytes.len() {
        let mut node = ServerNode::new(cfg, store_with("x"), 1 << 20, [7; 32]);
        node.receive_bytes(Time(0), PeerId(1), &bytes[..cut]);
        node.receive_bytes(Time(0), PeerId(1), &bytes[cut..]);
        let (node, released) = node.commit(0).unwrap();
        assert_eq!(sends(&released.outputs).len(), 1, "cut at {cut}");
        assert_eq!(node.stats().decode_errors, 0);
    }
}

#[test]
fn bad_frames_get_error_replies_and_are_counted() {
    let cfg = Config::default();
    let mut node = ServerNode::new(cfg, store_with("x"), 64, [7; 32]);
    node.receive_bytes(Time(0), PeerId(1), b"{\"type\":\"nonsense\"}\n");
    node.receive_bytes(Time(0), PeerId(1), &[b'#'; 100]);
    node.receive_bytes(Time(0), PeerId(1), b"\n\xff\xfe\n");
    node.receive_datagram(Time(0), PeerId(2), &[b'{'; 65]);
    let (node, released) = node.commit(0).unwrap();
    let codes: Vec<ErrorCode> = sends(&released.outputs)
        .into_iter()
        .map(|m| match m {
            ServerMsg::Error { code, .. } => *code,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        [
            ErrorCode::BadMessage,
            ErrorCode::FrameTooLarge,
            ErrorCode::BadMessage,
            ErrorCode::FrameTooLarge
        ]
    );
    assert_eq!(node.stats().decode_errors, 4);
    assert_eq!(node.stats().frames, 0);
}

#[test]
fn client_backoff_doubles_to_its_cap_and_resets_on_connect_ok() {
    let cfg = Config::default();
    let ncfg = ClientNodeConfig {
        reconnect_min_ms: 100,
        reconnect_max_ms: 700,
        ..ClientNodeConfig::for_engine(&cfg)
    };
    let mut c = ClientNode::new(cfg, ncfg, "c0", DOC);
    let delays: Vec<u64> = (0..5).map(|_| c.attempt_failed()).collect();
    assert_eq!(delays, [100, 200, 400, 700, 700]);
    c.connected(Time(0));
    let ok = ServerMsg::ConnectOk {
        doc: DOC.into(),
        seq: 1,
        resumed: false,
        text: "t".into(),
        client_version: 0,
        server_version: 0,
        read_only: false,
        session_key: Some(dsync_engine::SessionKey([1; 16])),
    };
    c.receive_bytes(Time(1), dsync_net::encode_server(&ok).as_bytes());
    let mut connected = false;
    while let Some(o) = c.poll_output() {
        connected |= o == ClientNodeOutput::Event(ClientEvent::Connected { resumed: false });
    }
    assert!(connected);
    assert_eq!(c.lost(), 100, "a connect_ok resets the backoff");
    assert_eq!(c.stats().lost, 1);
}

#[test]
fn a_client_node_counts_frames_and_skips_bad_ones() {
    let cfg = Config::default();
    let mut c = ClientNode::new(cfg, ClientNodeConfig::for_engine(&cfg), "c0", DOC);
    c.connected(Time(0));
    c.receive_bytes(Time(1), b"not a frame\n");
    c.receive_bytes(
        Time(1),
        dsync_net::encode_server(&ServerMsg::Ping).as_bytes(),
    );
    let bad = std::iter::from_fn(|| c.poll_output())
        .filter(|o| matches!(o, ClientNodeOutput::BadFrame(_)))
        .count();
    assert_eq!(bad, 1);
    assert_eq!((c.stats().frames, c.stats().decode_errors), (1, 1));
}

#[test]
fn quiet_polls_count_empty_round_trips_and_an_edit_resets_them() {
    let cfg = Config::default();
    let mut server = Some(ServerNode::new(cfg, store_with("t"), 1 << 20, [7; 32]));
    let mut c = ClientNode::new(cfg, ClientNodeConfig::for_engine(&cfg), "c0", DOC);
    let mut now = 0u64;
    let round = |c: &mut ClientNode, server: &mut Option<ServerNode<MemStore>>, now: u64| {
        let mut s = server.take().unwrap();
        loop {
            let mut moved = false;
            while let Some(o) = c.poll_output() {
                if let ClientNodeOutput::Transmit(t) = o {
                    s.receive_bytes(Time(now), PeerId(1), t.line.as_bytes());
                    moved = true;
                }
            }
            let (n, released) = s.commit(now).unwrap();
            s = n;
            for o in released.outputs {
                if let Output::Send { line, .. } = o {
                    c.receive_bytes(Time(now), line.as_bytes());
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        *server = Some(s);
    };
    c.connected(Time(now));
    round(&mut c, &mut server, now);
    // The poll a connect starts came back empty: one; the connect itself counts for nothing.
    assert_eq!(c.quiet_polls(), 1);
    assert!(!c.converged());
    for _ in 0..2 {
        now += 1;
        c.sync_now(Time(now));
        round(&mut c, &mut server, now);
    }
    assert_eq!(c.quiet_polls(), 3);
    // Only an empty reply to a request counts: a ping from the server is no round trip.
    c.receive_bytes(
        Time(now),
        dsync_net::encode_server(&ServerMsg::Ping).as_bytes(),
    );
    assert_eq!(c.quiet_polls(), 3);
    assert!(c.converged(), "two empty round trips: {}", c.quiet_polls());
    c.insert(0, "x").unwrap();
    assert_eq!(c.quiet_polls(), 0);
    assert!(!c.converged());
}

fn open(doc: &str, client_id: &str, seq: u64) -> ClientMsg {
    ClientMsg::Connect {
        protocol: dsync_engine::PROTOCOL_VERSION,
        doc: doc.into(),
        client_id: client_id.into(),
        token: None,
        seq,
        resume: None,
        hints: false,
    }
}

/// The codes of the errors in a batch's replies, and how many documents the store loaded.
fn error_codes(outputs: &[Output]) -> Vec<ErrorCode> {
    sends(outputs)
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

/// Issue 11, "also seen": one connection could hold 9,999 documents open (refused, at the
/// engine's limit, as `too_many_connections`). A connection has its own limit, refused as
/// `too_many_documents` before anything is loaded; another connection is not affected.
#[test]
fn one_connection_cannot_hold_every_document() {
    let mut cfg = Config::default();
    cfg.limits.max_documents_per_peer = 3;
    let mut node = ServerNode::new(cfg, MemStore::new(), 1 << 20, [7; 32]);
    for (i, doc) in ["a", "b", "c", "d"].into_iter().enumerate() {
        node.handle_message(Time(0), PeerId(1), open(doc, "c", i as u64 + 1));
    }
    let (mut node, released) = node.commit(0).unwrap();
    assert_eq!(
        error_codes(&released.outputs),
        [ErrorCode::TooManyDocuments]
    );
    assert_eq!(
        node.engine().documents().count(),
        3,
        "the fourth was never loaded"
    );
    // Another connection opens the fourth; the first may once it closes one.
    node.handle_message(Time(1), PeerId(2), open("d", "other", 1));
    node.handle_message(Time(1), PeerId(1), ClientMsg::Close { doc: "a".into() });
    node.handle_message(Time(1), PeerId(1), open("e", "c", 9));
    let (_, released) = node.commit(1).unwrap();
    assert!(error_codes(&released.outputs).is_empty());
}

/// Issue 11, "also seen": one connection cycling fresh client ids evicted every detached
/// session of a document in about 2.5 s. New sessions per connection are limited per minute.
#[test]
fn new_sessions_are_limited_per_connection_and_minute() {
    let mut cfg = Config::default();
    cfg.limits.max_new_sessions_per_minute = 5;
    cfg.limits.max_clients_per_document = 4;
    let mut node = ServerNode::new(cfg, store_with(""), 1 << 20, [7; 32]);
    // Four honest sessions, detached.
    for i in 0..4u64 {
        node.handle_message(Time(0), PeerId(10 + i), open(DOC, &format!("h{i}"), 1));
        node.closed(Time(0), PeerId(10 + i));
    }
    let (mut node, _) = node.commit(0).unwrap();
    for i in 0..8u64 {
        node.handle_message(Time(1_000), PeerId(1), open(DOC, &format!("x{i}"), i + 1));
    }
    let (mut node, released) = node.commit(1_000).unwrap();
    let refused = error_codes(&released.outputs);
    assert_eq!(refused, [ErrorCode::TooManyClients; 3], "{refused:?}");
    // Five made, evicting four detached sessions at most: and no more within the minute.
    let stored = node.store().load(DOC).unwrap().unwrap();
    assert_eq!(stored.sessions.len(), 4);
    // A minute later the connection may again.
    node.handle_message(Time(61_000), PeerId(1), open(DOC, "x9", 20));
    let (_, released) = node.commit(61_000).unwrap();
    assert!(error_codes(&released.outputs).is_empty());
}

fn poll(doc: &str, seq: u64, server_version: u64) -> ClientMsg {
    ClientMsg::ClientSync {
        doc: doc.into(),
        seq,
        server_version,
        edits: Vec::new(),
    }
}

/// The full texts in a batch's replies (resets and new sessions' texts), in bytes.
fn full_text_bytes(outputs: &[Output]) -> usize {
    sends(outputs)
        .into_iter()
        .map(|m| match m {
            ServerMsg::ConnectOk { text, .. } => text.len(),
            ServerMsg::ServerSync { edits, .. } => edits
                .iter()
                .map(|e| match e {
                    dsync_engine::Edit::Full { text, .. } => text.len(),
                    dsync_engine::Edit::Delta { .. } => 0,
                })
                .sum(),
            _ => 0,
        })
        .sum()
}

/// Issue 11, "also seen": 100 tiny requests that each earned a full-text reset of a 4 MiB
/// document cost 7 s of engine time and 395 MiB of replies. A `client_sync` whose
/// `server_version` matches neither shadow earns a reset; a connection earns at most
/// `full_text_bytes_per_second` of them (bursts of two documents), and past that is told
/// `slow_down` before any work, while another connection on the same document is served.
#[test]
fn full_texts_earned_too_fast_are_slowed_down() {
    const SIZE: usize = 100_000;
    let mut cfg = Config::default();
    cfg.limits = cfg.limits.with_document_bytes(128 << 10);
    cfg.limits.full_text_bytes_per_second = SIZE;
    let mut node = ServerNode::new(cfg, store_with(&"x".repeat(SIZE)), 4 << 20, [7; 32]);
    let (thief, honest) = (PeerId(1), PeerId(2));
    node.handle_message(Time(0), thief, open(DOC, "t", 1));
    node.handle_message(Time(0), honest, open(DOC, "h", 1));
    let (mut node, released) = node.commit(0).unwrap();
    assert_eq!(full_text_bytes(&released.outputs), 2 * SIZE);
    // One second of asking for resets, a request every 10 ms, the honest client polling too.
    let mut earned = 0;
    let mut slowed = 0;
    let mut honest_replies = 0;
    for i in 0..100u64 {
        let now = Time(10 * i);
        node.handle_message(now, thief, poll(DOC, i + 2, 1_000_000));
        let (n, released) = node.commit(now.0).unwrap();
        earned += full_text_bytes(&released.outputs);
        slowed += error_codes(&released.outputs)
            .iter()
            .filter(|c| **c == ErrorCode::SlowDown)
            .count();
        node = n;
        node.handle_message(now, honest, poll(DOC, i + 2, 0));
        let (n, released) = node.commit(now.0).unwrap();
        assert!(error_codes(&released.outputs).is_empty());
        honest_replies += sends(&released.outputs).len();
        node = n;
    }
    // Capacity 256 KiB (2 × 128 KiB) less the connect's 100 KB, plus 100 KB a second: the
    // thief earns resets while its balance is not below zero, each taking it 100 KB lower.
    assert_eq!(earned, 3 * SIZE, "resets earned in one second");
    assert_eq!(slowed, 97);
    assert_eq!(node.engine().stats().slowed_down, 97);
    assert_eq!(
        honest_replies, 100,
        "the honest client is answered every time"
    );
    // Once the debt is repaid, the thief's next request is served again.
    node.handle_message(Time(5_000), thief, poll(DOC, 200, 1_000_000));
    let (_, released) = node.commit(5_000).unwrap();
    assert_eq!(full_text_bytes(&released.outputs), SIZE);
}

/// Connects refused after their document was loaded (here: an unsupported protocol, names
/// the engine checks later) used to leave the document in memory, so one connection could
/// fill the server's document limit with refused connects. A refused connect unloads it.
#[test]
fn refused_connects_leave_no_document_in_memory() {
    let mut node = ServerNode::new(Config::default(), MemStore::new(), 1 << 20, [7; 32]);
    for i in 0..50u64 {
        let mut msg = open(&format!("d{i}"), "c", i + 1);
        if let ClientMsg::Connect { protocol, .. } = &mut msg {
            *protocol = 99;
        }
        node.handle_message(Time(0), PeerId(1), msg);
    }
    let (node, released) = node.commit(0).unwrap();
    assert_eq!(
        error_codes(&released.outputs),
        [ErrorCode::UnsupportedProtocol; 50]
    );
    assert_eq!(node.engine().documents().count(), 0);
}

/// A store whose loads fail (a damaged file).
#[derive(Debug)]
struct Unreadable;

impl Store for Unreadable {
    fn load(&self, _: &str) -> Result<Option<StoredDocument>, StoreError> {
        Err(StoreError::Io("unreadable".into()))
    }
    fn commit(&mut self, _: &[PersistRecord], _: u64) -> Result<(), StoreError> {
        Ok(())
    }
    fn documents(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}

#[test]
fn a_document_that_cannot_be_loaded_is_refused_and_counted() {
    let cfg = Config::default();
    let mut node = ServerNode::new(cfg, Unreadable, 1 << 20, [7; 32]);
    node.receive_bytes(Time(0), PeerId(1), encode_client(&connect(1)).as_bytes());
    let (node, released) = node.commit(0).unwrap();
    assert_eq!(error_codes(&released.outputs), [ErrorCode::Internal]);
    assert_eq!((node.stats().load_failures, node.stats().loads), (1, 0));
    assert!(!node.engine().is_loaded(DOC));
}

#[test]
fn a_stored_document_over_the_limit_is_refused_with_its_code() {
    let mut cfg = Config::default();
    cfg.limits = cfg.limits.with_document_bytes(4);
    let mut node = ServerNode::new(cfg, store_with("too long"), 1 << 20, [7; 32]);
    node.receive_bytes(Time(0), PeerId(1), encode_client(&connect(1)).as_bytes());
    let (node, released) = node.commit(0).unwrap();
    assert_eq!(
        error_codes(&released.outputs),
        [ErrorCode::DocumentTooLarge]
    );
    assert!(!node.engine().is_loaded(DOC));
}

/// Creating a document that exists only in the store (not loaded) changes nothing.
#[test]
fn creating_a_stored_document_changes_nothing() {
    let cfg = Config::default();
    let mut node = ServerNode::new(cfg, store_with("kept"), 1 << 20, [7; 32]);
    assert_eq!(node.create_document(DOC, "new"), Ok(false));
    let (node, _) = node.commit(0).unwrap();
    assert_eq!(node.store().load(DOC).unwrap().unwrap().text, "kept");
}
