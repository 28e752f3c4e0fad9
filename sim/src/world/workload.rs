//! The workloads and the scripted timeline: typing, tokens, local edits, the end of faults.

use super::*;

impl<'a> Sim<'a> {
    pub(super) fn script(&mut self, ev: Event) {
        match ev {
            Event::Partition {
                a,
                b,
                one_way,
                for_ms,
            } => {
                let kind = if one_way { "one-way" } else { "symmetric" };
                self.fault(format!(
                    "partition [{}] | [{}] {kind}",
                    node_list(&a),
                    node_list(&b)
                ));
                let id = self.next_partition;
                self.next_partition += 1;
                self.partitions.push((id, a, b, one_way));
                if let Some(d) = for_ms {
                    self.schedule(self.now + d, Ev::Unpartition(id));
                }
            }
            Event::Heal => {
                self.fault("heal".into());
                self.heal();
            }
            Event::Crash(n) => self.crash(n),
            Event::Halt(n) => {
                self.halted.insert(n);
                self.crash(n);
            }
            Event::Restart(n) => {
                self.halted.remove(&n);
                self.restart(n);
            }
            Event::Insert { client, pos, text } => {
                self.local_edit(client, LocalEdit::Insert { pos, text })
            }
            Event::Delete { client, pos, len } => {
                self.local_edit(client, LocalEdit::Delete { pos, len })
            }
            Event::InsertToken {
                client,
                slot,
                token,
            } => self.local_edit(client, LocalEdit::InsertToken { slot, token }),
            Event::DeleteToken { client, token } => {
                self.local_edit(client, LocalEdit::DeleteToken { token })
            }
            Event::StopFaults => self.stop_faults(),
            Event::DropMessage { .. } | Event::Net { .. } | Event::Commit { .. } => {}
        }
    }

    pub(super) fn stop_faults(&mut self) {
        if self.stopped_at.is_some() {
            return;
        }
        self.stopped_at = Some(self.now);
        self.deadline = Some(self.now + self.sc.checks.converge_within_ms);
        self.schedule(self.now + self.sc.checks.converge_within_ms, Ev::Deadline);
        self.fault("stop faults: heal, restart crashed nodes, quiet network".into());
        self.heal();
        if self.server.is_none() && !self.halted.contains(&Node::Server) {
            self.restart(Node::Server);
        }
        for i in 0..self.clients.len() {
            if self.clients[i].node.is_none() && !self.halted.contains(&Node::Client(i)) {
                self.restart(Node::Client(i));
            }
        }
        if self.opts.record {
            self.recorded.push(Timed {
                at_ms: self.now,
                event: Event::StopFaults,
            });
        }
    }

    pub(super) fn start_workloads(&mut self) {
        if !self.random {
            return;
        }
        let n = self.clients.len();
        let pick = |list: &[usize]| -> Vec<usize> {
            if list.is_empty() {
                (0..n).collect()
            } else {
                list.to_vec()
            }
        };
        if let Some(t) = self.sc.workload.typing.clone() {
            for i in pick(&t.clients) {
                let gap = self.typing_gap(t.rate_per_s);
                self.schedule(t.from_ms + gap, Ev::Typing(i));
            }
        }
        if let Some(t) = self.sc.workload.tokens.clone() {
            for i in pick(&t.clients) {
                let gap = self.rng_work.random_range(0..=t.every_ms * 2);
                self.schedule(t.from_ms + gap, Ev::Token(i));
            }
        }
    }

    pub(super) fn typing_gap(&mut self, rate: f64) -> u64 {
        let mean = 1000.0 / rate;
        (self.rng_work.random_range(0.0..2.0) * mean) as u64 + 1
    }

    pub(super) fn typing(&mut self, i: usize) {
        let Some(t) = self.sc.workload.typing.clone() else {
            return;
        };
        if self.now >= t.until_ms || self.stopped_at.is_some() {
            return;
        }
        let alphabet = t.chars();
        let len = self.clients[i]
            .node
            .as_ref()
            .map(ClientNode::engine)
            .map_or(0, |e| e.text().len_chars());
        let del = len > 0 && self.rng_work.random_bool(t.delete_chance.clamp(0.0, 1.0));
        let pos = self.rng_work.random_range(0..=len);
        let ch = alphabet[self.rng_work.random_range(0..alphabet.len())];
        let gap = self.typing_gap(t.rate_per_s);
        self.schedule(self.now + gap, Ev::Typing(i));
        let edit = if del {
            LocalEdit::Delete {
                pos: pos.min(len - 1),
                len: 1,
            }
        } else {
            LocalEdit::Insert {
                pos,
                text: ch.to_string(),
            }
        };
        self.local_edit(i, edit);
    }

    pub(super) fn token_action(&mut self, i: usize) {
        let Some(t) = self.sc.workload.tokens.clone() else {
            return;
        };
        if self.now >= t.until_ms || self.stopped_at.is_some() {
            return;
        }
        let gap = self.rng_work.random_range(1..=t.every_ms * 2);
        self.schedule(self.now + gap, Ev::Token(i));
        let text = self.clients[i]
            .node
            .as_ref()
            .map(ClientNode::engine)
            .map(|e| e.text().to_string())
            .unwrap_or_default();
        let visible: Vec<String> = tokens_in(&text)
            .map(|m| m.keys().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        let del = !visible.is_empty() && self.rng_work.random_bool(t.delete_chance.clamp(0.0, 1.0));
        let pick = self.rng_work.random_range(0..usize::MAX);
        let edit = if del {
            LocalEdit::DeleteToken {
                token: visible[pick % visible.len()].clone(),
            }
        } else {
            let k = self.clients[i].next_token;
            self.clients[i].next_token += 1;
            LocalEdit::InsertToken {
                slot: pick,
                token: format!("⟨{i}:{k}⟩"),
            }
        };
        self.local_edit(i, edit);
    }

    pub(super) fn local_edit(&mut self, i: usize, edit: LocalEdit) {
        let inc = self.clients[i].incarnation;
        let Some(engine) = self.clients[i].node.as_mut() else {
            self.log_full("edit", || format!("c{i} is down; edit ignored"));
            return;
        };
        let before = engine.engine().text().to_string();
        let r = edit.resolve(i, &before);
        match &r.change {
            Some((start, end, text)) if text.is_empty() => {
                let _ = engine.delete(*start, *end);
            }
            Some((start, _, text)) => {
                let _ = engine.insert(*start, text);
            }
            None => {}
        }
        let after = engine.engine().text().to_string();
        self.summary.edits += 1;
        self.users.record(i, inc, &edit, &r, &before, &after);
        if self.opts.record {
            self.recorded.push(Timed {
                at_ms: self.now,
                event: r.event,
            });
        }
        let desc = r.desc;
        self.log_full("edit", || format!("c{i} {desc} text={}", digest(&after)));
    }

    // ----- checks ------------------------------------------------------------------------
}
