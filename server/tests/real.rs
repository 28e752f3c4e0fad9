//! The simulator's scenarios against this binary (`dsync-sim real`, issue 12): the same checks
//! as in virtual time, over loopback TCP, a real SQLite file and `kill -9`. `.ci/run` runs the
//! whole parity table; these keep the harness itself honest in `cargo test`: a scenario that
//! must pass passes, and one that must fail fails for the right reason.

use std::path::PathBuf;

use dsync_sim::real::{run, RealOptions};
use dsync_sim::{CheckKind, Scenario, Verdict};

fn scenario(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.ron"));
    Scenario::load(&path).unwrap()
}

fn options() -> RealOptions {
    RealOptions {
        server_bin: PathBuf::from(env!("CARGO_BIN_EXE_dsync-server")),
        speed: 2.0,
        seed: None,
        max_wall: Some(std::time::Duration::from_secs(120)),
    }
}

#[test]
fn a_server_killed_and_restarted_loses_no_acknowledged_edit() {
    let sc = scenario("server_crash_restart");
    let r = run(&sc, &options()).unwrap();
    let trace = r.report.trace.join("\n");
    assert_eq!(r.report.verdict, Verdict::Pass, "{trace}");
    assert!(trace.contains("durable after the crash"), "{trace}");
    assert!(r.report.summary.resumes > 0, "{trace}");
    assert!(r.report.summary.edits > 50, "{trace}");
}

#[test]
fn a_server_down_for_good_fails_liveness() {
    let sc = scenario("server_down_for_good");
    let r = run(&sc, &options()).unwrap();
    let trace = r.report.trace.join("\n");
    match &r.report.verdict {
        Verdict::Fail { check, detail, .. } => {
            assert_eq!(*check, CheckKind::Liveness, "{trace}");
            assert!(detail.contains("server down"), "{detail}");
        }
        Verdict::Pass => panic!("passed with the server down:\n{trace}"),
    }
}
