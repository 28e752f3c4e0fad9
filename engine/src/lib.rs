//! `dsync-engine`: Neil Fraser's Differential Synchronization (guaranteed-delivery variant),
//! sans-IO.
//!
//! The engine never reads a clock, a socket, a random source or a database: `now` is passed in
//! ([`Time`]), inputs arrive through `handle_*` methods, and outputs are drained with
//! `poll_output` / `poll_timeout`. The simulator, the tokio server, the terminal client, the
//! tests and the benches all drive these same types, through the nodes of `dsync-node`.
//!
//! Map:
//! - [`client::ClientEngine`] and [`server::ServerEngine`]: the two state machines;
//! - [`msg`]: the protocol messages as Rust data (the wire form lives in `dsync-net`);
//! - [`delta`]: the diff-match-patch delta codec (UTF-16 counts); [`diff`]: diffs as hunks (via
//!   `similar`); [`text`]: UTF-16 units, escapes, newlines; [`checksum`]: CRC-32;
//! - [`merge`]: three-way, fuzzy patch and overwrite merges;
//! - [`op`]: exact changes (operations) with compose and transform;
//! - [`dmp`]: the fuzzy matcher and patcher, ported from the reference diff-match-patch.
//!
//! Invariants: no `HashMap` iteration, no wall clock, no panics on peer input.
//!
//! # Example
//!
//! A client and a server in one process. The loop carries messages between them; a real
//! driver carries them over a socket, loads documents from its store and commits every
//! [`ServerOutput::Persist`] before sending what follows it (see `examples/in_process.rs` for
//! two clients and timers).
//!
//! ```
//! use dsync_engine::{
//!     ClientEngine, ClientOutput, Config, PeerId, ServerEngine, ServerOutput, StoredDocument,
//!     Time,
//! };
//!
//! /// Deliver messages both ways until neither side has anything to send.
//! fn pump(client: &mut ClientEngine, server: &mut ServerEngine, now: Time) {
//!     let mut moved = true;
//!     while moved {
//!         moved = false;
//!         while let Some(out) = client.poll_output() {
//!             if let ClientOutput::Send(msg) = out {
//!                 server.handle_message(now, PeerId(1), msg);
//!                 moved = true;
//!             }
//!         }
//!         while let Some(out) = server.poll_output() {
//!             if let ServerOutput::Send { msg, .. } = out {
//!                 client.handle_message(now, msg);
//!                 moved = true;
//!             }
//!         }
//!     }
//! }
//!
//! let cfg = Config::default();
//! let mut server = ServerEngine::new(cfg, [7; 32]); // a real server seeds from the OS
//! let stored = StoredDocument { text: "world".into(), ..StoredDocument::default() };
//! server.load_document("notes", stored)?;
//!
//! let mut client = ClientEngine::new(cfg, "alice", "notes");
//! client.connect(Time(0));
//! pump(&mut client, &mut server, Time(0));
//! assert_eq!(client.text(), "world");
//!
//! client.insert(0, "hello ")?; // positions in chars
//! client.sync_now(Time(1)); // or wait for the sync interval (`poll_timeout`)
//! pump(&mut client, &mut server, Time(1));
//! assert_eq!(server.master("notes").unwrap(), "hello world");
//! # Ok::<(), dsync_engine::EngineError>(())
//! ```

pub mod access;
pub mod checksum;
pub mod client;
pub mod config;
pub mod delta;
pub mod diff;
pub mod dmp;
pub mod merge;
pub mod msg;
pub mod op;
pub mod rope;
pub mod server;
pub mod text;

pub use access::{Access, Grant, Rights, Secret, TokenError};
pub use checksum::Checksum;
pub use client::{ClientEngine, ClientEvent, ClientOutput, PendingEdit, Shadow, DAMAGED_MAX};
pub use config::{Config, Limits, LimitsError, Stats, Time};
pub use delta::{Delta, DeltaError, DeltaOp};
pub use merge::{MergeOutcome, MergeStrategy};
pub use msg::{
    ClientMsg, Edit, ErrorCode, PeerPresence, ResetBase, Resume, ServerMsg, SessionKey,
    MAX_PRESENCE_NAME_BYTES, MAX_PRESENCE_PEERS, PROTOCOL_VERSION,
};
pub use op::{OpError, Operation};
pub use rope::Rope;
pub use server::{
    PeerId, PendingReset, PersistRecord, ServerEngine, ServerOutput, SessionRecord, StoredDocument,
};

/// Errors from the engine's local API (a user's edit or a driver's call, never a peer's
/// message: those become `error` replies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The text would exceed the maximum document size.
    #[error("document would be {len} bytes; the maximum is {max}")]
    DocumentTooLarge {
        /// Resulting size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A char position past the end of the text.
    #[error("position {at} is past the end of the text ({len} chars)")]
    BadPosition {
        /// The position asked for.
        at: usize,
        /// The text's length in chars.
        len: usize,
    },
    /// A range whose start is after its end.
    #[error("range {start}..{end} is reversed")]
    BadRange {
        /// Start.
        start: usize,
        /// End.
        end: usize,
    },
    /// The server engine has its maximum number of documents loaded.
    #[error("the server has its maximum of {0} documents open")]
    TooManyDocuments(usize),
    /// A document name is empty, too long or holds a control character.
    #[error(
        "a document name must be non-empty, within the name limit, without control characters"
    )]
    BadName,
    /// The server said this client's token grants only reading: local edits are refused.
    #[error("this document is read-only for this client (its token grants only reading)")]
    ReadOnly,
}
