//! The client state machine: one document, one server.
//!
//! Drive it like every sans-IO machine here: call one `handle_*` (or an edit method), then
//! drain [`ClientEngine::poll_output`] until `None`, then arm a timer for
//! [`ClientEngine::poll_timeout`] and call [`ClientEngine::handle_timeout`] when it fires.
//!
//! Invariants ("pitfall N" is numbered in `docs/protocol.md`, section *Pitfalls*):
//! - At most one `client_sync` is in flight; a reply whose `seq` is not the one in flight is
//!   stale and ignored (pitfall 9), and a request with no reply is resent after
//!   `retransmit_ms` under a new `seq`.
//! - `shadow.text` is exactly the string that was diffed (pitfall 9).
//! - Local typing is never dropped: a full-text reset re-merges it onto the new text, and a
//!   full pending stack only delays stacking (the typing stays in `text`).

use std::collections::VecDeque;

use crate::checksum::Checksum;
use crate::config::{Config, Stats, Time};
use crate::delta::{Delta, DeltaError};
use crate::dmp::FuzzySettings;
use crate::merge::{merge, merge_ops, three_way, three_way_with, MergeStrategy, OpMerge, SameGap};
use crate::msg::{
    ClientMsg, Edit, ErrorCode, ResetBase, Resume, ServerMsg, SessionKey, PROTOCOL_VERSION,
};
use crate::op::{OpError, Operation};
use crate::rope::Rope;
use crate::text::normalize_newlines;
use crate::EngineError;

mod check;
mod editing;
mod pacing;
mod presence;
mod recovery;

use recovery::merge_server_change;

/// A shadow: the last text both sides agree on, with its versions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shadow {
    /// The text.
    pub text: Rope,
    /// n: count of client edits folded in.
    pub client_version: u64,
    /// m: count of server edits folded in.
    pub server_version: u64,
}

/// What a client engine asks its driver to do or tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    /// Send this message to the server.
    Send(ClientMsg),
    /// Something happened that a user interface may show.
    Event(ClientEvent),
}

/// Notable client happenings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The document is open; `resumed` tells whether the old session continued.
    Connected {
        /// True when the server resumed the previous session.
        resumed: bool,
    },
    /// Remote changes were merged into the text.
    RemoteChange,
    /// The shadow was replaced by the server's text; local typing was merged onto it.
    Reset,
    /// No message from the server for `heartbeat_ms × silent_heartbeats`: the engine is now
    /// disconnected and the driver should reconnect, then call [`ClientEngine::connect`].
    ServerSilent,
    /// The server refused something.
    ServerError {
        /// The code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The other clients' cursors changed ([`ClientEngine::others`]).
    Presence,
    /// Local typing that can never be accepted was dropped, and the text is the server's again:
    /// it would make the document larger than the limit (`document_too_large`). Without this,
    /// the client would resend it after every reset, forever, and nothing typed afterwards
    /// would reach anyone.
    LocalChangeDropped {
        /// Why.
        reason: ErrorCode,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Disconnected,
    Connecting { seq: u64, sent_at: Time },
    Connected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    seq: u64,
    sent_at: Time,
    /// The request carried edits (a reply to it is not an idle round trip).
    carried: bool,
}

/// An edit the server has not acknowledged: a delta (clients never send full texts), and the
/// shadow it was made from (what it changed; the base for re-merging after a reset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEdit {
    version: u64,
    delta: Delta,
    checksum: Checksum,
    before: Rope,
}

impl PendingEdit {
    /// The client version this edit was made at.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The edit as sent.
    pub fn to_edit(&self) -> Edit {
        Edit::Delta {
            version: self.version,
            delta: self.delta.clone(),
            checksum: self.checksum,
        }
    }
}

/// `base` with a `~n` suffix, kept within 200 bytes (names may have 256).
fn renamed(base: &str, n: u32) -> String {
    format!("{}~{n}", crate::text::prefix_within(base, 200))
}

/// Client side of Differential Synchronization for one document.
#[derive(Debug, Clone)]
pub struct ClientEngine {
    config: Config,
    client_id: String,
    doc: String,
    text: Rope,
    shadow: Shadow,
    /// Unacknowledged edits, oldest first, each with the shadow it was made from.
    pending: Vec<PendingEdit>,
    /// How many of `pending` have been sent at least once (the rest are new this cycle).
    pending_sent: usize,
    /// The exact change from `shadow.text` to `text`: the user's edits since the last cycle,
    /// kept as an operation so the delta sent is what the user did, not a diff's guess.
    local: Operation,
    /// The text as the server is known to hold it: the shadow minus the unacknowledged edits.
    /// `None` while it is simply the text before the oldest pending edit (its `before`), or the
    /// shadow when nothing is pending. The base for re-merging local typing after a reset.
    confirmed: Option<Rope>,
    has_session: bool,
    /// The key of our session, from the `connect_ok` that opened it: a resume presents it.
    session_key: Option<SessionKey>,
    /// Times the server said our id belongs to a session we do not hold (`session_taken`):
    /// each time the client starts afresh as `{base id}~{n}`.
    renames: u32,
    base_id: String,
    /// The server refused our edits for good (`document_too_large`): the reset it sends with
    /// the refusal replaces our unacknowledged typing instead of having it merged again.
    refused: Option<ErrorCode>,
    /// Sent in every `connect` (access control: docs/protocol.md, *Access control*).
    token: Option<String>,
    /// The server said our token grants only reading: local edits are refused.
    read_only: bool,
    /// Consecutive server replies whose edit failed its strict apply or checksum: the first
    /// [`DAMAGED_MAX`] are taken for damage in transit (ignored; the next cycle asks again),
    /// one more for a reason to reconnect (resync).
    bad_streak: u32,
    /// A resync resumed the session and no server edit has applied since: the next resync
    /// takes the shadows for diverged and asks for the text afresh.
    resynced: bool,
    conn: Conn,
    in_flight: Option<InFlight>,
    last_seq: u64,
    next_sync_at: Time,
    /// When the last cycle started: typing is sent one `sync_interval_ms` after it, however
    /// long the idle cycle has grown.
    last_cycle_at: Time,
    /// The current cycle length: `sync_interval_ms`, doubled by each idle round trip up to
    /// `max_idle_sync_ms`.
    cycle_ms: u64,
    /// A `changed` hint arrived while a request was in flight: sync again soon after it.
    hinted: bool,
    /// Our cursor and the others' (`presence.rs`).
    presence: presence::Presence,
    last_heard: Time,
    outputs: VecDeque<ClientOutput>,
    stats: Stats,
}

impl ClientEngine {
    /// A disconnected client for `doc`, identified as `client_id` (unique per run of the
    /// client: sessions are resumed by it).
    pub fn new(config: Config, client_id: impl Into<String>, doc: impl Into<String>) -> Self {
        let client_id = client_id.into();
        ClientEngine {
            config,
            base_id: client_id.clone(),
            client_id,
            session_key: None,
            renames: 0,
            doc: doc.into(),
            text: Rope::new(),
            shadow: Shadow::default(),
            pending: Vec::new(),
            pending_sent: 0,
            local: Operation::new(),
            confirmed: None,
            has_session: false,
            refused: None,
            token: None,
            read_only: false,
            bad_streak: 0,
            resynced: false,
            conn: Conn::Disconnected,
            in_flight: None,
            last_seq: 0,
            next_sync_at: Time(0),
            last_cycle_at: Time(0),
            cycle_ms: config.sync_interval_ms,
            hinted: false,
            presence: presence::Presence::default(),
            last_heard: Time(0),
            outputs: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The user's text.
    pub fn text(&self) -> &Rope {
        &self.text
    }

    /// The shadow and its versions.
    pub fn shadow(&self) -> &Shadow {
        &self.shadow
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Unacknowledged edits.
    pub fn pending(&self) -> &[PendingEdit] {
        &self.pending
    }

    /// Coverage counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True once a `connect_ok` arrived and until the connection is lost.
    pub fn is_connected(&self) -> bool {
        self.conn == Conn::Connected
    }

    /// True when connected with nothing in flight, nothing pending and no unsent typing.
    pub fn is_settled(&self) -> bool {
        self.is_connected()
            && self.in_flight.is_none()
            && self.pending.is_empty()
            && !self.has_unsent()
    }

    /// The text differs from the shadow: there is typing not yet stacked as an edit. Read off
    /// `local` (the exact change from the shadow to the text) over the span it changes, not by
    /// comparing the whole texts.
    fn has_unsent(&self) -> bool {
        !self.local.leaves_unchanged(&self.shadow.text)
    }

    fn next_seq(&mut self) -> u64 {
        self.last_seq += 1;
        self.last_seq
    }

    fn send(&mut self, msg: ClientMsg) {
        self.outputs.push_back(ClientOutput::Send(msg));
    }

    /// Open (or reopen) the document: sends `connect`, resuming the old session if there is
    /// one. Call after a (re)connection of the transport.
    pub fn connect(&mut self, now: Time) {
        self.send_connect(now, self.resume());
        self.assert_invariants();
    }

    /// What a `connect` sends to resume our session, if we have one.
    fn resume(&self) -> Option<Resume> {
        let key = self.session_key.filter(|_| self.has_session)?;
        Some(Resume {
            client_version: self.shadow.client_version,
            server_version: self.shadow.server_version,
            key: Some(key),
        })
    }

    fn send_connect(&mut self, now: Time, resume: Option<Resume>) {
        let seq = self.next_seq();
        self.conn = Conn::Connecting { seq, sent_at: now };
        self.cycle_ms = self.config.sync_interval_ms;
        self.hinted = false;
        self.in_flight = None;
        self.last_heard = now;
        self.send(ClientMsg::Connect {
            protocol: PROTOCOL_VERSION,
            doc: self.doc.clone(),
            client_id: self.client_id.clone(),
            token: self.token.clone(),
            seq,
            resume,
            hints: self.config.hints,
        });
    }

    /// The transport was lost: nothing is in flight any more. Unacknowledged edits stay.
    pub fn disconnected(&mut self) {
        self.conn = Conn::Disconnected;
        self.in_flight = None;
        self.presence_lost();
    }

    /// Start a sync cycle now if connected and nothing is in flight (otherwise the edit goes
    /// with the next cycle).
    pub fn sync_now(&mut self, now: Time) {
        if self.conn == Conn::Connected && self.in_flight.is_none() {
            self.cycle(now);
        }
        self.assert_invariants();
    }

    /// One cycle: stack the local change (if any) and send the pending stack.
    fn cycle(&mut self, now: Time) {
        if self.text.len() > self.config.limits.max_document_bytes {
            // Merged remote changes left no room for our typing: the server would
            // refuse it (document_too_large) however often it came. Drop it, say so.
            self.text.clone_from(&self.shadow.text);
            self.local = Operation::identity(self.text.len());
            self.outputs
                .push_back(ClientOutput::Event(ClientEvent::LocalChangeDropped {
                    reason: ErrorCode::DocumentTooLarge,
                }));
        }
        let resent = self.pending_sent.min(self.pending.len());
        self.stats.retransmits += resent as u64;
        let held: usize = self.pending.iter().map(|p| p.before.len()).sum();
        let room = self.pending.len() < self.config.limits.max_pending_edits
            && held + self.shadow.text.len() <= self.config.limits.max_pending_bytes;
        if self.has_unsent() && room {
            let delta = Delta::from_operation(&self.local, &self.shadow.text);
            self.local = Operation::identity(self.text.len());
            // The old shadow moves into the pending edit; the new one is the text (a rope's
            // clone: the two share every chunk until one changes).
            let before = std::mem::replace(&mut self.shadow.text, self.text.clone());
            self.pending.push(PendingEdit {
                version: self.shadow.client_version,
                delta,
                checksum: Checksum::of(&self.text),
                before,
            });
            self.shadow.client_version += 1;
        }
        let seq = self.next_seq();
        let carried = !self.pending.is_empty();
        if carried {
            self.cycle_ms = self.config.sync_interval_ms;
        }
        self.in_flight = Some(InFlight {
            seq,
            sent_at: now,
            carried,
        });
        self.last_cycle_at = now;
        self.next_sync_at = now.plus_ms(self.cycle_ms);
        self.pending_sent = self.pending.len();
        self.send(ClientMsg::ClientSync {
            doc: self.doc.clone(),
            seq,
            server_version: self.shadow.server_version,
            edits: self.pending.iter().map(PendingEdit::to_edit).collect(),
        });
    }

    /// Feed a message from the server.
    pub fn handle_message(&mut self, now: Time, msg: ServerMsg) {
        self.on_message(now, msg);
        self.assert_invariants();
    }

    fn on_message(&mut self, now: Time, msg: ServerMsg) {
        self.last_heard = now;
        match msg {
            ServerMsg::ConnectOk {
                doc,
                seq,
                resumed,
                text,
                client_version,
                server_version,
                session_key,
                read_only,
            } => {
                let awaited = matches!(self.conn, Conn::Connecting { seq: s, .. } if s == seq);
                if doc != self.doc || !awaited {
                    self.stats.stale_skipped += 1;
                    return;
                }
                self.read_only = read_only;
                let resumed = resumed && self.has_session;
                if read_only && resumed && (!self.pending.is_empty() || self.has_unsent()) {
                    // Our edits can never be taken (the token changed to read-only): start a
                    // new session, which drops them (below) and says so.
                    self.start_afresh(now);
                    return;
                }
                if read_only && !resumed {
                    let base = self
                        .confirmed_text()
                        .unwrap_or_else(|| self.shadow.text.clone());
                    if self.text != base || !self.pending.is_empty() {
                        let message = format!(
                            "this client may only read {:?}: its unsent edits were dropped",
                            self.doc
                        );
                        self.outputs
                            .push_back(ClientOutput::Event(ClientEvent::ServerError {
                                code: ErrorCode::ReadOnly,
                                message,
                            }));
                    }
                    self.text = base;
                }
                if resumed {
                    self.stats.resumes += 1;
                } else {
                    self.session_key = session_key;
                    self.reset_to(Rope::from(text), client_version, server_version, None);
                }
                self.has_session = true;
                self.conn = Conn::Connected;
                self.outputs
                    .push_back(ClientOutput::Event(ClientEvent::Connected { resumed }));
                self.send_presence();
                self.cycle(now);
            }
            ServerMsg::ServerSync {
                doc,
                seq,
                client_version,
                edits,
            } => {
                let current = self.in_flight.map(|f| f.seq);
                if doc != self.doc || self.conn != Conn::Connected || current != Some(seq) {
                    self.stats.stale_skipped += 1;
                    return;
                }
                let idle = self.in_flight.take().is_some_and(|f| !f.carried) && edits.is_empty();
                self.apply_server_sync(now, client_version, edits);
                self.pace(idle);
                // Unless that reply made us reconnect (too many damaged replies: resync), in which
                // case the next cycle waits for `connect_ok` (found by the swarm's self-check).
                if self.conn == Conn::Connected && self.has_unsent() && now >= self.sync_due() {
                    self.cycle(now);
                }
            }
            ServerMsg::Changed { doc } => self.on_hint(now, &doc),
            ServerMsg::Presence { doc, peers } => self.on_presence(&doc, peers),
            ServerMsg::Ping => self.send(ClientMsg::Pong),
            ServerMsg::Pong => {}
            ServerMsg::Error {
                code, message, seq, ..
            } => {
                self.outputs
                    .push_back(ClientOutput::Event(ClientEvent::ServerError {
                        code,
                        message,
                    }));
                if code == ErrorCode::DocumentTooLarge {
                    self.refused = Some(code);
                }
                let ours = matches!(self.conn, Conn::Connecting { seq: s, .. } if seq.is_none_or(|r| r == s));
                if code == ErrorCode::Unauthorized && ours {
                    // No valid token for this document: asking again cannot help. Stop (no
                    // timer) until the transport is opened again; the event tells the user.
                    self.disconnected();
                }
                if code == ErrorCode::UnknownSession && self.conn == Conn::Connected {
                    // The server forgot us (restart, eviction): reopen, resuming if it can.
                    self.connect(now);
                }
                // A refusal names its request when the server says which: a delayed refusal of
                // an older connect must not make us give up the session we are resuming (swarm
                // seed 308848: sim/open-failures/README.md).
                let ours = matches!(self.conn, Conn::Connecting { seq: s, .. } if seq.is_none_or(|r| r == s));
                if code == ErrorCode::SessionTaken && ours {
                    // Our id names a session we cannot prove is ours (someone else's, or one
                    // whose key we never got): start afresh under a new id. Unacknowledged
                    // typing is kept and merged into the text the new session starts from.
                    self.stats.sessions_refused += 1;
                    self.start_afresh(now);
                }
            }
        }
    }

    /// Open a new session under a new id (`{base id}~{n}`).
    fn start_afresh(&mut self, now: Time) {
        self.renames += 1;
        self.client_id = renamed(&self.base_id, self.renames);
        self.has_session = false;
        self.session_key = None;
        self.send_connect(now, None);
    }

    fn apply_server_sync(&mut self, now: Time, client_version: u64, edits: Vec<Edit>) {
        // A full-text edit is a reset with explicit versions (pitfall 7).
        if let Some(Edit::Full {
            version,
            text,
            checksum,
            base,
        }) = edits
            .iter()
            .find(|e| matches!(e, Edit::Full { .. }))
            .cloned()
        {
            if Checksum::of(&text) != checksum {
                return self.damaged(now);
            }
            self.bad_streak = 0;
            self.resynced = false;
            self.acknowledge(client_version);
            let text = Rope::from(text);
            if let Some(reason) = self.refused.take() {
                // What we had not got acknowledged can never be: take the server's text.
                self.stats.resets += 1;
                self.outputs
                    .push_back(ClientOutput::Event(ClientEvent::Reset));
                self.outputs
                    .push_back(ClientOutput::Event(ClientEvent::LocalChangeDropped {
                        reason,
                    }));
                self.text = text.clone();
                self.local = Operation::identity(text.len());
                self.adopt_shadow(text, client_version, version);
                return;
            }
            if !self.reset_exact(&text, client_version, version, base.as_ref()) {
                self.stats.inexact_resets += 1;
                self.reset_to(text, client_version, version, Some(client_version));
            }
            return;
        }
        self.acknowledge(client_version);
        // The shadow before the first server edit of this reply, kept only if one applies.
        let mut base: Option<Rope> = None;
        let mut theirs: Option<Operation> = None;
        let mut diverged = false;
        for edit in edits {
            let Edit::Delta {
                version,
                delta,
                checksum,
            } = edit
            else {
                continue;
            };
            if version < self.shadow.server_version {
                self.stats.duplicates_skipped += 1;
                continue;
            }
            if version > self.shadow.server_version {
                diverged = true;
                break;
            }
            let applied = delta
                .to_operation(&self.shadow.text)
                .ok()
                .and_then(|op| op.apply_to(&self.shadow.text).ok().map(|new| (op, new)));
            match applied {
                Some((op, new)) if Checksum::of(&new) == checksum => {
                    let old = std::mem::replace(&mut self.shadow.text, new);
                    let b = base.get_or_insert(old);
                    theirs = Some(match theirs.take() {
                        None => op,
                        Some(t) => t.compose(&op).unwrap_or_else(|_| {
                            self.stats.merge_fallbacks += 1;
                            Operation::from_diff(&b.flat(), &self.shadow.text.flat())
                        }),
                    });
                    self.shadow.server_version += 1;
                    self.stats.edits_applied += 1;
                }
                _ => {
                    diverged = true;
                    break;
                }
            }
        }
        let (Some(base), Some(theirs)) = (base, theirs) else {
            if diverged {
                self.damaged(now);
            } else {
                self.bad_streak = 0;
            }
            return;
        };
        // A server edit applied: the shadows agree.
        self.resynced = false;
        if !theirs.is_noop() {
            if let Some(conf) = self.confirmed_text() {
                let (b, s, c) = (base.flat(), self.shadow.text.flat(), conf.flat());
                self.confirmed = Some(Rope::from(three_way(&b, &s, &c)));
            }
            // The server's change goes into the text past the user's edits since the shadow.
            let merged = merge_server_change(
                self.config.merge,
                &self.config.fuzzy,
                &base,
                &theirs,
                &self.shadow.text,
                &self.local,
                &self.text,
            );
            match merged {
                Ok(m) => {
                    self.text = m.text;
                    self.local = m.ours_after;
                }
                Err(e) => {
                    // Bookkeeping broke (a bug): fall back to texts, which are always right.
                    tracing::error!(error = %e, "client merge of exact changes failed");
                    self.stats.merge_fallbacks += 1;
                    let shadow = self.shadow.text.flat();
                    let out = merge(
                        self.config.merge,
                        &self.config.fuzzy,
                        &base.flat(),
                        &shadow,
                        &self.text.flat(),
                    );
                    self.local = Operation::from_diff(&shadow, &out.text);
                    self.text = Rope::from(out.text);
                }
            }
            self.outputs
                .push_back(ClientOutput::Event(ClientEvent::RemoteChange));
        }
        if diverged {
            self.damaged(now);
        } else {
            self.bad_streak = 0;
        }
    }

    /// Time has passed: resend, sync or give up on a silent server as due.
    pub fn handle_timeout(&mut self, now: Time) {
        self.on_timeout(now);
        self.assert_invariants();
    }

    fn on_timeout(&mut self, now: Time) {
        match self.conn {
            Conn::Disconnected => {}
            Conn::Connecting { sent_at, .. } => {
                if now >= sent_at.plus_ms(self.config.retransmit_ms) {
                    self.connect(now);
                }
            }
            Conn::Connected => {
                if now >= self.last_heard.plus_ms(self.config.silent_timeout_ms()) {
                    self.disconnected();
                    self.outputs
                        .push_back(ClientOutput::Event(ClientEvent::ServerSilent));
                    return;
                }
                match self.in_flight {
                    Some(f) if now >= f.sent_at.plus_ms(self.config.retransmit_ms) => {
                        self.cycle(now)
                    }
                    Some(_) => {}
                    None if now >= self.sync_due() => self.cycle(now),
                    None => {}
                }
            }
        }
    }

    /// The next output for the driver, if any.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    /// When [`ClientEngine::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.conn {
            Conn::Disconnected => None,
            Conn::Connecting { sent_at, .. } => Some(sent_at.plus_ms(self.config.retransmit_ms)),
            Conn::Connected => {
                let silent = self.last_heard.plus_ms(self.config.silent_timeout_ms());
                let next = match self.in_flight {
                    Some(f) => f.sent_at.plus_ms(self.config.retransmit_ms),
                    None => self.sync_due(),
                };
                Some(next.min(silent))
            }
        }
    }
}

/// Damaged server replies in a row that are ignored before the client resyncs.
pub const DAMAGED_MAX: u32 = 4;

/// Byte offset of char index `at` in `s`.
fn char_to_byte(s: &Rope, at: usize) -> Result<usize, EngineError> {
    s.char_to_byte(at).ok_or(EngineError::BadPosition {
        at,
        len: s.len_chars(),
    })
}
