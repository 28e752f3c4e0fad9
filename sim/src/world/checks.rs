//! The checks: versions, durability, progress, exactness, tokens, the final text and
//! convergence; samples for the divergence plot; the report at the end.

use super::*;

/// `S,c0,c2`: nodes as a fault line names them.
pub(crate) fn node_list(v: &[Node]) -> String {
    v.iter()
        .map(|n| node_name(*n))
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn divergence(a: &str, b: &str) -> u64 {
    if a == b {
        return 0;
    }
    let p = dsync_engine::diff::common_prefix_len(a, b);
    let s = dsync_engine::diff::common_suffix_len(a, b, a.len().min(b.len()) - p);
    let da = a[p..a.len() - s].chars().count();
    let db = b[p..b.len() - s].chars().count();
    da.max(db) as u64
}

impl<'a> Sim<'a> {
    pub(super) fn master_text(&self) -> String {
        match self.server_engine().and_then(|s| s.master(DOC)) {
            Some(m) => m.to_string(),
            None => self
                .store
                .load(DOC)
                .ok()
                .flatten()
                .map(|d| d.text.to_string())
                .unwrap_or_default(),
        }
    }

    /// Safety: versions only move forward within a session (a reset may move them).
    pub(super) fn check_versions(&mut self) {
        for i in 0..self.clients.len() {
            let Some(e) = self.clients[i].node.as_ref().map(ClientNode::engine) else {
                continue;
            };
            // Everything this client typed so far is acknowledged, hence durable.
            if self.users.ledger.has_unsettled(i) && e.is_settled() {
                self.users.ledger.settled(i);
            }
            let sh = e.shadow();
            let now = (sh.client_version, sh.server_version, e.stats().resets);
            let (n0, m0, r0) = self.clients[i].last_versions;
            if now.2 == r0 && (now.0 < n0 || now.1 < m0) {
                let detail = format!(
                    "c{i} versions went back from (n={n0}, m={m0}) to (n={}, m={})",
                    now.0, now.1
                );
                self.fail(CheckKind::Safety, detail);
            }
            self.clients[i].last_versions = now;
        }
    }

    /// Safety: durability of acknowledgements. Every edit a client saw acknowledged is in the
    /// store: the client's session there has applied at least as many of its edits (the
    /// server commits before it acknowledges, and applies each version once). Checked against
    /// the store's own content after every server crash and at the end.
    pub(super) fn check_durable(&mut self, when: &str) {
        let stored = match self.store.load(DOC) {
            Ok(d) => d.unwrap_or_default(),
            Err(e) => return self.fail(CheckKind::Safety, format!("store load failed: {e}")),
        };
        for i in 0..self.clients.len() {
            let Some(e) = self.clients[i].node.as_ref().map(ClientNode::engine) else {
                continue;
            };
            let acked = e
                .pending()
                .first()
                .map_or(e.shadow().client_version, |p| p.version());
            if acked == 0 || self.removed_sessions.contains(e.client_id()) {
                continue;
            }
            let held = stored
                .sessions
                .iter()
                .find(|s| s.client_id == e.client_id())
                .map(|s| s.shadow.client_version);
            if held.is_none_or(|n| n < acked) {
                let held = held.map_or("no session".to_string(), |n| format!("n={n}"));
                let detail = format!(
                    "durability {when}: c{i} saw its edits up to n={acked} acknowledged, but the \
                     store holds {held} for {}",
                    e.client_id()
                );
                return self.fail(CheckKind::Safety, detail);
            }
        }
    }

    /// Liveness during faults, for runs that draw their faults (explicit timelines name each
    /// message's fate): see [`Progress`].
    pub(super) fn check_progress(&mut self) {
        if !self.random || self.stopped_at.is_some() || self.verdict.is_some() {
            return;
        }
        for i in 0..self.clients.len() {
            let state = self.progress_state(i);
            // A slow clock stretches the client's timers.
            let slow = (-self.clients[i].drift_pct).clamp(0, 50) as u64;
            let bound = PROGRESS_WITHIN_MS * 100 / (100 - slow);
            if let Err(stuck) = self.progress.observe(i, self.now, state, bound) {
                return self.fail(
                    CheckKind::Liveness,
                    format!(
                        "no progress during faults: c{i} could reach the server over a clean \
                         link for {:.3}s with typing to send, and none of it was acknowledged",
                        stuck as f64 / 1000.0
                    ),
                );
            }
        }
    }

    /// Client `i`'s acknowledgement marker when it is reachable with typing to send.
    pub(super) fn progress_state(&self, i: usize) -> Option<Marker> {
        let e = self.clients[i].node.as_ref().map(ClientNode::engine)?;
        self.server.as_ref()?;
        let (c, s) = (Node::Client(i), Node::Server);
        let clean = |f: &LinkFaults| f.drop == 0.0 && f.corrupt == 0.0;
        if self.blocked(c, s)
            || self.blocked(s, c)
            || !clean(self.link_faults(c, s))
            || !clean(self.link_faults(s, c))
        {
            return None;
        }
        let oldest = e.pending().first().map(|p| p.version());
        if oldest.is_none() && *e.text() == e.shadow().text {
            return None;
        }
        let acked_below = oldest.unwrap_or(e.shadow().client_version);
        Some((acked_below, e.stats().resets))
    }

    /// Safety: merges stay exact. A failed exact merge is a bookkeeping bug; a session whose
    /// exact change was lost is one too, unless the change log overflowed its limit.
    pub(super) fn check_exact(&mut self) {
        let mut server = self.server_past;
        if let Some(s) = &self.server {
            server.add(s.engine_stats());
        }
        let mut merge_fallbacks = server.merge_fallbacks;
        for c in &self.clients {
            merge_fallbacks += c.past.merge_fallbacks;
            merge_fallbacks += c
                .node
                .as_ref()
                .map(ClientNode::engine)
                .map_or(0, |e| e.stats().merge_fallbacks);
        }
        if merge_fallbacks > 0 {
            return self.fail(
                CheckKind::Safety,
                format!("{merge_fallbacks} exact merges failed and fell back to texts"),
            );
        }
        if server.link_fallbacks > 0 && server.log_overflows == 0 {
            self.fail(
                CheckKind::Safety,
                "a session's exact change to the master was lost without a log overflow; a diff stood in"
                    .into(),
            );
        }
    }

    /// Safety (token runs): the master never holds a duplicated or invented token.
    pub(super) fn check_master_tokens(&mut self, master: &str) {
        if let Err(why) = self.users.check_master_tokens(master) {
            self.fail(CheckKind::Intent, why);
        }
    }

    pub(super) fn check_intent_final(&mut self, master: &str) {
        if !self.sc.checks.intent {
            return;
        }
        let may_drop = self.config.merge == MergeStrategy::FuzzyPatch;
        let initial = &self.sc.topology.initial_text;
        let (log, verdict) = self.users.check_final(master, may_drop, initial);
        for line in log {
            self.log("check", line);
        }
        if let Err(why) = verdict {
            self.fail(CheckKind::Intent, why);
        }
    }

    /// Liveness: everything agrees, nothing pending or in flight.
    pub(super) fn converged(&self) -> Result<(), String> {
        let Some(server) = self.server_engine() else {
            return Err("server down".into());
        };
        // Empty polls and their empty replies may be under way: they change nothing.
        if self.in_flight_substantive > 0 {
            return Err(format!(
                "{} messages with edits in flight",
                self.in_flight_substantive
            ));
        }
        let Some(master) = server.master(DOC) else {
            return Err("document not loaded".into());
        };
        for (i, c) in self.clients.iter().enumerate() {
            let Some(e) = c.node.as_ref().map(ClientNode::engine) else {
                return Err(format!("c{i} down"));
            };
            if !e.is_connected() || !e.pending().is_empty() || *e.text() != e.shadow().text {
                return Err(format!("c{i} not settled (pending={})", e.pending().len()));
            }
            if e.text() != master {
                return Err(format!(
                    "c{i} text {} != master {}",
                    digest(e.text()),
                    digest(master)
                ));
            }
            let Some((shadow, _)) = server.session(DOC, e.client_id()) else {
                return Err(format!("no server session for c{i}"));
            };
            if shadow != e.shadow() {
                return Err(format!(
                    "c{i} shadow (n={}, m={}) != server's (n={}, m={})",
                    e.shadow().client_version,
                    e.shadow().server_version,
                    shadow.client_version,
                    shadow.server_version
                ));
            }
            if server.pending_len(DOC, e.client_id()) != Some(0) {
                return Err(format!("server has edits pending for c{i}"));
            }
        }
        Ok(())
    }

    pub(super) fn sample(&mut self) {
        if self.chart.is_none() || self.last_sample.is_some_and(|t| self.now < t + 100) {
            return;
        }
        self.last_sample = Some(self.now);
        let master = self.master_text();
        let row: Vec<Option<u64>> = self
            .clients
            .iter()
            .map(|c| {
                c.node
                    .as_ref()
                    .map(ClientNode::engine)
                    .map(|e| divergence(&e.text().flat(), &master))
            })
            .collect();
        let now = self.now;
        if let Some(c) = self.chart.as_mut() {
            c.divergence.push((now, row));
        }
    }

    pub(super) fn finish(mut self) -> Report {
        self.check_durable("at the end");
        let mut server = self.server_past;
        if let Some(s) = &self.server {
            server.add(s.engine_stats());
        }
        let mut client = Stats::default();
        for c in &self.clients {
            client.add(&c.past);
            if let Some(e) = c.node.as_ref().map(ClientNode::engine) {
                client.add(e.stats());
            }
        }
        let s = &mut self.summary;
        s.sim_ms = self.now;
        s.resets = client.resets;
        s.rollbacks = server.rollbacks;
        s.retransmits = client.retransmits;
        s.duplicates_skipped = server.duplicates_skipped + client.duplicates_skipped;
        s.stale_skipped = server.stale_skipped + client.stale_skipped;
        s.patches_dropped = server.patches_dropped + client.patches_dropped;
        s.resumes = server.resumes;
        s.link_fallbacks = server.link_fallbacks;
        s.log_overflows = server.log_overflows;
        s.merge_fallbacks = server.merge_fallbacks + client.merge_fallbacks;
        s.inexact_resets = client.inexact_resets;
        s.hints = server.hints;
        s.hinted_syncs = client.hinted_syncs;
        let final_text = self.master_text();
        self.summary.final_digest = digest(&final_text);
        let mut node_texts = vec![(
            "S".to_string(),
            self.server.as_ref().map(|_| final_text.clone()),
        )];
        for (i, c) in self.clients.iter().enumerate() {
            node_texts.push((
                format!("c{i}"),
                c.node
                    .as_ref()
                    .map(ClientNode::engine)
                    .map(|e| e.text().to_string()),
            ));
        }
        let line = self.summary.line();
        if self.opts.trace != TraceLevel::None {
            self.trace.push(line);
        }
        Report {
            settings: Self::settings(self.sc, &self.opts),
            trace: self.trace,
            summary: self.summary,
            verdict: self.verdict.unwrap_or(Verdict::Pass),
            recorded: self.recorded,
            chart: self.chart,
            final_text,
            node_texts,
        }
    }
}
