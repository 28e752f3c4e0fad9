//! `bench-report`: replay editing traces through dsync, yrs and diamond-types at cadences 1, 10
//! and 100 in one run, print a table and write it as JSON (`--out`, default
//! `target/bench-report.json` under the current directory). See `--help`.
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

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use dsync_benches::{
    load_trace, load_trace_file, run_diamond, run_dsync, run_yrs, traces_dir, Run, Trace,
    SHIPPED_TRACES,
};

/// Replay real editing traces through dsync, yrs and diamond-types in one run, print ops/s,
/// wire bytes per op and peak memory, and write the table as JSON.
///
/// The shipped traces (Joseph Gentle's editing-traces, CC BY 4.0) are in `benches/traces/`;
/// `DSYNC_TRACES=DIR` or `--traces DIR` points elsewhere. Speeds are figures, not checks:
/// every replay is checked for the right final text, never for its speed.
#[derive(Parser)]
#[command(name = "bench-report", version)]
struct Cli {
    /// Replay only the first 20,000 transactions of each trace (CI's smoke run).
    #[arg(long, conflicts_with = "limit")]
    quick: bool,
    /// Replay only the first N transactions of each trace.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Folder holding the named traces as NAME.json.gz (default: $DSYNC_TRACES, else the
    /// repository's benches/traces/).
    #[arg(long, value_name = "DIR")]
    traces: Option<PathBuf>,
    /// A trace to replay instead of the shipped two: a file in the editing-traces format
    /// (.json or .json.gz), or the name of one in the traces folder. Repeatable.
    #[arg(long, value_name = "FILE|NAME")]
    trace: Vec<String>,
    /// Run one system only.
    #[arg(long, value_enum)]
    only: Option<System>,
    /// Sync cadence in ops (the replicas exchange changes after every N ops). Repeatable.
    #[arg(long, value_name = "N", default_values_t = [1u64, 10, 100],
          value_parser = clap::value_parser!(u64).range(1..))]
    every: Vec<u64>,
    /// Document sizes of the size-scaling table, in bytes (one keystroke's round trip at
    /// each size, every system). Repeatable; `--sizes 0` skips the table.
    #[arg(long, value_name = "BYTES", default_values_t = [1_000usize, 10_000, 100_000, 1_000_000, 4_000_000])]
    sizes: Vec<usize>,
    /// Keystrokes per size in the size-scaling table (fewer with --quick).
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    keystrokes: usize,
    /// Where to write the JSON table.
    #[arg(long, value_name = "PATH", default_value = "target/bench-report.json")]
    out: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum System {
    Dsync,
    Yrs,
    DiamondTypes,
}

impl System {
    const ALL: [System; 3] = [System::Dsync, System::Yrs, System::DiamondTypes];

    fn name(self) -> &'static str {
        match self {
            System::Dsync => "dsync",
            System::Yrs => "yrs",
            System::DiamondTypes => "diamond-types",
        }
    }

    fn runner(self) -> fn(&Trace, usize) -> Result<Run, String> {
        match self {
            System::Dsync => run_dsync,
            System::Yrs => run_yrs,
            System::DiamondTypes => run_diamond,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let limit = if cli.quick { Some(20_000) } else { cli.limit };
    let dir = cli.traces.clone().unwrap_or_else(traces_dir);
    let wanted: Vec<String> = if cli.trace.is_empty() {
        SHIPPED_TRACES.iter().map(|s| s.to_string()).collect()
    } else {
        cli.trace.clone()
    };
    // Load every trace first, so a missing one fails before minutes of benchmarking.
    let mut traces = Vec::new();
    for t in &wanted {
        let as_path = PathBuf::from(t);
        let loaded = if as_path.is_file() {
            load_trace_file(&as_path, limit)
        } else if cli.traces.is_some() {
            load_trace_file(&dir.join(format!("{t}.json.gz")), limit)
        } else {
            load_trace(t, limit)
        };
        match loaded {
            Ok(trace) => traces.push(trace),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut rows = Vec::new();
    let mut failed = false;
    let keystrokes = if cli.quick {
        cli.keystrokes.min(200)
    } else {
        cli.keystrokes
    };
    let sizes: Vec<usize> = cli.sizes.iter().copied().filter(|s| *s > 0).collect();
    if !sizes.is_empty() {
        out!("one keystroke's round trip by document size ({keystrokes} keystrokes, one sync each; µs per keystroke)");
        out!(
            "{:>10} {:>12} {:>12} {:>14}",
            "size",
            "dsync",
            "yrs",
            "diamond-types"
        );
        for &size in &sizes {
            let trace = Trace::keystrokes(size, keystrokes);
            let mut cells = Vec::new();
            for system in System::ALL {
                if cli.only.is_some_and(|o| o != system) {
                    cells.push("-".to_string());
                    continue;
                }
                match system.runner()(&trace, 1) {
                    Ok(r) => {
                        let us = r.elapsed.as_secs_f64() * 1e6 / r.ops.max(1) as f64;
                        cells.push(format!("{us:.1}"));
                        rows.push(serde_json::json!({
                            "table": "size_scaling",
                            "system": system.name(),
                            "size_bytes": size,
                            "keystrokes": r.ops,
                            "us_per_keystroke": (us * 100.0).round() / 100.0,
                            "wire_bytes_per_keystroke": (r.wire_bytes as f64 / r.ops.max(1) as f64 * 100.0).round() / 100.0,
                        }));
                    }
                    Err(e) => {
                        eprintln!("FAILED {} keystrokes at {size} bytes: {e}", system.name());
                        cells.push("FAILED".into());
                        failed = true;
                    }
                }
            }
            out!(
                "{:>10} {:>12} {:>12} {:>14}",
                size,
                cells[0],
                cells[1],
                cells[2]
            );
        }
        out!("");
    }
    out!(
        "{:<15} {:<16} {:>5} {:>12} {:>14} {:>12}",
        "system",
        "trace",
        "every",
        "ops/s",
        "wire B/op",
        "peak MiB"
    );
    for trace in &traces {
        for every in cli.every.iter().map(|&e| e as usize) {
            for system in System::ALL {
                if cli.only.is_some_and(|o| o != system) {
                    continue;
                }
                let name = system.name();
                let base = rss_bytes();
                match system.runner()(trace, every) {
                    Ok(r) => {
                        let peak = peak_rss_since(base);
                        let wire = r.wire_bytes as f64 / r.ops.max(1) as f64;
                        out!(
                            "{:<15} {:<16} {:>5} {:>12.0} {:>14.1} {:>12.1}",
                            name,
                            trace.name,
                            every,
                            r.ops_per_sec(),
                            wire,
                            peak as f64 / (1 << 20) as f64
                        );
                        rows.push(serde_json::json!({
                            "system": name,
                            "trace": trace.name,
                            "every": every,
                            "ops": r.ops,
                            "ops_per_sec": (r.ops_per_sec() * 10.0).round() / 10.0,
                            "wire_bytes_per_op": (wire * 100.0).round() / 100.0,
                            "peak_bytes": peak,
                        }));
                    }
                    Err(e) => {
                        eprintln!("FAILED {name} {} every {every}: {e}", trace.name);
                        failed = true;
                    }
                }
            }
        }
    }
    let json = match serde_json::to_string_pretty(&rows) {
        Ok(j) => j + "\n",
        Err(e) => {
            eprintln!("error: encoding the report: {e}");
            return ExitCode::FAILURE;
        }
    };
    let parent = cli.out.parent().filter(|p| !p.as_os_str().is_empty());
    if let Err(e) = parent
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| std::fs::write(&cli.out, json))
    {
        eprintln!("error: writing {}: {e}", cli.out.display());
        return ExitCode::FAILURE;
    }
    out!(
        "wrote {}{}",
        cli.out.display(),
        match limit {
            Some(n) => format!(" (first {n} transactions of each trace)"),
            None => String::new(),
        }
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
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
