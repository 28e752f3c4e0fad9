//! The timeline of a real run, acted out: partitions in the proxy, `kill -9` and restarts of
//! the server on the same file and port, client sessions aborted and started again under a new
//! id, scripted edits, the end of faults.

use std::sync::atomic::Ordering;

use dsync_store::{SqliteStore, Store};

use super::shared::lock;
use super::Run;
use crate::intent::LocalEdit;
use crate::scenario::{Event, Node, Timed};
use crate::world::{node_list, DOC};

impl Run<'_> {
    /// Act out one timeline event.
    pub(super) async fn apply(&mut self, t: Timed) -> anyhow::Result<()> {
        let n = self.sc.topology.clients;
        let now = self.shared.clock.now_ms();
        let shared = self.shared.clone();
        match t.event {
            Event::Partition {
                a,
                b,
                one_way,
                for_ms,
            } => {
                let kind = if one_way { "one-way" } else { "symmetric" };
                shared.log(
                    "fault",
                    format!("partition [{}] | [{}] {kind}", node_list(&a), node_list(&b)),
                );
                shared.record(Event::Partition {
                    a: a.clone(),
                    b: b.clone(),
                    one_way,
                    for_ms,
                });
                let id = self.net.partition(a, b, one_way);
                if let Some(d) = for_ms {
                    self.unpartitions.push((now + d, id));
                }
            }
            Event::Heal => {
                shared.log("fault", "heal".into());
                shared.record(Event::Heal);
                self.net.heal();
            }
            Event::Crash(node) => {
                shared.record(Event::Crash(node));
                self.crash(node).await;
            }
            Event::Halt(node) => {
                self.halted.insert(node);
                shared.record(Event::Halt(node));
                self.crash(node).await;
            }
            Event::Restart(node) => {
                self.halted.remove(&node);
                shared.record(Event::Restart(node));
                self.restart(node).await?;
            }
            Event::Insert { client, pos, text } if client < n => {
                shared
                    .local_edit(client, move |_| LocalEdit::Insert { pos, text })
                    .await;
            }
            Event::Delete { client, pos, len } if client < n => {
                shared
                    .local_edit(client, move |_| LocalEdit::Delete { pos, len })
                    .await;
            }
            Event::InsertToken {
                client,
                slot,
                token,
            } if client < n => {
                shared
                    .local_edit(client, move |_| LocalEdit::InsertToken { slot, token })
                    .await;
            }
            Event::DeleteToken { client, token } if client < n => {
                shared
                    .local_edit(client, move |_| LocalEdit::DeleteToken { token })
                    .await;
            }
            Event::StopFaults => self.stop().await?,
            _ => {}
        }
        Ok(())
    }

    async fn crash(&mut self, node: Node) {
        let shared = self.shared.clone();
        match node {
            Node::Server => {
                if !self.server.running() {
                    return;
                }
                shared.log("fault", "crash S (kill -9; uncommitted state lost)".into());
                self.net.set_server(None);
                self.server.kill();
                // Replies the server wrote before it died still reach their clients.
                tokio::time::sleep(self.settle_wait).await;
                self.check_durable("after the crash");
            }
            Node::Client(i) => {
                let taken = {
                    let mut clients = lock(&shared.clients);
                    let Some(c) = clients.get_mut(i) else { return };
                    let s = c.session.take();
                    if let Some(s) = &s {
                        c.past.add(&s.snapshot().stats);
                    }
                    s.map(|s| (s, c.inc))
                };
                let Some((session, inc)) = taken else { return };
                shared.log("fault", format!("crash c{i} (unsent typing lost)"));
                session.abort();
                self.net.reset_client(i);
                let durable_text = SqliteStore::open(&self.db)
                    .and_then(|s| s.load(DOC))
                    .ok()
                    .flatten()
                    .map(|d| String::from(&d.text))
                    .unwrap_or_default();
                lock(&shared.users).crashed(i, inc, &durable_text);
            }
        }
    }

    async fn restart(&mut self, node: Node) -> anyhow::Result<()> {
        let shared = self.shared.clone();
        match node {
            Node::Server => {
                if self.server.running() {
                    return Ok(());
                }
                shared.log("fault", "restart S (same database, same port)".into());
                let addr = self.server.start().await?;
                self.net.set_server(Some(addr));
            }
            Node::Client(i) => {
                let up = lock(&shared.clients)
                    .get(i)
                    .is_none_or(|c| c.session.is_some());
                if up {
                    return Ok(());
                }
                let inc = {
                    let mut clients = lock(&shared.clients);
                    clients[i].inc += 1;
                    clients[i].inc
                };
                shared.log(
                    "fault",
                    format!("restart c{i} as {}", crate::world::Sim::client_id(i, inc)),
                );
                shared.start_client(i);
            }
        }
        Ok(())
    }

    /// The end of faults: heal, no more random fates, crashed nodes back (but those halted).
    pub(super) async fn stop(&mut self) -> anyhow::Result<()> {
        if self.stopped_at.is_some() {
            return Ok(());
        }
        let shared = self.shared.clone();
        self.stopped_at = Some(shared.clock.now_ms());
        shared.stopped.store(true, Ordering::SeqCst);
        shared.log(
            "fault",
            "stop faults: heal, restart crashed nodes, quiet network".into(),
        );
        self.net.stop_faults();
        if !self.halted.contains(&Node::Server) {
            self.restart(Node::Server).await?;
        }
        for i in 0..self.sc.topology.clients {
            if !self.halted.contains(&Node::Client(i)) {
                self.restart(Node::Client(i)).await?;
            }
        }
        Ok(())
    }
}
