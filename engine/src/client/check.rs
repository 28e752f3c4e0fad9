//! The client's invariants, checked in builds with debug assertions.

use super::*;

impl ClientEngine {
    /// The state's invariants, checked at the exit of every public method that changes it, in
    /// builds with debug assertions (tests, and the simulator's `sim` profile).
    pub(super) fn assert_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        assert_eq!(
            (self.local.base_len(), self.local.target_len()),
            (self.shadow.text.len(), self.text.len()),
            "local must turn the shadow into the text"
        );
        assert_eq!(
            self.local.apply_to(&self.shadow.text).as_ref(),
            Ok(&self.text),
            "local must turn the shadow into the text"
        );
        assert_eq!(
            self.has_unsent(),
            self.text != self.shadow.text,
            "has_unsent must say whether the text is the shadow"
        );
        assert!(self.pending_sent <= self.pending.len());
        let first = self.shadow.client_version - self.pending.len() as u64;
        for (k, p) in self.pending.iter().enumerate() {
            assert_eq!(
                p.version,
                first + k as u64,
                "client: pending edits numbered in a row"
            );
        }
        assert!(
            self.in_flight.is_none() || self.conn == Conn::Connected,
            "a request in flight needs a connection"
        );
    }
}
