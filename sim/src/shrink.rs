//! Shrinking: record every random choice of a failing run as explicit timeline events (edits,
//! the network's fate for each message), check the seed-free replay fails the same way, then
//! repeat until nothing changes: remove events by delta debugging (Zeller's ddmin), remove
//! whole clients, and simplify events (one character typed or deleted, one delivery), each step
//! kept only while the same check still fails.

use crate::scenario::{Event, Fate, Node, Scenario, Workload};
use crate::world::{run, CheckKind, Options, TraceLevel, Verdict};

/// The result of shrinking.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The minimal, seed-free scenario.
    pub scenario: Scenario,
    /// Events in the recorded replay.
    pub before: usize,
    /// Events left.
    pub after: usize,
    /// Simulation runs spent.
    pub runs: usize,
    /// The failure the minimal scenario still shows.
    pub verdict: String,
}

/// Most runs one shrink may spend.
pub const MAX_RUNS: usize = 20_000;

fn failure(sc: &Scenario) -> Option<(CheckKind, String)> {
    let opts = Options {
        seed: None,
        trace: TraceLevel::None,
        record: false,
        chart: false,
    };
    match run(sc, opts).verdict {
        Verdict::Pass => None,
        Verdict::Fail { check, detail, .. } => Some((check, detail)),
    }
}

/// The scenario with its random choices written out (seed-free), and the events of it.
pub fn record(sc: &Scenario, seed: Option<u64>) -> Result<(Scenario, CheckKind), String> {
    let opts = Options {
        seed,
        trace: TraceLevel::None,
        record: true,
        chart: false,
    };
    let report = run(sc, opts);
    let check = match report.verdict {
        Verdict::Pass => return Err("the scenario passes: there is nothing to shrink".into()),
        Verdict::Fail { check, .. } => check,
    };
    // Structural events stay; edits, fates and the stop are replaced by what the run recorded.
    let mut timeline: Vec<_> = sc
        .timeline
        .iter()
        .filter(|t| {
            matches!(
                t.event,
                Event::Partition { .. }
                    | Event::Heal
                    | Event::Crash(_)
                    | Event::Halt(_)
                    | Event::Restart(_)
            )
        })
        .cloned()
        .collect();
    let default_latency = |from: Node, to: Node| {
        let client = match (from, to) {
            (Node::Client(c), _) | (_, Node::Client(c)) => c,
            _ => usize::MAX,
        };
        sc.links
            .iter()
            .rev()
            .find(|l| l.client == client)
            .map_or(sc.network.latency_ms.0, |l| l.faults.latency_ms.0)
    };
    for t in report.recorded {
        // A delivery at the link's minimum latency is what a seed-free run does anyway.
        if let Event::Net {
            from,
            to,
            fate: Fate::Delay(l),
            ..
        } = &t.event
        {
            if *l == default_latency(*from, *to) {
                continue;
            }
        }
        timeline.push(t);
    }
    timeline.sort_by_key(|t| t.at_ms);
    // Without a seed the random faults are inert; zero them so the file says what happens.
    let quiet = |f: &crate::scenario::LinkFaults| crate::scenario::LinkFaults {
        latency_ms: (f.latency_ms.0, f.latency_ms.0),
        ..crate::scenario::LinkFaults {
            drop: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            split: 0.0,
            garbage: 0.0,
            ..f.clone()
        }
    };
    let explicit = Scenario {
        seed: None,
        storage: crate::scenario::StorageFaults {
            fail: 0.0,
            crash_after_commit: 0.0,
            crash_in_batch: 0.0,
            ..sc.storage.clone()
        },
        workload: Workload::default(),
        network: quiet(&sc.network),
        links: sc
            .links
            .iter()
            .map(|l| crate::scenario::LinkOverride {
                faults: quiet(&l.faults),
                ..l.clone()
            })
            .collect(),
        timeline,
        ..sc.clone()
    };
    match failure(&explicit) {
        Some((c, _)) if c == check => Ok((explicit, check)),
        Some((c, d)) => Err(format!(
            "the recorded replay fails a different check ({} instead of {}: {d})",
            c.name(),
            check.name()
        )),
        None => {
            Err("the recorded replay passes: the run is not reproducible from its events".into())
        }
    }
}

/// Shrink a failing scenario. `log` receives progress lines.
pub fn shrink(
    sc: &Scenario,
    seed: Option<u64>,
    log: &mut dyn FnMut(String),
) -> Result<Shrunk, String> {
    let (explicit, check) = record(sc, seed)?;
    let before = explicit.timeline.len();
    log(format!(
        "recorded {before} events; the replay fails {} as the original run",
        check.name()
    ));
    let mut runs = 0usize;
    let mut fails = |candidate: &Scenario| -> bool {
        runs += 1;
        runs <= MAX_RUNS && matches!(failure(candidate), Some((c, _)) if c == check)
    };
    let mut current = explicit.clone();
    // Rounds of: drop events (ddmin), drop whole clients, simplify what is left, until a round
    // changes nothing. Each step keeps the failure (the same check fails).
    loop {
        let before_round = (current.timeline.len(), current.topology.clients);
        let template = current.clone();
        let events = ddmin(
            current.timeline.clone(),
            &mut |events| {
                fails(&Scenario {
                    timeline: events.to_vec(),
                    ..template.clone()
                })
            },
            log,
        );
        current.timeline = events;
        for c in (0..current.topology.clients).rev() {
            if let Some(candidate) = without_client(&current, c) {
                if fails(&candidate) {
                    log(format!("  client {c} removed"));
                    current = candidate;
                }
            }
        }
        for i in 0..current.timeline.len() {
            if let Some(simpler) = simplified(&current.timeline[i].event) {
                let mut candidate = current.clone();
                candidate.timeline[i].event = simpler;
                if fails(&candidate) {
                    current = candidate;
                }
            }
        }
        if (current.timeline.len(), current.topology.clients) == before_round {
            break;
        }
    }
    let minimal = current.timeline.clone();
    let after = minimal.len();
    let scenario = Scenario {
        name: format!("{}-min", sc.name),
        description: format!(
            "shrunk from {:?} (seed {}): {} events of {before} still fail the {} check",
            sc.name,
            seed.or(sc.seed).map_or("none".into(), |s| s.to_string()),
            after,
            check.name()
        ),
        timeline: minimal,
        topology: current.topology.clone(),
        links: current.links.clone(),
        expect: match check {
            CheckKind::Intent => crate::scenario::Expect::FailIntent,
            CheckKind::Liveness => crate::scenario::Expect::FailLiveness,
            CheckKind::Safety => crate::scenario::Expect::FailSafety,
        },
        ..explicit
    };
    let verdict = run(
        &scenario,
        Options {
            seed: None,
            trace: TraceLevel::None,
            record: false,
            chart: false,
        },
    )
    .verdict;
    if verdict == Verdict::Pass {
        return Err("the shrunk scenario passes (a shrinker bug)".into());
    }
    let verdict = verdict.describe();
    Ok(Shrunk {
        scenario,
        before,
        after,
        runs,
        verdict,
    })
}

/// `sc` without client `c`: its events and links gone, higher clients renumbered down. None
/// when it is the only client.
fn without_client(sc: &Scenario, c: usize) -> Option<Scenario> {
    if sc.topology.clients <= 1 {
        return None;
    }
    let renumber = |i: usize| if i > c { i - 1 } else { i };
    // The node, renumbered; None when it is the removed client.
    let node = |n: Node| match n {
        Node::Client(i) if i == c => None,
        Node::Client(i) => Some(Node::Client(renumber(i))),
        Node::Server => Some(Node::Server),
    };
    let side = |nodes: &[Node]| -> Vec<Node> { nodes.iter().filter_map(|&n| node(n)).collect() };
    let mut out = sc.clone();
    out.topology.clients -= 1;
    if c < out.topology.clock_drift_pct.len() {
        out.topology.clock_drift_pct.remove(c);
    }
    out.links.retain(|l| l.client != c);
    for l in &mut out.links {
        l.client = renumber(l.client);
    }
    out.timeline = sc
        .timeline
        .iter()
        .filter_map(|t| {
            let mut t = t.clone();
            match &mut t.event {
                Event::Insert { client, .. }
                | Event::Delete { client, .. }
                | Event::InsertToken { client, .. }
                | Event::DeleteToken { client, .. } => {
                    if *client == c {
                        return None;
                    }
                    *client = renumber(*client);
                }
                Event::Crash(n) | Event::Halt(n) | Event::Restart(n) => *n = node(*n)?,
                Event::DropMessage { from, to, .. } | Event::Net { from, to, .. } => {
                    *from = node(*from)?;
                    *to = node(*to)?;
                }
                Event::Partition { a, b, .. } => {
                    *a = side(a);
                    *b = side(b);
                    if a.is_empty() || b.is_empty() {
                        return None;
                    }
                }
                Event::Heal | Event::StopFaults | Event::Commit { .. } => {}
            }
            Some(t)
        })
        .collect();
    Some(out)
}

/// A simpler form of one event, if it has one: one character typed or deleted rather than
/// several, a single delivery rather than a duplicate.
fn simplified(event: &Event) -> Option<Event> {
    match event {
        Event::Insert { client, pos, text } if text.chars().count() > 1 => Some(Event::Insert {
            client: *client,
            pos: *pos,
            text: text.chars().take(1).collect(),
        }),
        Event::Delete { client, pos, len } if *len > 1 => Some(Event::Delete {
            client: *client,
            pos: *pos,
            len: 1,
        }),
        Event::Net {
            from,
            to,
            nth,
            fate: Fate::Duplicate(first, _),
        } => Some(Event::Net {
            from: *from,
            to: *to,
            nth: *nth,
            fate: Fate::Delay(*first),
        }),
        _ => None,
    }
}

/// Zeller's ddmin: a 1-minimal subsequence of `items` for which `test` holds (it must hold
/// for `items`).
pub fn ddmin<T: Clone>(
    mut items: Vec<T>,
    test: &mut dyn FnMut(&[T]) -> bool,
    log: &mut dyn FnMut(String),
) -> Vec<T> {
    let mut n = 2usize;
    while items.len() >= 2 {
        let chunk = items.len().div_ceil(n);
        let parts: Vec<Vec<T>> = items.chunks(chunk).map(<[T]>::to_vec).collect();
        let mut reduced = false;
        for (i, part) in parts.iter().enumerate() {
            if test(part) {
                items = part.clone();
                n = 2;
                reduced = true;
                break;
            }
            let complement: Vec<T> = parts
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, p)| p.iter().cloned())
                .collect();
            if parts.len() > 2 && test(&complement) {
                items = complement;
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
        }
        if reduced {
            log(format!("  {} events", items.len()));
            continue;
        }
        if parts.len() == 2 {
            // With two parts the complements are the parts themselves: already tried.
        }
        if n >= items.len() {
            break;
        }
        n = (n * 2).min(items.len());
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddmin_finds_the_culprits() {
        let items: Vec<u32> = (0..100).collect();
        let mut calls = 0;
        let out = ddmin(
            items,
            &mut |s: &[u32]| {
                calls += 1;
                s.contains(&17) && s.contains(&71)
            },
            &mut |_| {},
        );
        assert_eq!(out, vec![17, 71]);
        assert!(calls < 200, "{calls} calls");
    }

    #[test]
    fn removing_a_client_drops_its_events_and_renumbers_the_rest() {
        let sc = Scenario::parse(
            r#"(
                name: "t", description: "", seed: None,
                topology: (clients: 3, clock_drift_pct: [1, 2, 3]),
                engine: (), network: (latency_ms: (5, 5)),
                links: [(client: 2, direction: Up, faults: (latency_ms: (9, 9)))],
                timeline: [
                    (at_ms: 1, event: Insert(client: 1, pos: 0, text: "ab")),
                    (at_ms: 2, event: Insert(client: 2, pos: 0, text: "c")),
                    (at_ms: 3, event: Partition(a: [Client(1)], b: [Server])),
                    (at_ms: 4, event: Partition(a: [Client(0), Client(1)], b: [Client(2)])),
                    (at_ms: 5, event: Net(from: Server, to: Client(1), nth: 1, fate: Drop)),
                    (at_ms: 6, event: Net(from: Client(2), to: Server, nth: 2, fate: Duplicate(7, 8))),
                ],
                checks: (stop_faults_at_ms: 10, converge_within_ms: 10),
            )"#,
            "t",
        )
        .unwrap();
        let out = without_client(&sc, 1).unwrap();
        assert_eq!(out.topology.clients, 2);
        assert_eq!(out.topology.clock_drift_pct, vec![1, 3]);
        assert_eq!(out.links.len(), 1);
        assert_eq!(out.links[0].client, 1);
        let events: Vec<_> = out
            .timeline
            .iter()
            .map(|t| (t.at_ms, t.event.clone()))
            .collect();
        assert_eq!(
            events,
            vec![
                (
                    2,
                    Event::Insert {
                        client: 1,
                        pos: 0,
                        text: "c".into()
                    }
                ),
                (
                    4,
                    Event::Partition {
                        a: vec![Node::Client(0)],
                        b: vec![Node::Client(1)],
                        one_way: false,
                        for_ms: None
                    }
                ),
                (
                    6,
                    Event::Net {
                        from: Node::Client(1),
                        to: Node::Server,
                        nth: 2,
                        fate: Fate::Duplicate(7, 8)
                    }
                ),
            ]
        );
        assert_eq!(
            simplified(&events[2].1),
            Some(Event::Net {
                from: Node::Client(1),
                to: Node::Server,
                nth: 2,
                fate: Fate::Delay(7)
            })
        );
        assert!(without_client(&without_client(&out, 0).unwrap(), 0).is_none());
    }
}
