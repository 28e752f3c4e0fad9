//! What the server engine hands its driver: outputs, and the records a store keeps (and what
//! a commit now would keep, for checking what a restart restores).

use super::*;

/// A connection, as numbered by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u64);

/// A session's durable state: what a restarted server needs to resume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Whose session.
    pub client_id: String,
    /// The key a resume must present (`None`: stored before keys existed; not resumable).
    pub key: Option<SessionKey>,
    /// The server's shadow of this client.
    pub shadow: Shadow,
    /// The backup shadow.
    pub backup: Shadow,
    /// Highest request `seq` seen.
    pub last_seq: u64,
    /// How the shadow becomes the master: (exact change, document version it reaches).
    pub link: Option<(Operation, u64)>,
    /// How the backup becomes the master.
    pub backup_link: Option<(Operation, u64)>,
    /// The shadow's text was left out (empty) because it equals the master this record's
    /// commit leaves in the store: the store fills it in (saves a copy of the document).
    pub shadow_is_master: bool,
    /// The backup's text was left out (empty) because it equals the shadow's.
    pub backup_is_shadow: bool,
    /// A reset sent and not yet acknowledged: kept so that a restarted server (or a document
    /// loaded again) sends it again naming the same pre-reset shadow, and the client's
    /// re-merge stays exact.
    pub reset: Option<PendingReset>,
}

/// A reset the client has not acknowledged yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReset {
    /// The server version the reset set; the client acknowledges it by sending it back.
    pub version: u64,
    /// The session's shadow text before the reset.
    pub from_text: Rope,
    /// How that shadow became the master: (exact change, document version it reaches).
    pub from_link: Option<(Operation, u64)>,
}

impl SessionRecord {
    /// Fill in texts left out (see `shadow_is_master`, `backup_is_shadow`) from `master`.
    pub fn resolve(&mut self, master: &Rope) {
        if self.shadow_is_master {
            self.shadow.text = master.clone();
            self.shadow_is_master = false;
        }
        if self.backup_is_shadow {
            self.backup.text.clone_from(&self.shadow.text);
            self.backup_is_shadow = false;
        }
    }
}

/// One atomic write the driver must commit before acting on later outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistRecord {
    /// Document name.
    pub doc: String,
    /// The new master text, when it changed.
    pub text: Option<Rope>,
    /// The document's version (count of master changes).
    pub version: u64,
    /// Sessions to write.
    pub sessions: Vec<SessionRecord>,
    /// Sessions to delete.
    pub removed_sessions: Vec<String>,
    /// New master changes: (the document version each produces, the exact change).
    pub changes: Vec<(u64, Operation)>,
    /// Changes producing this version or an earlier one are no longer needed.
    pub changes_needed_after: u64,
}

/// A document as the store hands it back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredDocument {
    /// The master text.
    pub text: Rope,
    /// The document's version.
    pub version: u64,
    /// Sessions that may be resumed.
    pub sessions: Vec<SessionRecord>,
    /// Recent master changes, by the version each produces, oldest first.
    pub changes: Vec<(u64, Operation)>,
}

/// What the server engine asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOutput {
    /// Send `msg` to `to`.
    Send {
        /// The peer.
        to: PeerId,
        /// The message.
        msg: ServerMsg,
    },
    /// Commit this record durably before acting on any later output.
    Persist(PersistRecord),
    /// Close the connection to `peer` (it went silent or broke a limit).
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
}

impl ServerEngine {
    /// Create `doc` holding `text` (not loaded, and absent from the store: the caller checks),
    /// to be written whole by the next commit; [`ServerEngine::release`] lets it go after.
    pub fn create_document(&mut self, doc: &str, text: &str) -> Result<(), EngineError> {
        if !self.valid_name(doc) {
            return Err(EngineError::BadName);
        }
        self.load_document(
            doc,
            StoredDocument {
                text: Rope::from(text),
                ..StoredDocument::default()
            },
        )?;
        self.persist_text(doc);
        self.assert_invariants();
        Ok(())
    }

    /// Let `doc` leave memory if no session is attached (the store has all of it).
    pub fn release(&mut self, doc: &str) {
        self.unload_if_unused(doc);
    }
}

impl ServerEngine {
    /// Write a loaded document's whole text, as it is in memory (a creation; a stored text
    /// normalised on load).
    pub(super) fn persist_text(&mut self, doc: &str) {
        let Some(d) = self.docs.get(doc) else {
            return;
        };
        self.outputs.push_back(ServerOutput::Persist(PersistRecord {
            doc: doc.to_string(),
            text: Some(d.master.clone()),
            version: d.version,
            sessions: Vec::new(),
            removed_sessions: Vec::new(),
            changes: Vec::new(),
            changes_needed_after: d.log_base,
        }));
    }

    /// A session's durable form as a commit now would write it, texts filled in: what a
    /// restarted server must find in the store to resume the session as it is.
    pub fn session_record(&self, doc: &str, client_id: &str) -> Option<SessionRecord> {
        let d = self.docs.get(doc)?;
        let mut r = d.sessions.get(client_id)?.record(client_id, d.log_end());
        r.resolve(&d.master);
        Some(r)
    }

    /// The change from a session's shadow to the master, and whether its link and the change
    /// log gave it exactly (`false`: a diff stood in).
    pub fn shadow_change(&self, doc: &str, client_id: &str) -> Option<(Operation, bool)> {
        let d = self.docs.get(doc)?;
        let s = d.sessions.get(client_id)?;
        let mut stats = Stats::default();
        let (text, log) = (&s.shadow.text, &d.log);
        let op = to_master(&d.master, log, d.log_base, text, &s.link, &mut stats);
        Some((op, stats.link_fallbacks == 0))
    }
}
