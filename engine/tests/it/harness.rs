//! A virtual-time harness: one server node, several client nodes (`dsync-node`, the code the
//! binaries run), and a network whose every delivery is chosen by the test (deliver, drop,
//! duplicate, reorder, delay). Queued messages are the protocol types, handed over as the frames
//! `dsync-net` encodes; the server persists to `dsync_store::MemStore`, which keeps the SQLite
//! store's semantics (its conformance suite says so), so a "crash" keeps only what was
//! committed.

use std::collections::VecDeque;

use dsync_engine::{
    Checksum, ClientEvent, ClientMsg, Config, Edit, PeerId, ServerEngine, ServerMsg, ServerOutput,
    SessionRecord, StoredDocument, Time, PROTOCOL_VERSION,
};
use dsync_net::{encode_client, encode_server};
use dsync_node::{ClientNode, ClientNodeConfig, ClientNodeOutput, Output, ServerNode};
use dsync_store::{MemStore, Store};

pub const DOC: &str = "doc";

pub struct Net {
    pub now: Time,
    pub config: Config,
    /// The server node (engine + store + the batch rule); `None` only inside a call.
    server: Option<ServerNode<MemStore>>,
    pub clients: Vec<ClientNode>,
    /// Per client: messages on their way to the server.
    pub up: Vec<VecDeque<ClientMsg>>,
    /// Per client: messages on their way to the client.
    pub down: Vec<VecDeque<ServerMsg>>,
    /// What the server node did, in order: the records of each commit, then what the commit
    /// released (for ordering checks).
    pub server_log: Vec<ServerOutput>,
    /// Per client: every event it reported, in order.
    pub events: Vec<Vec<ClientEvent>>,
    access: dsync_engine::Access,
    /// Per client: the subject of its token (its session is named `subject\u{1f}client id`).
    pub subjects: Vec<Option<String>>,
    /// Peer numbers: a client gets a new one after each reconnection.
    pub peer_of: Vec<PeerId>,
    next_peer: u64,
}

/// The first edit of the request client `i` has queued.
pub fn first_edit_mut(net: &mut Net, i: usize) -> &mut Edit {
    match net.up[i].front_mut() {
        Some(ClientMsg::ClientSync { edits, .. }) => &mut edits[0],
        other => panic!("expected a client_sync with edits, got {other:?}"),
    }
}

/// Damage an edit in transit: its checksum no longer matches what it makes.
pub fn flip_checksum(e: &mut Edit) {
    if let Edit::Delta { checksum, .. } = e {
        *checksum = Checksum(checksum.0 ^ 1);
    }
}

/// The `connect` a peer that is not one of the harness's clients sends (no token, no resume).
pub fn connect_msg(doc: &str, client_id: &str) -> ClientMsg {
    ClientMsg::Connect {
        protocol: PROTOCOL_VERSION,
        doc: doc.to_string(),
        client_id: client_id.to_string(),
        token: None,
        seq: 1,
        resume: None,
        hints: false,
    }
}

/// A client node as every test makes one.
pub fn client(config: Config, id: &str) -> ClientNode {
    ClientNode::new(config, ClientNodeConfig::for_engine(&config), id, DOC)
}

impl Net {
    pub fn new(n: usize, config: Config, initial: &str) -> Net {
        let mut store = MemStore::new();
        store.insert(
            DOC,
            StoredDocument {
                text: initial.into(),
                ..Default::default()
            },
        );
        let clients = (0..n).map(|i| client(config, &format!("c{i}"))).collect();
        Net {
            now: Time(0),
            config,
            server: Some(ServerNode::new(
                config,
                store,
                config.limits.frame_bytes(),
                [7; 32],
            )),
            clients,
            up: vec![VecDeque::new(); n],
            down: vec![VecDeque::new(); n],
            server_log: Vec::new(),
            events: vec![Vec::new(); n],
            peer_of: (0..n as u64).map(PeerId).collect(),
            next_peer: n as u64,
            access: dsync_engine::Access::Open,
            subjects: vec![None; n],
        }
    }

    /// Connect every client and run until all are settled.
    pub fn connected(n: usize, config: Config, initial: &str) -> Net {
        let mut net = Net::new(n, config, initial);
        for i in 0..n {
            net.clients[i].connected(net.now);
        }
        net.pump();
        net.settle(60_000);
        net
    }

    /// The server's engine (read-only).
    pub fn server(&self) -> &ServerEngine {
        self.node().engine()
    }

    fn node(&self) -> &ServerNode<MemStore> {
        self.server
            .as_ref()
            .expect("the server node is back after every call")
    }

    fn node_mut(&mut self) -> &mut ServerNode<MemStore> {
        self.server
            .as_mut()
            .expect("the server node is back after every call")
    }

    /// Who may open what on the server (kept across crashes).
    pub fn set_access(&mut self, access: dsync_engine::Access) {
        self.access = access;
        self.node_mut().set_access(access);
    }

    /// Use `strategy` for the document on the server.
    pub fn set_merge(&mut self, strategy: dsync_engine::MergeStrategy) {
        self.node_mut().set_merge(DOC, strategy);
    }

    /// The server's store.
    pub fn store(&self) -> &MemStore {
        self.node().store()
    }

    fn client_index(&self, peer: PeerId) -> Option<usize> {
        self.peer_of.iter().position(|p| *p == peer)
    }

    /// Drain every node's outputs into the network; the server commits its batch first.
    pub fn pump(&mut self) {
        for i in 0..self.clients.len() {
            while let Some(o) = self.clients[i].poll_output() {
                match o {
                    ClientNodeOutput::Transmit(t) => self.up[i].push_back(t.msg),
                    ClientNodeOutput::Event(e) => self.events[i].push(e),
                    ClientNodeOutput::BadFrame(e) => panic!("client {i} got a bad frame: {e}"),
                    ClientNodeOutput::Answered { .. } => {}
                }
            }
        }
        let node = self.server.take().expect("the server node is here");
        let (node, released) = match node.commit(self.now.0) {
            Ok(x) => x,
            Err(f) => panic!("the in-memory store never fails: {}", f.error),
        };
        self.server = Some(node);
        self.server_log
            .extend(released.records.into_iter().map(ServerOutput::Persist));
        self.check_durable();
        for o in released.outputs {
            match o {
                Output::Send { to, msg, .. } => {
                    if let Some(i) = self.client_index(to) {
                        self.down[i].push_back(msg.clone());
                    }
                    self.server_log.push(ServerOutput::Send { to, msg });
                }
                Output::Disconnect { peer, reason } => {
                    self.server_log
                        .push(ServerOutput::Disconnect { peer, reason });
                }
            }
        }
    }

    /// Deliver the oldest message from client `i` to the server.
    pub fn deliver_up(&mut self, i: usize) -> bool {
        let Some(m) = self.up[i].pop_front() else {
            return false;
        };
        self.send_to_server(i, m);
        true
    }

    /// Hand `m` to the server as the frame its client would send (encoded, then decoded by
    /// the node, which loads the document a `connect` opens).
    pub fn send_to_server(&mut self, i: usize, m: ClientMsg) {
        self.send_as(self.peer_of[i], m);
    }

    /// Hand `m` to the server from any peer.
    pub fn send_as(&mut self, peer: PeerId, m: ClientMsg) {
        let (now, line) = (self.now, encode_client(&m));
        self.node_mut().receive_datagram(now, peer, line.as_bytes());
        self.pump();
    }

    /// Deliver the oldest message from the server to client `i`.
    pub fn deliver_down(&mut self, i: usize) -> bool {
        let Some(m) = self.down[i].pop_front() else {
            return false;
        };
        let line = encode_server(&m);
        self.clients[i].receive_datagram(self.now, line.as_bytes());
        self.pump();
        true
    }

    pub fn drop_up(&mut self, i: usize) -> Option<ClientMsg> {
        self.up[i].pop_front()
    }

    pub fn drop_down(&mut self, i: usize) -> Option<ServerMsg> {
        self.down[i].pop_front()
    }

    pub fn duplicate_up(&mut self, i: usize) {
        if let Some(m) = self.up[i].front().cloned() {
            self.up[i].push_front(m);
        }
    }

    pub fn duplicate_down(&mut self, i: usize) {
        if let Some(m) = self.down[i].front().cloned() {
            self.down[i].push_front(m);
        }
    }

    /// Swap the two oldest messages in a queue.
    pub fn reorder_up(&mut self, i: usize) {
        if self.up[i].len() >= 2 {
            self.up[i].swap(0, 1);
        }
    }

    pub fn reorder_down(&mut self, i: usize) {
        if self.down[i].len() >= 2 {
            self.down[i].swap(0, 1);
        }
    }

    /// Advance virtual time to `to`, firing every timer due on the way (messages stay queued).
    pub fn advance_to(&mut self, to: Time) {
        // A timer that fires and stays due would spin here forever: fail instead.
        let (mut last, mut again) = (None, 0);
        loop {
            let next = self
                .clients
                .iter()
                .filter_map(|c| c.poll_timeout())
                .chain(self.node().poll_timeout())
                .min();
            match next {
                Some(t) if t <= to => {
                    again = if last == Some(t) { again + 1 } else { 0 };
                    last = Some(t);
                    assert!(again < 100, "a timer due at {t:?} stays due after firing");
                    self.now = self.now.max(t);
                    for c in &mut self.clients {
                        if c.poll_timeout().is_some_and(|t| t <= self.now) {
                            c.handle_timeout(self.now);
                        }
                    }
                    let now = self.now;
                    self.node_mut().handle_timeout(now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = self.now.max(to);
    }

    pub fn advance(&mut self, ms: u64) {
        self.advance_to(self.now.plus_ms(ms));
    }

    /// Let time pass until client `i` sends something (or panic after `max_ms`).
    pub fn await_up(&mut self, i: usize, max_ms: u64) {
        let deadline = self.now.plus_ms(max_ms);
        while self.up[i].is_empty() {
            assert!(
                self.now < deadline,
                "client {i} sent nothing in {max_ms} ms"
            );
            self.advance(100);
        }
    }

    /// Deliver everything queued, in order, until the network is empty.
    pub fn flush(&mut self) {
        // Without time passing, the nodes answer each other a bounded number of times; a
        // network that never empties is a message storm: fail instead of spinning.
        for _ in 0..1_000 {
            let mut moved = false;
            for i in 0..self.clients.len() {
                while self.deliver_up(i) {
                    moved = true;
                }
                while self.deliver_down(i) {
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network never empties: the nodes keep answering each other");
    }

    /// Heal: deliver everything and let timers run, until converged (or panic after `max_ms`).
    pub fn settle(&mut self, max_ms: u64) -> u64 {
        let start = self.now;
        let deadline = self.now.plus_ms(max_ms);
        loop {
            self.flush();
            if self.converged().is_ok() {
                return self.now.ms_since(start);
            }
            assert!(
                self.now < deadline,
                "not converged within {max_ms} ms: {}",
                self.converged().unwrap_err()
            );
            self.advance(100);
        }
    }

    /// Every text, shadow pair and version pair agree; nothing pending, nothing in flight.
    pub fn converged(&self) -> Result<(), String> {
        let server = self.server();
        let master = server.master(DOC).ok_or("document not loaded")?;
        for (i, c) in self.clients.iter().map(ClientNode::engine).enumerate() {
            if !c.is_settled() {
                return Err(format!("client {i} not settled"));
            }
            if c.text() != master {
                return Err(format!(
                    "client {i} text {:?} != master {:?}",
                    c.text(),
                    master
                ));
            }
            let id = match &self.subjects[i] {
                Some(s) => format!("{s}\u{1f}{}", c.client_id()),
                None => c.client_id().to_string(),
            };
            let (shadow, _) = server
                .session(DOC, &id)
                .ok_or(format!("no session for client {i}"))?;
            if shadow != c.shadow() {
                return Err(format!(
                    "client {i} shadow {:?} != server's {:?}",
                    c.shadow(),
                    shadow
                ));
            }
            if server.pending_len(DOC, &id) != Some(0) {
                return Err(format!("server has pending edits for client {i}"));
            }
        }
        if self.up.iter().any(|q| !q.is_empty()) || self.down.iter().any(|q| !q.is_empty()) {
            return Err("messages in flight".into());
        }
        Ok(())
    }

    /// After every commit, a server restarted from the store would hold each session as the
    /// live one does (all but its `last_seq`, which idle polls leave unwritten), on the same
    /// master, and reach the master from each shadow by the same exact change. A write the
    /// engine forgot shows here at once, even when no later outcome happens to depend on it.
    fn check_durable(&self) {
        let Ok(Some(stored)) = self.store().load(DOC) else {
            return;
        };
        let live = self.server();
        let Some(master) = live.master(DOC) else {
            return;
        };
        let ids: Vec<String> = stored
            .sessions
            .iter()
            .map(|r| r.client_id.clone())
            .collect();
        let mut restarted = ServerEngine::new(self.config, [7; 32]);
        restarted
            .load_document(DOC, stored)
            .expect("the stored document loads");
        assert_eq!(restarted.master(DOC), Some(master), "the stored master");
        assert_eq!(
            restarted.version(DOC),
            live.version(DOC),
            "the stored version"
        );
        let durable = |r: SessionRecord| (r.shadow, r.backup, r.link, r.backup_link, r.reset);
        for id in &ids {
            let now = live
                .session_record(DOC, id)
                .expect("a stored session is in memory");
            let held = live.session(DOC, id).expect("in memory");
            // The shadows as loaded, against the shadows in memory (not their records: a
            // record that leaves a text out would read back the same wrong way on both sides).
            assert_eq!(
                restarted.session(DOC, id),
                Some(held),
                "session {id} at {:?}: the shadow and backup a restart restores (left)",
                self.now
            );
            let then = restarted.session_record(DOC, id).expect("loaded");
            assert_eq!(
                durable(then),
                durable(now),
                "session {id} at {:?}: a restart restores (left), memory holds (right)",
                self.now
            );
            let (now, exact) = live.shadow_change(DOC, id).expect("live");
            assert_eq!(
                now.apply_to(&held.0.text).ok().as_ref(),
                Some(master),
                "session {id} at {:?}: its change does not take its shadow to the master",
                self.now
            );
            let then = restarted.shadow_change(DOC, id).expect("loaded");
            assert_eq!(
                then,
                (now, exact),
                "session {id} at {:?}: the change from its shadow to the master after a restart",
                self.now
            );
        }
    }

    /// Crash the server: everything not committed is gone; connections break.
    pub fn crash_server(&mut self) {
        self.crash_server_then(|_| {});
    }

    /// Crash the server, change its disk while it is down (`f`), and start it again.
    pub fn crash_server_then(&mut self, f: impl FnOnce(&mut MemStore)) {
        let mut store = self
            .server
            .take()
            .expect("the server node is here")
            .into_store();
        f(&mut store);
        let mut node = ServerNode::new(
            self.config,
            store,
            self.config.limits.frame_bytes(),
            [8; 32],
        );
        node.set_access(self.access);
        self.server = Some(node);
        for q in self.down.iter_mut() {
            q.clear();
        }
        for q in self.up.iter_mut() {
            q.clear();
        }
    }

    /// The transport of client `i` reconnects: new peer id, both nodes told, then `connect`.
    pub fn reconnect(&mut self, i: usize) {
        let (now, peer) = (self.now, self.peer_of[i]);
        self.node_mut().closed(now, peer);
        self.peer_of[i] = PeerId(self.next_peer);
        self.next_peer += 1;
        self.up[i].clear();
        self.down[i].clear();
        let _ = self.clients[i].lost();
        self.clients[i].connected(now);
        self.pump();
    }

    /// Create `doc` holding `text` on the server (as `PUT /documents/{doc}` does), committed
    /// by a pump; then let it leave memory.
    pub fn create_document(&mut self, doc: &str, text: &str) {
        assert_eq!(self.node_mut().create_document(doc, text), Ok(true));
        self.pump();
        self.node_mut().release(doc);
    }

    /// The transport of client `i` breaks and stays down: both nodes told.
    pub fn drop_connection(&mut self, i: usize) {
        let (now, peer) = (self.now, self.peer_of[i]);
        self.node_mut().closed(now, peer);
        self.up[i].clear();
        self.down[i].clear();
        let _ = self.clients[i].lost();
        self.pump();
    }

    /// Client `i` edits its text (and the engine syncs at its next cycle).
    pub fn type_at(&mut self, i: usize, at: usize, s: &str) {
        self.clients[i].insert(at, s).unwrap();
    }

    /// Wait (at most 5 s) for client `i`'s next request and `damage` its first edit.
    pub fn damage_next(&mut self, i: usize, damage: fn(&mut Edit)) {
        self.await_up(i, 5_000);
        damage(first_edit_mut(self, i));
    }

    /// Client `i`'s next two requests arrive with their first edit damaged (its checksum
    /// flipped): twice in a row, the server takes it for divergence and resets the session.
    pub fn damage_until_reset(&mut self, i: usize) {
        for _ in 0..2 {
            self.damage_next(i, flip_checksum);
            self.deliver_up(i);
        }
    }

    /// Client `i` starts a cycle now.
    pub fn sync(&mut self, i: usize) {
        self.clients[i].sync_now(self.now);
        self.pump();
    }

    pub fn master(&self) -> String {
        self.server()
            .master(DOC)
            .map(String::from)
            .unwrap_or_default()
    }
}
