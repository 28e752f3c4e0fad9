//! The durable store: SQLite (bundled), WAL, `synchronous=FULL`. Shared by `dsync-server` and
//! the simulator, so a simulated crash loses exactly what a real one would: whatever was not
//! committed.
//!
//! Schema (version 3, in `PRAGMA user_version`; version 1 and 2 files are migrated on open):
//! - `documents(name PRIMARY KEY, text, version, updated_at_ms)`
//! - `sessions(doc, client_id, shadow_text, shadow_n, shadow_m, backup_text, backup_n,
//!   backup_m, last_seq, link_op, link_version, backup_link_op, backup_link_version,
//!   updated_at_ms, reset_version, reset_from_text, reset_link_op, reset_link_version,
//!   session_key, PRIMARY KEY(doc, client_id))`: the link columns hold the exact change from
//!   the shadow to the master at a document version (NULL: unknown); the `reset_*` columns
//!   (version 2) a reset the client has not acknowledged (NULL: none), so it is sent again
//!   exactly; `session_key` (version 3) the key a resume must present, 32 hex digits (NULL: a
//!   session from before keys, which cannot be resumed);
//! - `changes(doc, version, op, PRIMARY KEY(doc, version))`: recent exact master changes,
//!   kept while some session's link still needs them, so merges stay exact across restarts.
//!
//! [`Store::commit`] writes a batch of [`PersistRecord`]s in one transaction.

use std::path::Path;

use dsync_engine::{
    Operation, PendingReset, PersistRecord, SessionKey, SessionRecord, Shadow, StoredDocument,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Store, StoreError};

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i64 = 3;

/// A SQLite-backed document store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// The file as opened, checked after every commit (`None`: in memory).
    file: Option<FileWatch>,
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
        } else if found < SCHEMA_VERSION {
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
        Ok(SqliteStore { conn, file: None })
    }

    fn load_doc(&self, doc: &str) -> Result<Option<StoredDocument>, StoreError> {
        let row = self
            .conn
            .prepare_cached("SELECT text, version FROM documents WHERE name = ?1")?
            .query_row(params![doc], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?;
        let mut sessions = Vec::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT client_id, shadow_text, shadow_n, shadow_m, backup_text, backup_n, backup_m, last_seq,
                    link_op, link_version, backup_link_op, backup_link_version,
                    reset_version, reset_from_text, reset_link_op, reset_link_version, session_key
             FROM sessions WHERE doc = ?1 ORDER BY client_id",
        )?;
        let rows = stmt.query_map(params![doc], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
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
                    text: st.into(),
                    client_version: to_u64(sn, t)?,
                    server_version: to_u64(sm, t)?,
                },
                backup: Shadow {
                    text: bt.into(),
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
        let mut changes = Vec::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT version, op FROM changes WHERE doc = ?1 ORDER BY version")?;
        let rows = stmt.query_map(params![doc], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (v, op) = row?;
            let op = Operation::parse(&op).map_err(|e| StoreError::Corrupt {
                table: "changes",
                what: e.to_string(),
            })?;
            changes.push((to_u64(v, "changes")?, op));
        }
        match row {
            None if sessions.is_empty() => Ok(None),
            None => Ok(Some(StoredDocument {
                sessions,
                ..StoredDocument::default()
            })),
            Some((text, version)) => Ok(Some(StoredDocument {
                text: text.into(),
                version: to_u64(version, "documents")?,
                sessions,
                changes,
            })),
        }
    }

    fn commit_batch(&mut self, records: &[PersistRecord], now_ms: u64) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut doc_stmt = tx.prepare_cached(
                "INSERT INTO documents (name, text, version, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET text = excluded.text, version = excluded.version,
                 updated_at_ms = excluded.updated_at_ms",
            )?;
            let mut ensure_doc = tx.prepare_cached(
                "INSERT OR IGNORE INTO documents (name, text, version, updated_at_ms) VALUES (?1, '', 0, ?2)",
            )?;
            let mut sess_stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO sessions (doc, client_id, shadow_text, shadow_n, shadow_m,
                 backup_text, backup_n, backup_m, last_seq, link_op, link_version, backup_link_op,
                 backup_link_version, updated_at_ms, reset_version, reset_from_text,
                 reset_link_op, reset_link_version, session_key)
                 VALUES (?1, ?2,
                         COALESCE(?3, (SELECT text FROM documents WHERE name = ?1)), ?4, ?5,
                         COALESCE(?6, ?3, (SELECT text FROM documents WHERE name = ?1)), ?7, ?8,
                         ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?;
            let mut change_stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO changes (doc, version, op) VALUES (?1, ?2, ?3)",
            )?;
            let mut trim_stmt =
                tx.prepare_cached("DELETE FROM changes WHERE doc = ?1 AND version <= ?2")?;
            let mut del_stmt =
                tx.prepare_cached("DELETE FROM sessions WHERE doc = ?1 AND client_id = ?2")?;
            for r in records {
                match &r.text {
                    Some(text) => {
                        // Whole texts for now: O(document) per commit.
                        doc_stmt.execute(params![
                            r.doc,
                            text.flat(),
                            to_i64(r.version)?,
                            to_i64(now_ms)?
                        ])?;
                    }
                    None => {
                        ensure_doc.execute(params![r.doc, to_i64(now_ms)?])?;
                    }
                }
                for s in &r.sessions {
                    // Texts left out of the record equal the master (just written above, or
                    // already in the row) or the shadow: SQLite fills them in.
                    sess_stmt.execute(params![
                        r.doc,
                        s.client_id,
                        (!s.shadow_is_master).then(|| s.shadow.text.flat()),
                        to_i64(s.shadow.client_version)?,
                        to_i64(s.shadow.server_version)?,
                        (!s.backup_is_shadow).then(|| s.backup.text.flat()),
                        to_i64(s.backup.client_version)?,
                        to_i64(s.backup.server_version)?,
                        to_i64(s.last_seq)?,
                        s.link.as_ref().map(|l| l.0.to_text()),
                        s.link.as_ref().map(|l| to_i64(l.1)).transpose()?,
                        s.backup_link.as_ref().map(|l| l.0.to_text()),
                        s.backup_link.as_ref().map(|l| to_i64(l.1)).transpose()?,
                        to_i64(now_ms)?,
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
                    ])?;
                }
                for (v, op) in &r.changes {
                    change_stmt.execute(params![r.doc, to_i64(*v)?, op.to_text()])?;
                }
                trim_stmt.execute(params![r.doc, to_i64(r.changes_needed_after)?])?;
                for id in &r.removed_sessions {
                    del_stmt.execute(params![r.doc, id])?;
                }
            }
        }
        tx.commit()?;
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
