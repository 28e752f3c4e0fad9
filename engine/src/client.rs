//! The client state machine: one document, one server.
//!
//! Drive it like every sans-IO machine here: call one `handle_*` (or an edit method), then
//! drain [`ClientEngine::poll_output`] until `None`, then arm a timer for
//! [`ClientEngine::poll_timeout`] and call [`ClientEngine::handle_timeout`] when it fires.
//!
//! Invariants:
//! - At most one `client_sync` is in flight; a reply whose `seq` is not the one in flight is
//!   stale and ignored (pitfall 9), and a request with no reply is resent after
//!   `retransmit_ms` under a new `seq`.
//! - `shadow.text` is exactly the string that was diffed (pitfall 9).
//! - Local typing is never dropped: a full-text reset re-merges it onto the new text, and a
//!   full pending stack only delays stacking (the typing stays in `text`).

use std::collections::VecDeque;

use crate::config::{Config, Stats, Time};
use crate::delta::{normalize_newlines, Checksum, Delta};
use crate::merge::{merge, three_way_with, MergeStrategy, SameGap};
use crate::msg::{ClientMsg, Edit, ErrorCode, Resume, ServerMsg, PROTOCOL_VERSION};
use crate::EngineError;

/// A shadow: the last text both sides agree on, with its versions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shadow {
    /// The text.
    pub text: String,
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
}

/// Client side of Differential Synchronization for one document.
#[derive(Debug, Clone)]
pub struct ClientEngine {
    config: Config,
    client_id: String,
    doc: String,
    text: String,
    shadow: Shadow,
    pending: Vec<Edit>,
    /// How many of `pending` have been sent at least once (the rest are new this cycle).
    pending_sent: usize,
    /// The shadow text before the oldest pending edit: the base for re-merging local typing
    /// after a reset.
    pending_base: Option<String>,
    has_session: bool,
    conn: Conn,
    in_flight: Option<InFlight>,
    last_seq: u64,
    next_sync_at: Time,
    last_heard: Time,
    outputs: VecDeque<ClientOutput>,
    stats: Stats,
}

impl ClientEngine {
    /// A disconnected client for `doc`, identified as `client_id` (unique per run of the
    /// client: sessions are resumed by it).
    pub fn new(config: Config, client_id: impl Into<String>, doc: impl Into<String>) -> Self {
        ClientEngine {
            config,
            client_id: client_id.into(),
            doc: doc.into(),
            text: String::new(),
            shadow: Shadow::default(),
            pending: Vec::new(),
            pending_sent: 0,
            pending_base: None,
            has_session: false,
            conn: Conn::Disconnected,
            in_flight: None,
            last_seq: 0,
            next_sync_at: Time(0),
            last_heard: Time(0),
            outputs: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The user's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The shadow and its versions.
    pub fn shadow(&self) -> &Shadow {
        &self.shadow
    }

    /// The document name.
    pub fn doc(&self) -> &str {
        &self.doc
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Unacknowledged edits.
    pub fn pending(&self) -> &[Edit] {
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
            && self.text == self.shadow.text
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
        let resume = self.has_session.then_some(Resume {
            client_version: self.shadow.client_version,
            server_version: self.shadow.server_version,
        });
        self.send_connect(now, resume);
    }

    fn send_connect(&mut self, now: Time, resume: Option<Resume>) {
        let seq = self.next_seq();
        self.conn = Conn::Connecting { seq, sent_at: now };
        self.in_flight = None;
        self.last_heard = now;
        self.send(ClientMsg::Connect {
            protocol: PROTOCOL_VERSION,
            doc: self.doc.clone(),
            client_id: self.client_id.clone(),
            token: None,
            seq,
            resume,
        });
    }

    /// The transport was lost: nothing is in flight any more. Unacknowledged edits stay.
    pub fn disconnected(&mut self) {
        self.conn = Conn::Disconnected;
        self.in_flight = None;
    }

    /// Replace the user's text (line endings are normalised to `\n`).
    pub fn set_text(&mut self, text: &str) -> Result<(), EngineError> {
        let text = normalize_newlines(text);
        if text.len() > self.config.limits.max_document_bytes {
            return Err(EngineError::DocumentTooLarge {
                len: text.len(),
                max: self.config.limits.max_document_bytes,
            });
        }
        self.text = text.into_owned();
        Ok(())
    }

    /// Insert `s` before char index `at`.
    pub fn insert(&mut self, at: usize, s: &str) -> Result<(), EngineError> {
        let byte = char_to_byte(&self.text, at)?;
        let s = normalize_newlines(s);
        if self.text.len() + s.len() > self.config.limits.max_document_bytes {
            return Err(EngineError::DocumentTooLarge {
                len: self.text.len() + s.len(),
                max: self.config.limits.max_document_bytes,
            });
        }
        self.text.insert_str(byte, &s);
        Ok(())
    }

    /// Delete the chars `start..end`.
    pub fn delete(&mut self, start: usize, end: usize) -> Result<(), EngineError> {
        if start > end {
            return Err(EngineError::BadRange { start, end });
        }
        let a = char_to_byte(&self.text, start)?;
        let b = char_to_byte(&self.text, end)?;
        self.text.replace_range(a..b, "");
        Ok(())
    }

    /// Start a sync cycle now if connected and nothing is in flight (otherwise the edit goes
    /// with the next cycle).
    pub fn sync_now(&mut self, now: Time) {
        if self.conn == Conn::Connected && self.in_flight.is_none() {
            self.cycle(now);
        }
    }

    /// One cycle: stack the local change (if any) and send the pending stack.
    fn cycle(&mut self, now: Time) {
        let resent = self.pending_sent.min(self.pending.len());
        self.stats.retransmits += resent as u64;
        if self.text != self.shadow.text
            && self.pending.len() < self.config.limits.max_pending_edits
        {
            if self.pending.is_empty() {
                self.pending_base = Some(self.shadow.text.clone());
            }
            let delta = Delta::diff(&self.shadow.text, &self.text);
            self.pending.push(Edit::Delta {
                version: self.shadow.client_version,
                delta,
                checksum: Checksum::of(&self.text),
            });
            self.shadow.text.clone_from(&self.text);
            self.shadow.client_version += 1;
        }
        let seq = self.next_seq();
        self.in_flight = Some(InFlight { seq, sent_at: now });
        self.next_sync_at = now.plus_ms(self.config.sync_interval_ms);
        self.pending_sent = self.pending.len();
        self.send(ClientMsg::ClientSync {
            doc: self.doc.clone(),
            seq,
            server_version: self.shadow.server_version,
            edits: self.pending.clone(),
        });
    }

    /// Feed a message from the server.
    pub fn handle_message(&mut self, now: Time, msg: ServerMsg) {
        self.last_heard = now;
        match msg {
            ServerMsg::ConnectOk {
                doc,
                seq,
                resumed,
                text,
                client_version,
                server_version,
            } => {
                let awaited = matches!(self.conn, Conn::Connecting { seq: s, .. } if s == seq);
                if doc != self.doc || !awaited {
                    self.stats.stale_skipped += 1;
                    return;
                }
                let resumed = resumed && self.has_session;
                if resumed {
                    self.stats.resumes += 1;
                } else {
                    self.reset_to(text, client_version, server_version, None);
                }
                self.has_session = true;
                self.conn = Conn::Connected;
                self.outputs
                    .push_back(ClientOutput::Event(ClientEvent::Connected { resumed }));
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
                self.in_flight = None;
                self.apply_server_sync(now, client_version, edits);
                if self.text != self.shadow.text && now >= self.next_sync_at {
                    self.cycle(now);
                }
            }
            ServerMsg::Ping => self.send(ClientMsg::Pong),
            ServerMsg::Pong => {}
            ServerMsg::Error { code, message, .. } => {
                self.outputs
                    .push_back(ClientOutput::Event(ClientEvent::ServerError {
                        code,
                        message,
                    }));
                if code == ErrorCode::UnknownSession && self.conn == Conn::Connected {
                    // The server forgot us (restart, eviction): reopen, resuming if it can.
                    self.connect(now);
                }
            }
        }
    }

    fn apply_server_sync(&mut self, now: Time, client_version: u64, edits: Vec<Edit>) {
        // A full-text edit is a reset with explicit versions (pitfall 7).
        if let Some(Edit::Full {
            version,
            text,
            checksum,
        }) = edits
            .iter()
            .find(|e| matches!(e, Edit::Full { .. }))
            .cloned()
        {
            if Checksum::of(&text) != checksum {
                return self.resync(now);
            }
            self.reset_to(text, client_version, version, Some(client_version));
            return;
        }
        self.pending.retain(|e| e.version() >= client_version);
        self.pending_sent = self.pending_sent.min(self.pending.len());
        if self.pending.is_empty() {
            self.pending_base = None;
        }
        let mut base: Option<String> = None;
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
                return self.resync(now);
            }
            match delta.apply(&self.shadow.text) {
                Ok(new) if Checksum::of(&new) == checksum => {
                    let old = std::mem::replace(&mut self.shadow.text, new);
                    base.get_or_insert(old);
                    self.shadow.server_version += 1;
                    self.stats.edits_applied += 1;
                }
                _ => return self.resync(now),
            }
        }
        if let Some(base) = base {
            let out = merge(
                self.config.merge,
                &self.config.fuzzy,
                &base,
                &self.shadow.text,
                &self.text,
            );
            self.stats.patches_dropped += out.patches_dropped as u64;
            self.text = out.text;
            self.outputs
                .push_back(ClientOutput::Event(ClientEvent::RemoteChange));
        }
    }

    /// The shadows diverged (a server edit does not fit): ask for the server's text afresh.
    fn resync(&mut self, now: Time) {
        tracing::warn!(doc = %self.doc, client = %self.client_id, "shadow diverged; resetting");
        self.send_connect(now, None);
    }

    /// Adopt the server's `text` at (n, m), re-merging unacknowledged local typing onto it.
    ///
    /// `applied_below` is the server's word on which of our pending edits it holds (those with
    /// a lower version), when it knows (a reset of a live session); `None` after the server
    /// forgot the session.
    fn reset_to(
        &mut self,
        text: String,
        client_version: u64,
        server_version: u64,
        applied_below: Option<u64>,
    ) {
        let first_pending = self.pending.first().map(Edit::version);
        let all_applied = match (applied_below, self.pending.last()) {
            (_, None) => true,
            (Some(n), Some(last)) => n > last.version(),
            (None, Some(_)) => false,
        };
        let none_applied = matches!((applied_below, first_pending), (Some(n), Some(f)) if n <= f);
        // The base is the last text whose changes are all on the server: exact when the server
        // says which edits it holds; otherwise the text before the oldest pending edit, with
        // same-gap collapsing so typing the server already holds is not inserted twice.
        let (base, same_gap) = if all_applied {
            (self.shadow.text.clone(), SameGap::KeepUnlessIdentical)
        } else {
            let b = self
                .pending_base
                .clone()
                .unwrap_or_else(|| self.shadow.text.clone());
            let rule = if none_applied {
                SameGap::KeepUnlessIdentical
            } else {
                SameGap::CollapseContained
            };
            (b, rule)
        };
        let local = std::mem::take(&mut self.text);
        self.text = if local == base {
            text.clone()
        } else if self.config.merge == MergeStrategy::ThreeWay {
            three_way_with(&base, &local, &text, same_gap)
        } else {
            merge(self.config.merge, &self.config.fuzzy, &base, &local, &text).text
        };
        if self.has_session {
            self.stats.resets += 1;
            self.outputs
                .push_back(ClientOutput::Event(ClientEvent::Reset));
        }
        self.shadow = Shadow {
            text,
            client_version,
            server_version,
        };
        self.pending.clear();
        self.pending_base = None;
        self.pending_sent = 0;
        self.in_flight = None;
    }

    /// Time has passed: resend, sync or give up on a silent server as due.
    pub fn handle_timeout(&mut self, now: Time) {
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
                    None if now >= self.next_sync_at => self.cycle(now),
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
                    None => self.next_sync_at,
                };
                Some(next.min(silent))
            }
        }
    }
}

/// Byte offset of char index `at` in `s`.
fn char_to_byte(s: &str, at: usize) -> Result<usize, EngineError> {
    if at == 0 {
        return Ok(0);
    }
    match s.char_indices().nth(at) {
        Some((b, _)) => Ok(b),
        None if s.chars().count() == at => Ok(s.len()),
        None => Err(EngineError::BadPosition {
            at,
            len: s.chars().count(),
        }),
    }
}
