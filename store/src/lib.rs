//! `dsync-store`: where the server's documents and sessions live between restarts.
//!
//! [`Store`] is the contract every store keeps; [`SqliteStore`] is the one the server runs
//! (and the simulator, in memory); [`MemStore`] keeps the same semantics in plain maps for the
//! engine's tests. `tests/conformance.rs` runs one suite against both, and a property test
//! applies random batches to both and compares what they load back.
//!
//! The contract:
//! - [`Store::commit`] writes a batch of [`PersistRecord`]s atomically: after it returns `Ok`
//!   all of the batch is durable, after an `Err` none of it is. A driver sends the outputs
//!   that follow a batch only after its commit returned `Ok`.
//! - A record's master text, when present, replaces the document's (and its version); a record
//!   without text leaves text and version as they are (the document is created empty at
//!   version 0 if it did not exist).
//! - Session texts left out of a record (`shadow_is_master`, `backup_is_shadow`) are filled in
//!   from the master as stored after that record's text, and from the shadow.
//! - Master changes are kept by version; a record's `changes_needed_after` deletes the changes
//!   producing that version or an earlier one; `removed_sessions` are deleted last.
//! - [`Store::load`] returns the document with its sessions ordered by client id and its changes
//!   by version, or `None` if nothing was ever written for it.

use dsync_engine::{PersistRecord, StoredDocument};

mod history;
mod mem;
mod snapshots;
mod sqlite;

pub use history::{Change as HistoryChange, History, HistoryLimits, FOLD_BATCH};
pub use mem::MemStore;
pub use sqlite::{SqliteStore, SCHEMA_VERSION};

/// Store failures. Messages hold their cause (no `source()` chain), so they print once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("SQLite: {0}")]
    Sqlite(rusqlite::Error),
    /// The file was written by a newer dsync.
    #[error("database schema version {found} is newer than this program's {SCHEMA_VERSION}")]
    NewerSchema {
        /// The version found.
        found: i64,
    },
    /// A number too large for the store (SQLite's signed 64-bit integers): nothing of the batch
    /// was written.
    #[error("number {value} is too large to store")]
    OutOfRange {
        /// The number.
        value: u64,
    },
    /// The database file was deleted, replaced or truncated since it was opened: what was
    /// committed into it is not durable.
    #[error("the database file {path} is not the one opened: {what}")]
    FileLost {
        /// The path.
        path: String,
        /// What changed.
        what: String,
    },
    /// A database that should exist does not (or is empty).
    #[error("no database at {path} ({what}); to start a new one, say so (dsync-server --create)")]
    Missing {
        /// The path.
        path: String,
        /// Why it counts as missing.
        what: String,
    },
    /// The disk refused a write (full, failing): nothing of the batch was written.
    #[error("I/O: {0}")]
    Io(String),
    /// A stored row cannot be read back.
    #[error("corrupt row in {table}: {what}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// What was wrong.
        what: String,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

/// What the server needs from durable storage (see the module docs for the contract).
pub trait Store {
    /// The stored document and its sessions, or `None` if it was never written.
    fn load(&self, doc: &str) -> Result<Option<StoredDocument>, StoreError>;
    /// Write a batch of records atomically; `now_ms` is recorded as the update time.
    fn commit(&mut self, records: &[PersistRecord], now_ms: u64) -> Result<(), StoreError>;
    /// Names of all stored documents, in order.
    fn documents(&self) -> Result<Vec<String>, StoreError>;
}
