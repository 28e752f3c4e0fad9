//! The durable store: SQLite (bundled), WAL, `synchronous=FULL`. Shared by `dsync-server` and
//! the simulator, so a simulated crash loses exactly what a real one would: whatever was not
//! committed.
//!
//! Schema (version 5, in `PRAGMA user_version`; older files are migrated on open):
//! - `documents(name PRIMARY KEY, text, version, updated_at_ms, text_version, checksum)`:
//!   `text` is the document at `text_version` (version 4; NULL: at `version`), the changes
//!   after it are in `chain`, and `checksum` is the CRC-32 of the text at `version` (NULL:
//!   unknown); see `snapshots.rs`
//! - `sessions(doc, client_id, shadow_text, shadow_n, shadow_m, backup_text, backup_n,
//!   backup_m, last_seq, link_op, link_version, backup_link_op, backup_link_version,
//!   updated_at_ms, reset_version, reset_from_text, reset_link_op, reset_link_version,
//!   session_key, PRIMARY KEY(doc, client_id))`: the link columns hold the exact change from
//!   the shadow to the master at a document version (NULL: unknown); the `reset_*` columns
//!   (version 2) a reset the client has not acknowledged (NULL: none), so it is sent again
//!   exactly; `session_key` (version 3) the key a resume must present, 32 hex digits (NULL: a
//!   session from before keys, which cannot be resumed); `shadow_at`, `backup_at` (version 4):
//!   the shadow's or backup's text is the document's at that version (its text column empty);
//! - `changes(doc, version, op, PRIMARY KEY(doc, version))`: recent exact master changes,
//!   kept while some session's link still needs them, so merges stay exact across restarts;
//! - `chain(doc, version, op, PRIMARY KEY(doc, version))` (version 4): the verified changes
//!   from the snapshot (`documents.text_version`) to the current version, the store's own;
//! - `texts(doc, version, text, PRIMARY KEY(doc, version))` (version 4): the document at a
//!   version some session refers to and the snapshot has passed;
//! - `history(doc, version, op, at_ms)`, `history_base(doc, version, text, at_ms)` (version 5):
//!   each master change with its commit time, from a base text on (`history.rs`).
//!
//! [`Store::commit`] writes a batch of [`PersistRecord`]s in one transaction.

use std::collections::BTreeMap;
use std::path::Path;

use dsync_engine::{
    Operation, PendingReset, PersistRecord, Rope, SessionKey, SessionRecord, Shadow, StoredDocument,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::history::{self, History, HistoryLimits};
use crate::snapshots::{leads_to, replay, Verified, MAX_LAG, SNAPSHOT_EVERY};
use crate::{Store, StoreError};

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i64 = 5;

/// A SQLite-backed document store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// The file as opened, checked after every commit (`None`: in memory).
    file: Option<FileWatch>,
    /// The last text committed per document, to verify the next record's changes.
    verified: Verified,
    /// How much history is kept.
    history: HistoryLimits,
}

/// What identifies the database file: a commit into a file that was deleted, replaced or
/// truncated behind our back is not durable, and must not be acknowledged.
#[derive(Debug, Clone)]
struct FileWatch {
    path: std::path::PathBuf,
    /// (device, inode) on Unix; elsewhere only the path and size are checked.
    identity: Option<(u64, u64)>,
    /// The size last seen: the main file never shrinks under us (no VACUUM; checkpoints
    /// truncate only the WAL).
    len: u64,
}

impl FileWatch {
    fn of(path: &Path) -> Result<FileWatch, StoreError> {
        let meta = std::fs::metadata(path).map_err(|e| StoreError::FileLost {
            path: path.display().to_string(),
            what: e.to_string(),
        })?;
        Ok(FileWatch {
            path: path.to_path_buf(),
            identity: identity(&meta),
            len: meta.len(),
        })
    }

    fn check(&mut self) -> Result<(), StoreError> {
        let lost = |what: String| StoreError::FileLost {
            path: self.path.display().to_string(),
            what,
        };
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| lost(format!("{e} (deleted or moved since it was opened)")))?;
        if identity(&meta) != self.identity {
            return Err(lost("replaced by another file since it was opened".into()));
        }
        if meta.len() < self.len {
            return Err(lost(format!(
                "truncated: {} bytes, {} before",
                meta.len(),
                self.len
            )));
        }
        self.len = meta.len();
        Ok(())
    }
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// SQLite integers are signed 64-bit: a larger number is refused, never clamped (the wire
/// carries at most 2^53 − 1, so only a bug gets here).
fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::OutOfRange { value: v })
}

fn parse_link(l: (Option<String>, Option<i64>)) -> Result<Option<(Operation, u64)>, StoreError> {
    match l {
        (Some(op), Some(v)) => {
            let op = Operation::parse(&op).map_err(|e| StoreError::Corrupt {
                table: "sessions",
                what: e.to_string(),
            })?;
            Ok(Some((op, to_u64(v, "sessions")?)))
        }
        _ => Ok(None),
    }
}

/// A document's texts as loaded: the snapshot and the master replayed from it.
struct DocTexts {
    snapshot: Rope,
    snapshot_version: u64,
    master: Rope,
    version: u64,
}

fn to_u64(v: i64, table: &'static str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        table,
        what: format!("negative number {v}"),
    })
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`: WAL mode, `synchronous=FULL`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref();
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = SqliteStore::init(conn)?;
        store.file = Some(FileWatch::of(path)?);
        Ok(store)
    }

    /// Open the database at `path`, which must exist and not be empty: where a store is
    /// expected, a missing or empty file means it was lost, and creating a new one would
    /// silently forget every acknowledged edit.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Ok(m) if m.len() > 0 => SqliteStore::open(path),
            Ok(_) => Err(StoreError::Missing {
                path: path.display().to_string(),
                what: "the file is empty".into(),
            }),
            Err(e) => Err(StoreError::Missing {
                path: path.display().to_string(),
                what: e.to_string(),
            }),
        }
    }

    /// An in-memory database with the same schema and code paths (the simulator's default:
    /// durability across a simulated crash comes from keeping the connection, not the file).
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::init(Connection::open_in_memory()?)
    }

    /// Forget the sessions of documents for which `keep` says no that were last written before
    /// `before_ms` (the clock the driver gives `commit`); returns how many. The server keeps
    /// the documents it has in memory (their sessions may be attached and only idle).
    pub fn collect_sessions(
        &mut self,
        before_ms: u64,
        keep: impl Fn(&str) -> bool,
    ) -> Result<usize, StoreError> {
        let before = to_i64(before_ms)?;
        let docs: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT DISTINCT doc FROM sessions WHERE updated_at_ms < ?1")?;
            let rows = stmt.query_map(params![before], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let tx = self.conn.transaction()?;
        let mut gone = 0;
        {
            let mut del =
                tx.prepare_cached("DELETE FROM sessions WHERE doc = ?1 AND updated_at_ms < ?2")?;
            for doc in docs.iter().filter(|d| !keep(d)) {
                gone += del.execute(params![doc, before])?;
            }
        }
        tx.commit()?;
        Ok(gone)
    }

    /// Keep this much history (the default: [`HistoryLimits::default`]).
    pub fn set_history_limits(&mut self, limits: HistoryLimits) {
        self.history = limits;
    }

    /// Up to `limit` kept changes of `doc` after version `after`, with the base they start
    /// from (`None`: no history is kept for it).
    pub fn history(
        &self,
        doc: &str,
        after: u64,
        limit: usize,
    ) -> Result<Option<History>, StoreError> {
        history::page(&self.conn, doc, after, limit)
    }

    /// The text of `doc` as of `version`, if the history keeps that version.
    pub fn text_as_of(&self, doc: &str, version: u64) -> Result<Option<Rope>, StoreError> {
        history::text_at(&self.conn, doc, version)
    }

    /// Fold the changes committed before `now_ms` less the retention into their documents'
    /// bases (one transaction); returns how many changes were folded.
    pub fn collect_history(&mut self, now_ms: u64) -> Result<u64, StoreError> {
        let Some(keep) = self.history.retention_ms else {
            return Ok(0);
        };
        let tx = self.conn.transaction()?;
        let folded = history::collect(&tx, now_ms.saturating_sub(keep))?;
        tx.commit()?;
        Ok(folded)
    }

    /// Limit the database file to about `bytes` (SQLite's `max_page_count`; at least one page).
    /// At the limit a commit fails with "database or disk is full" and writes nothing of its
    /// batch, as when the disk itself is full; reads go on.
    pub fn set_max_bytes(&mut self, bytes: u64) -> Result<(), StoreError> {
        let page: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))?;
        let pages = (bytes / page.max(1) as u64).clamp(1, i64::MAX as u64) as i64;
        self.conn.pragma_update(None, "max_page_count", pages)?;
        Ok(())
    }

    fn init(conn: Connection) -> Result<SqliteStore, StoreError> {
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { found });
        }
        if found < 1 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS documents (
                     name TEXT PRIMARY KEY NOT NULL,
                     text TEXT NOT NULL,
                     version INTEGER NOT NULL,
                     updated_at_ms INTEGER NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS sessions (
                     doc TEXT NOT NULL,
                     client_id TEXT NOT NULL,
                     shadow_text TEXT NOT NULL,
                     shadow_n INTEGER NOT NULL,
                     shadow_m INTEGER NOT NULL,
                     backup_text TEXT NOT NULL,
                     backup_n INTEGER NOT NULL,
                     backup_m INTEGER NOT NULL,
                     last_seq INTEGER NOT NULL,
                     link_op TEXT,
                     link_version INTEGER,
                     backup_link_op TEXT,
                     backup_link_version INTEGER,
                     updated_at_ms INTEGER NOT NULL,
                     reset_version INTEGER,
                     reset_from_text TEXT,
                     reset_link_op TEXT,
                     reset_link_version INTEGER,
                     session_key TEXT,
                     PRIMARY KEY (doc, client_id)
                 );
                 CREATE TABLE IF NOT EXISTS changes (
                     doc TEXT NOT NULL,
                     version INTEGER NOT NULL,
                     op TEXT NOT NULL,
                     PRIMARY KEY (doc, version)
                 );
                 PRAGMA user_version = 3;
                 COMMIT;",
            )?;
        } else if found < 3 {
            // Version 2 added the pending reset (a version 1 file has none); version 3 the
            // session key (older sessions have none: they cannot be resumed, only replaced).
            let v2 = if found == 1 {
                "ALTER TABLE sessions ADD COLUMN reset_version INTEGER;
                 ALTER TABLE sessions ADD COLUMN reset_from_text TEXT;
                 ALTER TABLE sessions ADD COLUMN reset_link_op TEXT;
                 ALTER TABLE sessions ADD COLUMN reset_link_version INTEGER;"
            } else {
                ""
            };
            conn.execute_batch(&format!(
                "BEGIN;
                 {v2}
                 ALTER TABLE sessions ADD COLUMN session_key TEXT;
                 PRAGMA user_version = 3;
                 COMMIT;"
            ))?;
        }
        if found < 4 {
            // Version 4: snapshots plus changes for the master, references for session texts.
            conn.execute_batch(
                "BEGIN;
                 ALTER TABLE documents ADD COLUMN text_version INTEGER;
                 ALTER TABLE documents ADD COLUMN checksum INTEGER;
                 ALTER TABLE sessions ADD COLUMN shadow_at INTEGER;
                 ALTER TABLE sessions ADD COLUMN backup_at INTEGER;
                 CREATE TABLE IF NOT EXISTS chain (
                     doc TEXT NOT NULL,
                     version INTEGER NOT NULL,
                     op TEXT NOT NULL,
                     PRIMARY KEY (doc, version)
                 );
                 CREATE TABLE IF NOT EXISTS texts (
                     doc TEXT NOT NULL,
                     version INTEGER NOT NULL,
                     text TEXT NOT NULL,
                     PRIMARY KEY (doc, version)
                 );
                 PRAGMA user_version = 4;
                 COMMIT;",
            )?;
        }
        if found < 5 {
            // Version 5: history (documents written before it start theirs at their next change).
            conn.execute_batch(&format!(
                "BEGIN; {} PRAGMA user_version = 5; COMMIT;",
                history::SCHEMA
            ))?;
        }
        Ok(SqliteStore {
            conn,
            file: None,
            verified: Verified::default(),
            history: HistoryLimits::default(),
        })
    }

    fn load_doc(&self, doc: &str) -> Result<Option<StoredDocument>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT text, version, COALESCE(text_version, version), checksum
                 FROM documents WHERE name = ?1",
            )?
            .query_row(params![doc], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            })
            .optional()?;
        let changes: Vec<(u64, Operation)> = ops(&self.conn, "changes", doc)?;
        let all: BTreeMap<u64, Operation> = ops(&self.conn, "chain", doc)?.into_iter().collect();
        let texts = match &row {
            Some((text, v, tv, sum)) => Some(self.master_of(doc, text, *v, *tv, *sum, &all)?),
            None => None,
        };
        let mut sessions = Vec::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT client_id, shadow_text, shadow_n, shadow_m, backup_text, backup_n, backup_m, last_seq,
                    link_op, link_version, backup_link_op, backup_link_version,
                    reset_version, reset_from_text, reset_link_op, reset_link_version, session_key,
                    shadow_at, backup_at
             FROM sessions WHERE doc = ?1 ORDER BY client_id",
        )?;
        let rows = stmt.query_map(params![doc], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (r.get::<_, String>(1)?, r.get::<_, Option<i64>>(17)?),
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                (r.get::<_, String>(4)?, r.get::<_, Option<i64>>(18)?),
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                (r.get::<_, Option<String>>(8)?, r.get::<_, Option<i64>>(9)?),
                (
                    r.get::<_, Option<String>>(10)?,
                    r.get::<_, Option<i64>>(11)?,
                ),
                (
                    r.get::<_, Option<i64>>(12)?,
                    r.get::<_, Option<String>>(13)?,
                    (
                        r.get::<_, Option<String>>(14)?,
                        r.get::<_, Option<i64>>(15)?,
                    ),
                ),
                r.get::<_, Option<String>>(16)?,
            ))
        })?;
        // Texts by version, resolved once and shared by every session referring to them.
        let mut at: BTreeMap<u64, Rope> = BTreeMap::new();
        let mut text_of = |(text, pin): (String, Option<i64>)| -> Result<Rope, StoreError> {
            let Some(v) = pin else {
                return Ok(Rope::from(text));
            };
            let v = to_u64(v, "sessions")?;
            if let Some(t) = at.get(&v) {
                return Ok(t.clone());
            }
            let t = self.text_at(doc, v, texts.as_ref(), &all)?;
            at.insert(v, t.clone());
            Ok(t)
        };
        for row in rows {
            let (client_id, st, sn, sm, bt, bn, bm, seq, link, backup_link, reset, key) = row?;
            let key = match key {
                None => None,
                Some(k) => Some(SessionKey::from_hex(&k).ok_or_else(|| StoreError::Corrupt {
                    table: "sessions",
                    what: "session_key is not 32 hex digits".into(),
                })?),
            };
            let reset = match reset {
                (Some(v), Some(from_text), link) => Some(PendingReset {
                    version: to_u64(v, "sessions")?,
                    from_text: from_text.into(),
                    from_link: parse_link(link)?,
                }),
                _ => None,
            };
            let t = "sessions";
            sessions.push(SessionRecord {
                client_id,
                key,
                shadow: Shadow {
                    text: text_of(st)?,
                    client_version: to_u64(sn, t)?,
                    server_version: to_u64(sm, t)?,
                },
                backup: Shadow {
                    text: text_of(bt)?,
                    client_version: to_u64(bn, t)?,
                    server_version: to_u64(bm, t)?,
                },
                last_seq: to_u64(seq, t)?,
                link: parse_link(link)?,
                backup_link: parse_link(backup_link)?,
                shadow_is_master: false,
                backup_is_shadow: false,
                reset,
            });
        }
        match (row, texts) {
            (Some((_, version, _, _)), Some(t)) => Ok(Some(StoredDocument {
                text: t.master,
                version: to_u64(version, "documents")?,
                sessions,
                changes,
            })),
            _ if sessions.is_empty() => Ok(None),
            _ => Ok(Some(StoredDocument {
                sessions,
                ..StoredDocument::default()
            })),
        }
    }

    /// The master from a `documents` row: its snapshot, and the changes after it replayed and
    /// checked against the stored checksum.
    fn master_of(
        &self,
        doc: &str,
        text: &str,
        version: i64,
        text_version: i64,
        checksum: Option<i64>,
        changes: &BTreeMap<u64, Operation>,
    ) -> Result<DocTexts, StoreError> {
        let (v, tv) = (
            to_u64(version, "documents")?,
            to_u64(text_version, "documents")?,
        );
        let snapshot = Rope::from(text);
        let master = if tv == v {
            snapshot.clone()
        } else {
            replay(&snapshot, tv, v, changes).ok_or_else(|| StoreError::Corrupt {
                table: "changes",
                what: format!("{doc}: the changes after the snapshot at version {tv} do not lead to version {v}"),
            })?
        };
        if checksum.is_some_and(|c| c != i64::from(master.checksum())) {
            return Err(StoreError::Corrupt {
                table: "documents",
                what: format!("{doc}: the text at version {v} does not match its checksum"),
            });
        }
        Ok(DocTexts {
            snapshot,
            snapshot_version: tv,
            master,
            version: v,
        })
    }

    /// The document's text at version `v`, for a session that refers to it.
    fn text_at(
        &self,
        doc: &str,
        v: u64,
        texts: Option<&DocTexts>,
        changes: &BTreeMap<u64, Operation>,
    ) -> Result<Rope, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt {
            table: "sessions",
            what: format!("{doc}: {what}"),
        };
        if let Some(t) = texts {
            if v == t.version {
                return Ok(t.master.clone());
            }
            if v >= t.snapshot_version && v < t.version {
                return replay(&t.snapshot, t.snapshot_version, v, changes)
                    .ok_or_else(|| corrupt(format!("no changes lead to version {v}")));
            }
        }
        let kept: Option<String> = self
            .conn
            .prepare_cached("SELECT text FROM texts WHERE doc = ?1 AND version = ?2")?
            .query_row(params![doc, to_i64(v)?], |r| r.get(0))
            .optional()?;
        kept.map(Rope::from).ok_or_else(|| {
            corrupt(format!(
                "a session refers to version {v}, which is not kept"
            ))
        })
    }

    fn commit_batch(&mut self, records: &[PersistRecord], now_ms: u64) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let now = to_i64(now_ms)?;
        // Texts this batch commits, remembered once it has committed.
        let mut written: BTreeMap<String, (u64, Rope)> = BTreeMap::new();
        let tx = self.conn.transaction()?;
        for r in records {
            let before = doc_row(&tx, &r.doc)?;
            {
                let mut change_stmt = tx.prepare_cached(
                    "INSERT OR REPLACE INTO changes (doc, version, op) VALUES (?1, ?2, ?3)",
                )?;
                for (v, op) in &r.changes {
                    change_stmt.execute(params![r.doc, to_i64(*v)?, op.to_text()])?;
                }
            }
            // The master this record leaves, when known here (for session references).
            let master: Option<(u64, Rope)> = match &r.text {
                Some(text) => {
                    let last = |v: u64| {
                        written
                            .get(&r.doc)
                            .filter(|(w, _)| *w == v)
                            .map(|(_, t)| t.clone())
                            .or_else(|| self.verified.at(&r.doc, v).cloned())
                    };
                    // The master before this record, for a history that starts here.
                    let previous = || match before {
                        None => Ok(Some((0, Rope::new()))),
                        Some(b) => match last(b.version) {
                            Some(t) => Ok(Some((b.version, t))),
                            None => Ok(text_from_db(&tx, &r.doc, b)?.map(|t| (b.version, t))),
                        },
                    };
                    let kept = history::start(&tx, r, previous, now, self.history)?;
                    // Whether the record's changes were replayed to its text: only such
                    // changes go into the history (a new document's, from the empty text).
                    let verified = write_master(&tx, r, text, before, last, now)?
                        || (before.is_none()
                            && leads_to(&Rope::new(), 0, &r.changes, r.version, text));
                    history::record(&tx, r, text, kept, verified, now, self.history)?;
                    written.insert(r.doc.clone(), (r.version, text.clone()));
                    Some((r.version, text.clone()))
                }
                None => {
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO documents
                         (name, text, version, updated_at_ms, text_version, checksum)
                         VALUES (?1, '', 0, ?2, 0, 0)",
                    )?
                    .execute(params![r.doc, now])?;
                    let v = before.map_or(0, |b| b.version);
                    let known = written
                        .get(&r.doc)
                        .filter(|(w, _)| *w == v)
                        .map(|(_, t)| t.clone())
                        .or_else(|| self.verified.at(&r.doc, v).cloned())
                        .or_else(|| before.is_none().then(Rope::new));
                    known.map(|t| (v, t))
                }
            };
            let version = master
                .as_ref()
                .map_or_else(|| before.map_or(0, |b| b.version), |m| m.0);
            for s in &r.sessions {
                write_session(&tx, &r.doc, s, version, master.as_ref().map(|m| &m.1), now)?;
            }
            tx.prepare_cached("DELETE FROM changes WHERE doc = ?1 AND version <= ?2")?
                .execute(params![r.doc, to_i64(r.changes_needed_after)?])?;
            let mut del_stmt =
                tx.prepare_cached("DELETE FROM sessions WHERE doc = ?1 AND client_id = ?2")?;
            for id in &r.removed_sessions {
                del_stmt.execute(params![r.doc, id])?;
            }
        }
        tx.commit()?;
        for (doc, (v, t)) in written {
            self.verified.set(&doc, v, t);
        }
        Ok(())
    }

    fn document_names(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM documents ORDER BY name")?;
        let names = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(names)
    }

    /// Close cleanly (checkpointing the WAL).
    pub fn close(self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .or_else(|e| match e {
                // An in-memory database has no WAL to checkpoint.
                rusqlite::Error::SqliteFailure(..) => Ok(()),
                other => Err(other),
            })?;
        self.conn.close().map_err(|(_, e)| StoreError::Sqlite(e))
    }
}

/// The operations of `doc` in `table` (`changes` or `chain`), by version.
fn ops(
    conn: &Connection,
    table: &'static str,
    doc: &str,
) -> Result<Vec<(u64, Operation)>, StoreError> {
    let sql = format!("SELECT version, op FROM {table} WHERE doc = ?1 ORDER BY version");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![doc], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (v, op) = row?;
        let op = Operation::parse(&op).map_err(|e| StoreError::Corrupt {
            table,
            what: e.to_string(),
        })?;
        out.push((to_u64(v, table)?, op));
    }
    Ok(out)
}

/// A `documents` row as a commit reads it.
#[derive(Debug, Clone, Copy)]
struct DocRow {
    version: u64,
    /// The version `documents.text` is at.
    text_version: u64,
    checksum: Option<u32>,
}

fn doc_row(tx: &Connection, doc: &str) -> Result<Option<DocRow>, StoreError> {
    let row = tx
        .prepare_cached(
            "SELECT version, COALESCE(text_version, version), checksum FROM documents WHERE name = ?1",
        )?
        .query_row(params![doc], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })
        .optional()?;
    row.map(|(v, tv, sum)| {
        Ok(DocRow {
            version: to_u64(v, "documents")?,
            text_version: to_u64(tv, "documents")?,
            checksum: sum.and_then(|c| u32::try_from(c).ok()),
        })
    })
    .transpose()
}

/// Write a record's master: when its changes are verified to lead from the last committed
/// text to it, only the changes (to `chain`), the version and the checksum, with a snapshot
/// every [`SNAPSHOT_EVERY`] changes ([`advance_snapshot`]); otherwise the whole text as a new
/// snapshot, as every commit once did (`snapshots.rs`).
fn write_master(
    tx: &Connection,
    r: &PersistRecord,
    text: &Rope,
    before: Option<DocRow>,
    last: impl Fn(u64) -> Option<Rope>,
    now: i64,
) -> Result<bool, StoreError> {
    let sum = text.checksum();
    if before.is_some_and(|b| b.version == r.version && b.checksum == Some(sum)) {
        return Ok(true);
    }
    if let Some(b) = before.filter(|b| r.version > b.version) {
        // The last text: remembered, or (first commit since the store opened) read back once.
        let base = match last(b.version) {
            Some(t) => Some(t),
            None => text_from_db(tx, &r.doc, b)?,
        };
        if base.is_some_and(|t| leads_to(&t, b.version, &r.changes, r.version, text)) {
            let mut chain = tx.prepare_cached(
                "INSERT OR REPLACE INTO chain (doc, version, op) VALUES (?1, ?2, ?3)",
            )?;
            for (v, op) in r
                .changes
                .iter()
                .filter(|(v, _)| *v > b.version && *v <= r.version)
            {
                chain.execute(params![r.doc, to_i64(*v)?, op.to_text()])?;
            }
            tx.prepare_cached(
                "UPDATE documents SET version = ?2, checksum = ?3, updated_at_ms = ?4 WHERE name = ?1",
            )?
            .execute(params![r.doc, to_i64(r.version)?, i64::from(sum), now])?;
            if r.version - b.text_version >= SNAPSHOT_EVERY {
                advance_snapshot(tx, &r.doc, b.text_version, r.version, text)?;
            }
            return Ok(true);
        }
    }
    if let Some(b) = before {
        keep_referenced(tx, &r.doc, b.text_version..=b.version, Some(r.version))?;
    }
    tx.prepare_cached("DELETE FROM chain WHERE doc = ?1")?
        .execute(params![r.doc])?;
    tx.prepare_cached(
        "INSERT INTO documents (name, text, version, updated_at_ms, text_version, checksum)
         VALUES (?1, ?2, ?3, ?4, ?3, ?5)
         ON CONFLICT(name) DO UPDATE SET text = excluded.text, version = excluded.version,
         updated_at_ms = excluded.updated_at_ms, text_version = excluded.text_version,
         checksum = excluded.checksum",
    )?
    .execute(params![
        r.doc,
        text.flat(),
        to_i64(r.version)?,
        now,
        i64::from(sum)
    ])?;
    Ok(false)
}

/// The stored snapshot of `doc` (the text at `documents.text_version`) and the chain of
/// verified changes after it, by version.
fn snapshot_and_chain(
    tx: &Connection,
    doc: &str,
) -> Result<(Rope, BTreeMap<u64, Operation>), StoreError> {
    let snapshot: String = tx
        .prepare_cached("SELECT text FROM documents WHERE name = ?1")?
        .query_row(params![doc], |r| r.get(0))?;
    let chain = ops(tx, "chain", doc)?.into_iter().collect();
    Ok((Rope::from(snapshot), chain))
}

/// The document's text at its row's version, replayed from the stored snapshot and chain and
/// checked against the stored checksum (`None` when that fails: the caller writes a snapshot).
fn text_from_db(tx: &Connection, doc: &str, b: DocRow) -> Result<Option<Rope>, StoreError> {
    let (snapshot, chain) = snapshot_and_chain(tx, doc)?;
    let text = replay(&snapshot, b.text_version, b.version, &chain);
    Ok(text.filter(|t| b.checksum.is_some_and(|c| c == t.checksum())))
}

/// The chain is [`SNAPSHOT_EVERY`] changes long: move the snapshot up to the oldest version a
/// session still refers to (those referring to versions more than [`MAX_LAG`] behind get
/// their text kept in `texts`, one row per version), if that is far enough to be worth a
/// document write, and drop the chain before it.
fn advance_snapshot(
    tx: &Connection,
    doc: &str,
    from: u64,
    to: u64,
    text: &Rope,
) -> Result<(), StoreError> {
    let floor = to.saturating_sub(MAX_LAG).max(from);
    if floor > from {
        keep_referenced(tx, doc, from..=floor - 1, None)?;
    }
    let oldest: Option<i64> = tx
        .prepare_cached(
            "SELECT MIN(v) FROM (
                 SELECT shadow_at AS v FROM sessions WHERE doc = ?1
                 UNION SELECT backup_at FROM sessions WHERE doc = ?1)
             WHERE v >= ?2",
        )?
        .query_row(params![doc, to_i64(floor)?], |r| r.get(0))?;
    let target = match oldest {
        Some(v) => to_u64(v, "sessions")?.min(to),
        None => to,
    };
    if target.saturating_sub(from) < SNAPSHOT_EVERY {
        return Ok(());
    }
    let new = if target == to {
        text.clone()
    } else {
        let (snapshot, chain) = snapshot_and_chain(tx, doc)?;
        replay(&snapshot, from, target, &chain).ok_or_else(|| StoreError::Corrupt {
            table: "chain",
            what: format!("{doc}: no changes lead from version {from} to {target}"),
        })?
    };
    tx.prepare_cached("UPDATE documents SET text = ?2, text_version = ?3 WHERE name = ?1")?
        .execute(params![doc, new.flat(), to_i64(target)?])?;
    tx.prepare_cached("DELETE FROM chain WHERE doc = ?1 AND version <= ?2")?
        .execute(params![doc, to_i64(target)?])?;
    Ok(())
}

/// The snapshot (at the start of `old`) will no longer resolve the versions of `old`: the text
/// at each of them a session refers to is kept in `texts` (replayed from the snapshot), and
/// rows of `texts` no session refers to any more are dropped. With `replaced = Some(v)` the
/// text at `v` is being replaced: sessions that refer to `v` meant the text it had before
/// (replaced without a new version: only a document normalised on load does that, or a
/// version going back), and theirs is written into their rows.
fn keep_referenced(
    tx: &Connection,
    doc: &str,
    old: std::ops::RangeInclusive<u64>,
    replaced: Option<u64>,
) -> Result<(), StoreError> {
    // `u64::MAX` is no version a session refers to (the wire stops at 2^53).
    let to = replaced.unwrap_or(u64::MAX);
    let from = *old.start();
    let pins: Vec<u64> = {
        let mut stmt = tx.prepare_cached(
            "SELECT DISTINCT v FROM (
                 SELECT shadow_at AS v FROM sessions WHERE doc = ?1
                 UNION SELECT backup_at FROM sessions WHERE doc = ?1)
             WHERE (v >= ?2 AND v <= ?3 AND v NOT IN (SELECT version FROM texts WHERE doc = ?1))
                OR v = ?4
             ORDER BY v",
        )?;
        let range = (
            to_i64(from)?,
            to_i64(*old.end())?,
            i64::try_from(to).unwrap_or(-1),
        );
        let rows = stmt.query_map(params![doc, range.0, range.1, range.2], |r| {
            r.get::<_, i64>(0)
        })?;
        rows.map(|v| to_u64(v?, "sessions"))
            .collect::<Result<_, _>>()?
    };
    if !pins.is_empty() {
        let (snapshot, changes) = snapshot_and_chain(tx, doc)?;
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO texts (doc, version, text) VALUES (?1, ?2, ?3)",
        )?;
        let mut text = snapshot;
        let mut at = from;
        for v in pins {
            let old_text = if old.contains(&v) {
                text = replay(&text, at, v, &changes).ok_or_else(|| StoreError::Corrupt {
                    table: "chain",
                    what: format!(
                        "{doc}: no changes lead to version {v}, which a session refers to"
                    ),
                })?;
                at = v;
                text.flat().into_owned()
            } else {
                // `to`, kept in `texts` before (or lost: then the session keeps no text).
                tx.prepare_cached("SELECT text FROM texts WHERE doc = ?1 AND version = ?2")?
                    .query_row(params![doc, to_i64(v)?], |r| r.get(0))
                    .optional()?
                    .unwrap_or_default()
            };
            if v == to {
                for (col, at_col) in [("shadow_text", "shadow_at"), ("backup_text", "backup_at")] {
                    let sql = format!(
                        "UPDATE sessions SET {col} = ?3, {at_col} = NULL WHERE doc = ?1 AND {at_col} = ?2"
                    );
                    tx.prepare_cached(&sql)?
                        .execute(params![doc, to_i64(v)?, old_text])?;
                }
                tx.prepare_cached("DELETE FROM texts WHERE doc = ?1 AND version = ?2")?
                    .execute(params![doc, to_i64(v)?])?;
            } else {
                insert.execute(params![doc, to_i64(v)?, old_text])?;
            }
        }
    }
    tx.prepare_cached(
        "DELETE FROM texts WHERE doc = ?1 AND version NOT IN (
             SELECT shadow_at FROM sessions WHERE doc = ?1 AND shadow_at IS NOT NULL
             UNION SELECT backup_at FROM sessions WHERE doc = ?1 AND backup_at IS NOT NULL)",
    )?
    .execute(params![doc])?;
    Ok(())
}

/// Write a session. A shadow or backup equal to the master the record leaves (`version`) is
/// stored as a reference to that version; the engine says so (`shadow_is_master`), or the text
/// is the master's own rope, or equal to it.
fn write_session(
    tx: &Connection,
    doc: &str,
    s: &SessionRecord,
    version: u64,
    master: Option<&Rope>,
    now: i64,
) -> Result<(), StoreError> {
    let is_master = |t: &Rope| {
        master.is_some_and(|m| {
            t.ptr_eq(m) || (t.len() == m.len() && t.checksum() == m.checksum() && t == m)
        })
    };
    let pin = to_i64(version)?;
    let shadow_at = (s.shadow_is_master || is_master(&s.shadow.text)).then_some(pin);
    let shadow_text = match shadow_at {
        Some(_) => std::borrow::Cow::Borrowed(""),
        None => s.shadow.text.flat(),
    };
    let (backup_at, backup_text) = if s.backup_is_shadow {
        (shadow_at, shadow_text.clone())
    } else if is_master(&s.backup.text) {
        (Some(pin), std::borrow::Cow::Borrowed(""))
    } else {
        (None, s.backup.text.flat())
    };
    tx.prepare_cached(
        "INSERT OR REPLACE INTO sessions (doc, client_id, shadow_text, shadow_n, shadow_m,
         backup_text, backup_n, backup_m, last_seq, link_op, link_version, backup_link_op,
         backup_link_version, updated_at_ms, reset_version, reset_from_text,
         reset_link_op, reset_link_version, session_key, shadow_at, backup_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19, ?20, ?21)",
    )?
    .execute(params![
        doc,
        s.client_id,
        shadow_text,
        to_i64(s.shadow.client_version)?,
        to_i64(s.shadow.server_version)?,
        backup_text,
        to_i64(s.backup.client_version)?,
        to_i64(s.backup.server_version)?,
        to_i64(s.last_seq)?,
        s.link.as_ref().map(|l| l.0.to_text()),
        s.link.as_ref().map(|l| to_i64(l.1)).transpose()?,
        s.backup_link.as_ref().map(|l| l.0.to_text()),
        s.backup_link.as_ref().map(|l| to_i64(l.1)).transpose()?,
        now,
        s.reset.as_ref().map(|r| to_i64(r.version)).transpose()?,
        s.reset.as_ref().map(|r| r.from_text.flat()),
        s.reset
            .as_ref()
            .and_then(|r| r.from_link.as_ref())
            .map(|l| l.0.to_text()),
        s.reset
            .as_ref()
            .and_then(|r| r.from_link.as_ref())
            .map(|l| to_i64(l.1))
            .transpose()?,
        s.key.map(|k| k.to_hex()),
        shadow_at,
        backup_at,
    ])?;
    Ok(())
}

impl Store for SqliteStore {
    fn load(&self, doc: &str) -> Result<Option<StoredDocument>, StoreError> {
        self.load_doc(doc)
    }

    /// One transaction: durable when it returns, with `synchronous=FULL`.
    fn commit(&mut self, records: &[PersistRecord], now_ms: u64) -> Result<(), StoreError> {
        self.commit_batch(records, now_ms)?;
        // Committed into the file we opened; is that file still the database at its path?
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        let checked = f.check();
        if checked.is_err() {
            // Closing would checkpoint the WAL into whatever is at the path now (a truncated
            // file, another database): leave the WAL as it is for the operator instead.
            let _ = self.conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            );
        }
        checked
    }

    fn documents(&self) -> Result<Vec<String>, StoreError> {
        self.document_names()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: Option<&str>, version: u64) -> PersistRecord {
        let shadow = Shadow {
            text: "s".into(),
            client_version: 2,
            server_version: 3,
        };
        PersistRecord {
            doc: "d".into(),
            text: text.map(Into::into),
            version,
            sessions: vec![SessionRecord {
                key: Some(dsync_engine::SessionKey([3; 16])),
                client_id: "c".into(),
                backup: shadow.clone(),
                shadow,
                last_seq: 9,
                link: Some((Operation::identity(1), version)),
                backup_link: None,
                shadow_is_master: false,
                backup_is_shadow: false,
                reset: None,
            }],
            removed_sessions: vec![],
            changes: vec![(version, Operation::identity(5))],
            changes_needed_after: 0,
        }
    }

    #[test]
    fn detached_sessions_are_collected_after_their_retention() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.commit(&[record(Some("old"), 1)], 1_000).unwrap();
        let mut other = record(Some("kept"), 1);
        other.doc = "loaded".into();
        s.commit(&[other], 1_000).unwrap();
        let mut recent = record(Some("new"), 1);
        recent.doc = "recent".into();
        s.commit(&[recent], 50_000).unwrap();
        let gone = s.collect_sessions(10_000, |doc| doc == "loaded").unwrap();
        assert_eq!(gone, 1);
        assert!(s.load("d").unwrap().unwrap().sessions.is_empty());
        assert_eq!(s.load("d").unwrap().unwrap().text, "old");
        assert_eq!(s.load("loaded").unwrap().unwrap().sessions.len(), 1);
        assert_eq!(s.load("recent").unwrap().unwrap().sessions.len(), 1);
    }

    #[test]
    fn commit_then_reopen_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("documents.db");
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.load("d").unwrap(), None);
        s.commit(&[record(Some("hello"), 1)], 5).unwrap();
        s.commit(&[record(None, 1)], 6).unwrap();
        s.close().unwrap();
        let s = SqliteStore::open(&path).unwrap();
        let d = s.load("d").unwrap().unwrap();
        assert_eq!(d.text, "hello");
        assert_eq!(d.version, 1);
        assert_eq!(d.sessions.len(), 1);
        assert_eq!(d.sessions[0].last_seq, 9);
        assert_eq!(d.sessions[0].link, Some((Operation::identity(1), 1)));
        assert_eq!(d.changes, vec![(1, Operation::identity(5))]);
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = s
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        assert_eq!(s.documents().unwrap(), vec!["d".to_string()]);
    }

    #[test]
    fn texts_left_out_are_filled_from_the_master_and_shadow() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        let mut r = record(Some("the master"), 1);
        r.sessions[0].shadow.text = Default::default();
        r.sessions[0].shadow_is_master = true;
        r.sessions[0].backup.text = Default::default();
        r.sessions[0].backup_is_shadow = true;
        s.commit(&[r], 0).unwrap();
        let d = s.load("d").unwrap().unwrap();
        assert_eq!(d.sessions[0].shadow.text, "the master");
        assert_eq!(d.sessions[0].backup.text, "the master");
        // Master unchanged in a later record: the stored master is used.
        let mut r = record(None, 1);
        r.sessions[0].shadow.text = Default::default();
        r.sessions[0].shadow_is_master = true;
        s.commit(&[r], 1).unwrap();
        let d = s.load("d").unwrap().unwrap();
        assert_eq!(d.sessions[0].shadow.text, "the master");
        assert_eq!(d.sessions[0].backup.text, "s");
    }

    #[test]
    fn a_pending_reset_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("documents.db");
        let mut s = SqliteStore::open(&path).unwrap();
        let mut r = record(Some("master"), 2);
        r.sessions[0].reset = Some(PendingReset {
            version: 4,
            from_text: "before the reset".into(),
            from_link: Some((Operation::identity(16), 1)),
        });
        s.commit(&[r.clone()], 0).unwrap();
        s.close().unwrap();
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.load("d").unwrap().unwrap().sessions, r.sessions);
    }

    #[test]
    fn a_version_1_file_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE documents (name TEXT PRIMARY KEY NOT NULL, text TEXT NOT NULL,
                 version INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL);
             CREATE TABLE sessions (doc TEXT NOT NULL, client_id TEXT NOT NULL,
                 shadow_text TEXT NOT NULL, shadow_n INTEGER NOT NULL, shadow_m INTEGER NOT NULL,
                 backup_text TEXT NOT NULL, backup_n INTEGER NOT NULL, backup_m INTEGER NOT NULL,
                 last_seq INTEGER NOT NULL, link_op TEXT, link_version INTEGER,
                 backup_link_op TEXT, backup_link_version INTEGER,
                 updated_at_ms INTEGER NOT NULL, PRIMARY KEY (doc, client_id));
             CREATE TABLE changes (doc TEXT NOT NULL, version INTEGER NOT NULL,
                 op TEXT NOT NULL, PRIMARY KEY (doc, version));
             INSERT INTO documents VALUES ('d', 'old text', 3, 0);
             INSERT INTO sessions VALUES ('d', 'c', 'old text', 1, 2, 'old text', 1, 2, 7,
                 NULL, NULL, NULL, NULL, 0);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);
        let mut s = SqliteStore::open(&path).unwrap();
        let d = s.load("d").unwrap().unwrap();
        assert_eq!((String::from(&d.text).as_str(), d.version), ("old text", 3));
        assert_eq!(d.sessions[0].last_seq, 7);
        assert_eq!(d.sessions[0].reset, None);
        // And it takes version 2 records.
        let mut r = record(None, 3);
        r.sessions[0].reset = Some(PendingReset {
            version: 9,
            from_text: "x".into(),
            from_link: None,
        });
        s.commit(&[r], 1).unwrap();
        assert!(s.load("d").unwrap().unwrap().sessions[0].reset.is_some());
        let v: i64 = s
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn removed_sessions_are_deleted() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.commit(&[record(Some("x"), 1)], 0).unwrap();
        let mut r = record(None, 1);
        r.sessions.clear();
        r.removed_sessions = vec!["c".into()];
        s.commit(&[r], 1).unwrap();
        assert!(s.load("d").unwrap().unwrap().sessions.is_empty());
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 7).unwrap();
        drop(c);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::NewerSchema { found: 7 })
        ));
    }
}
