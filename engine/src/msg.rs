//! The protocol's messages as plain Rust data. The wire form (JSON, field names, the delta
//! text) belongs to `dsync-net`; the engine never sees bytes.

use crate::checksum::Checksum;
use crate::delta::Delta;

/// The protocol version this engine speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// One edit: the change from the sender's shadow at `version` to its next shadow, with the
/// checksum of that next shadow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// A delta against the shadow at `version`; the shadow becomes version + 1.
    Delta {
        /// Version of the shadow the delta applies to.
        version: u64,
        /// The change.
        delta: Delta,
        /// CRC-32 of the shadow after applying the delta.
        checksum: Checksum,
    },
    /// A full-text reset: the receiver's shadow becomes `text` and its version for this
    /// direction becomes `version` (sent only by the server; see `docs/protocol.md`).
    Full {
        /// The version the receiver adopts.
        version: u64,
        /// The whole text.
        text: String,
        /// CRC-32 of `text`.
        checksum: Checksum,
        /// Where the server's shadow stood before the reset, when it knows: a client holding
        /// that same text merges its unacknowledged typing exactly instead of by diff.
        base: Option<ResetBase>,
    },
}

/// The server's shadow before a reset, and the exact change from it to the reset's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetBase {
    /// CRC-32 of the server's shadow before the reset.
    pub checksum: Checksum,
    /// The change from that shadow to the reset's text.
    pub delta: Delta,
}

impl Edit {
    /// The edit's version.
    pub fn version(&self) -> u64 {
        match self {
            Edit::Delta { version, .. } | Edit::Full { version, .. } => *version,
        }
    }
}

/// The secret a server issues with a new session (`connect_ok`): 128 bits, on the wire as 32
/// lowercase hex digits. A `connect` that resumes the session, or takes its client id over,
/// must present it, so knowing a client's id gives nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 16]);

impl SessionKey {
    /// 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parse 32 hex digits; anything else is `None`.
    pub fn from_hex(s: &str) -> Option<SessionKey> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut k = [0u8; 16];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(SessionKey(k))
    }

    /// Equal, compared in time that does not depend on where they differ.
    pub fn matches(&self, other: &SessionKey) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for SessionKey {
    // Secrets stay out of logs and traces: only the first 4 digits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey({}…)", &self.to_hex()[..4])
    }
}

/// What a reconnecting client presents to resume its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The client's n.
    pub client_version: u64,
    /// The client's m.
    pub server_version: u64,
    /// The session's key, from the `connect_ok` that opened it (`None`: the peer sent none or
    /// not a well-formed one; the resume is refused).
    pub key: Option<SessionKey>,
}

/// Longest presence name relayed, in bytes: longer names are cut at a char boundary.
pub const MAX_PRESENCE_NAME_BYTES: usize = 64;
/// Most other clients one `presence` message lists.
pub const MAX_PRESENCE_PEERS: usize = 32;

/// Another client's cursor, as the server relays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPresence {
    /// The client's id (its sessions' name on the connection).
    pub id: String,
    /// The subject of its token (empty under open access): who the server let in.
    pub user: String,
    /// The name it gave itself.
    pub name: String,
    /// Its caret, in chars from the start of its text (its text may differ from yours by the
    /// changes still in flight: a position to show, not to edit at).
    pub cursor: u64,
    /// Its selection's other end.
    pub anchor: u64,
}

/// Messages from a client to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMsg {
    /// Open a document.
    Connect {
        /// Protocol version; must be [`PROTOCOL_VERSION`].
        protocol: u32,
        /// Document name.
        doc: String,
        /// The client's identity for this run of the client (its sessions are keyed by it).
        client_id: String,
        /// Access token (`dsync1.…`), required when the server has a secret: checked by the engine
        /// (`access.rs`), ignored under open access.
        token: Option<String>,
        /// Request sequence number (monotonic per client_id); stale requests are ignored.
        seq: u64,
        /// Resume an existing session instead of starting from the server's text.
        resume: Option<Resume>,
        /// The client understands `changed` hints: the server tells it when the document
        /// changes, so it may poll rarely while nothing happens (docs/protocol.md, *Hints*).
        hints: bool,
    },
    /// One sync cycle: the client's pending edits (empty list = poll).
    ClientSync {
        /// Document name.
        doc: String,
        /// Request sequence number (monotonic per client_id).
        seq: u64,
        /// The client's m: the server version it has.
        server_version: u64,
        /// Unacknowledged client edits, oldest first.
        edits: Vec<Edit>,
    },
    /// Where this client's cursor and selection are in its text (presence): relayed to the
    /// other clients of the document that send presence too; never stored, never in a shadow.
    Presence {
        /// Document name (open on this connection).
        doc: String,
        /// A name to show beside the cursor (cut to [`MAX_PRESENCE_NAME_BYTES`]).
        name: String,
        /// The caret, in chars from the start of the client's text.
        cursor: u64,
        /// The selection's other end (equal to `cursor`: no selection).
        anchor: u64,
    },
    /// Close a document on this connection.
    Close {
        /// Document name.
        doc: String,
    },
    /// Heartbeat request.
    Ping,
    /// Heartbeat reply.
    Pong,
}

/// Messages from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg {
    /// Reply to `connect`.
    ConnectOk {
        /// Document name.
        doc: String,
        /// The `seq` of the connect this answers.
        seq: u64,
        /// True when an existing session was resumed (then `text` is empty).
        resumed: bool,
        /// The document's text (when not resumed).
        text: String,
        /// The n the client adopts (or the server's n, when resumed).
        client_version: u64,
        /// The m the client adopts (or the server's m, when resumed).
        server_version: u64,
        /// The new session's key (`None` when resumed: the client has it).
        session_key: Option<SessionKey>,
        /// The connect's token grants only reading: edits will be refused (`read_only`).
        read_only: bool,
    },
    /// Reply to `client_sync`.
    ServerSync {
        /// Document name.
        doc: String,
        /// The `seq` of the client_sync this answers.
        seq: u64,
        /// The server's n: client edits with a lower version are acknowledged.
        client_version: u64,
        /// Unacknowledged server edits, oldest first (or one full-text reset).
        edits: Vec<Edit>,
    },
    /// Heartbeat request.
    Ping,
    /// Heartbeat reply.
    Pong,
    /// The document changed since this client's last `client_sync` (sent only to clients
    /// that asked for hints, at most once between two of its requests; may be lost).
    Changed {
        /// Document name.
        doc: String,
    },
    /// Where the other clients of the document are (sent to the clients that send presence,
    /// whenever one of the others moves, arrives or leaves; may be lost).
    Presence {
        /// Document name.
        doc: String,
        /// The others, at most [`MAX_PRESENCE_PEERS`], in a stable order.
        peers: Vec<PeerPresence>,
    },
    /// Something the client sent was refused.
    Error {
        /// The document concerned, if any.
        doc: Option<String>,
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
        /// The `seq` of the request refused, when the refusal answers one (a `connect`):
        /// a delayed refusal of an older request is then told from one of the request in
        /// flight.
        seq: Option<u64>,
    },
}

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorCode {
    /// A frame was not valid JSON or not a known message.
    BadMessage,
    /// A frame exceeded the maximum size.
    FrameTooLarge,
    /// The protocol version is not supported.
    UnsupportedProtocol,
    /// A document or client name is empty or too long.
    BadName,
    /// The connection has no session for the document (connect first).
    UnknownSession,
    /// A delta could not be parsed.
    BadDelta,
    /// The document would exceed its maximum size.
    DocumentTooLarge,
    /// Too many edits in one message, or a delta too large.
    TooManyEdits,
    /// The document has its maximum number of clients.
    TooManyClients,
    /// The server has its maximum number of connections (in all, or from one address).
    TooManyConnections,
    /// The server has its maximum number of documents in memory, or this connection its
    /// maximum of open documents.
    TooManyDocuments,
    /// The client id belongs to a session this `connect` did not prove it owns (no key, or
    /// another key): the client starts a new session under another id.
    SessionTaken,
    /// This connection earned full texts (resets, new sessions) faster than its allowance:
    /// the request was not handled (as if lost); send it again later.
    SlowDown,
    /// The server's store failed.
    Internal,
    /// The `connect` carried no valid token for its document (missing, malformed, signed
    /// with another secret, expired, or for another document): the client stops.
    Unauthorized,
    /// Edits from a connection whose token grants only reading: refused, nothing applied.
    ReadOnly,
}

impl ErrorCode {
    /// Every code, for iteration in tests and docs.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::BadMessage,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedProtocol,
        ErrorCode::BadName,
        ErrorCode::UnknownSession,
        ErrorCode::BadDelta,
        ErrorCode::DocumentTooLarge,
        ErrorCode::TooManyEdits,
        ErrorCode::TooManyClients,
        ErrorCode::TooManyConnections,
        ErrorCode::TooManyDocuments,
        ErrorCode::SessionTaken,
        ErrorCode::SlowDown,
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::ReadOnly,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::BadName => "bad_name",
            ErrorCode::UnknownSession => "unknown_session",
            ErrorCode::BadDelta => "bad_delta",
            ErrorCode::DocumentTooLarge => "document_too_large",
            ErrorCode::TooManyEdits => "too_many_edits",
            ErrorCode::TooManyClients => "too_many_clients",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::TooManyDocuments => "too_many_documents",
            ErrorCode::SessionTaken => "session_taken",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ReadOnly => "read_only",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}
