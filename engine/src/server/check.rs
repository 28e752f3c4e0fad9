//! The server's invariants, checked in builds with debug assertions.

use super::*;

impl ServerEngine {
    /// Every document's state agrees with itself, checked at the exit of the public methods that
    /// change it, in builds with debug assertions (tests, and the simulator's `sim` profile):
    /// each session's shadow, backup and pending-reset links fit their texts (and the master,
    /// where they reach the log's end), pending server edits are numbered up to the shadow's
    /// version, and a backup is never ahead of its shadow.
    pub(super) fn assert_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        // `wake` is never after a peer's deadline.
        if let Some(due) = self.next_deadline() {
            assert!(
                self.wake.is_some_and(|w| w <= due),
                "wake {:?} after the next deadline {due:?}",
                self.wake
            );
        }
        // A connection names only sessions it holds (`bind` relies on it to find the holder).
        for (pid, p) in &self.peers {
            for (doc, client) in &p.docs {
                let held = self
                    .docs
                    .get(doc)
                    .and_then(|d| d.sessions.get(client))
                    .is_some_and(|s| s.peer == Some(*pid));
                assert!(held, "peer {pid:?} names {doc}/{client}, held by another");
            }
        }
        for (name, d) in &self.docs {
            // Presence is kept only for sessions a connection holds (`presence.rs`).
            for session in d.presence.keys() {
                let held = d.sessions.get(session).is_some_and(|s| s.peer.is_some());
                assert!(
                    held,
                    "{name}: presence of {session:?}, which no connection holds"
                );
            }
            let end = d.log_end();
            let fits = |link: &Option<Link>, text: &Rope, what: &str| {
                if let Some(l) = link {
                    assert_eq!(l.op.base_len(), text.len(), "{name}: {what} link base");
                    assert!(l.idx <= end, "{name}: {what} link past the log");
                    if l.idx == end {
                        assert_eq!(
                            l.op.target_len(),
                            d.master.len(),
                            "{name}: {what} link target"
                        );
                    }
                }
            };
            for (id, sess) in &d.sessions {
                fits(&sess.link, &sess.shadow.text, id);
                fits(&sess.backup_link, &sess.backup.text, id);
                if let Some(r) = &sess.reset {
                    fits(&r.from_link, &r.from_text, id);
                }
                if let Some(e) = &sess.pending {
                    assert_eq!(
                        e.version() + 1,
                        sess.shadow.server_version,
                        "{name}/{id}: the pending edit is the shadow's last"
                    );
                }
                assert!(
                    sess.backup.client_version <= sess.shadow.client_version
                        && sess.backup.server_version <= sess.shadow.server_version,
                    "{name}/{id}: backup ahead of its shadow"
                );
            }
        }
    }
}
