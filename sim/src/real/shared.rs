//! What the workloads, the timeline and the checks of a real run share: the clients (their
//! sessions, which a crash takes away), the users' books, the trace and the recorded events.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dsync_client::{ComputeEdit, Edit, Metrics, Session, SessionConfig};
use dsync_engine::{Config, Stats};

use super::Clock;
use crate::intent::{LocalEdit, Resolved, Users};
use crate::scenario::{Event, Timed};
use crate::world::{fmt_time, DOC};

/// One scenario client: its proxy address, its current session (none while crashed), its
/// incarnation, the counters of crashed incarnations, the next token number.
pub(super) struct ClientSlot {
    pub(super) proxy: SocketAddr,
    pub(super) session: Option<Arc<Session>>,
    pub(super) inc: u32,
    pub(super) past: Stats,
    pub(super) next_token: u64,
}

/// What the workloads, the timeline and the checks share.
pub(super) struct Shared {
    pub(super) clock: Clock,
    pub(super) clients: Mutex<Vec<ClientSlot>>,
    pub(super) users: Mutex<Users>,
    /// Edits and faults as they happened (scenario times), for the replay.
    pub(super) recorded: Mutex<Vec<Timed>>,
    pub(super) trace: Mutex<Vec<String>>,
    pub(super) stopped: AtomicBool,
    pub(super) config: Config,
    pub(super) metrics: Arc<Metrics>,
    pub(super) edits: AtomicU64,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(super) fn log(&self, kind: &str, text: String) {
        let line = format!("{} {:<8} {}", fmt_time(self.clock.now_ms()), kind, text);
        lock(&self.trace).push(line);
    }

    pub(super) fn record(&self, event: Event) {
        let at_ms = self.clock.now_ms();
        lock(&self.recorded).push(Timed { at_ms, event });
    }

    pub(super) fn start_client(&self, i: usize) {
        let mut clients = lock(&self.clients);
        let slot = &mut clients[i];
        let mut cfg = SessionConfig::new(slot.proxy, DOC);
        cfg.client_id = crate::world::Sim::client_id(i, slot.inc);
        cfg.engine = self.config;
        cfg.reconnect_min = self.clock.wall(dsync_node::RECONNECT_MIN_MS);
        cfg.reconnect_max = self.clock.wall(dsync_node::RECONNECT_MAX_MS);
        cfg.describe_changes = false;
        slot.session = Some(Arc::new(Session::start(cfg, Some(self.metrics.clone()))));
    }

    pub(super) fn session(&self, i: usize) -> Option<(Arc<Session>, u32)> {
        let clients = lock(&self.clients);
        clients[i].session.clone().map(|s| (s, clients[i].inc))
    }

    /// Make a local edit on client `i`, chosen from its text at that moment by `choose`
    /// (which returns the edit, or `None` for nothing), and keep it in the users' books.
    pub(super) async fn local_edit(
        &self,
        i: usize,
        choose: impl FnOnce(&str) -> LocalEdit + Send + 'static,
    ) -> bool {
        let Some((session, inc)) = self.session(i) else {
            return false;
        };
        let chosen: Arc<Mutex<Option<(LocalEdit, Resolved)>>> = Arc::default();
        let out = chosen.clone();
        let f: ComputeEdit = Box::new(move |text: &str| {
            let edit = choose(text);
            let r = edit.resolve(i, text);
            let change = r.change.clone();
            *lock(&out) = Some((edit, r));
            change.map(|(start, end, text)| {
                if text.is_empty() {
                    Edit::Delete(start, end)
                } else {
                    Edit::Insert(start, text)
                }
            })
        });
        let Ok((before, after)) = session.edit_computed(f).await else {
            return false;
        };
        let Some((edit, r)) = lock(&chosen).take() else {
            return false;
        };
        self.edits.fetch_add(1, Ordering::Relaxed);
        lock(&self.users).record(i, inc, &edit, &r, &before, &after);
        self.record(r.event);
        matches!(edit, LocalEdit::InsertToken { .. })
    }
}
