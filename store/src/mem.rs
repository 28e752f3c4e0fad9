//! [`MemStore`]: the store's contract in plain ordered maps, for tests and benches that want
//! the semantics of [`crate::SqliteStore`] without a database.

use std::collections::BTreeMap;

use dsync_engine::{Operation, PersistRecord, Rope, SessionRecord, StoredDocument};

use crate::{Store, StoreError};

/// One stored document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Doc {
    text: Rope,
    version: u64,
    sessions: BTreeMap<String, SessionRecord>,
    changes: BTreeMap<u64, Operation>,
}

/// An in-memory store with the same semantics as the SQLite one (change log included).
/// Cloning it is a snapshot: what a crash would leave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStore {
    docs: BTreeMap<String, Doc>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Put a document in place, as if it had been committed.
    pub fn insert(&mut self, doc: &str, stored: StoredDocument) {
        let d = Doc {
            text: stored.text,
            version: stored.version,
            sessions: stored
                .sessions
                .into_iter()
                .map(|s| (s.client_id.clone(), s))
                .collect(),
            changes: stored.changes.into_iter().collect(),
        };
        self.docs.insert(doc.to_string(), d);
    }

    fn apply(&mut self, r: &PersistRecord) {
        let d = self.docs.entry(r.doc.clone()).or_default();
        if let Some(text) = &r.text {
            d.text.clone_from(text);
            d.version = r.version;
        }
        for s in &r.sessions {
            let mut s = s.clone();
            s.resolve(&d.text);
            d.sessions.insert(s.client_id.clone(), s);
        }
        for (v, op) in &r.changes {
            d.changes.insert(*v, op.clone());
        }
        d.changes = d
            .changes
            .split_off(&(r.changes_needed_after.saturating_add(1)));
        for id in &r.removed_sessions {
            d.sessions.remove(id);
        }
    }
}

impl Store for MemStore {
    fn load(&self, doc: &str) -> Result<Option<StoredDocument>, StoreError> {
        Ok(self.docs.get(doc).map(|d| StoredDocument {
            text: d.text.clone(),
            version: d.version,
            sessions: d.sessions.values().cloned().collect(),
            changes: d.changes.iter().map(|(v, op)| (*v, op.clone())).collect(),
        }))
    }

    fn commit(&mut self, records: &[PersistRecord], _now_ms: u64) -> Result<(), StoreError> {
        for r in records {
            self.apply(r);
        }
        Ok(())
    }

    fn documents(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.docs.keys().cloned().collect())
    }
}
