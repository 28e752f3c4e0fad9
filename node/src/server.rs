//! [`ServerNode`]: the server engine, its store, frame decoding, document loading and the batch
//! rule, put together once for every driver.
//!
//! The batch rule is a property of the types: the engine is private, so its outputs can only be
//! had through [`ServerNode::commit`], which commits the batch's persist records first and hands
//! back what may be sent ([`Released`]) only when the store returned `Ok`. A failed commit
//! consumes the node and hands back the store alone: no driver can acknowledge anything of a
//! batch that is not durable, and no node exists whose engine is ahead of its store.

use std::collections::BTreeMap;

use dsync_engine::{
    ClientMsg, Config, EngineError, ErrorCode, MergeStrategy, PeerId, PersistRecord, ServerEngine,
    ServerMsg, ServerOutput, Stats, Time,
};
use dsync_net::{datagram_frame, decode_client, encode_server, DecodeError, LineBuffer};
use dsync_store::{Store, StoreError};

/// What a committed batch lets the driver do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write `line` (the encoded `msg`, newline included) to `to`.
    Send {
        /// The peer.
        to: PeerId,
        /// The message, for logs and traces.
        msg: ServerMsg,
        /// The frame to write: `dsync_net::encode_server(&msg)`.
        line: String,
    },
    /// Close the connection of `peer` (the engine already forgot it).
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// Why, for logs.
        reason: String,
    },
}

/// The outputs of a batch whose commit returned `Ok`, and the records it committed.
#[derive(Debug, Default)]
#[must_use = "a committed batch's replies must be sent (or the node crashed before sending)"]
pub struct Released {
    /// What to send and close, in the engine's order.
    pub outputs: Vec<Output>,
    /// The records this commit made durable (drivers may inspect them; most ignore them).
    pub records: Vec<PersistRecord>,
}

/// A commit failed: nothing of the batch is durable and nothing of it may be acknowledged. The
/// node is gone; the store is handed back (a driver stops, or restarts a node on it).
#[derive(Debug)]
pub struct CommitFailed<S> {
    /// The store, as the failed commit left it (all or nothing of the batch, by its contract).
    pub store: S,
    /// Why.
    pub error: StoreError,
}

/// Counters a node keeps beyond the engine's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Frames decoded into messages.
    pub frames: u64,
    /// Frames refused: too large, not UTF-8, malformed JSON, a bad delta.
    pub decode_errors: u64,
    /// Documents loaded from the store.
    pub loads: u64,
    /// Document loads that failed (the peer got an `internal` error).
    pub load_failures: u64,
    /// Commits that returned `Ok` (empty batches are not committed).
    pub commits: u64,
}

/// A server: engine + store + framing + loading + the batch rule.
pub struct ServerNode<S: Store> {
    engine: ServerEngine,
    store: S,
    /// Stream peers' partial frames. Bounded: one buffer per open peer (the driver bounds the
    /// peers), each at most `max_frame_bytes` plus one read.
    frames: BTreeMap<PeerId, LineBuffer>,
    max_frame_bytes: usize,
    stats: NodeStats,
}

impl<S: Store> ServerNode<S> {
    /// A node over `store` refusing frames over `max_frame_bytes`, issuing session keys from
    /// `key_seed` (32 unpredictable bytes in a real server: see [`ServerEngine::new`]).
    pub fn new(config: Config, store: S, max_frame_bytes: usize, key_seed: [u8; 32]) -> Self {
        ServerNode {
            engine: ServerEngine::new(config, key_seed),
            store,
            frames: BTreeMap::new(),
            max_frame_bytes,
            stats: NodeStats::default(),
        }
    }

    /// The engine, read-only (checks, logs, stats).
    pub fn engine(&self) -> &ServerEngine {
        &self.engine
    }

    /// The store, read-only.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Maintenance on the store beside the engine, such as collecting old sessions of documents
    /// not in memory: `f` gets the store, and the engine read-only to tell what is loaded. It
    /// must not touch what a loaded document's engine state stands on.
    pub fn maintain<R>(&mut self, f: impl FnOnce(&mut S, &ServerEngine) -> R) -> R {
        f(&mut self.store, &self.engine)
    }

    /// The node's own counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// The engine's counters.
    pub fn engine_stats(&self) -> &Stats {
        self.engine.stats()
    }

    /// Stop, keeping only what was committed (a crash, or the end of a clean shutdown after the
    /// last commit).
    pub fn into_store(self) -> S {
        self.store
    }

    /// Use `strategy` for `doc` (tests and the simulator pick one per scenario).
    pub fn set_merge(&mut self, doc: &str, strategy: MergeStrategy) {
        self.engine.set_merge(doc, strategy);
    }

    /// Create `doc` holding `text`, written whole by the next commit. `Ok(false)`: it exists
    /// already (in memory or in the store), nothing changed.
    pub fn create_document(&mut self, doc: &str, text: &str) -> Result<bool, String> {
        if self.engine.is_loaded(doc) || self.store.load(doc).map_err(|e| e.to_string())?.is_some()
        {
            return Ok(false);
        }
        self.engine
            .create_document(doc, text)
            .map(|()| true)
            .map_err(|e| e.to_string())
    }

    /// Let `doc` leave memory if no session holds it (after its creation was committed).
    pub fn release(&mut self, doc: &str) {
        self.engine.release(doc);
    }

    /// Who may open what: open access, or tokens signed with a secret.
    pub fn set_access(&mut self, access: dsync_engine::Access) {
        self.engine.set_access(access);
    }

    /// When [`ServerNode::handle_timeout`] wants calling next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.engine.poll_timeout()
    }

    /// Bytes from a stream peer: complete frames are decoded and handled, a partial one waits.
    pub fn receive_bytes(&mut self, now: Time, peer: PeerId, bytes: &[u8]) {
        let max = self.max_frame_bytes;
        let buf = self
            .frames
            .entry(peer)
            .or_insert_with(|| LineBuffer::new(max));
        buf.push(bytes);
        let mut frames = Vec::new();
        while let Some(f) = buf.next_frame() {
            frames.push(f);
        }
        for f in frames {
            self.receive_frame(now, peer, f);
        }
    }

    /// One datagram: exactly one frame (a trailing newline is allowed).
    pub fn receive_datagram(&mut self, now: Time, peer: PeerId, bytes: &[u8]) {
        let frame = datagram_frame(bytes, self.max_frame_bytes);
        self.receive_frame(now, peer, frame);
    }

    /// One frame, as a line splitter produced it: decoded, its document loaded if it opens one,
    /// and handled; a frame that does not decode gets an `error` reply.
    pub fn receive_frame(&mut self, now: Time, peer: PeerId, frame: Result<String, DecodeError>) {
        let max_delta = self.engine.config().limits.max_delta_bytes;
        let msg = frame.and_then(|text| decode_client(&text, max_delta));
        self.receive_decoded(now, peer, msg);
    }

    /// A frame a driver decoded itself (`dsync_net::decode_client` with the engine's
    /// `max_delta_bytes`, e.g. on the connection's own task), handled as `receive_frame` does.
    pub fn receive_decoded(
        &mut self,
        now: Time,
        peer: PeerId,
        msg: Result<ClientMsg, DecodeError>,
    ) {
        match msg {
            Ok(msg) => {
                self.stats.frames += 1;
                self.handle_message(now, peer, msg);
            }
            Err(e) => {
                self.stats.decode_errors += 1;
                self.engine.reject(peer, None, e.code(), e.to_string());
            }
        }
    }

    /// A decoded message (drivers that hold messages, not bytes: the engine's test harness).
    pub fn handle_message(&mut self, now: Time, peer: PeerId, msg: ClientMsg) {
        if self.load_if_needed(now, &msg, peer) {
            self.engine.handle_message(now, peer, msg);
        }
    }

    /// The peer's connection closed.
    pub fn closed(&mut self, now: Time, peer: PeerId) {
        self.frames.remove(&peer);
        self.engine.handle_disconnect(now, peer);
    }

    /// The timer fired.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
    }

    /// End the batch: commit every persist record it produced in one transaction, then release
    /// what may be sent. `now_ms` is recorded as the update time.
    pub fn commit(mut self, now_ms: u64) -> Result<(Self, Released), CommitFailed<S>> {
        let mut released = Released::default();
        while let Some(out) = self.engine.poll_output() {
            match out {
                ServerOutput::Persist(r) => released.records.push(r),
                ServerOutput::Send { to, msg } => {
                    let line = encode_server(&msg);
                    released.outputs.push(Output::Send { to, msg, line });
                }
                ServerOutput::Disconnect { peer, reason } => {
                    self.frames.remove(&peer);
                    released.outputs.push(Output::Disconnect { peer, reason });
                }
            }
        }
        if !released.records.is_empty() {
            if let Err(error) = self.store.commit(&released.records, now_ms) {
                return Err(CommitFailed {
                    store: self.store,
                    error,
                });
            }
            self.stats.commits += 1;
        }
        Ok((self, released))
    }

    /// Load the document a message opens, if needed. False when it could not be (the peer got
    /// an `error`).
    fn load_if_needed(&mut self, now: Time, msg: &ClientMsg, peer: PeerId) -> bool {
        let Some(doc) = self
            .engine
            .document_needed(now, peer, msg)
            .map(str::to_string)
        else {
            return true;
        };
        let stored = match self.store.load(&doc) {
            Ok(d) => d.unwrap_or_default(),
            Err(e) => {
                self.stats.load_failures += 1;
                self.engine.reject(
                    peer,
                    Some(doc),
                    ErrorCode::Internal,
                    format!("the document could not be loaded: {e}"),
                );
                return false;
            }
        };
        #[cfg(debug_assertions)]
        let text = stored.text.clone();
        if let Err(e) = self.engine.load_document(&doc, stored) {
            let code = match e {
                EngineError::TooManyDocuments(_) => ErrorCode::TooManyDocuments,
                EngineError::DocumentTooLarge { .. } => ErrorCode::DocumentTooLarge,
                _ => ErrorCode::Internal,
            };
            self.engine.reject(peer, Some(doc), code, e.to_string());
            return false;
        }
        // After a (re)load the master is exactly the last committed state (line endings aside:
        // a file written by hand may hold `\r`, which the engine normalises on load).
        #[cfg(debug_assertions)]
        if !text.chunks().any(|c| c.contains('\r')) {
            debug_assert_eq!(self.engine.master(&doc), Some(&text));
        }
        self.stats.loads += 1;
        true
    }
}
