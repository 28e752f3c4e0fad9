//! `bench-report`: replay both traces through dsync, yrs and diamond-types at cadences 1, 10
//! and 100 in one run, print a table and write `target/bench-report.json`.
//!
//! `--quick` replays a prefix of each trace (for CI: no speed assertions anywhere).
//! Peak memory: the process's resident high-water mark during each replay, over the RSS before
//! it (Linux `/proc`; the mark is reset between replays). The workspace forbids `unsafe`, so no
//! counting allocator.

/// `println!` that ignores a closed stdout (`| head`) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

use dsync_benches::{load_trace, run_diamond, run_dsync, run_yrs, Run, Trace};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only SYSTEM` / `--trace NAME` / `--every N` narrow the run (for profiling one cell).
    let opt = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (only, only_trace, only_every) = (
        opt("--only"),
        opt("--trace"),
        opt("--every").and_then(|e| e.parse::<usize>().ok()),
    );
    let limit = quick.then_some(20_000);
    let mut rows = Vec::new();
    let mut failed = false;
    out!(
        "{:<15} {:<16} {:>5} {:>12} {:>14} {:>12}",
        "system",
        "trace",
        "every",
        "ops/s",
        "wire B/op",
        "peak MiB"
    );
    for name in ["automerge-paper", "seph-blog1"] {
        if only_trace.as_deref().is_some_and(|t| t != name) {
            continue;
        }
        let trace = match load_trace(name, limit) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        for every in [1usize, 10, 100] {
            if only_every.is_some_and(|e| e != every) {
                continue;
            }
            type Runner = fn(&Trace, usize) -> Result<Run, String>;
            let systems: [(&str, Runner); 3] = [
                ("dsync", run_dsync),
                ("yrs", run_yrs),
                ("diamond-types", run_diamond),
            ];
            for (system, runner) in systems {
                if only.as_deref().is_some_and(|o| o != system) {
                    continue;
                }
                let base = rss_bytes();
                match runner(&trace, every) {
                    Ok(r) => {
                        let peak = peak_rss_since(base);
                        let wire = r.wire_bytes as f64 / r.ops as f64;
                        out!(
                            "{:<15} {:<16} {:>5} {:>12.0} {:>14.1} {:>12.1}",
                            system,
                            name,
                            every,
                            r.ops_per_sec(),
                            wire,
                            peak as f64 / (1 << 20) as f64
                        );
                        rows.push(format!(
                            "{{\"system\":\"{system}\",\"trace\":\"{name}\",\"every\":{every},\"ops_per_sec\":{:.1},\"wire_bytes_per_op\":{:.2},\"peak_bytes\":{peak}}}",
                            r.ops_per_sec(),
                            wire
                        ));
                    }
                    Err(e) => {
                        eprintln!("FAILED {system} {name} every {every}: {e}");
                        failed = true;
                    }
                }
            }
        }
    }
    let json = format!("[\n  {}\n]\n", rows.join(",\n  "));
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-report.json");
    if let Err(e) = std::fs::create_dir_all(out.parent().unwrap_or(std::path::Path::new(".")))
        .and_then(|_| std::fs::write(&out, json))
    {
        eprintln!("error: writing {}: {e}", out.display());
        return std::process::ExitCode::FAILURE;
    }
    out!(
        "wrote {}{}",
        out.display(),
        if quick {
            " (quick: first 20,000 transactions of each trace)"
        } else {
            ""
        }
    );
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// Resident set size now, from /proc (Linux); 0 elsewhere.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Peak RSS growth over `base` during the last replay: the high-water mark is reset before each
/// run through /proc/self/clear_refs, so VmHWM is per replay.
fn peak_rss_since(base: u64) -> u64 {
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024);
    // Reset the high-water mark for the next replay.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    hwm.saturating_sub(base)
}
