//! Settings, limits, virtual time and coverage counters shared by both state machines.

use crate::dmp::FuzzySettings;
use crate::merge::MergeStrategy;

/// A point in time in milliseconds, from whatever epoch the driver chooses. The engine never
/// reads a clock: every call that needs the time takes one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    /// `self + ms`, saturating.
    pub fn plus_ms(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }

    /// Milliseconds since `earlier` (0 if `earlier` is later).
    pub fn ms_since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Hard limits. Every queue, stack, frame and document has one; exceeding it is a clear error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document, in UTF-8 bytes.
    pub max_document_bytes: usize,
    /// Longest pending edit stack of a client (a server holds at most one unacknowledged edit
    /// per session). A client at the limit stops stacking new edits (the typing stays in its
    /// text, nothing is lost) until acknowledgements arrive.
    pub max_pending_edits: usize,
    /// Most bytes a client holds for its pending edits (a copy of the shadow before each): at
    /// the limit it stops stacking, as at `max_pending_edits`.
    pub max_pending_bytes: usize,
    /// Largest delta text, in bytes. At least [`Limits::worst_delta_bytes`] of the document
    /// limit, so that every change between two documents within the limit can be sent.
    pub max_delta_bytes: usize,
    /// Most edits in one `client_sync`.
    pub max_edits_per_message: usize,
    /// Most documents open in one server engine.
    pub max_documents: usize,
    /// Most sessions (attached or detached) per document.
    pub max_clients_per_document: usize,
    /// Longest document name or client id, in bytes.
    pub max_name_bytes: usize,
    /// Most peers (connections) in one server engine.
    pub max_peers: usize,
    /// Most documents one peer (connection) has open at once; one more is refused with
    /// `too_many_documents`.
    pub max_documents_per_peer: usize,
    /// Most sessions one peer may create (a `connect` that does not resume) per minute of the
    /// server's clock; one more is refused with `too_many_clients`. A new session may evict a
    /// document's longest-idle detached one, so this bounds how fast a peer can evict.
    pub max_new_sessions_per_minute: usize,
    /// Bytes of full text (resets, and the texts of new sessions) one peer may earn per second
    /// of the server's clock, on average, with bursts up to twice `max_document_bytes`. A full
    /// text is always sent when earned; a peer whose allowance it overdrew has its next
    /// `client_sync` and `connect` refused with `slow_down` (as if lost: its client sends them
    /// again) until the allowance is back above zero.
    pub full_text_bytes_per_second: usize,
    /// Most exact master changes a document keeps for exact merging. A session whose link
    /// reaches further back (idle while this many changes happened) merges by diff once
    /// (counted in [`Stats::link_fallbacks`] after a [`Stats::log_overflows`]).
    pub max_log_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Limits that do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// A limit of zero: nothing could ever be stored or sent.
    #[error("limit {0} must be above 0")]
    Zero(&'static str),
    /// Deltas smaller than the worst change between two documents within the limit.
    #[error(
        "max_delta_bytes {delta} is below {needed}, the most a change between two documents of \
         max_document_bytes {document} encodes to: some edits could never be sent"
    )]
    DeltaTooSmall {
        /// The delta limit.
        delta: usize,
        /// What documents of this size may need.
        needed: usize,
        /// The document limit.
        document: usize,
    },
}

/// Bytes of JSON overhead (field names, versions, checksums, names) a frame may carry beyond
/// its texts.
const FRAME_OVERHEAD: usize = 64 << 10;

impl Limits {
    /// The defaults: 4 MiB documents, and deltas and frames sized so that any of them fits.
    pub const DEFAULT: Limits = Limits {
        max_document_bytes: 4 << 20,
        max_pending_edits: 256,
        max_pending_bytes: 64 << 20,
        max_delta_bytes: Limits::worst_delta_bytes(4 << 20),
        max_edits_per_message: 256,
        max_documents: 10_000,
        max_clients_per_document: 2_048,
        max_name_bytes: 256,
        max_peers: 10_000,
        max_documents_per_peer: 64,
        max_new_sessions_per_minute: 120,
        full_text_bytes_per_second: 4 << 20,
        max_log_entries: 4_096,
    };

    /// The longest delta text a change between two texts of at most `document_bytes` UTF-8
    /// bytes can encode to: a base byte costs at most 3 (`=1` or `-1` and a tab, when every
    /// char is its own operation), an inserted byte at most 5 (`%XX` plus the share of its
    /// operation's `+` and tab), so 8 per document byte, plus a little.
    pub const fn worst_delta_bytes(document_bytes: usize) -> usize {
        document_bytes.saturating_mul(8).saturating_add(64)
    }

    /// The longest frame (one JSON line) either side may need: a full text JSON-escaped (at
    /// most 6 bytes a byte, `\u00XX` for control characters) plus a delta JSON-escaped (its
    /// tabs become `\t`: at most a third more), plus fixed overhead. Frame limits below this
    /// make some documents impossible to open or some edits impossible to send.
    pub const fn frame_bytes(&self) -> usize {
        self.max_document_bytes
            .saturating_mul(6)
            .saturating_add(self.max_delta_bytes)
            .saturating_add(self.max_delta_bytes / 3)
            .saturating_add(FRAME_OVERHEAD)
    }

    /// Check that the limits fit together.
    pub fn validate(&self) -> Result<(), LimitsError> {
        for (name, v) in [
            ("max_document_bytes", self.max_document_bytes),
            ("max_pending_edits", self.max_pending_edits),
            ("max_pending_bytes", self.max_pending_bytes),
            ("max_delta_bytes", self.max_delta_bytes),
            ("max_edits_per_message", self.max_edits_per_message),
            ("max_documents", self.max_documents),
            ("max_clients_per_document", self.max_clients_per_document),
            ("max_name_bytes", self.max_name_bytes),
            ("max_peers", self.max_peers),
            ("max_documents_per_peer", self.max_documents_per_peer),
            (
                "max_new_sessions_per_minute",
                self.max_new_sessions_per_minute,
            ),
            (
                "full_text_bytes_per_second",
                self.full_text_bytes_per_second,
            ),
            ("max_log_entries", self.max_log_entries),
        ] {
            if v == 0 {
                return Err(LimitsError::Zero(name));
            }
        }
        let needed = Limits::worst_delta_bytes(self.max_document_bytes);
        if self.max_delta_bytes < needed {
            return Err(LimitsError::DeltaTooSmall {
                delta: self.max_delta_bytes,
                needed,
                document: self.max_document_bytes,
            });
        }
        Ok(())
    }

    /// These limits for documents of at most `bytes`, with the delta limit that goes with it.
    pub const fn with_document_bytes(mut self, bytes: usize) -> Limits {
        self.max_document_bytes = bytes;
        self.max_delta_bytes = Limits::worst_delta_bytes(bytes);
        self
    }
}

/// Engine settings, the same type for client and server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Client sync cycle, in ms (500 by default): the cadence while anything changes.
    pub sync_interval_ms: u64,
    /// Longest client sync cycle while nothing changes (2,000 ms by default): each round trip
    /// that carried nothing either way doubles the cycle up to this; typing, a server edit or
    /// a `changed` hint brings it back to `sync_interval_ms`. Equal to it: no back-off.
    pub max_idle_sync_ms: u64,
    /// A client asks the server for `changed` hints (true by default).
    pub hints: bool,
    /// A client resends its request when no reply came within this many ms.
    pub retransmit_ms: u64,
    /// Send a ping after this many ms of silence from a peer (30 s by default).
    pub heartbeat_ms: u64,
    /// A peer silent for this many heartbeats is dropped (3 by default).
    pub silent_heartbeats: u32,
    /// Merge strategy (per document on the server: see `ServerEngine::set_merge`).
    pub merge: MergeStrategy,
    /// Fuzzy patch settings.
    pub fuzzy: FuzzySettings,
    /// Limits.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sync_interval_ms: 500,
            max_idle_sync_ms: 2_000,
            hints: true,
            retransmit_ms: 2_000,
            heartbeat_ms: 30_000,
            silent_heartbeats: 3,
            merge: MergeStrategy::ThreeWay,
            fuzzy: FuzzySettings::default(),
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// How long a silent peer is kept.
    pub fn silent_timeout_ms(&self) -> u64 {
        self.heartbeat_ms
            .saturating_mul(self.silent_heartbeats as u64)
    }
}

/// Coverage counters: how often each recovery path ran. The simulator prints them and a swarm
/// sweep in which one stays at zero is too gentle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Client edits strictly applied (server) or server edits applied (client).
    pub edits_applied: u64,
    /// Server restored a backup shadow (a reply was lost).
    pub rollbacks: u64,
    /// Edits a client sent again because no reply came in time or they were still pending.
    pub retransmits: u64,
    /// Edits skipped as duplicates (version below the shadow's).
    pub duplicates_skipped: u64,
    /// Messages ignored as stale (an old `seq`).
    pub stale_skipped: u64,
    /// Full-text resets (server sent, or client performed).
    pub resets: u64,
    /// Patches the fuzzy merge could not place.
    pub patches_dropped: u64,
    /// Sessions resumed after a reconnect.
    pub resumes: u64,
    /// Messages whose edit failed its checksum or strict apply once, ignored as damaged.
    pub corrupt_ignored: u64,
    /// Server: a session's exact change to the master was unknown (its link lost, or reaching
    /// past the log) and a diff stood in. Legitimate only after a log overflow.
    pub link_fallbacks: u64,
    /// Change-log entries dropped while a session still needed them (the log was at
    /// `max_log_entries`).
    pub log_overflows: u64,
    /// An exact merge or composition failed and texts were merged instead: a bookkeeping bug,
    /// never legitimate (the simulator fails a run where it happens).
    pub merge_fallbacks: u64,
    /// Client: a reset whose base the client did not hold, merged by diff.
    pub inexact_resets: u64,
    /// Server: connects refused because they did not hold the key of the session their client
    /// id names (`session_taken`). Client: sessions started again under a new id after one.
    pub sessions_refused: u64,
    /// Server: requests refused with `slow_down` (their peer earned full texts faster than its
    /// allowance).
    pub slowed_down: u64,
    /// Server: `changed` hints sent. Client: hints received.
    pub hints: u64,
    /// Client: sync cycles started because a hint said the document changed.
    pub hinted_syncs: u64,
    /// Server: connects refused for want of a valid token (`unauthorized`).
    pub unauthorized: u64,
    /// Server: requests with edits refused because the token grants only reading.
    pub read_only_refused: u64,
}

impl Stats {
    /// Field-wise sum.
    pub fn add(&mut self, o: &Stats) {
        self.edits_applied += o.edits_applied;
        self.rollbacks += o.rollbacks;
        self.retransmits += o.retransmits;
        self.duplicates_skipped += o.duplicates_skipped;
        self.stale_skipped += o.stale_skipped;
        self.resets += o.resets;
        self.patches_dropped += o.patches_dropped;
        self.resumes += o.resumes;
        self.corrupt_ignored += o.corrupt_ignored;
        self.link_fallbacks += o.link_fallbacks;
        self.log_overflows += o.log_overflows;
        self.merge_fallbacks += o.merge_fallbacks;
        self.inexact_resets += o.inexact_resets;
        self.sessions_refused += o.sessions_refused;
        self.slowed_down += o.slowed_down;
        self.hints += o.hints;
        self.hinted_syncs += o.hinted_syncs;
        self.unauthorized += o.unauthorized;
        self.read_only_refused += o.read_only_refused;
    }
}
