//! Documents' history in the SQLite store (schema version 5): every exact change of a master
//! with the time it was committed, from a base text on, so the text as of any kept version can
//! be rebuilt and the changes listed.
//!
//! - `history(doc, version, op, at_ms)`: the change that made `version`, committed at `at_ms`
//!   (the driver's wall clock, Unix ms).
//! - `history_base(doc, version, text, at_ms)`: the text at the oldest kept version.
//!
//! Kept contiguous from the base: a committed master that the kept changes do not lead to (a
//! text written whole with no change before it — a new document, one created over HTTP, a
//! record the store could not verify) starts the history again at that text, and the older
//! changes, which no longer lead to the master, are dropped.
//!
//! Bounded ([`HistoryLimits`]): changes committed longer ago than the retention, and the oldest
//! beyond the most kept per document, are folded into the base (replayed onto it). Folding
//! costs a document's text, so the count limit folds [`FOLD_BATCH`] changes at a time.

use std::collections::BTreeMap;

use dsync_engine::{Operation, PersistRecord, Rope};
use rusqlite::{params, Connection, OptionalExtension};

use crate::snapshots::replay;
use crate::StoreError;

/// Changes folded at once when a document passes its most kept changes.
pub const FOLD_BATCH: u64 = 1024;

/// How much history a store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Changes committed longer ago than this (ms) are folded into the base by
    /// [`crate::SqliteStore::collect_history`]; `None`: kept until the count limit.
    pub retention_ms: Option<u64>,
    /// Most changes kept per document (past it, the oldest are folded, [`FOLD_BATCH`] at a
    /// time). 0 keeps no history at all.
    pub max_changes: u64,
}

impl Default for HistoryLimits {
    /// 30 days, and at most 100,000 changes per document.
    fn default() -> Self {
        HistoryLimits {
            retention_ms: Some(30 * 24 * 3600 * 1000),
            max_changes: 100_000,
        }
    }
}

/// One kept change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The version it made.
    pub version: u64,
    /// When it was committed (Unix ms).
    pub at_ms: u64,
    /// The exact change, on the text at `version - 1`.
    pub op: Operation,
}

/// A page of a document's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The oldest kept version (its text is the base; no change is kept for it).
    pub base_version: u64,
    /// When the base was committed (Unix ms).
    pub base_at_ms: u64,
    /// The newest kept version.
    pub latest: u64,
    /// The changes asked for, oldest first.
    pub changes: Vec<Change>,
}

pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS history (
         doc TEXT NOT NULL,
         version INTEGER NOT NULL,
         op TEXT NOT NULL,
         at_ms INTEGER NOT NULL,
         PRIMARY KEY (doc, version)
     );
     CREATE TABLE IF NOT EXISTS history_base (
         doc TEXT PRIMARY KEY NOT NULL,
         version INTEGER NOT NULL,
         text TEXT NOT NULL,
         at_ms INTEGER NOT NULL
     );";

fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::OutOfRange { value: v })
}

fn num(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        table: "history",
        what: format!("negative number {v}"),
    })
}

/// The base's version and the newest kept version of `doc`, if it has a history.
fn span(conn: &Connection, doc: &str) -> Result<Option<(u64, u64)>, StoreError> {
    let base: Option<i64> = conn
        .prepare_cached("SELECT version FROM history_base WHERE doc = ?1")?
        .query_row(params![doc], |r| r.get(0))
        .optional()?;
    let Some(base) = base else {
        return Ok(None);
    };
    let last: Option<i64> = conn
        .prepare_cached("SELECT MAX(version) FROM history WHERE doc = ?1")?
        .query_row(params![doc], |r| r.get(0))?;
    Ok(Some((num(base)?, num(last.unwrap_or(base))?)))
}

/// Before `r` is written: a document without history starts it at the master before `r`
/// (`previous`: its version and text, when the store has them; asked only then, as it may
/// cost a replay), so that `r`'s own changes are kept by [`record`]. Returns what is kept of
/// the history now (the base's version and the newest kept version), for [`record`].
pub(crate) fn start(
    conn: &Connection,
    r: &PersistRecord,
    previous: impl FnOnce() -> Result<Option<(u64, Rope)>, StoreError>,
    now_ms: i64,
    limits: HistoryLimits,
) -> Result<Option<(u64, u64)>, StoreError> {
    if limits.max_changes == 0 {
        return Ok(None);
    }
    let kept = span(conn, &r.doc)?;
    if kept.is_some() || r.changes.is_empty() {
        return Ok(kept);
    }
    if let Some((v, text)) = previous()?.filter(|(v, _)| *v < r.version) {
        conn.prepare_cached(
            "INSERT INTO history_base (doc, version, text, at_ms) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![r.doc, int(v)?, text.to_string(), now_ms])?;
        return Ok(Some((v, v)));
    }
    Ok(None)
}

/// Record what `r` did to its document's master, which it leaves as `master`: its changes if
/// they continue the kept history and the store `verified` them (replayed them from the last
/// master to `master`), else a new base. `kept` is what [`start`] returned.
pub(crate) fn record(
    conn: &Connection,
    r: &PersistRecord,
    master: &Rope,
    kept: Option<(u64, u64)>,
    verified: bool,
    now_ms: i64,
    limits: HistoryLimits,
) -> Result<(), StoreError> {
    if limits.max_changes == 0 {
        return Ok(());
    }
    if kept.is_some_and(|(_, last)| last == r.version) {
        return Ok(());
    }
    let changes: BTreeMap<u64, &Operation> = r.changes.iter().map(|(v, op)| (*v, op)).collect();
    let follows = verified
        && kept.is_some_and(|(_, last)| {
            last < r.version && (last + 1..=r.version).all(|v| changes.contains_key(&v))
        });
    if follows {
        let last = kept.map_or(0, |k| k.1);
        let mut ins = conn.prepare_cached(
            "INSERT INTO history (doc, version, op, at_ms) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (v, op) in changes.range(last + 1..=r.version) {
            ins.execute(params![r.doc, int(*v)?, op.to_text(), now_ms])?;
        }
        let base = kept.map_or(0, |k| k.0);
        if r.version - base > limits.max_changes + FOLD_BATCH {
            fold(conn, &r.doc, r.version - limits.max_changes)?;
        }
    } else {
        conn.prepare_cached("DELETE FROM history WHERE doc = ?1")?
            .execute(params![r.doc])?;
        conn.prepare_cached(
            "INSERT OR REPLACE INTO history_base (doc, version, text, at_ms)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![r.doc, int(r.version)?, master.to_string(), now_ms])?;
    }
    Ok(())
}

/// The kept changes of `doc` after version `after` up to `to`, at most `limit`, by version.
fn select(
    conn: &Connection,
    doc: &str,
    after: u64,
    to: u64,
    limit: usize,
) -> Result<Vec<Change>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT version, op, at_ms FROM history WHERE doc = ?1 AND version > ?2 AND version <= ?3
         ORDER BY version LIMIT ?4",
    )?;
    let to = int(to.min(i64::MAX as u64))?;
    let limit = int(limit.min(i64::MAX as usize) as u64)?;
    let rows = stmt.query_map(params![doc, int(after)?, to, limit], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (v, op, at) = row?;
        out.push(Change {
            version: num(v)?,
            op: Operation::parse(&op).map_err(|e| StoreError::Corrupt {
                table: "history",
                what: e.to_string(),
            })?,
            at_ms: num(at)?,
        });
    }
    Ok(out)
}

/// The base of `doc`: (version, text, at_ms).
fn base(conn: &Connection, doc: &str) -> Result<Option<(u64, Rope, u64)>, StoreError> {
    let row: Option<(i64, String, i64)> = conn
        .prepare_cached("SELECT version, text, at_ms FROM history_base WHERE doc = ?1")?
        .query_row(params![doc], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    row.map(|(v, t, at)| Ok((num(v)?, Rope::from(t), num(at)?)))
        .transpose()
}

/// Move `doc`'s base up to version `to` (at most its newest kept version): the changes up to
/// it are replayed onto the base and dropped.
pub(crate) fn fold(conn: &Connection, doc: &str, to: u64) -> Result<(), StoreError> {
    let Some((from, text, _)) = base(conn, doc)? else {
        return Ok(());
    };
    if to <= from {
        return Ok(());
    }
    let changes = select(conn, doc, from, to, usize::MAX)?;
    let at = changes.last().map_or(0, |c| c.at_ms);
    let to = changes.last().map_or(from, |c| c.version);
    let ops: BTreeMap<u64, Operation> = changes.into_iter().map(|c| (c.version, c.op)).collect();
    let text = replay(&text, from, to, &ops).ok_or_else(|| StoreError::Corrupt {
        table: "history",
        what: format!("the changes of {doc:?} after version {from} do not fit its base"),
    })?;
    conn.prepare_cached(
        "UPDATE history_base SET version = ?2, text = ?3, at_ms = ?4 WHERE doc = ?1",
    )?
    .execute(params![doc, int(to)?, text.to_string(), int(at)?])?;
    conn.prepare_cached("DELETE FROM history WHERE doc = ?1 AND version <= ?2")?
        .execute(params![doc, int(to)?])?;
    Ok(())
}

/// Up to `limit` kept changes of `doc` after version `after` (`None`: no history kept).
pub(crate) fn page(
    conn: &Connection,
    doc: &str,
    after: u64,
    limit: usize,
) -> Result<Option<History>, StoreError> {
    let Some((base_version, _, base_at_ms)) = base(conn, doc)? else {
        return Ok(None);
    };
    let latest = span(conn, doc)?.map_or(base_version, |s| s.1);
    let changes = select(conn, doc, after, u64::MAX, limit)?;
    Ok(Some(History {
        base_version,
        base_at_ms,
        latest,
        changes,
    }))
}

/// The text of `doc` as of `version`, if that version is kept (the base or a later one).
pub(crate) fn text_at(
    conn: &Connection,
    doc: &str,
    version: u64,
) -> Result<Option<Rope>, StoreError> {
    let Some((from, text, _)) = base(conn, doc)? else {
        return Ok(None);
    };
    let latest = span(conn, doc)?.map_or(from, |s| s.1);
    if version < from || version > latest {
        return Ok(None);
    }
    let ops: BTreeMap<u64, Operation> = select(conn, doc, from, version, usize::MAX)?
        .into_iter()
        .map(|c| (c.version, c.op))
        .collect();
    replay(&text, from, version, &ops)
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt {
            table: "history",
            what: format!("the changes of {doc:?} after version {from} do not fit its base"),
        })
}

/// Fold every document's changes committed before `before_ms` into its base; returns how many
/// changes were folded.
pub(crate) fn collect(conn: &Connection, before_ms: u64) -> Result<u64, StoreError> {
    let due: Vec<(String, i64)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT doc, MAX(version) FROM history WHERE at_ms < ?1 GROUP BY doc ORDER BY doc",
        )?;
        let rows = stmt.query_map(params![int(before_ms)?], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut folded = 0;
    for (doc, to) in due {
        let to = num(to)?;
        let from = base(conn, &doc)?.map_or(to, |b| b.0);
        fold(conn, &doc, to)?;
        folded += to.saturating_sub(from);
    }
    Ok(folded)
}
