//! The server's disk: a store shared between the server node and the checks (it outlives the
//! node's crashes), its faults, and the commit of each batch with its fate.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use dsync_engine::{PersistRecord, StoredDocument};
use dsync_store::StoreError;

use super::*;

/// A store handle: the node holds one, the simulator another. `fail_next` makes the next
/// commit fail before anything is written (the store's contract: all or nothing).
#[derive(Clone)]
pub(crate) struct SimStore {
    inner: Rc<RefCell<Box<dyn Store>>>,
    fail_next: Rc<Cell<bool>>,
}

impl SimStore {
    pub(crate) fn new(store: Box<dyn Store>) -> Self {
        SimStore {
            inner: Rc::new(RefCell::new(store)),
            fail_next: Rc::new(Cell::new(false)),
        }
    }
}

impl Store for SimStore {
    fn load(&self, doc: &str) -> Result<Option<StoredDocument>, StoreError> {
        self.inner.borrow().load(doc)
    }

    fn commit(&mut self, records: &[PersistRecord], now_ms: u64) -> Result<(), StoreError> {
        if self.fail_next.replace(false) {
            return Err(StoreError::Io("disk full (simulated)".into()));
        }
        self.inner.borrow_mut().commit(records, now_ms)
    }

    fn documents(&self) -> Result<Vec<String>, StoreError> {
        self.inner.borrow().documents()
    }
}

impl<'a> Sim<'a> {
    /// The server handled an input: its batch is committed `commit_ms` later (inputs arriving
    /// meanwhile join it).
    pub(super) fn server_dirty(&mut self) {
        if !self.commit_pending && self.server.is_some() {
            self.commit_pending = true;
            self.schedule(self.now + self.sc.storage.commit_ms, Ev::Commit);
        }
        self.arm(Node::Server);
    }

    /// What happens to this commit: an explicit fate, a drawn one, or none.
    fn commit_fate(&mut self, nth: u64) -> Option<CommitFate> {
        if let Some(f) = self.commit_fates.get(&nth) {
            return Some(*f);
        }
        let st = &self.sc.storage;
        if !self.random || self.stopped_at.is_some() {
            return None;
        }
        let r = &mut self.rng_fault;
        let mut draw = |p: f64| p > 0.0 && r.random_bool(p);
        let fate = if draw(st.fail) {
            Some(CommitFate::Fail)
        } else if draw(st.crash_after_commit) {
            Some(CommitFate::CrashAfterCommit)
        } else if draw(st.crash_in_batch) {
            Some(CommitFate::CrashInBatch)
        } else {
            None
        };
        if let (Some(fate), true) = (fate, self.opts.record) {
            self.recorded.push(Timed {
                at_ms: self.now,
                event: Event::Commit { nth, fate },
            });
        }
        fate
    }

    /// Commit the server's batch, then send what it released, unless a storage fault strikes.
    pub(super) fn commit_server(&mut self) {
        if !std::mem::replace(&mut self.commit_pending, false) {
            return;
        }
        let Some(node) = self.server.take() else {
            return;
        };
        self.commits += 1;
        let fate = self.commit_fate(self.commits);
        if fate == Some(CommitFate::CrashInBatch) {
            self.server = Some(node);
            self.summary.crashes_in_batch += 1;
            self.storage_fault("crash S inside a batch (handled, not committed)");
            return;
        }
        if fate == Some(CommitFate::Fail) {
            self.store.fail_next.set(true);
        }
        let stats = *node.engine_stats();
        let (node, released) = match node.commit(self.now) {
            Ok(x) => x,
            Err(failed) => {
                // The node is gone (only the store came back): nothing of the batch is sent.
                self.summary.failed_commits += 1;
                self.server_past.add(&stats);
                self.fault(format!("S commit failed: {}; S stops", failed.error));
                self.server_stopped();
                self.schedule(self.now + self.sc.storage.restart_ms, Ev::RestartServer);
                return;
            }
        };
        // A `Fail` drawn for a batch without records: nothing was written, nothing failed.
        self.store.fail_next.set(false);
        for r in &released.records {
            self.removed_sessions
                .extend(r.removed_sessions.iter().cloned());
            for s in &r.sessions {
                self.removed_sessions.remove(&s.client_id);
            }
        }
        let committed = !released.records.is_empty();
        self.server = Some(node);
        if committed && self.sc.checks.intent {
            let master = self.master_text();
            self.check_master_tokens(&master);
        }
        if fate == Some(CommitFate::CrashAfterCommit) {
            self.summary.crashes_after_commit += 1;
            self.storage_fault("crash S after a commit, before sending its replies");
            return;
        }
        for out in released.outputs {
            match out {
                Output::Send { to, msg, line } => {
                    let Some(i) = self.client_of_peer(to) else {
                        continue;
                    };
                    self.send(
                        Node::Server,
                        Node::Client(i),
                        Payload::Down(msg),
                        line.into_bytes(),
                    );
                }
                Output::Disconnect { peer, reason } => {
                    if let Some(i) = self.client_of_peer(peer) {
                        self.log("event", format!("S dropped c{i}: {reason}"));
                        if self.sc.topology.link == LinkModel::Stream {
                            self.conn_lost(i, false);
                        }
                    }
                }
            }
        }
        self.arm(Node::Server);
    }

    /// A storage fault crashed the server; a supervisor restarts it.
    fn storage_fault(&mut self, what: &str) {
        self.fault(what.to_string());
        if let Some(s) = self.server.take() {
            self.server_past.add(s.engine_stats());
            self.server_stopped();
        }
        self.schedule(self.now + self.sc.storage.restart_ms, Ev::RestartServer);
    }
}
