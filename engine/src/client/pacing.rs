//! The client's pacing: the sync cycle shortens while anything changes and doubles while
//! nothing does, typing is sent one short cycle after the last, and a `changed` hint brings
//! the next cycle forward (docs/protocol.md, *Hints and the idle back-off*).

use super::*;

impl ClientEngine {
    /// A `changed` hint: the document moved on since our last request.
    pub(super) fn on_hint(&mut self, now: Time, doc: &str) {
        if doc != self.doc || self.conn != Conn::Connected {
            self.stats.stale_skipped += 1;
            return;
        }
        self.stats.hints += 1;
        self.cycle_ms = self.config.sync_interval_ms;
        if self.in_flight.is_some() {
            self.hinted = true;
            return;
        }
        // Sync at once, unless the last cycle began less than one cycle ago (a client
        // does not chase every keystroke of a busy document).
        self.next_sync_at = self
            .next_sync_at
            .min(self.last_cycle_at.plus_ms(self.cycle_ms));
        if now >= self.next_sync_at {
            self.stats.hinted_syncs += 1;
            self.cycle(now);
        }
    }

    /// After a reply: a round trip that carried nothing either way (and no hint meanwhile)
    /// doubles the cycle, up to `max_idle_sync_ms`; anything else brings it back.
    pub(super) fn pace(&mut self, idle: bool) {
        let base = self.config.sync_interval_ms;
        self.cycle_ms = if idle && !self.hinted {
            (self.cycle_ms.saturating_mul(2)).clamp(base, self.config.max_idle_sync_ms.max(base))
        } else {
            base
        };
        self.hinted = false;
        self.next_sync_at = self.last_cycle_at.plus_ms(self.cycle_ms);
    }

    /// When the next cycle is due: the idle cycle's end, or sooner when there is typing to
    /// send (one `sync_interval_ms` after the last cycle began).
    pub(super) fn sync_due(&self) -> Time {
        if self.has_unsent() {
            let typing = self.last_cycle_at.plus_ms(self.config.sync_interval_ms);
            self.next_sync_at.min(typing)
        } else {
            self.next_sync_at
        }
    }
}
