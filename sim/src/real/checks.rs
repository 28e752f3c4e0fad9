//! The checks of a real run, the simulator's own applied to what the real nodes show: the
//! users' books settled when a client is, progress during faults, convergence after them
//! (that must hold), intent on the final text, and durability of every acknowledged edit
//! read back from the SQLite file after each crash and at the end.

use std::collections::BTreeSet;

use dsync_client::Snapshot;
use dsync_engine::MergeStrategy;
use dsync_store::{SqliteStore, Store};

use super::shared::{lock, Shared};
use super::Run;
use crate::oracle::{Progress, PROGRESS_WITHIN_MS};
use crate::scenario::{LinkFaults, Node};
use crate::world::{digest, CheckKind, Verdict, DOC};

/// The verdict so far, and the state of the checks that span time.
pub(super) struct Judge {
    pub(super) verdict: Option<Verdict>,
    pub(super) progress: Progress,
    /// When everything first agreed (and still does).
    pub(super) converged_at: Option<u64>,
    /// Scenario time from the end of faults to that agreement.
    pub(super) converge_ms: Option<u64>,
}

impl Judge {
    pub(super) fn new(clients: usize) -> Judge {
        Judge {
            verdict: None,
            progress: Progress::new(clients),
            converged_at: None,
            converge_ms: None,
        }
    }

    pub(super) fn fail(&mut self, shared: &Shared, check: CheckKind, detail: String) {
        if self.verdict.is_none() {
            shared.log("check", format!("FAILED {} {}", check.name(), detail));
            self.verdict = Some(Verdict::Fail {
                check,
                at_ms: shared.clock.now_ms(),
                detail,
            });
        }
    }
}

impl Run<'_> {
    /// Every client's current snapshot (`None` while crashed).
    pub(super) fn snapshots(&self) -> Vec<Option<Snapshot>> {
        lock(&self.shared.clients)
            .iter()
            .map(|c| c.session.as_ref().map(|s| s.snapshot()))
            .collect()
    }

    /// The books: what a settled client typed is acknowledged, hence durable. A snapshot is
    /// published before an edit's call returns, so a settled one read under the books' lock
    /// covers every edit the books hold for that client.
    pub(super) fn settle(&self) {
        let mut users = lock(&self.shared.users);
        let settled: Vec<bool> = lock(&self.shared.clients)
            .iter()
            .map(|c| c.session.as_ref().is_some_and(|s| s.snapshot().settled))
            .collect();
        for (i, settled) in settled.into_iter().enumerate() {
            if settled && users.ledger.has_unsettled(i) {
                users.ledger.settled(i);
            }
        }
    }

    /// Liveness during faults: a client that can reach the server over a clean link gets its
    /// typing acknowledged within the bound.
    pub(super) fn check_progress(&mut self, now: u64, snaps: &[Option<Snapshot>]) {
        if !self.random || self.stopped_at.is_some() || self.judge.verdict.is_some() {
            return;
        }
        let clean = |f: &LinkFaults| f.drop == 0.0 && f.corrupt == 0.0;
        for (i, s) in snaps.iter().enumerate() {
            let state = s.as_ref().and_then(|s| {
                let (c, sv) = (Node::Client(i), Node::Server);
                let reachable = self.server.running()
                    && s.connected
                    && !self.net.blocked(c, sv)
                    && !self.net.blocked(sv, c)
                    && clean(self.net.faults(c, sv))
                    && clean(self.net.faults(sv, c));
                (reachable && !s.settled).then_some((s.acked, s.stats.resets))
            });
            if let Err(stuck) = self
                .judge
                .progress
                .observe(i, now, state, PROGRESS_WITHIN_MS)
            {
                let detail = format!(
                    "no progress during faults: c{i} could reach the server over a clean link for {:.3}s with typing to send, and none of it was acknowledged",
                    stuck as f64 / 1000.0
                );
                self.judge.fail(&self.shared, CheckKind::Liveness, detail);
            }
        }
    }

    /// After the end of faults: agreement within the bound, intent on the agreed text, and
    /// agreement that holds for two sync cycles (at least 1 s). True when the run is done.
    pub(super) fn check_convergence(&mut self, now: u64, snaps: &[Option<Snapshot>]) -> bool {
        let Some(stop_at) = self.stopped_at else {
            return false;
        };
        let sc = self.sc;
        match converged(snaps, self.server.running(), &self.halted) {
            Ok(text) => match self.judge.converged_at {
                None => {
                    let took = now.saturating_sub(stop_at);
                    self.judge.converge_ms = Some(took);
                    self.judge.converged_at = Some(now);
                    let names: Vec<String> = std::iter::once("S".to_string())
                        .chain((0..snaps.len()).map(|i| format!("c{i}")))
                        .collect();
                    self.shared.log(
                        "check",
                        format!(
                            "converged {} text={} after_stop={:.3}s",
                            names.join(","),
                            digest(&text),
                            took as f64 / 1000.0
                        ),
                    );
                    if sc.checks.intent {
                        let may_drop = self.shared.config.merge == MergeStrategy::FuzzyPatch;
                        let (log, verdict) = lock(&self.shared.users).check_final(
                            &text,
                            may_drop,
                            &sc.topology.initial_text,
                        );
                        for line in log {
                            self.shared.log("check", line);
                        }
                        if let Err(why) = verdict {
                            self.judge.fail(&self.shared, CheckKind::Intent, why);
                        }
                    }
                    false
                }
                Some(t) => now >= t + (2 * sc.engine.sync_interval_ms).max(1_000),
            },
            Err(why) => {
                // Something moved after agreement (a late frame): look again.
                self.judge.converged_at = None;
                self.judge.converge_ms = None;
                if now >= stop_at + sc.checks.converge_within_ms {
                    let bound = sc.checks.converge_within_ms;
                    self.judge.fail(
                        &self.shared,
                        CheckKind::Liveness,
                        format!("not converged {bound} ms after faults stopped: {why}"),
                    );
                }
                false
            }
        }
    }

    /// Durability: every edit a client saw acknowledged is in the file (its session there
    /// has applied at least as many of its edits), and the file holds no duplicated or
    /// invented token.
    pub(super) fn check_durable(&mut self, when: &str) {
        let stored = match SqliteStore::open(&self.db).and_then(|s| s.load(DOC)) {
            Ok(d) => d.unwrap_or_default(),
            Err(e) => {
                let detail = format!("reading the database {when}: {e}");
                return self.judge.fail(&self.shared, CheckKind::Safety, detail);
            }
        };
        let tokens = {
            let users = lock(&self.shared.users);
            users
                .tokens
                .then(|| users.check_master_tokens(&stored.text.flat()))
        };
        if let Some(Err(why)) = tokens {
            let detail = format!("{why} (in the database {when})");
            return self.judge.fail(&self.shared, CheckKind::Intent, detail);
        }
        let snaps: Vec<(usize, Snapshot)> = self
            .snapshots()
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .collect();
        for (i, s) in snaps {
            if s.acked == 0 {
                continue;
            }
            let held = stored
                .sessions
                .iter()
                .find(|r| r.client_id == s.client_id)
                .map(|r| r.shadow.client_version);
            if held.is_none_or(|n| n < s.acked) {
                let held = held.map_or("no session".to_string(), |n| format!("n={n}"));
                let detail = format!(
                    "durability {when}: c{i} saw its edits up to n={} acknowledged, but the database holds {held} for {}",
                    s.acked, s.client_id
                );
                return self.judge.fail(&self.shared, CheckKind::Safety, detail);
            }
        }
        self.shared
            .log("check", format!("durable {when}: {}", digest(&stored.text)));
    }

    /// The end: the server is killed (`kill -9`, like any crash: what it acknowledged is
    /// durable, or the check fails); what the clients saw acknowledged must be in the file,
    /// and the file must hold the text they agree on. Returns that text, the server's CPU
    /// seconds and peak RSS (MiB).
    pub(super) async fn finish_checks(&mut self) -> (Option<String>, (f64, f64)) {
        let final_text = agreed_text(&self.snapshots());
        tokio::time::sleep(self.settle_wait).await;
        let usage = self.server.kill();
        self.check_durable("at the end");
        if self.judge.verdict.is_none() {
            if let (Some(text), Ok(Some(stored))) = (
                &final_text,
                SqliteStore::open(&self.db).and_then(|s| s.load(DOC)),
            ) {
                if *text != stored.text {
                    let detail = format!(
                        "the clients agree on {} but the database holds {}",
                        digest(text),
                        digest(&stored.text)
                    );
                    self.judge.fail(&self.shared, CheckKind::Safety, detail);
                }
            }
        }
        (final_text, usage)
    }
}

/// The text every live client holds, if they all hold one.
fn agreed_text(snaps: &[Option<Snapshot>]) -> Option<String> {
    let texts: Vec<&dsync_engine::Rope> = snaps.iter().flatten().map(|s| &s.text).collect();
    let first = *texts.first()?;
    texts.iter().all(|t| *t == first).then(|| first.to_string())
}

/// Everyone agrees: the server is up, every client not halted is up, connected, has seen two
/// empty round trips since its last change (so nothing of its own is pending and it has what
/// the server had), and all hold one text.
fn converged(
    snaps: &[Option<Snapshot>],
    server_up: bool,
    halted: &BTreeSet<Node>,
) -> Result<String, String> {
    if !server_up {
        return Err("server down".into());
    }
    let mut text: Option<&dsync_engine::Rope> = None;
    for (i, s) in snaps.iter().enumerate() {
        let Some(s) = s else {
            if halted.contains(&Node::Client(i)) {
                continue;
            }
            return Err(format!("c{i} down"));
        };
        // The client's own view (`Snapshot::converged`): two empty round trips since its last
        // change, so nothing of its own is pending and it has what the server had.
        if !s.converged() {
            return Err(format!(
                "c{i} not settled (connected={} quiet_polls={})",
                s.connected, s.quiet_polls
            ));
        }
        match text {
            None => text = Some(&s.text),
            Some(t) if *t != s.text => {
                return Err(format!(
                    "c{i} text {} != c0's {}",
                    digest(&s.text),
                    digest(t)
                ))
            }
            Some(_) => {}
        }
    }
    Ok(text.map(String::from).unwrap_or_default())
}
