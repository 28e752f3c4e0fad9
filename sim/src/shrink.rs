//! Shrinking: record every random choice of a failing run as explicit timeline events (edits,
//! the network's fate for each message), check the seed-free replay fails the same way, then
//! remove events by delta debugging (Zeller's ddmin) while the same check still fails.

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
            ..f.clone()
        }
    };
    let explicit = Scenario {
        seed: None,
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
    let mut test = |events: &[crate::scenario::Timed]| -> bool {
        runs += 1;
        if runs > MAX_RUNS {
            return false;
        }
        let candidate = Scenario {
            timeline: events.to_vec(),
            ..explicit.clone()
        };
        matches!(failure(&candidate), Some((c, _)) if c == check)
    };
    let minimal = ddmin(explicit.timeline.clone(), &mut test, log);
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
}
