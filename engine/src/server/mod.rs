//! The server state machine: many documents, many clients, one master text per document.
//!
//! Drive it like every sans-IO machine here: before feeding a `connect`, make sure its document
//! is loaded ([`ServerEngine::document_needed`] / [`ServerEngine::load_document`]); call one
//! `handle_*`, drain [`ServerEngine::poll_output`] in order, re-arm the timer from
//! [`ServerEngine::poll_timeout`].
//!
//! **Durability contract:** a [`ServerOutput::Persist`] must be made durable before any output
//! that follows it is acted on. The acknowledgement of a client edit (`client_version` in a
//! `server_sync`) always follows the `Persist` of the master that contains it.
//!
//! Invariants ("pitfall N" is numbered in `docs/protocol.md`, section *Pitfalls*):
//! - Anything a peer sends becomes a reply, an `error`, or is ignored as stale; never a panic,
//!   and never a change to another client's session.
//! - The backup shadow is refreshed on every accepted `client_sync` (pitfall 2) and restored
//!   only when `server_version` equals the backup's m (pitfall 3), before duplicates are
//!   filtered; restoring clears the pending server edit.
//! - A session holds at most one unacknowledged server edit (`Option`, not a stack): every
//!   accepted request acknowledges the last reply's edit (its `server_version` is the shadow's
//!   m) or restores the backup (which drops it), so at most the one edit of this reply is
//!   outstanding.
//! - A reset carries explicit versions (pitfall 7) and the server keeps answering with it until
//!   the client acknowledges it.
//! - Maps are `BTreeMap`: iteration order never depends on hashing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::access::{Access, Rights};
use crate::checksum::Checksum;
use crate::client::Shadow;
use crate::config::{Config, Stats, Time};
use crate::delta::Delta;
use crate::merge::{merge, merge_ops, MergeStrategy, OpMerge};
use crate::msg::{
    ClientMsg, Edit, ErrorCode, ResetBase, Resume, ServerMsg, SessionKey, PROTOCOL_VERSION,
};
use crate::op::{Operation, Step};
use crate::rope::Rope;
use crate::text::normalize_newlines;
use crate::EngineError;
use rand_chacha::rand_core::{RngCore, SeedableRng};

mod allowance;
mod check;
mod connect;
mod heartbeat;
mod presence;
mod records;
mod state;
mod sync;

use allowance::Allowance;
pub use records::*;
use state::to_master;
use sync::{sync_session, SyncRequest};

/// The exact change from a shadow's text to the master as it was at log index `idx`.
#[derive(Debug, Clone)]
struct Link {
    op: Operation,
    idx: u64,
}

#[derive(Debug, Clone)]
struct Session {
    peer: Option<PeerId>,
    shadow: Shadow,
    backup: Shadow,
    /// How `shadow` becomes the master (None: unknown, e.g. after a restart; then a diff).
    link: Option<Link>,
    /// How `backup` becomes the master.
    backup_link: Option<Link>,
    /// The server edit sent with the last reply and not acknowledged yet.
    pending: Option<Edit>,
    last_seq: u64,
    /// A reset the client has not acknowledged yet.
    reset: Option<AwaitingReset>,
    /// Consecutive requests whose edit failed its strict apply or checksum. The first is taken
    /// for damage in transit and ignored (the client resends); a second one means the shadows
    /// really diverged, and the session is reset.
    bad_streak: u32,
    last_active: Time,
    /// The secret a resume must present (`None`: a session stored before keys existed; it
    /// cannot be resumed, only replaced).
    key: Option<SessionKey>,
    /// A `changed` hint went to its client since its last request (never more than one
    /// between two requests; not kept by the store).
    hinted: bool,
}

/// A reset sent and not yet acknowledged: its version, and the shadow (with its link) from
/// before it, so a resent reset can still tell the client where it started.
#[derive(Debug, Clone)]
struct AwaitingReset {
    version: u64,
    from_text: Rope,
    from_link: Option<Link>,
}

#[derive(Debug, Clone)]
struct Document {
    master: Rope,
    version: u64,
    merge: MergeStrategy,
    sessions: BTreeMap<String, Session>,
    /// Exact changes of the master, oldest first; entry i took the master from log index
    /// `log_base + i` to the next. Trimmed to what some session still needs.
    log: VecDeque<Operation>,
    log_base: u64,
    /// Cursors of the attached sessions that sent presence (never stored: `presence.rs`).
    presence: BTreeMap<String, presence::Here>,
}

#[derive(Debug, Clone)]
struct Peer {
    last_heard: Time,
    pinged: bool,
    /// Document → client id bound on this connection.
    docs: BTreeMap<String, String>,
    /// Sessions this peer created in the current minute (`max_new_sessions_per_minute`), and
    /// when that minute began.
    new_sessions: (Time, usize),
    /// Full-text bytes this peer may still earn (`full_text_bytes_per_second`).
    full_texts: Allowance,
    /// It asked for `changed` hints (in a `connect`).
    hints: bool,
    /// Documents (of `docs`) this peer's token lets it only read.
    read_only: BTreeSet<String>,
}

/// Server side of Differential Synchronization.
#[derive(Debug, Clone)]
pub struct ServerEngine {
    config: Config,
    docs: BTreeMap<String, Document>,
    merge_overrides: BTreeMap<String, MergeStrategy>,
    peers: BTreeMap<PeerId, Peer>,
    outputs: VecDeque<ServerOutput>,
    /// No heartbeat is due before this (a lower bound on every peer's deadline: deadlines only
    /// move later as peers talk). `poll_timeout` answers with it in O(1); the exact minimum is
    /// recomputed when a timeout is handled (a scan of every peer: once per deadline, not once
    /// per batch of inputs — with 10,000 connections that scan was 5% of the engine's time).
    wake: Option<Time>,
    stats: Stats,
    /// Session keys: a ChaCha20 stream from the seed the driver gives (the operating system's
    /// randomness in the real server; the scenario's seed in the simulator, so runs replay).
    keys: rand_chacha::ChaCha20Rng,
    /// Who may open what (open, or signed tokens).
    access: Access,
}

/// What handling one `client_sync` came to.
enum SyncOutcome {
    Ignore,
    Reply {
        persist: Option<PersistRecord>,
        msg: ServerMsg,
    },
    /// An edit failed once (maybe damaged in transit): say so, keep what came before it, and
    /// send no `server_sync` (its edits would be relative to a shadow the client no longer
    /// has); the client resends.
    Refuse {
        persist: Option<PersistRecord>,
        error: (ErrorCode, String),
    },
    Reset {
        error: Option<(ErrorCode, String)>,
    },
}

impl ServerEngine {
    /// An engine with no documents and no peers, issuing session keys from `key_seed`. A
    /// server must seed it with 32 unpredictable bytes: whoever knows the seed can compute
    /// every session key it issues.
    pub fn new(config: Config, key_seed: [u8; 32]) -> Self {
        ServerEngine {
            config,
            docs: BTreeMap::new(),
            merge_overrides: BTreeMap::new(),
            peers: BTreeMap::new(),
            outputs: VecDeque::new(),
            wake: None,
            stats: Stats::default(),
            keys: rand_chacha::ChaCha20Rng::from_seed(key_seed),
            access: Access::Open,
        }
    }

    /// Require tokens (or open access again). Sessions are bound to a token's subject, so
    /// sessions opened under open access are not resumed under tokens (their clients start new
    /// sessions and merge their unsent typing).
    pub fn set_access(&mut self, access: Access) {
        self.access = access;
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Coverage counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Use `strategy` for `doc` instead of the configured default.
    pub fn set_merge(&mut self, doc: &str, strategy: MergeStrategy) {
        self.merge_overrides.insert(doc.to_string(), strategy);
        if let Some(d) = self.docs.get_mut(doc) {
            d.merge = strategy;
        }
    }

    /// True when `doc` is in memory.
    pub fn is_loaded(&self, doc: &str) -> bool {
        self.docs.contains_key(doc)
    }

    /// The document a message needs loaded before it is handled, if it is not loaded yet.
    ///
    /// A connect without a valid token for the document loads nothing (it is refused).
    pub fn document_needed<'m>(
        &self,
        now: Time,
        peer: PeerId,
        msg: &'m ClientMsg,
    ) -> Option<&'m str> {
        match msg {
            ClientMsg::Connect { doc, token, .. }
                if !self.docs.contains_key(doc)
                    && self.valid_name(doc)
                    && self.peer_may_open(peer, doc).is_ok()
                    && self.access.check(token.as_deref(), doc, now.0).is_ok() =>
            {
                Some(doc)
            }
            _ => None,
        }
    }

    /// Whether `peer` may open `doc` beside what it has open (`max_documents_per_peer`).
    fn peer_may_open(&self, peer: PeerId, doc: &str) -> Result<(), String> {
        let max = self.config.limits.max_documents_per_peer;
        match self.peers.get(&peer) {
            Some(p) if p.docs.len() >= max && !p.docs.contains_key(doc) => Err(format!(
                "this connection has its maximum of {max} open documents; close one first"
            )),
            _ => Ok(()),
        }
    }

    /// Put a document (from the store, or new and empty) in memory.
    pub fn load_document(&mut self, doc: &str, stored: StoredDocument) -> Result<(), EngineError> {
        if self.docs.len() >= self.config.limits.max_documents && !self.docs.contains_key(doc) {
            return Err(EngineError::TooManyDocuments(
                self.config.limits.max_documents,
            ));
        }
        // Stored texts hold no `\r` (the engine normalises what it takes in); one written by
        // something else is normalised here, once, and written back below: a store resolves a
        // session's shadow that equals the master against the master it holds.
        let raw = stored.text.chunks().any(|c| c.contains('\r'));
        let master = if raw {
            Rope::from(normalize_newlines(&stored.text.flat()).into_owned())
        } else {
            stored.text
        };
        if master.len() > self.config.limits.max_document_bytes {
            return Err(EngineError::DocumentTooLarge {
                len: master.len(),
                max: self.config.limits.max_document_bytes,
            });
        }
        let sessions = stored
            .sessions
            .into_iter()
            .map(|r| {
                let reset = r.reset.map(|p| AwaitingReset {
                    version: p.version,
                    from_text: p.from_text,
                    from_link: p.from_link.map(|(op, idx)| Link { op, idx }),
                });
                (
                    r.client_id,
                    Session {
                        peer: None,
                        shadow: r.shadow,
                        backup: r.backup,
                        link: r.link.map(|(op, idx)| Link { op, idx }),
                        backup_link: r.backup_link.map(|(op, idx)| Link { op, idx }),
                        pending: None,
                        last_seq: r.last_seq,
                        reset,
                        bad_streak: 0,
                        last_active: Time(0),
                        key: r.key,
                        hinted: false,
                    },
                )
            })
            .collect();
        // The log indexes master states by document version; keep the stored changes only if
        // they run without a gap up to the stored version.
        let contiguous = stored.changes.windows(2).all(|w| w[1].0 == w[0].0 + 1)
            && stored.changes.last().is_none_or(|c| c.0 == stored.version);
        let (log, log_base) = match stored.changes.first() {
            Some(first) if contiguous && first.0 >= 1 => (
                stored.changes.iter().map(|c| c.1.clone()).collect(),
                first.0 - 1,
            ),
            _ => (VecDeque::new(), stored.version),
        };
        let merge = self
            .merge_overrides
            .get(doc)
            .copied()
            .unwrap_or(self.config.merge);
        self.docs.insert(
            doc.to_string(),
            Document {
                master,
                version: stored.version,
                merge,
                sessions,
                log,
                log_base,
                presence: BTreeMap::new(),
            },
        );
        if raw {
            self.persist_text(doc);
        }
        Ok(())
    }

    /// The master text of a loaded document.
    pub fn master(&self, doc: &str) -> Option<&Rope> {
        self.docs.get(doc).map(|d| &d.master)
    }

    /// A loaded document's version.
    pub fn version(&self, doc: &str) -> Option<u64> {
        self.docs.get(doc).map(|d| d.version)
    }

    /// Loaded document names, in order.
    pub fn documents(&self) -> impl Iterator<Item = &str> {
        self.docs.keys().map(String::as_str)
    }

    /// The server's (shadow, backup shadow) for a client, if it has a session.
    pub fn session(&self, doc: &str, client_id: &str) -> Option<(&Shadow, &Shadow)> {
        let s = self.docs.get(doc)?.sessions.get(client_id)?;
        Some((&s.shadow, &s.backup))
    }

    /// Exact master changes a document keeps (at most `Limits::max_log_entries`): stays small
    /// while every session keeps up.
    pub fn log_len(&self, doc: &str) -> Option<usize> {
        Some(self.docs.get(doc)?.log.len())
    }

    /// Number of unacknowledged server edits for a client.
    pub fn pending_len(&self, doc: &str, client_id: &str) -> Option<usize> {
        Some(usize::from(
            self.docs
                .get(doc)?
                .sessions
                .get(client_id)?
                .pending
                .is_some(),
        ))
    }

    /// Number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    fn valid_name(&self, name: &str) -> bool {
        !name.is_empty()
            && name.len() <= self.config.limits.max_name_bytes
            && !name.chars().any(char::is_control)
    }

    fn send(&mut self, to: PeerId, msg: ServerMsg) {
        self.outputs.push_back(ServerOutput::Send { to, msg });
    }

    /// Send an `error` to `peer` (drivers use this for frames that did not decode).
    pub fn reject(&mut self, peer: PeerId, doc: Option<String>, code: ErrorCode, message: String) {
        // The driver logs refusals with the peer's address; this is for engine-level tracing.
        tracing::debug!(peer = peer.0, code = code.as_str(), %message, "rejected peer input");
        self.send(
            peer,
            ServerMsg::Error {
                doc,
                code,
                message,
                seq: None,
            },
        );
    }

    /// Refuse the request `seq` from `peer` (its error names the request).
    pub(super) fn refuse(
        &mut self,
        peer: PeerId,
        doc: String,
        seq: u64,
        code: ErrorCode,
        message: String,
    ) {
        tracing::debug!(peer = peer.0, code = code.as_str(), %message, "refused a request");
        self.send(
            peer,
            ServerMsg::Error {
                doc: Some(doc),
                code,
                message,
                seq: Some(seq),
            },
        );
    }

    /// Feed one message from `peer`.
    pub fn handle_message(&mut self, now: Time, peer: PeerId, msg: ClientMsg) {
        let opens = match &msg {
            ClientMsg::Connect { doc, .. } => Some(doc.clone()),
            _ => None,
        };
        self.on_message(now, peer, msg);
        if let Some(doc) = opens {
            self.unload_unless_bound(peer, &doc);
        }
        self.assert_invariants();
    }

    fn on_message(&mut self, now: Time, peer: PeerId, msg: ClientMsg) {
        if !self.peers.contains_key(&peer) {
            if self.peers.len() >= self.config.limits.max_peers {
                self.reject(
                    peer,
                    None,
                    ErrorCode::TooManyConnections,
                    "server has its maximum number of connections".into(),
                );
                self.outputs.push_back(ServerOutput::Disconnect {
                    peer,
                    reason: "too many connections".into(),
                });
                return;
            }
            self.peers.insert(
                peer,
                Peer {
                    last_heard: now,
                    pinged: false,
                    docs: BTreeMap::new(),
                    new_sessions: (now, 0),
                    full_texts: Allowance::full(now, &self.config.limits),
                    hints: false,
                    read_only: BTreeSet::new(),
                },
            );
        }
        // A pinged peer that talks again is due a heartbeat earlier than its old deadline.
        let deadline = now.plus_ms(self.config.heartbeat_ms);
        self.wake = Some(self.wake.map_or(deadline, |w| w.min(deadline)));
        let limits = self.config.limits;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.last_heard = now;
        p.pinged = false;
        if let ClientMsg::Connect { hints: true, .. } = &msg {
            p.hints = true;
        }
        // Requests that may earn a full text wait while this peer is in debt for them.
        if let ClientMsg::Connect { doc, .. } | ClientMsg::ClientSync { doc, .. } = &msg {
            if let Err(ms) = p.full_texts.check(now, &limits) {
                self.stats.slowed_down += 1;
                let m = format!(
                    "this connection earned full texts faster than {} bytes a second; send again in {ms} ms",
                    limits.full_text_bytes_per_second
                );
                return self.reject(peer, Some(doc.clone()), ErrorCode::SlowDown, m);
            }
        }
        match msg {
            ClientMsg::Connect {
                protocol,
                doc,
                client_id,
                seq,
                resume,
                token,
                ..
            } => self.on_connect(now, peer, protocol, doc, client_id, seq, resume, token),
            ClientMsg::ClientSync {
                doc,
                seq,
                server_version,
                edits,
            } => self.on_sync(now, peer, doc, seq, server_version, edits),
            ClientMsg::Presence {
                doc,
                name,
                cursor,
                anchor,
            } => self.on_presence(peer, doc, name, cursor, anchor),
            ClientMsg::Close { doc } => self.detach(now, peer, &doc),
            ClientMsg::Ping => self.send(peer, ServerMsg::Pong),
            ClientMsg::Pong => {}
        }
    }

    fn on_sync(
        &mut self,
        now: Time,
        peer: PeerId,
        doc: String,
        seq: u64,
        m_ack: u64,
        edits: Vec<Edit>,
    ) {
        let Some(client_id) = self
            .peers
            .get(&peer)
            .and_then(|p| p.docs.get(&doc))
            .cloned()
        else {
            let m = "no session for this document on this connection: send connect".to_string();
            return self.reject(peer, Some(doc), ErrorCode::UnknownSession, m);
        };
        if !edits.is_empty()
            && self
                .peers
                .get(&peer)
                .is_some_and(|p| p.read_only.contains(&doc))
        {
            self.stats.read_only_refused += 1;
            let m =
                format!("this connection's token grants only reading {doc:?}: edits are refused");
            return self.refuse(peer, doc, seq, ErrorCode::ReadOnly, m);
        }
        if edits.len() > self.config.limits.max_edits_per_message {
            let m = format!(
                "{} edits in one message; the maximum is {}",
                edits.len(),
                self.config.limits.max_edits_per_message
            );
            return self.reject(peer, Some(doc), ErrorCode::TooManyEdits, m);
        }
        let config = self.config;
        let Some(d) = self.docs.get_mut(&doc) else {
            return self.reject(
                peer,
                Some(doc),
                ErrorCode::UnknownSession,
                "document is not loaded".into(),
            );
        };
        let req = SyncRequest {
            doc: &doc,
            client_id: &client_id,
            now,
            seq,
            m_ack,
            edits,
        };
        if let Some(s) = d.sessions.get_mut(&client_id) {
            s.hinted = false;
        }
        let mut outcome = sync_session(&config, d, req, &mut self.stats);
        // The log may shrink now that this session moved on; the store can forget as much.
        d.trim_log(self.config.limits.max_log_entries, &mut self.stats);
        if let SyncOutcome::Reply {
            persist: Some(p), ..
        }
        | SyncOutcome::Refuse {
            persist: Some(p), ..
        } = &mut outcome
        {
            p.changes_needed_after = d.log_base;
        }
        let changed = matches!(
            &outcome,
            SyncOutcome::Reply { persist: Some(p), .. } | SyncOutcome::Refuse { persist: Some(p), .. }
                if p.text.is_some()
        );
        match outcome {
            SyncOutcome::Ignore => {}
            SyncOutcome::Reply { persist, msg } => {
                if let Some(p) = persist {
                    self.outputs.push_back(ServerOutput::Persist(p));
                }
                self.send(peer, msg);
            }
            SyncOutcome::Refuse { persist, error } => {
                if let Some(p) = persist {
                    self.outputs.push_back(ServerOutput::Persist(p));
                }
                self.reject(peer, Some(doc.clone()), error.0, error.1);
            }
            SyncOutcome::Reset { error } => {
                if let Some((code, message)) = error {
                    self.reject(peer, Some(doc.clone()), code, message);
                }
                self.reset_session(&doc, &client_id, peer, seq);
            }
        }
        if changed {
            self.hint_others(now, &doc, &client_id);
        }
    }

    /// Replace a client's shadow by the master (MobWrite's "raw" mode) with explicit versions.
    fn reset_session(&mut self, doc: &str, client_id: &str, peer: PeerId, seq: u64) {
        let Some(d) = self.docs.get_mut(doc) else {
            return;
        };
        let (now_link, log_end) = (d.link_now(), d.log_end());
        let Some(s) = d.sessions.get_mut(client_id) else {
            return;
        };
        let m = s.shadow.server_version.max(s.backup.server_version) + 1;
        // A reset sent again keeps the shadow it first started from.
        let (from_text, from_link) = match s.reset.take() {
            Some(r) => (r.from_text, r.from_link),
            None => (s.shadow.text.clone(), s.link.clone()),
        };
        let op = to_master(
            &d.master,
            &d.log,
            d.log_base,
            &from_text,
            &from_link,
            &mut self.stats,
        );
        let base = Some(ResetBase {
            checksum: Checksum::of(&from_text),
            delta: Delta::from_operation(&op, &from_text),
        });
        s.shadow = Shadow {
            text: d.master.clone(),
            client_version: s.shadow.client_version,
            server_version: m,
        };
        s.backup = s.shadow.clone();
        s.link = now_link.clone();
        s.backup_link = now_link;
        s.pending = None;
        s.reset = Some(AwaitingReset {
            version: m,
            from_text,
            from_link,
        });
        // A fresh start: the next damaged edit is again taken for damage in transit.
        s.bad_streak = 0;
        self.stats.resets += 1;
        if let Some(p) = self.peers.get_mut(&peer) {
            p.full_texts.charge(d.master.len());
        }
        let n = s.shadow.client_version;
        let record = s.record(client_id, log_end);
        let msg = ServerMsg::ServerSync {
            doc: doc.to_string(),
            seq,
            client_version: n,
            edits: vec![Edit::Full {
                version: m,
                text: String::from(&d.master),
                checksum: Checksum::of(&d.master),
                base,
            }],
        };
        self.outputs.push_back(ServerOutput::Persist(PersistRecord {
            doc: doc.to_string(),
            text: Some(d.master.clone()),
            version: d.version,
            sessions: vec![record],
            removed_sessions: Vec::new(),
            changes: Vec::new(),
            changes_needed_after: d.log_base,
        }));
        self.send(peer, msg);
    }

    fn detach(&mut self, now: Time, peer: PeerId, doc: &str) {
        let Some(client_id) = self.peers.get_mut(&peer).and_then(|p| {
            p.read_only.remove(doc);
            p.docs.remove(doc)
        }) else {
            return;
        };
        if let Some(s) = self
            .docs
            .get_mut(doc)
            .and_then(|d| d.sessions.get_mut(&client_id))
        {
            if s.peer == Some(peer) {
                s.peer = None;
                s.last_active = now;
            }
        }
        self.presence_gone(doc, &client_id);
        self.unload_if_unused(doc);
    }

    /// After a `connect` from `peer` for `doc`: if it was refused, the document it loaded
    /// leaves memory again (unless someone else is attached), so refused connects cannot fill
    /// the server's document limit.
    fn unload_unless_bound(&mut self, peer: PeerId, doc: &str) {
        if !self
            .peers
            .get(&peer)
            .is_some_and(|p| p.docs.contains_key(doc))
        {
            self.unload_if_unused(doc);
        }
    }

    /// A document nobody is attached to leaves memory; the store has all of it.
    fn unload_if_unused(&mut self, doc: &str) {
        if self
            .docs
            .get(doc)
            .is_some_and(|d| d.sessions.values().all(|s| s.peer.is_none()))
        {
            self.docs.remove(doc);
        }
    }

    /// The connection to `peer` is gone: its sessions stay resumable.
    pub fn handle_disconnect(&mut self, now: Time, peer: PeerId) {
        self.on_disconnect(now, peer);
        self.assert_invariants();
    }

    fn on_disconnect(&mut self, now: Time, peer: PeerId) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        for (doc, client_id) in p.docs {
            if let Some(s) = self
                .docs
                .get_mut(&doc)
                .and_then(|d| d.sessions.get_mut(&client_id))
            {
                if s.peer == Some(peer) {
                    s.peer = None;
                    s.last_active = now;
                }
            }
            self.presence_gone(&doc, &client_id);
            self.unload_if_unused(&doc);
        }
    }

    /// Time has passed: ping quiet peers, drop silent ones.
    pub fn handle_timeout(&mut self, now: Time) {
        self.on_timeout(now);
        self.wake = self.next_deadline();
        self.assert_invariants();
    }

    /// The next output for the driver, if any.
    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        self.outputs.pop_front()
    }
}
