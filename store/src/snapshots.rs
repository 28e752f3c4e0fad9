//! How the SQLite store keeps texts without writing a whole document per commit.
//!
//! - **The master as a snapshot plus changes.** `documents.text` is the text at
//!   `documents.text_version`; every change after it, up to `documents.version`, is in the
//!   store's own `chain` table (the engine's `changes` are trimmed as the engine says). A new
//!   snapshot is written every
//!   [`SNAPSHOT_EVERY`] changes, or whenever the store cannot *verify* a record's changes: each
//!   store keeps the last text it committed per document ([`Verified`]); a record's changes
//!   are replayed on it and must give the record's text (length and CRC-32, both O(edit) on a
//!   rope). So the log is never trusted blindly: a record whose changes do not lead to its text
//!   is written as a snapshot, as every record used to be.
//! - **Session texts as references.** A shadow or backup equal to the master the commit leaves
//!   is stored as `shadow_at`/`backup_at` = that version, not as text. Loading resolves a
//!   reference by replaying the changes from the snapshot ([`replay`]), once per version, and
//!   every session at that version shares the resulting rope. Before a new snapshot passes a
//!   referenced version, that version's text is kept in `texts` (one row per version, however
//!   many sessions refer to it), and rows no session refers to are dropped then.
//!
//! Loads check the replayed master against `documents.checksum`: a mismatch is reported as
//! corruption, never served.

use std::collections::BTreeMap;

use dsync_engine::{Operation, Rope};

/// Changes after a snapshot before the next one is written: a load replays at most this many
/// (plus those kept for older references), and a snapshot costs one document write per this
/// many changes.
pub const SNAPSHOT_EVERY: u64 = 256;

/// A session referring to a version this many changes behind the current one has that
/// version's text kept in `texts`, so the snapshot can move past it (such sessions are
/// typically gone: a live client is brought up to date every sync cycle).
pub const MAX_LAG: u64 = 1024;

/// Documents whose last committed text a store keeps for verifying the next record (each an
/// O(1) clone of the engine's rope). Past it the least recently written is forgotten: its
/// next record is written as a snapshot.
pub const VERIFIED_DOCUMENTS: usize = 10_000;

/// Apply `changes` (by version, in order) to `text`, which is the document at version `from`,
/// up to version `to`. `None` when a change is missing or does not fit.
pub fn replay(text: &Rope, from: u64, to: u64, changes: &BTreeMap<u64, Operation>) -> Option<Rope> {
    let mut t = text.clone();
    for v in from + 1..=to {
        changes.get(&v)?.apply_in_place(&mut t).ok()?;
    }
    Some(t)
}

/// The last text committed per document, for verifying records (see the module docs).
#[derive(Debug, Default)]
pub struct Verified {
    texts: BTreeMap<String, (u64, Rope, u64)>,
    /// Commits so far: the recency stamp of the entries.
    clock: u64,
}

impl Verified {
    /// The text of `doc` at `version`, if that is the last one this store committed.
    pub fn at(&self, doc: &str, version: u64) -> Option<&Rope> {
        self.texts
            .get(doc)
            .filter(|(v, _, _)| *v == version)
            .map(|(_, t, _)| t)
    }

    /// Remember `text` as `doc`'s at `version` (after its transaction committed).
    pub fn set(&mut self, doc: &str, version: u64, text: Rope) {
        self.clock += 1;
        self.texts
            .insert(doc.to_string(), (version, text, self.clock));
        if self.texts.len() > VERIFIED_DOCUMENTS {
            let oldest = self
                .texts
                .iter()
                .min_by_key(|(_, (_, _, stamp))| *stamp)
                .map(|(d, _)| d.clone());
            if let Some(d) = oldest {
                self.texts.remove(&d);
            }
        }
    }
}

/// Whether `changes` (this record's, by version) take `before` (at `from`) to `after` (at
/// `to`): every version in between present, every change fitting, and the result equal in
/// length and CRC-32 to `after`.
pub fn leads_to(
    before: &Rope,
    from: u64,
    changes: &[(u64, Operation)],
    to: u64,
    after: &Rope,
) -> bool {
    if to <= from {
        return false;
    }
    let by_version: BTreeMap<u64, Operation> = changes
        .iter()
        .filter(|(v, _)| *v > from && *v <= to)
        .map(|(v, op)| (*v, op.clone()))
        .collect();
    replay(before, from, to, &by_version)
        .is_some_and(|t| t.len() == after.len() && t.checksum() == after.checksum())
}
