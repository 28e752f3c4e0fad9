//! Swarm testing: every seed draws its own fault profile (link model, loss, duplication,
//! reordering, corruption, partitions, crashes, clock drift, workload), prints nothing unless it
//! fails, and a failure becomes a replayable RON file.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{
    Checks, Direction, EngineSettings, Event, Expect, LinkFaults, LinkModel, LinkOverride, Merge,
    Node, Scenario, StorageFaults, Timed, Tokens, Topology, Typing, Workload,
};
use crate::world::{fmt_time, run, CheckKind, Options, Summary, TraceLevel, Verdict};

/// Parse `A..B`.
pub fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("seed range {s:?} must look like A..B"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("bad range start {a:?}"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("bad range end {b:?}"))?;
    if a >= b {
        return Err(format!("seed range {s:?} is empty"));
    }
    Ok(a..b)
}

/// Does a failed check match an expected verdict?
pub fn matches_expect(check: CheckKind, e: Expect) -> bool {
    matches!(
        (check, e),
        (CheckKind::Intent, Expect::FailIntent)
            | (CheckKind::Liveness, Expect::FailLiveness)
            | (CheckKind::Safety, Expect::FailSafety)
    )
}

/// True when a report's verdict is what its scenario expects.
pub fn as_expected(v: &Verdict, e: Expect) -> bool {
    match v {
        Verdict::Pass => e == Expect::Pass,
        Verdict::Fail { check, .. } => matches_expect(*check, e),
    }
}

/// The verdict in words, and whether the scenario expected it: `PASS: …`, `FAIL: …`,
/// `EXPECTED FAIL: …` (a failure the scenario declares with `expect`) or `UNEXPECTED PASS: …`.
/// The CLI exits 0 exactly when [`as_expected`] holds.
pub fn verdict_line(v: &Verdict, expect: Expect, converge_ms: Option<u64>) -> String {
    let expected = as_expected(v, expect);
    match v {
        Verdict::Pass => {
            let took = converge_ms.unwrap_or(0) as f64 / 1000.0;
            if expected {
                format!("PASS: converged {took:.3}s after faults stopped")
            } else {
                format!(
                    "UNEXPECTED PASS: converged {took:.3}s after faults stopped, but the scenario expects {} (expect: {expect:?})",
                    expect.describe()
                )
            }
        }
        Verdict::Fail {
            check,
            at_ms,
            detail,
        } => {
            let what = format!("{} check at {}: {detail}", check.name(), fmt_time(*at_ms));
            if expected {
                format!(
                    "EXPECTED FAIL: {what} (the scenario expects {}: expect: {expect:?})",
                    expect.describe()
                )
            } else {
                format!("FAIL: {what}")
            }
        }
    }
}

/// The kind of fault profile a seed draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Focus {
    /// Everything at moderate rates.
    Mixed,
    /// Datagram links damaging 5–25% of messages: damaged edits, resets, resent resets.
    CorruptionStorm,
    /// 30–60% loss with short retransmit timeouts: long chains of resends and rollbacks.
    RetransmitChains,
    /// 8–16 clients, every clock drifting.
    DriftingCrowd,
    /// The server keeps 2–24 master changes: idle sessions outrun the log.
    ShortLog,
}

/// The frame limit of swarm runs: a few hundred times what their documents reach, and small
/// enough that garbage longer than it costs little.
pub const SWARM_MAX_FRAME_BYTES: usize = 256 << 10;

/// What the Unicode typing runs type, a character at a time.
pub const UNICODE_ALPHABET: &str = "ae 😀𝄞👍🏽\u{301}\u{308}👨\u{200d}👩漢字ش\r\n";

/// The scenario a seed stands for: a random fault profile over `base` (or a built-in base).
pub fn profile(seed: u64, base: Option<&Scenario>) -> Scenario {
    let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x7377_6172_6d00_0000);
    // One seed in five draws a focused profile that makes rare schedules common: resets under
    // corruption, long retransmit chains, a crowd of drifting clocks, or a change log too short
    // for idle sessions.
    let focus = match r.random_range(0..20) {
        0 => Focus::CorruptionStorm,
        1 => Focus::RetransmitChains,
        2 => Focus::DriftingCrowd,
        3 => Focus::ShortLog,
        _ => Focus::Mixed,
    };
    let stream = r.random_bool(0.5) && !matches!(focus, Focus::CorruptionStorm);
    let clients = base.map_or_else(
        || match focus {
            Focus::DriftingCrowd => r.random_range(8..=16),
            _ => r.random_range(2..=6),
        },
        |b| b.topology.clients,
    );
    let lo = r.random_range(1..=40u64);
    let hi = lo + r.random_range(0..=200u64);
    let mut network = LinkFaults {
        latency_ms: (lo, hi),
        ..LinkFaults::default()
    };
    if stream {
        if r.random_bool(0.5) {
            network.drop = r.random_range(0.0..0.02);
        }
    } else {
        let p = |r: &mut ChaCha8Rng, max: f64| {
            if r.random_bool(0.6) {
                r.random_range(0.0..max)
            } else {
                0.0
            }
        };
        network.drop = p(&mut r, 0.3);
        network.duplicate = p(&mut r, 0.2);
        network.reorder = p(&mut r, 0.3);
        network.reorder_delay_ms = r.random_range(50..=1500);
        network.corrupt = p(&mut r, 0.05);
        if focus == Focus::CorruptionStorm {
            network.corrupt = r.random_range(0.05..0.25);
            network.drop = r.random_range(0.0..0.1);
        }
        if focus == Focus::RetransmitChains {
            network.drop = r.random_range(0.3..0.6);
        }
    }
    let mut links = Vec::new();
    if r.random_bool(0.3) {
        let mut f = network.clone();
        f.drop = if stream {
            r.random_range(0.0..0.05)
        } else {
            r.random_range(0.2..0.6)
        };
        links.push(LinkOverride {
            client: r.random_range(0..clients),
            direction: [Direction::Up, Direction::Down, Direction::Both][r.random_range(0..3)],
            faults: f,
        });
    }
    let stop = r.random_range(8_000..=40_000u64);
    let mut timeline = Vec::new();
    for _ in 0..r.random_range(0..=3) {
        let at = r.random_range(0..stop);
        let dur = r.random_range(300..=20_000u64);
        let mut a = vec![Node::Server];
        let mut b: Vec<Node> = (0..clients)
            .filter(|_| r.random_bool(0.5))
            .map(Node::Client)
            .collect();
        if b.is_empty() {
            b.push(Node::Client(r.random_range(0..clients)));
        }
        if r.random_bool(0.5) {
            std::mem::swap(&mut a, &mut b);
        }
        let one_way = r.random_bool(0.3);
        // Each partition lifts itself, so overlapping ones end one by one.
        timeline.push(Timed {
            at_ms: at,
            event: Event::Partition {
                a,
                b,
                one_way,
                for_ms: Some(dur.min(stop - at).max(1)),
            },
        });
    }
    if r.random_bool(0.35) {
        let at = r.random_range(0..stop);
        timeline.push(Timed {
            at_ms: at,
            event: Event::Crash(Node::Server),
        });
        let back = at + r.random_range(100..=8_000u64);
        timeline.push(Timed {
            at_ms: back.min(stop),
            event: Event::Restart(Node::Server),
        });
    }
    if r.random_bool(0.3) {
        let c = Node::Client(r.random_range(0..clients));
        let at = r.random_range(0..stop);
        timeline.push(Timed {
            at_ms: at,
            event: Event::Crash(c),
        });
        let back = at + r.random_range(100..=8_000u64);
        timeline.push(Timed {
            at_ms: back.min(stop),
            event: Event::Restart(c),
        });
    }
    timeline.sort_by_key(|t| t.at_ms);
    let drift: Vec<i32> = if focus == Focus::DriftingCrowd || r.random_bool(0.3) {
        (0..clients).map(|_| r.random_range(-20..=20)).collect()
    } else {
        Vec::new()
    };
    // Tokens under three-way merge, or typing, which is also where the fuzzy strategy runs.
    // Intent is checked on both: the character ledger always (for fuzzy patch, only that
    // nothing is duplicated or invented: dropped patches are its contract), the token checks on
    // token runs.
    let tokens = r.random_bool(0.7);
    let merge = if tokens || r.random_bool(0.5) {
        Merge::ThreeWay
    } else {
        Merge::FuzzyPatch
    };
    let workload = if tokens {
        Workload {
            typing: None,
            tokens: Some(Tokens {
                clients: Vec::new(),
                every_ms: r.random_range(100..=1_500),
                delete_chance: r.random_range(0.0..0.4),
                from_ms: 0,
                until_ms: stop,
            }),
        }
    } else {
        Workload {
            typing: Some(Typing {
                clients: Vec::new(),
                rate_per_s: r.random_range(0.5..8.0),
                from_ms: 0,
                until_ms: stop,
                // Half the typing runs type the whole of Unicode: astral characters (UTF-16
                // surrogate pairs on the wire), combining marks, a ZWJ sequence, CJK, right-to-left
                // letters, and `\r` (normalised to `\n` as it is typed).
                alphabet: r.random_bool(0.5).then(|| UNICODE_ALPHABET.to_string()),
                delete_chance: r.random_range(0.0..0.4),
            }),
            tokens: None,
        }
    };
    let mut engine = EngineSettings {
        sync_interval_ms: [100, 250, 500, 500, 1000][r.random_range(0..5)],
        retransmit_ms: r.random_range(600..=3_000),
        heartbeat_ms: r.random_range(2_000..=30_000),
        merge,
        max_log_entries: (focus == Focus::ShortLog).then(|| r.random_range(2..=24)),
        // Swarm documents stay far below this; garbage past it stays cheap.
        max_frame_bytes: Some(SWARM_MAX_FRAME_BYTES),
        hints: None,
        max_idle_sync_ms: None,
    };
    if focus == Focus::RetransmitChains {
        engine.retransmit_ms = r.random_range(200..=600);
    }
    // Bytes on the wire: frames damaged, preceded by garbage, split and coalesced (streams);
    // drawn after everything above so the rest of each seed's profile stays what it was.
    let q = |r: &mut ChaCha8Rng, chance: f64, max: f64| {
        if r.random_bool(chance) {
            r.random_range(0.0..max)
        } else {
            0.0
        }
    };
    network.garbage = q(&mut r, 0.3, 0.03);
    if stream {
        network.corrupt = q(&mut r, 0.3, 0.02);
        network.split = q(&mut r, 0.5, 0.5);
    }
    for l in &mut links {
        l.faults.garbage = network.garbage;
        l.faults.corrupt = l
            .faults
            .corrupt
            .max(if stream { network.corrupt } else { 0.0 });
        l.faults.split = network.split;
    }
    // The server's disk: failed commits, crashes after a commit and inside a batch, and
    // batches that stay open a few ms so that several inputs share a commit.
    let storage = StorageFaults {
        fail: q(&mut r, 0.3, 0.01),
        crash_after_commit: q(&mut r, 0.3, 0.01),
        crash_in_batch: q(&mut r, 0.3, 0.01),
        restart_ms: r.random_range(50..=3_000),
        commit_ms: r.random_range(0..=5),
    };
    // Drawn last, so every earlier choice is what the seed gave before hints existed: the
    // idle back-off's ceiling (none, the default, long) and, in one run in ten, no hints (the
    // back-off then leans on polling alone).
    engine.max_idle_sync_ms = Some(engine.sync_interval_ms * [1, 4, 4, 16][r.random_range(0..4)]);
    engine.hints = Some(r.random_range(0..10) != 0);
    let generated = Scenario {
        storage,
        name: format!("swarm-{seed}"),
        description: format!("swarm seed {seed}: a random fault profile"),
        seed: Some(seed),
        topology: Topology {
            clients,
            initial_text: if tokens {
                String::new()
            } else {
                "the quick brown fox".into()
            },
            link: if stream {
                LinkModel::Stream
            } else {
                LinkModel::Datagram
            },
            clock_drift_pct: drift,
        },
        engine,
        network,
        links,
        workload,
        timeline,
        checks: Checks {
            stop_faults_at_ms: stop,
            converge_within_ms: 60_000,
            // After a log overflow a diff stands in for a session's exact change, and a diff
            // can split a token: exactness, hence intent, is not promised there (the engine
            // counts each such fallback). Short-log runs check safety and liveness.
            intent: focus != Focus::ShortLog,
        },
        expect: Expect::Pass,
    };
    match base {
        None => generated,
        Some(b) => Scenario {
            name: format!("{}-swarm-{seed}", b.name),
            description: format!("{} (swarm seed {seed})", b.description),
            seed: Some(seed),
            topology: Topology {
                link: generated.topology.link,
                clock_drift_pct: generated.topology.clock_drift_pct,
                ..b.topology.clone()
            },
            engine: b.engine.clone(),
            workload: b.workload.clone(),
            checks: Checks {
                stop_faults_at_ms: generated
                    .checks
                    .stop_faults_at_ms
                    .max(b.checks.stop_faults_at_ms),
                ..b.checks.clone()
            },
            expect: b.expect,
            ..generated
        },
    }
}

/// A failing seed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// Its scenario (written as a RON file).
    pub scenario: Scenario,
    /// What failed.
    pub verdict: String,
}

/// Sweeps of at least this many seeds fail when a coverage counter stays at zero. Smaller ones
/// (replaying a few seeds) only report it: resets happen about once in 100 seeds.
pub const COVERAGE_GATE_MIN_SEEDS: u64 = 1_000;

/// The outcome of a sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepResult {
    /// Seeds run.
    pub runs: u64,
    /// Seeds whose verdict was not the expected one, by seed.
    pub failures: Vec<Failure>,
    /// Counters summed over all seeds.
    pub totals: Summary,
    /// Slowest convergence after faults stopped.
    pub converge_ms_max: u64,
    /// Simulated time over all seeds.
    pub sim_ms: u64,
}

impl SweepResult {
    /// The coverage counters that stayed at zero over the sweep, by name. Each names a
    /// recovery path (backup rollback, retransmission, duplicate skipping, reset, dropped fuzzy
    /// patch, a change log outrun by an idle session) or a fault on the wire or the disk (damaged,
    /// split, coalesced and garbage frames, decode errors, failed commits, crashes after a commit
    /// and inside a batch), or a sync a `changed` hint started; a sweep that never takes one
    /// has not tested it.
    pub fn zero_counters(&self) -> Vec<&'static str> {
        let t = &self.totals;
        [
            ("rollbacks", t.rollbacks),
            ("retransmits", t.retransmits),
            ("duplicates_skipped", t.duplicates_skipped),
            ("resets", t.resets),
            ("patches_dropped", t.patches_dropped),
            ("log_overflows", t.log_overflows),
            ("corrupted", t.corrupted),
            ("split_frames", t.split_frames),
            ("coalesced", t.coalesced),
            ("garbage", t.garbage),
            ("decode_errors", t.decode_errors),
            ("failed_commits", t.failed_commits),
            ("crashes_after_commit", t.crashes_after_commit),
            ("crashes_in_batch", t.crashes_in_batch),
            ("hinted_syncs", t.hinted_syncs),
        ]
        .into_iter()
        .filter(|&(_, n)| n == 0)
        .map(|(name, _)| name)
        .collect()
    }

    /// A multi-line description of the sweep.
    pub fn describe(&self) -> String {
        let t = &self.totals;
        format!(
            "swarm    {} seeds, {} failures, {:.0} simulated s, slowest convergence {:.3}s\ncoverage rollbacks={} retransmits={} duplicates_skipped={} resets={} patches_dropped={} log_overflows={} stale_skipped={} resumes={} conn_resets={} hints={} hinted_syncs={}\nexact    inexact_resets={} link_fallbacks={} merge_fallbacks={}\nnetwork  sent={} delivered={} dropped={} dup={} reordered={} corrupted={} edits={}\nwire     split={} coalesced={} garbage={} decode_errors={}\nstorage  failed_commits={} crashes_after_commit={} crashes_in_batch={}",
            self.runs,
            self.failures.len(),
            self.sim_ms as f64 / 1000.0,
            self.converge_ms_max as f64 / 1000.0,
            t.rollbacks, t.retransmits, t.duplicates_skipped, t.resets, t.patches_dropped, t.log_overflows, t.stale_skipped, t.resumes, t.conn_resets, t.hints, t.hinted_syncs,
            t.inexact_resets, t.link_fallbacks, t.merge_fallbacks,
            t.sent, t.delivered, t.dropped, t.duplicated, t.reordered, t.corrupted, t.edits,
            t.split_frames, t.coalesced, t.garbage, t.decode_errors,
            t.failed_commits, t.crashes_after_commit, t.crashes_in_batch
        )
    }
}

fn add(t: &mut Summary, s: &Summary) {
    t.sent += s.sent;
    t.delivered += s.delivered;
    t.dropped += s.dropped;
    t.duplicated += s.duplicated;
    t.reordered += s.reordered;
    t.corrupted += s.corrupted;
    t.split_frames += s.split_frames;
    t.coalesced += s.coalesced;
    t.garbage += s.garbage;
    t.decode_errors += s.decode_errors;
    t.failed_commits += s.failed_commits;
    t.crashes_after_commit += s.crashes_after_commit;
    t.crashes_in_batch += s.crashes_in_batch;
    t.conn_resets += s.conn_resets;
    t.resets += s.resets;
    t.rollbacks += s.rollbacks;
    t.retransmits += s.retransmits;
    t.duplicates_skipped += s.duplicates_skipped;
    t.stale_skipped += s.stale_skipped;
    t.patches_dropped += s.patches_dropped;
    t.resumes += s.resumes;
    t.edits += s.edits;
    t.link_fallbacks += s.link_fallbacks;
    t.log_overflows += s.log_overflows;
    t.merge_fallbacks += s.merge_fallbacks;
    t.inexact_resets += s.inexact_resets;
    t.hints += s.hints;
    t.hinted_syncs += s.hinted_syncs;
}

/// Run one swarm scenario; a panic (an engine invariant's assertion, an overflow) becomes a
/// safety failure of that seed instead of ending the sweep.
fn run_catching(sc: &Scenario) -> crate::world::Report {
    let opts = Options {
        seed: None,
        trace: TraceLevel::None,
        record: false,
        chart: false,
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(sc, opts))) {
        Ok(report) => report,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            crate::world::Report::panicked(msg)
        }
    }
}

/// Run every seed of `range` on `jobs` threads. Results are combined in seed order, so the
/// outcome does not depend on scheduling.
pub fn sweep(
    range: Range<u64>,
    base: Option<&Scenario>,
    jobs: usize,
    progress: bool,
) -> SweepResult {
    let n = range.end - range.start;
    let bar = if progress {
        let b = indicatif::ProgressBar::new(n);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {msg}  eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let next = AtomicU64::new(range.start);
    let results: Mutex<Vec<(u64, Scenario, Summary, Verdict)>> = Mutex::new(Vec::new());
    let failed = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= range.end {
                    break;
                }
                let sc = profile(seed, base);
                let report = run_catching(&sc);
                if !as_expected(&report.verdict, sc.expect) {
                    let f = failed.fetch_add(1, Ordering::Relaxed) + 1;
                    bar.set_message(format!("{f} failed"));
                }
                bar.inc(1);
                // A poisoned lock means another worker panicked; its panic is reported by scope.
                if let Ok(mut r) = results.lock() {
                    r.push((seed, sc, report.summary, report.verdict));
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut all = results.into_inner().unwrap_or_default();
    all.sort_by_key(|r| r.0);
    let mut out = SweepResult {
        runs: all.len() as u64,
        ..SweepResult::default()
    };
    for (seed, sc, summary, verdict) in all {
        add(&mut out.totals, &summary);
        out.sim_ms += summary.sim_ms;
        out.converge_ms_max = out.converge_ms_max.max(summary.converge_ms.unwrap_or(0));
        if !as_expected(&verdict, sc.expect) {
            let v = match &verdict {
                Verdict::Pass => format!("passed but {:?} was expected", sc.expect),
                fail => fail.describe(),
            };
            out.failures.push(Failure {
                seed,
                scenario: sc,
                verdict: v,
            });
        }
    }
    out
}
