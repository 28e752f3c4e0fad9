//! The simulator's integration tests: every scenario file snapshot-tested (and run twice for
//! determinism), the HTML report, the CLI's exit codes, swarm and shrink.

use std::path::Path;
use std::process::Command;

use dsync_engine::{PersistRecord, StoredDocument};
use dsync_sim::scenario::Expect;
use dsync_sim::swarm::{as_expected, profile, sweep};
use dsync_sim::{html, run, run_with_store, shrink, Options, Scenario, TraceLevel, Verdict};
use dsync_store::{SqliteStore, Store, StoreError};

fn opts(trace: TraceLevel) -> Options {
    Options {
        seed: None,
        trace,
        record: false,
        chart: false,
    }
}

/// Scenarios whose whole trace is kept in the snapshot (small, golden).
const GOLDEN_TRACE_MAX_LINES: usize = 400;

#[test]
fn scenarios_match_snapshots_and_replay_identically() {
    insta::glob!("../../scenarios", "**/*.ron", |path| {
        let sc = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
        let a = run(&sc, opts(TraceLevel::Full));
        let b = run(&sc, opts(TraceLevel::Full));
        if a.trace != b.trace {
            let i = a
                .trace
                .iter()
                .zip(&b.trace)
                .position(|(x, y)| x != y)
                .unwrap_or(a.trace.len().min(b.trace.len()));
            panic!(
                "{}: two runs differ at trace line {}:\n  first:  {:?}\n  second: {:?}",
                path.display(),
                i + 1,
                a.trace.get(i),
                b.trace.get(i)
            );
        }
        assert!(
            as_expected(&a.verdict, sc.expect),
            "{}: verdict {:?}, expected {:?}",
            path.display(),
            a.verdict,
            sc.expect
        );
        let mut snap = String::new();
        for l in &a.settings {
            snap.push_str(&format!("# {l}\n"));
        }
        snap.push_str(&format!("verdict {:?}\n", a.verdict));
        if a.final_text.chars().count() <= 240 {
            snap.push_str(&format!("final {:?}\n", a.final_text));
        }
        if a.trace.len() <= GOLDEN_TRACE_MAX_LINES {
            for l in &a.trace {
                snap.push_str(l);
                snap.push('\n');
            }
        } else {
            // Long runs: the faults, checks and summary lines only.
            for l in a.trace.iter().filter(|l| {
                l.contains(" fault ") || l.contains(" check ") || l.starts_with("summary")
            }) {
                snap.push_str(l);
                snap.push('\n');
            }
        }
        insta::assert_snapshot!(snap);
    });
}

#[test]
fn partition_scenario_converges_and_keeps_every_token() {
    let sc = Scenario::load(Path::new("../scenarios/partition.ron")).unwrap();
    let r = run(&sc, opts(TraceLevel::Summary));
    assert_eq!(r.verdict, Verdict::Pass);
    assert!(r.summary.converge_ms.unwrap() <= sc.checks.converge_within_ms);
    assert!(r.trace.iter().any(|l| l.contains("intent ok")));
}

#[test]
fn overwrite_baseline_is_caught_losing_edits() {
    let sc = Scenario::load(Path::new("../scenarios/overwrite_loses_edits.ron")).unwrap();
    match run(&sc, opts(TraceLevel::None)).verdict {
        Verdict::Fail { check, detail, .. } => {
            assert_eq!(check, dsync_sim::CheckKind::Intent);
            assert!(detail.contains("lost"), "{detail}");
        }
        v => panic!("overwrite passed: {v:?}"),
    }
}

/// Typing runs are checked for the text they end with, not only for agreement: the overwrite
/// merge converges (everyone agrees on the last writer's text) but loses typing.
#[test]
fn a_typing_run_that_converges_on_lost_typing_fails() {
    let ok = Scenario::load(Path::new("../scenarios/unicode.ron")).unwrap();
    assert!(ok.workload.typing.is_some() && ok.checks.intent);
    assert_eq!(run(&ok, opts(TraceLevel::None)).verdict, Verdict::Pass);
    let mut overwrite = ok.clone();
    overwrite.engine.merge = dsync_sim::scenario::Merge::Overwrite;
    match run(&overwrite, opts(TraceLevel::None)).verdict {
        Verdict::Fail { check, detail, .. } => {
            assert_eq!(check, dsync_sim::CheckKind::Intent);
            assert!(detail.starts_with("typing lost: "), "{detail}");
        }
        v => panic!("overwrite passed: {v:?}"),
    }
}

#[test]
fn html_report_is_self_contained_and_shows_the_run() {
    let sc = Scenario::load(Path::new("../scenarios/lost_reply_backup_shadow.ron")).unwrap();
    let r = run(
        &sc,
        Options {
            chart: true,
            ..opts(TraceLevel::Summary)
        },
    );
    let page = html::render(&sc, &r);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<svg id=\"sequence\"") && page.contains("<svg id=\"divergence\""));
    // Lanes for the server and both clients, dropped replies drawn as such.
    assert!(
        page.contains(">S</text>") && page.contains(">c0</text>") && page.contains(">c1</text>")
    );
    assert_eq!(page.matches("class=\"msg dropped\"").count(), 3);
    assert!(page.contains("data-client=\"c1\""));
    // Both charts have a time axis; the page uses the window's width.
    assert!(
        page.contains(">0s</text>") && page.contains(">2s</text>"),
        "time ticks"
    );
    assert_eq!(page.matches("<svg id=").count(), 2);
    assert!(page.contains("svg{display:block;width:100%}"));
    // Arrows carry type, seq and versions; every node's final text is there; the trace folds.
    assert!(page.contains(">client_sync seq="), "message labels");
    for node in ["S", "c0", "c1"] {
        assert!(
            page.contains(&format!("<summary>{node}: ")),
            "final text of {node}"
        );
    }
    assert!(page.contains("<details><summary>Trace ("));
    // An expected failure says so.
    let sc = Scenario::load(Path::new("../scenarios/overwrite_loses_edits.ron")).unwrap();
    let r = run(&sc, opts(TraceLevel::Summary));
    let page = html::render(&sc, &r);
    assert!(page.contains("class=\"verdict expected\">EXPECTED FAIL: intent check"));
    // Nothing loaded from elsewhere.
    assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("@import"));
    assert!(!page.contains("href=\"http"));
}

#[test]
fn swarm_sweep_passes_and_moves_every_counter() {
    let result = sweep(0..120, None, 2, false);
    assert_eq!(result.runs, 120);
    assert!(
        result.failures.is_empty(),
        "{:?}",
        result.failures.first().map(|f| &f.verdict)
    );
    assert!(
        result.totals.rollbacks > 0
            && result.totals.retransmits > 0
            && result.totals.duplicates_skipped > 0
    );
    // Profiles are a pure function of the seed.
    assert_eq!(profile(17, None), profile(17, None));
}

#[test]
fn shrink_reduces_a_failing_overwrite_seed_to_a_few_events() {
    let mut base = Scenario::load(Path::new("../scenarios/overwrite_loses_edits.ron")).unwrap();
    base.expect = Expect::Pass;
    let failing = (0..20)
        .map(|s| profile(s, Some(&base)))
        .find(|sc| !matches!(run(sc, opts(TraceLevel::None)).verdict, Verdict::Pass))
        .expect("overwrite never lost an edit in 20 seeds");
    let shrunk = shrink::shrink(&failing, None, &mut |_| {}).unwrap();
    assert!(
        shrunk.after <= 20,
        "{} events → {}",
        shrunk.before,
        shrunk.after
    );
    assert!(shrunk.after < shrunk.before);
    assert_eq!(shrunk.scenario.seed, None);
    assert_eq!(shrunk.scenario.expect, Expect::FailIntent);
    // The shrunk file parses back and fails the same way.
    let reparsed = Scenario::parse(&shrunk.scenario.to_ron(), "shrunk").unwrap();
    assert!(matches!(
        run(&reparsed, opts(TraceLevel::None)).verdict,
        Verdict::Fail {
            check: dsync_sim::CheckKind::Intent,
            ..
        }
    ));
}

fn sim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dsync-sim"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_exit_codes_say_pass_fail_and_bad_input() {
    let (code, out, _) = sim(&["../scenarios/partition.ron"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("# scenario \"partition\""),
        "settings come first: {out}"
    );
    assert!(out.contains("verdict  PASS"));
    // A failure the scenario declares is its expected verdict: exit 0, said as such.
    let (code, out, _) = sim(&["../scenarios/overwrite_loses_edits.ron"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("verdict  EXPECTED FAIL: intent check at t="),
        "{out}"
    );
    // The same run expected to pass is a plain failure: exit 1.
    let dir = std::env::temp_dir().join(format!("dsync-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A shipped scenario with one edit, run from a temporary file.
    let edited = |file: &str, from: &str, to: &str| {
        let text = std::fs::read_to_string(format!("../scenarios/{file}")).unwrap();
        let path = dir.join(file);
        std::fs::write(&path, text.replace(from, to)).unwrap();
        sim(&[path.to_str().unwrap()])
    };
    let (code, out, _) = edited(
        "overwrite_loses_edits.ron",
        "expect: FailIntent",
        "expect: Pass",
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("verdict  FAIL: intent check at t="), "{out}");
    // A pass where a failure was expected is not what the scenario says: exit 1.
    let (code, out, _) = edited(
        "partition.ron",
        "Scenario(",
        "Scenario(\n    expect: FailIntent,",
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("verdict  UNEXPECTED PASS"), "{out}");
    let bad = dir.join("bad.ron");
    std::fs::write(&bad, "Scenario(\n  name: \"x\",\n  colour: 3,\n)\n").unwrap();
    let (code, _, err) = sim(&[bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.ron:3:"),
        "line and column expected: {err}"
    );
    assert!(err.contains("colour"), "{err}");
    let (code, _, err) = sim(&["/nonexistent/x.ron"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/x.ron"));
    let (code, _, _) = sim(&["../scenarios/partition.ron", "--seed", "not-a-number"]);
    assert_eq!(code, 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn swarm_names_the_coverage_counters_that_stayed_at_zero() {
    let dir = std::env::temp_dir().join(format!("dsync-sim-swarm-{}", std::process::id()));
    // A replay of a few seeds reports zero counters without failing.
    let (code, out, _) = sim(&[
        "swarm",
        "--seeds",
        "0..3",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("swarm    3 seeds, 0 failures"), "{out}");
    assert!(
        out.contains("note     coverage counters at zero: ") && out.contains("resets"),
        "{out}"
    );
    // The gate itself names each counter.
    let mut r = dsync_sim::swarm::SweepResult::default();
    assert_eq!(
        r.zero_counters(),
        [
            "rollbacks",
            "retransmits",
            "duplicates_skipped",
            "resets",
            "patches_dropped",
            "log_overflows",
            "corrupted",
            "split_frames",
            "coalesced",
            "garbage",
            "decode_errors",
            "failed_commits",
            "crashes_after_commit",
            "crashes_in_batch",
            "hinted_syncs"
        ]
    );
    r.totals.rollbacks = 1;
    r.totals.resets = 2;
    r.totals.split_frames = 3;
    r.totals.failed_commits = 4;
    assert_eq!(
        r.zero_counters(),
        [
            "retransmits",
            "duplicates_skipped",
            "patches_dropped",
            "log_overflows",
            "corrupted",
            "coalesced",
            "garbage",
            "decode_errors",
            "crashes_after_commit",
            "crashes_in_batch",
            "hinted_syncs"
        ]
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn invalid_scenarios_are_refused_with_a_reason() {
    let base = std::fs::read_to_string("../scenarios/partition.ron").unwrap();
    let cases = [
        (base.replace("clients: 3", "clients: 0"), "topology.clients"),
        (base.replace("Client(1)", "Client(9)"), "client 9"),
        (
            base.replace("converge_within_ms: 10000", "converge_within_ms: 0"),
            "converge_within_ms",
        ),
        (
            base.replace("clients: 3,", "clients: 3, clock_drift_pct: [0, 200],"),
            "clock_drift_pct: 200 is outside -50..=100",
        ),
        (
            base.replace("clients: 3,", "clients: 3, clock_drift_pct: [0, 0, 0, 5],"),
            "4 entries for 3 clients",
        ),
    ];
    for (text, want) in cases {
        let e = Scenario::parse(&text, "case").unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
}

/// A planted bug: a store that says a batch is committed but writes it only with the next
/// batch, so a crash forgets the last batch it acknowledged.
struct ForgetsTheLastBatch {
    inner: SqliteStore,
    held: Vec<PersistRecord>,
}

impl Store for ForgetsTheLastBatch {
    fn load(&self, doc: &str) -> Result<Option<StoredDocument>, StoreError> {
        self.inner.load(doc)
    }

    fn commit(&mut self, records: &[PersistRecord], now_ms: u64) -> Result<(), StoreError> {
        let previous = std::mem::replace(&mut self.held, records.to_vec());
        self.inner.commit(&previous, now_ms)
    }

    fn documents(&self) -> Result<Vec<String>, StoreError> {
        self.inner.documents()
    }
}

#[test]
fn the_durability_check_catches_a_store_that_forgets_the_last_batch() {
    let sc = Scenario::load(Path::new("../scenarios/server_crash_restart.ron")).unwrap();
    assert_eq!(run(&sc, opts(TraceLevel::None)).verdict, Verdict::Pass);
    let forgetful = ForgetsTheLastBatch {
        inner: SqliteStore::open_in_memory().unwrap(),
        held: Vec::new(),
    };
    let report = run_with_store(&sc, opts(TraceLevel::None), Box::new(forgetful));
    match report.verdict {
        Verdict::Fail {
            check: dsync_sim::CheckKind::Safety,
            detail,
            ..
        } => assert!(
            detail.starts_with("durability after the server stopped: c"),
            "{detail}"
        ),
        other => panic!("the forgetful store went unnoticed: {other:?}"),
    }
}

/// Every decoder's fuzz target holds for a fixed number of inputs from a fixed seed (the
/// long runs are `dsync-sim fuzz`, and `.ci/run` runs each for a few seconds).
#[test]
fn fuzz_targets_hold_for_a_fixed_sample() {
    let out = std::env::temp_dir().join("dsync-fuzz-test");
    for t in dsync_sim::fuzz::Target::ALL {
        let r = dsync_sim::fuzz::run(t, 42, &out, |n| n >= 20_000);
        assert_eq!(r.inputs, 20_000);
        assert!(r.failure.is_none(), "{}: {:?}", t.name(), r.failure);
        assert!(
            r.accepted > 0,
            "{}: nothing accepted: the corpus is broken",
            t.name()
        );
    }
}
