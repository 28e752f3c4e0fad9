//! The checks: versions, durability, progress, exactness, tokens, the final text and
//! convergence; samples for the divergence plot; the report at the end.

use super::*;

/// Parse the tokens of a text. Err on a malformed token fragment.
pub(super) fn tokens_in(text: &str) -> Result<BTreeMap<&str, usize>, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some(open) = rest.find(['⟨', '⟩']) {
        let tail = &rest[open..];
        if tail.starts_with('⟩') {
            return Err(format!("stray '⟩' in {:?}", excerpt(tail)));
        }
        let Some(close) = tail.find('⟩') else {
            return Err(format!("unclosed token at {:?}", excerpt(tail)));
        };
        let token = &tail[..close + '⟩'.len_utf8()];
        let inner = &token['⟨'.len_utf8()..token.len() - '⟩'.len_utf8()];
        let ok = inner.split_once(':').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
        if !ok {
            return Err(format!("malformed token {token:?}"));
        }
        *out.entry(token).or_insert(0) += 1;
        rest = &tail[token.len()..];
    }
    Ok(out)
}

pub(super) fn excerpt(s: &str) -> String {
    s.chars().take(24).collect()
}

/// Char positions where a token may be inserted: the start and after each token.
/// The tokens of a text with their byte spans, in order (malformed fragments skipped).
pub(super) fn token_spans(text: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find('⟨') {
        let b = from + open;
        let Some(close) = text[b..].find('⟩') else {
            break;
        };
        let e = b + close + '⟩'.len_utf8();
        let token = &text[b..e];
        if token[3..].contains('⟨') {
            // `⟨⟨…⟩`: start again at the inner opening.
            from = b + '⟨'.len_utf8();
            continue;
        }
        out.push((b, e, token));
        from = e;
    }
    out
}

pub(super) fn token_slots(text: &str) -> Vec<usize> {
    let mut slots = vec![0];
    for (i, c) in text.chars().enumerate() {
        if c == '⟩' {
            slots.push(i + 1);
        }
    }
    slots
}

/// `S,c0,c2`: nodes as a fault line names them.
pub(super) fn node_list(v: &[Node]) -> String {
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
                .map(|d| d.text)
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
            if self.ledger.has_unsettled(i) && e.is_settled() {
                self.ledger.settled(i);
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
        if oldest.is_none() && e.text() == e.shadow().text {
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
        match tokens_in(master) {
            Err(why) => self.fail(CheckKind::Intent, format!("master: {why}")),
            Ok(map) => {
                for (t, n) in map {
                    if n > 1 {
                        return self.fail(CheckKind::Intent, format!("master holds {t} {n} times"));
                    }
                    if !self.book.inserted.contains_key(t) {
                        return self.fail(
                            CheckKind::Intent,
                            format!("master holds {t}, which nobody inserted"),
                        );
                    }
                }
            }
        }
    }

    pub(super) fn check_intent_final(&mut self, master: &str) {
        if !self.sc.checks.intent {
            return;
        }
        // Every run: the text accounts for what users typed and deleted.
        let may_drop = self.config.merge == MergeStrategy::FuzzyPatch;
        match self.ledger.check(master, may_drop) {
            Ok(line) => self.log("check", line),
            Err(why) => return self.fail(CheckKind::Intent, why),
        }
        if self.book.inserted.is_empty() && self.book.deleted.is_empty() {
            return;
        }
        self.check_master_tokens(master);
        if self.verdict.is_some() {
            return;
        }
        let present = tokens_in(master).unwrap_or_default();
        let mut lost = Vec::new();
        let mut resurrected = Vec::new();
        for t in self.book.inserted.keys() {
            let here = present.contains_key(t.as_str());
            let deleted = self.book.deleted.contains_key(t);
            if !deleted && !here && !self.book.lost_ok.contains(t) {
                lost.push(t.clone());
            }
            if deleted && here && !self.book.resurrect_ok.contains(t) {
                resurrected.push(t.clone());
            }
        }
        if !lost.is_empty() {
            let n = lost.len();
            lost.truncate(5);
            return self.fail(
                CheckKind::Intent,
                format!("{n} tokens lost, e.g. {}", lost.join(" ")),
            );
        }
        if !resurrected.is_empty() {
            let n = resurrected.len();
            resurrected.truncate(5);
            self.fail(
                CheckKind::Intent,
                format!(
                    "{n} deleted tokens came back, e.g. {}",
                    resurrected.join(" ")
                ),
            );
        }
        // Order: a token stays between the tokens it was placed between.
        let positions: BTreeMap<&str, usize> = token_spans(master)
            .into_iter()
            .enumerate()
            .map(|(k, (_, _, t))| (t, k))
            .collect();
        let judged = match self.order.check(&positions) {
            Ok(n) => n,
            Err(why) => return self.fail(CheckKind::Intent, why),
        };
        // Text between tokens: with tokens only, it is the initial text, untouched.
        if !self.plain_edits {
            let mut between = String::with_capacity(master.len());
            let mut last = 0;
            for (b, e, _) in token_spans(master) {
                between.push_str(&master[last..b]);
                last = e;
            }
            between.push_str(&master[last..]);
            if between != self.sc.topology.initial_text {
                return self.fail(
                    CheckKind::Intent,
                    format!(
                        "the text between tokens changed: {:?}, expected the initial {:?}",
                        excerpt(&between),
                        excerpt(&self.sc.topology.initial_text)
                    ),
                );
            }
        }
        let kept = present.len();
        self.log(
            "check",
            format!(
                "intent ok: {kept} tokens present, {} inserted, {} deleted, {judged} orders kept",
                self.book.inserted.len(),
                self.book.deleted.len()
            ),
        );
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
            if !e.is_connected() || !e.pending().is_empty() || e.text() != e.shadow().text {
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
                    .map(|e| divergence(e.text(), &master))
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
