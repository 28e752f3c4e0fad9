//! Timers and notices: heartbeats (ping the silent, evict the gone), when the engine next
//! wants `handle_timeout`, and the `changed` hints a master change sends.

use super::*;

impl ServerEngine {
    pub(super) fn on_timeout(&mut self, now: Time) {
        let hb = self.config.heartbeat_ms;
        let silent = self.config.silent_timeout_ms();
        let mut dead = Vec::new();
        let mut ping = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            if now >= p.last_heard.plus_ms(silent) {
                dead.push(*id);
            } else if !p.pinged && now >= p.last_heard.plus_ms(hb) {
                p.pinged = true;
                ping.push(*id);
            }
        }
        for id in ping {
            self.send(id, ServerMsg::Ping);
        }
        for id in dead {
            tracing::info!(peer = id.0, "evicting silent peer");
            self.handle_disconnect(now, id);
            self.outputs.push_back(ServerOutput::Disconnect {
                peer: id,
                reason: format!("silent for {silent} ms"),
            });
        }
    }

    /// When [`ServerEngine::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.wake
    }

    /// The earliest heartbeat deadline of any peer (a scan of every peer).
    pub(super) fn next_deadline(&self) -> Option<Time> {
        let hb = self.config.heartbeat_ms;
        let silent = self.config.silent_timeout_ms();
        self.peers
            .values()
            .map(|p| {
                if p.pinged {
                    p.last_heard.plus_ms(silent)
                } else {
                    p.last_heard.plus_ms(hb)
                }
            })
            .min()
    }

    /// The master of `doc` changed by `by`'s request: every other session whose connection
    /// asked for hints, that was not hinted since its last request and has not asked within
    /// a sync interval (a client syncing at the short cycle asks again soon anyway: hinting
    /// it only doubles a busy document's traffic), gets a `changed` (after the change's
    /// commit, like every output that follows a persist record).
    pub(super) fn hint_others(&mut self, now: Time, doc: &str, by: &str) {
        let recent = self.config.sync_interval_ms;
        let Some(d) = self.docs.get_mut(doc) else {
            return;
        };
        for (id, s) in d.sessions.iter_mut() {
            let quiet = now >= s.last_active.plus_ms(recent);
            let Some(p) = s.peer.filter(|_| quiet && !s.hinted && id != by) else {
                continue;
            };
            if self.peers.get(&p).is_some_and(|p| p.hints) {
                s.hinted = true;
                self.stats.hints += 1;
                self.outputs.push_back(ServerOutput::Send {
                    to: p,
                    msg: ServerMsg::Changed {
                        doc: doc.to_string(),
                    },
                });
            }
        }
    }
}
