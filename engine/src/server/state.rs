//! A session's and a document's own operations: fresh sessions, stored records, the change
//! log and its trimming, and the exact change from a shadow to the master.

use super::*;

impl Session {
    pub(super) fn fresh(
        master: &Rope,
        seq: u64,
        peer: PeerId,
        now: Time,
        key: SessionKey,
    ) -> Session {
        let shadow = Shadow {
            text: master.clone(),
            client_version: 0,
            server_version: 0,
        };
        Session {
            peer: Some(peer),
            backup: shadow.clone(),
            link: None,
            backup_link: None,
            shadow,
            pending: None,
            last_seq: seq,
            reset: None,
            bad_streak: 0,
            last_active: now,
            key: Some(key),
            hinted: false,
        }
    }

    /// Never used: no edit either way, no reset, no request since the connect that opened it.
    /// A connect without the key may replace such a session (a retried connect).
    pub(super) fn unused(&self) -> bool {
        let zero = |sh: &Shadow| sh.client_version == 0 && sh.server_version == 0;
        zero(&self.shadow) && zero(&self.backup) && self.reset.is_none() && self.pending.is_none()
    }

    /// The durable form of this session. `log_end` is the document's current version: a
    /// shadow linked to it with no change *is* the master, and its text is left out.
    pub(super) fn record(&self, client_id: &str, log_end: u64) -> SessionRecord {
        let link = |l: &Option<Link>| l.as_ref().map(|l| (l.op.clone(), l.idx));
        let shadow_is_master = self
            .link
            .as_ref()
            .is_some_and(|l| l.idx == log_end && l.op.is_noop());
        // Within a session, equal versions mean equal texts.
        let backup_is_shadow = (self.backup.client_version, self.backup.server_version)
            == (self.shadow.client_version, self.shadow.server_version);
        let text_unless = |skip: bool, sh: &Shadow| Shadow {
            text: if skip { Rope::new() } else { sh.text.clone() },
            client_version: sh.client_version,
            server_version: sh.server_version,
        };
        SessionRecord {
            client_id: client_id.to_string(),
            key: self.key,
            shadow: text_unless(shadow_is_master, &self.shadow),
            backup: text_unless(backup_is_shadow, &self.backup),
            last_seq: self.last_seq,
            link: link(&self.link),
            backup_link: link(&self.backup_link),
            shadow_is_master,
            backup_is_shadow,
            reset: self.reset.as_ref().map(|r| PendingReset {
                version: r.version,
                from_text: r.from_text.clone(),
                from_link: link(&r.from_link),
            }),
        }
    }
}

impl Document {
    pub(super) fn log_end(&self) -> u64 {
        self.log_base + self.log.len() as u64
    }

    pub(super) fn link_now(&self) -> Option<Link> {
        Some(Link {
            op: Operation::identity(self.master.len()),
            idx: self.log_end(),
        })
    }

    /// Forget log entries no session needs (and the oldest past `max_log`, counted in
    /// `stats.log_overflows` when a session still needed them).
    pub(super) fn trim_log(&mut self, max_log: usize, stats: &mut Stats) {
        // Trimming scans every session: a short log waits until it holds `TRIM_BATCH` entries,
        // or reaches `max_log` when that is smaller (the limit holds after every change).
        if self.log.len() < TRIM_BATCH.min(max_log.max(1)) {
            return;
        }
        tracing::trace!(
            len = self.log.len(),
            base = self.log_base,
            "trimming the change log"
        );
        // Every link still in use: the shadow's, the backup's, and the one a resent reset
        // needs to tell the client where it started (dropping that one turned resets under
        // corruption into diffs that split tokens: scenarios/regressions/).
        let needed = self
            .sessions
            .values()
            .flat_map(|s| {
                [
                    s.link.as_ref(),
                    s.backup_link.as_ref(),
                    s.reset.as_ref().and_then(|r| r.from_link.as_ref()),
                ]
            })
            .filter_map(|l| l.map(|l| l.idx))
            .min()
            .unwrap_or(self.log_end());
        // A computed count, not a loop on a condition: the drain ends whatever the numbers.
        // Entries below every link go; so do the oldest past `max_log`, each of those still
        // needed being an overflow.
        let base = self.log_base;
        let unneeded = needed.min(self.log_end()).saturating_sub(base) as usize;
        let excess = self.log.len().saturating_sub(max_log.max(1));
        let drop = unneeded.max(excess);
        debug_assert!(drop <= self.log.len());
        stats.log_overflows += (drop as u64).saturating_sub(needed.saturating_sub(base));
        self.log.drain(..drop);
        self.log_base += drop as u64;
    }
}

/// Log entries a document gathers before trimming scans its sessions for what they still need.
const TRIM_BATCH: usize = 32;

/// The exact change from `text` (a shadow) to `master`, from its link and the log when they
/// reach, else from a diff (counted in `stats.link_fallbacks`).
pub(super) fn to_master(
    master: &Rope,
    log: &VecDeque<Operation>,
    log_base: u64,
    text: &Rope,
    link: &Option<Link>,
    stats: &mut Stats,
) -> Operation {
    if let Some(l) = link {
        if l.idx >= log_base && l.idx <= log_base + log.len() as u64 {
            // Composed as a balanced tree: sequential composition re-walks the growing result
            // for every entry.
            let since: Vec<&Operation> = log.range((l.idx - log_base) as usize..).collect();
            let op = match Operation::compose_all(&since) {
                Ok(Some(rest)) => l.op.compose(&rest).ok(),
                Ok(None) => Some(l.op.clone()),
                Err(_) => None,
            };
            if let Some(op) =
                op.filter(|o| o.base_len() == text.len() && o.target_len() == master.len())
            {
                return op;
            }
        }
    }
    stats.link_fallbacks += 1;
    Operation::from_diff(&text.flat(), &master.flat())
}
