//! [`ClientNode`]: the client engine with framing, reconnect backoff and quiet detection, put
//! together once for the terminal client, the load generator, the simulator, the engine's
//! tests and the benches.
//!
//! Sans-IO like the engine: the driver tells the node what happened to its transport
//! ([`ClientNode::connected`], [`ClientNode::lost`], [`ClientNode::attempt_failed`]) and feeds it
//! bytes; the node says what to write and what happened ([`ClientNode::poll_output`]) and when to
//! wake it ([`ClientNode::poll_timeout`]). Delays are returned, never slept.

use std::collections::VecDeque;

use dsync_engine::{
    ClientEngine, ClientEvent, ClientMsg, ClientOutput, Config, EngineError, ServerMsg, Time,
};
use dsync_net::{datagram_frame, decode_server, encode_client, DecodeError, LineBuffer};

/// First reconnect delay, in ms; doubles after each failure up to [`RECONNECT_MAX_MS`].
pub const RECONNECT_MIN_MS: u64 = 250;
/// Longest reconnect delay, in ms.
pub const RECONNECT_MAX_MS: u64 = 5_000;

/// Client node settings beyond the engine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientNodeConfig {
    /// Largest frame accepted from the server, in bytes.
    pub max_frame_bytes: usize,
    /// First reconnect delay (ms); doubles up to `reconnect_max_ms`, back to this once a
    /// `connect_ok` arrives.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay (ms).
    pub reconnect_max_ms: u64,
}

impl ClientNodeConfig {
    /// Defaults fitting the engine's limits.
    pub fn for_engine(config: &Config) -> Self {
        ClientNodeConfig {
            max_frame_bytes: config.limits.frame_bytes(),
            reconnect_min_ms: RECONNECT_MIN_MS,
            reconnect_max_ms: RECONNECT_MAX_MS,
        }
    }
}

/// A frame to write to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The message, for logs, traces and round-trip timing.
    pub msg: ClientMsg,
    /// The frame: `dsync_net::encode_client(&msg)`, newline included.
    pub line: String,
}

/// What the node asks its driver to do or tells it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientNodeOutput {
    /// Write this frame on the current connection.
    Transmit(Transmit),
    /// The engine's event. On [`ClientEvent::ServerSilent`] the driver closes the connection
    /// and calls [`ClientNode::lost`].
    Event(ClientEvent),
    /// A `server_sync` answering request `seq` arrived (round-trip timing).
    Answered {
        /// The request's sequence number.
        seq: u64,
    },
    /// A frame from the server could not be decoded; it was skipped.
    BadFrame(DecodeError),
}

/// Counters a client node keeps beyond the engine's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientNodeStats {
    /// Frames decoded.
    pub frames: u64,
    /// Frames that did not decode (skipped).
    pub decode_errors: u64,
    /// Connections lost.
    pub lost: u64,
}

/// Doubling delay between connection attempts, reset by a `connect_ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff {
    next_ms: u64,
    min_ms: u64,
    max_ms: u64,
}

impl Backoff {
    fn step(&mut self) -> u64 {
        let d = self.next_ms;
        self.next_ms = (d.saturating_mul(2)).min(self.max_ms);
        d
    }
}

/// A client: engine + framing + reconnect backoff + quiet detection.
#[derive(Debug, Clone)]
pub struct ClientNode {
    engine: ClientEngine,
    frames: LineBuffer,
    cfg: ClientNodeConfig,
    backoff: Backoff,
    /// Empty round trips completed since the last change, local or remote.
    quiet: u32,
    remote_changes: u64,
    out: VecDeque<ClientNodeOutput>,
    stats: ClientNodeStats,
}

impl ClientNode {
    /// A disconnected node for `doc`, identified as `client_id`.
    pub fn new(
        config: Config,
        node: ClientNodeConfig,
        client_id: impl Into<String>,
        doc: impl Into<String>,
    ) -> Self {
        assert!(node.reconnect_min_ms > 0 && node.reconnect_min_ms <= node.reconnect_max_ms);
        ClientNode {
            engine: ClientEngine::new(config, client_id, doc),
            frames: LineBuffer::new(node.max_frame_bytes),
            cfg: node,
            backoff: Backoff {
                next_ms: node.reconnect_min_ms,
                min_ms: node.reconnect_min_ms,
                max_ms: node.reconnect_max_ms,
            },
            quiet: 0,
            remote_changes: 0,
            out: VecDeque::new(),
            stats: ClientNodeStats::default(),
        }
    }

    /// The engine, read-only (text, shadow, stats).
    pub fn engine(&self) -> &ClientEngine {
        &self.engine
    }

    /// The token every `connect` carries (a server with access control requires one).
    pub fn set_token(&mut self, token: Option<String>) {
        self.engine.set_token(token);
    }

    /// The node's own counters.
    pub fn stats(&self) -> ClientNodeStats {
        self.stats
    }

    /// Empty round trips since the last change (local or remote).
    pub fn quiet_polls(&self) -> u32 {
        self.quiet
    }

    /// Remote changes merged so far.
    pub fn remote_changes(&self) -> u64 {
        self.remote_changes
    }

    /// Converged as far as this client can tell: settled, and two empty round trips since the
    /// last change, so whatever the server had has arrived.
    pub fn converged(&self) -> bool {
        self.engine.is_settled() && self.quiet >= 2
    }

    /// A local edit: `f` changes the engine's text (insert, delete, set_text, …).
    pub fn edit<R>(&mut self, f: impl FnOnce(&mut ClientEngine) -> R) -> R {
        let r = f(&mut self.engine);
        self.quiet = 0;
        self.pump();
        r
    }

    /// Insert `s` before char `at`.
    pub fn insert(&mut self, at: usize, s: &str) -> Result<(), EngineError> {
        self.edit(|e| e.insert(at, s))
    }

    /// Delete chars `start..end`.
    pub fn delete(&mut self, start: usize, end: usize) -> Result<(), EngineError> {
        self.edit(|e| e.delete(start, end))
    }

    /// Replace `del` bytes at byte offset `at` with `ins` (editing traces count in bytes).
    pub fn edit_bytes(&mut self, at: usize, del: usize, ins: &str) -> Result<(), EngineError> {
        self.edit(|e| e.edit_bytes(at, del, ins))
    }

    /// Replace the whole text.
    pub fn set_text(&mut self, text: &str) -> Result<(), EngineError> {
        self.edit(|e| e.set_text(text))
    }

    /// Where this client's caret and selection end are (chars) and its name: sent to the
    /// server now if connected and changed, and after every connect (presence).
    pub fn set_presence(&mut self, name: &str, cursor: u64, anchor: u64) {
        self.engine.set_presence(name, cursor, anchor);
        self.pump();
    }

    /// Sync now rather than at the next interval.
    pub fn sync_now(&mut self, now: Time) {
        self.engine.sync_now(now);
        self.pump();
    }

    /// A transport to the server is up (a new connection, or for datagrams a fresh start):
    /// partial frames of an old connection are dropped and the document is (re)opened.
    pub fn connected(&mut self, now: Time) {
        self.frames = LineBuffer::new(self.cfg.max_frame_bytes);
        self.engine.disconnected();
        self.engine.connect(now);
        self.pump();
    }

    /// The connection was lost (or the server went silent): nothing is in flight, unsent edits
    /// stay. Returns the delay before the next attempt (ms).
    pub fn lost(&mut self) -> u64 {
        self.stats.lost += 1;
        self.engine.disconnected();
        self.pump();
        self.backoff.step()
    }

    /// An attempt to connect failed (refused, no route, timed out). Returns the delay before
    /// the next one (ms).
    pub fn attempt_failed(&mut self) -> u64 {
        self.backoff.step()
    }

    /// Bytes read from the current connection.
    pub fn receive_bytes(&mut self, now: Time, bytes: &[u8]) {
        self.frames.push(bytes);
        while let Some(f) = self.frames.next_frame() {
            self.receive_frame(now, f);
        }
    }

    /// One datagram: exactly one frame.
    pub fn receive_datagram(&mut self, now: Time, bytes: &[u8]) {
        let frame = datagram_frame(bytes, self.cfg.max_frame_bytes);
        self.receive_frame(now, frame);
    }

    fn receive_frame(&mut self, now: Time, frame: Result<String, DecodeError>) {
        let max_delta = self.engine.config().limits.max_delta_bytes;
        match frame.and_then(|t| decode_server(&t, max_delta)) {
            Ok(msg) => {
                self.stats.frames += 1;
                self.handle_message(now, msg);
            }
            Err(e) => {
                self.stats.decode_errors += 1;
                self.out.push_back(ClientNodeOutput::BadFrame(e));
            }
        }
    }

    /// A decoded message (drivers that carry messages, not bytes: the engine's test harness).
    pub fn handle_message(&mut self, now: Time, msg: ServerMsg) {
        let answered = match &msg {
            ServerMsg::ServerSync { seq, edits, .. } => Some((*seq, edits.is_empty())),
            _ => None,
        };
        if let Some((seq, _)) = answered {
            self.out.push_back(ClientNodeOutput::Answered { seq });
        }
        self.engine.handle_message(now, msg);
        if answered.is_some_and(|(_, empty)| empty) && self.engine.is_settled() {
            self.quiet = self.quiet.saturating_add(1);
        }
        self.pump();
    }

    /// The timer fired.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        self.pump();
    }

    /// When [`ClientNode::handle_timeout`] wants calling next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.engine.poll_timeout()
    }

    /// The next thing to do or to know.
    pub fn poll_output(&mut self) -> Option<ClientNodeOutput> {
        self.out.pop_front()
    }

    /// Move the engine's outputs to the node's queue, keeping count of what they mean.
    fn pump(&mut self) {
        while let Some(o) = self.engine.poll_output() {
            let o = match o {
                ClientOutput::Send(msg) => {
                    let line = encode_client(&msg);
                    ClientNodeOutput::Transmit(Transmit { msg, line })
                }
                ClientOutput::Event(ev) => {
                    match ev {
                        ClientEvent::RemoteChange => {
                            self.remote_changes += 1;
                            self.quiet = 0;
                        }
                        ClientEvent::Connected { .. } => {
                            self.backoff.next_ms = self.backoff.min_ms;
                        }
                        _ => {}
                    }
                    ClientNodeOutput::Event(ev)
                }
            };
            self.out.push_back(o);
        }
    }
}
