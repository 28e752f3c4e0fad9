//! The random workloads of a real run, one task per client: tokens and typing, each action
//! chosen from the client's text at the moment it is made (through the session), and kept in
//! the users' books like the simulator's.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rand::Rng;
use tokio::task::JoinHandle;

use super::shared::{lock, Shared};
use crate::intent::{tokens_in, LocalEdit};
use crate::scenario::Scenario;

/// Start the workloads of `sc` (random streams from `seed`).
pub(super) fn spawn(shared: &Arc<Shared>, sc: &Scenario, seed: u64) -> Vec<JoinHandle<()>> {
    let n = sc.topology.clients;
    let mut workloads = Vec::new();
    let s = seed;
    let pick = |list: &[usize]| -> Vec<usize> {
        if list.is_empty() {
            (0..n).collect()
        } else {
            list.iter().copied().filter(|i| *i < n).collect()
        }
    };
    if let Some(t) = sc.workload.tokens.clone() {
        for i in pick(&t.clients) {
            let (shared, t) = (shared.clone(), t.clone());
            let mut rng = crate::world::rng(s ^ (i as u64 + 1), crate::world::STREAM_WORK);
            workloads.push(tokio::spawn(async move {
                let mut next = t.from_ms + rng.random_range(0..=t.every_ms * 2);
                loop {
                    tokio::time::sleep_until(shared.clock.at(next)).await;
                    if next >= t.until_ms || shared.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    next += rng.random_range(1..=t.every_ms * 2);
                    let del = rng.random_bool(t.delete_chance.clamp(0.0, 1.0));
                    let pick = rng.random_range(0..usize::MAX);
                    let k = lock(&shared.clients)[i].next_token;
                    let inserted = shared
                        .local_edit(i, move |text| {
                            let visible: Vec<String> = tokens_in(text)
                                .map(|m| m.keys().map(|s| s.to_string()).collect())
                                .unwrap_or_default();
                            if del && !visible.is_empty() {
                                LocalEdit::DeleteToken {
                                    token: visible[pick % visible.len()].clone(),
                                }
                            } else {
                                LocalEdit::InsertToken {
                                    slot: pick,
                                    token: format!("⟨{i}:{k}⟩"),
                                }
                            }
                        })
                        .await;
                    if inserted {
                        lock(&shared.clients)[i].next_token += 1;
                    }
                }
            }));
        }
    }
    if let Some(t) = sc.workload.typing.clone() {
        let alphabet = t.chars();
        for i in pick(&t.clients) {
            let (shared, t, alphabet) = (shared.clone(), t.clone(), alphabet.clone());
            let mut rng = crate::world::rng(s ^ (i as u64 + 1), crate::world::STREAM_WORK);
            workloads.push(tokio::spawn(async move {
                let gap = |rng: &mut rand_chacha::ChaCha8Rng| {
                    (rng.random_range(0.0..2.0) * 1000.0 / t.rate_per_s) as u64 + 1
                };
                let mut next = t.from_ms + gap(&mut rng);
                loop {
                    tokio::time::sleep_until(shared.clock.at(next)).await;
                    if next >= t.until_ms || shared.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    next += gap(&mut rng);
                    let del = rng.random_bool(t.delete_chance.clamp(0.0, 1.0));
                    let at = rng.random_range(0..usize::MAX);
                    let ch = alphabet[rng.random_range(0..alphabet.len())];
                    shared
                        .local_edit(i, move |text| {
                            let len = text.chars().count();
                            if del && len > 0 {
                                LocalEdit::Delete {
                                    pos: at % len,
                                    len: 1,
                                }
                            } else {
                                LocalEdit::Insert {
                                    pos: at % (len + 1),
                                    text: ch.to_string(),
                                }
                            }
                        })
                        .await;
                }
            }));
        }
    }
    workloads
}
