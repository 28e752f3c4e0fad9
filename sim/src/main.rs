//! `dsync-sim`: run a scenario, sweep seeds (swarm) or shrink a failure. See `--help`.

/// `println!` that ignores a closed stdout (`| head`) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use dsync_sim::{html, run, shrink, swarm, Options, Scenario, TraceLevel};

/// Deterministic simulator for dsync: replays a RON scenario from a seed over the real engine
/// and store, with a lossy network, partitions and crashes, and checks convergence and intent.
#[derive(Parser)]
#[command(name = "dsync-sim", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Scenario file to run.
    file: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Seed, overriding the file's.
    #[arg(long)]
    seed: Option<u64>,
    /// How much trace to print.
    #[arg(long, value_enum, default_value_t = TraceArg::Summary)]
    trace: TraceArg,
    /// Write a self-contained HTML report (message chart, divergence plot) here.
    #[arg(long)]
    html: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum TraceArg {
    Summary,
    Full,
}

#[derive(Subcommand)]
enum Command {
    /// Run many seeds, each with its own random fault profile.
    Swarm {
        /// Seed range, `A..B` (B excluded). Sweeps of 1,000 seeds or more also fail when a
        /// coverage counter stays at zero.
        #[arg(long, default_value = "0..2000")]
        seeds: String,
        /// Base scenario whose topology and checks each seed varies (default: built in).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Where failing seeds are written as replayable RON files.
        #[arg(long, default_value = "swarm-failures")]
        out: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Write every seed's scenario to `--out` (not only failures), to replay any of them.
        #[arg(long)]
        emit: bool,
    },
    /// Shrink a failing scenario to a minimal, seed-free one.
    Shrink {
        /// The failing scenario.
        file: PathBuf,
        /// Output file (default: `scenarios/regressions/<name>-min.ron`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed, overriding the file's.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run a scenario in wall-clock time against the real `dsync-server` binary and real
    /// client sessions over loopback TCP, through a fault-injecting proxy; the same checks
    /// and verdict as a simulated run, plus wall time, round trips and the server's CPU and
    /// memory. A failing run writes what happened as a seed-free scenario and replays it in
    /// the simulator.
    Real {
        /// The scenario.
        file: PathBuf,
        #[command(flatten)]
        real: RealArgs,
        /// Seed, overriding the file's.
        #[arg(long)]
        seed: Option<u64>,
        /// Where a failing run's events are written as RON.
        #[arg(long, default_value = "real-failures")]
        out: PathBuf,
    },
    /// Run scenarios both ways (simulated and real) and print their verdicts side by side;
    /// exits 1 when a verdict differs. Scenarios the real side cannot express are listed with
    /// the reason.
    Parity {
        /// Scenario files (default: every `scenarios/*.ron`).
        files: Vec<PathBuf>,
        #[command(flatten)]
        real: RealArgs,
    },
    /// Fuzz the decoders a peer or a file reaches (frames, messages, deltas, scenario files)
    /// from a corpus of valid inputs; exits 1 at the first panic or broken round trip, with
    /// its input written to `--out`.
    Fuzz {
        /// Which decoder.
        #[arg(value_enum, default_value_t = FuzzArg::All)]
        target: FuzzArg,
        /// Wall seconds per target.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Most inputs per target (with --seconds, whichever comes first).
        #[arg(long)]
        inputs: Option<u64>,
        /// Seed of the mutations (a run is repeatable from it, inputs bounded).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where failing inputs are written.
        #[arg(long, default_value = "fuzz-failures")]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct RealArgs {
    /// Scenario milliseconds per wall millisecond (2: a 20 s scenario in 10 s); every timer
    /// and latency is scaled.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// The `dsync-server` binary (default: the one beside this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Hard wall-clock limit per run, in seconds (default: the scenario's length plus 60 s).
    #[arg(long)]
    max_seconds: Option<u64>,
}

impl RealArgs {
    fn options(&self, seed: Option<u64>) -> anyhow::Result<dsync_sim::real::RealOptions> {
        let server_bin = match &self.server_bin {
            Some(p) => p.clone(),
            None => dsync_sim::real::server_beside_me()?,
        };
        Ok(dsync_sim::real::RealOptions {
            server_bin,
            speed: self.speed,
            seed,
            max_wall: self.max_seconds.map(std::time::Duration::from_secs),
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum FuzzArg {
    All,
    Frame,
    Message,
    Delta,
    Scenario,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Swarm {
            seeds,
            scenario,
            jobs,
            out,
            quiet,
            emit,
        }) => cmd_swarm(&seeds, scenario, jobs, out, quiet, emit),
        Some(Command::Shrink { file, out, seed }) => cmd_shrink(&file, out, seed),
        Some(Command::Fuzz {
            target,
            seconds,
            inputs,
            seed,
            out,
        }) => cmd_fuzz(target, seconds, inputs, seed, &out),
        Some(Command::Real {
            file,
            real,
            seed,
            out,
        }) => cmd_real(&file, &real, seed, &out),
        Some(Command::Parity { files, real }) => cmd_parity(files, &real),
        None => match cli.file {
            Some(file) => cmd_run(&file, &cli.run),
            None => {
                eprintln!("error: give a scenario file (dsync-sim scenarios/partition.ron), or `swarm` / `shrink`; see --help");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Simulated seconds per wall second, measured around the run (the only wall-clock read in
/// the simulator, and it never reaches the trace).
#[allow(clippy::disallowed_methods)]
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = std::time::Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

/// Fuzzing is bounded by the wall clock (a chosen time), unlike a simulation: the clock only
/// decides when to stop, never what an input is.
#[allow(clippy::disallowed_methods)]
fn cmd_fuzz(
    target: FuzzArg,
    seconds: u64,
    inputs: Option<u64>,
    seed: u64,
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    use dsync_sim::fuzz::{self, Target};
    let targets: Vec<Target> = match target {
        FuzzArg::All => Target::ALL.to_vec(),
        FuzzArg::Frame => vec![Target::Frame],
        FuzzArg::Message => vec![Target::Message],
        FuzzArg::Delta => vec![Target::Delta],
        FuzzArg::Scenario => vec![Target::Scenario],
    };
    let mut failed = false;
    for t in targets {
        let start = std::time::Instant::now();
        let budget = std::time::Duration::from_secs(seconds);
        let most = inputs.unwrap_or(u64::MAX);
        let r = fuzz::run(t, seed, out, |n| {
            n >= most || (n % 256 == 0 && start.elapsed() >= budget)
        });
        let secs = start.elapsed().as_secs_f64();
        out!(
            "fuzz     {:<8} {} inputs in {:.1} s ({:.0}/s), {} accepted, {} failures (seed {seed})",
            t.name(),
            r.inputs,
            secs,
            r.inputs as f64 / secs.max(1e-9),
            r.accepted,
            usize::from(r.failure.is_some()),
        );
        if let Some((why, path)) = r.failure {
            let input = std::fs::read(&path).unwrap_or_default();
            let shown: String = String::from_utf8_lossy(&input).chars().take(400).collect();
            eprintln!(
                "error: {} failed at input {}: {why}\n  input ({} bytes, in {}): {shown:?}\n  again: dsync-sim fuzz {} --seed {seed} --inputs {}",
                t.name(),
                r.inputs,
                input.len(),
                path.display(),
                t.name(),
                r.inputs
            );
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn cmd_run(file: &std::path::Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let sc = match Scenario::load(file) {
        Ok(sc) => sc,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let opts = Options {
        seed: args.seed,
        trace: match args.trace {
            TraceArg::Summary => TraceLevel::Summary,
            TraceArg::Full => TraceLevel::Full,
        },
        record: false,
        chart: args.html.is_some(),
    };
    let (report, wall_s) = timed(|| run(&sc, opts));
    for line in &report.settings {
        out!("# {line}");
    }
    for line in &report.trace {
        out!("{line}");
    }
    let sim_s = report.summary.sim_ms as f64 / 1000.0;
    out!(
        "speed    {:.1} simulated s in {:.3} wall s = {:.0} simulated s per wall s",
        sim_s,
        wall_s,
        sim_s / wall_s.max(1e-9)
    );
    if let Some(path) = &args.html {
        // The page carries the full trace; a run is deterministic, so when the terminal got
        // only the summary, the same run again with the full trace is the same run.
        let page = if opts.trace == TraceLevel::Full {
            html::render(&sc, &report)
        } else {
            let full = run(
                &sc,
                Options {
                    trace: TraceLevel::Full,
                    ..opts
                },
            );
            html::render(&sc, &full)
        };
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
        out!("report   {}", path.display());
    }
    let expected = swarm::as_expected(&report.verdict, sc.expect);
    out!(
        "verdict  {}",
        swarm::verdict_line(&report.verdict, sc.expect, report.summary.converge_ms)
    );
    Ok(if expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn cmd_swarm(
    seeds: &str,
    scenario: Option<PathBuf>,
    jobs: usize,
    out: PathBuf,
    quiet: bool,
    emit: bool,
) -> anyhow::Result<ExitCode> {
    let range = swarm::parse_range(seeds).map_err(anyhow::Error::msg)?;
    let base = match scenario {
        Some(p) => match Scenario::load(&p) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        None => None,
    };
    if emit {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        for seed in range.clone() {
            let path = out.join(format!("seed-{seed}.ron"));
            std::fs::write(&path, swarm::profile(seed, base.as_ref()).to_ron())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        out!(
            "wrote {} scenarios to {}",
            range.end - range.start,
            out.display()
        );
    }
    let (result, wall_s) =
        timed(|| swarm::sweep(range.clone(), base.as_ref(), jobs.max(1), !quiet));
    let n = range.end - range.start;
    out!("{}", result.describe());
    out!(
        "speed    {n} seeds in {wall_s:.1} s = {:.0} seeds per minute ({jobs} jobs)",
        n as f64 / wall_s.max(1e-9) * 60.0
    );
    let zero = result.zero_counters();
    let gated = n >= swarm::COVERAGE_GATE_MIN_SEEDS;
    if !zero.is_empty() {
        if gated {
            out!(
                "FAIL: coverage counters stayed at zero: {} — the sweep never took those recovery paths; widen --seeds",
                zero.join(", ")
            );
        } else {
            out!(
                "note     coverage counters at zero: {} (not a failure below {} seeds)",
                zero.join(", "),
                swarm::COVERAGE_GATE_MIN_SEEDS
            );
        }
    }
    if result.failures.is_empty() {
        return Ok(if zero.is_empty() || !gated {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for f in &result.failures {
        let path = out.join(format!("seed-{}.ron", f.seed));
        std::fs::write(&path, f.scenario.to_ron())
            .with_context(|| format!("writing {}", path.display()))?;
        out!(
            "FAIL seed {}: {} — replay: cargo run --release -p dsync-sim -- {}",
            f.seed,
            f.verdict,
            path.display()
        );
    }
    Ok(ExitCode::from(1))
}

fn cmd_shrink(
    file: &std::path::Path,
    out: Option<PathBuf>,
    seed: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let sc = match Scenario::load(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let shrunk = match shrink::shrink(&sc, seed, &mut |msg| eprintln!("{msg}")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let path = out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "scenarios/regressions/{}.ron",
            shrunk.scenario.name
        ))
    });
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, shrunk.scenario.to_ron())
        .with_context(|| format!("writing {}", path.display()))?;
    out!(
        "{} events → {} events ({} runs)",
        shrunk.before,
        shrunk.after,
        shrunk.runs
    );
    out!("still fails: {}", shrunk.verdict);
    out!(
        "wrote {}; replay: cargo run --release -p dsync-sim -- {}",
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn load_or_exit(file: &std::path::Path) -> Result<Scenario, ExitCode> {
    Scenario::load(file).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn cmd_real(
    file: &std::path::Path,
    args: &RealArgs,
    seed: Option<u64>,
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let sc = match load_or_exit(file) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if let Some(why) = dsync_sim::real::unsupported(&sc) {
        eprintln!("error: {} cannot run against the binaries: {why}", sc.name);
        return Ok(ExitCode::from(2));
    }
    let opts = args.options(seed)?;
    let r = dsync_sim::real::run(&sc, &opts)?;
    for line in &r.report.settings {
        out!("# {line}");
    }
    for line in &r.report.trace {
        out!("{line}");
    }
    out!("{}", real_line(&r));
    let expected = swarm::as_expected(&r.report.verdict, sc.expect);
    out!(
        "verdict  {}",
        swarm::verdict_line(&r.report.verdict, sc.expect, r.report.summary.converge_ms)
    );
    if !expected {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let path = out.join(format!("{}.ron", r.replay.name));
        std::fs::write(&path, r.replay.to_ron())
            .with_context(|| format!("writing {}", path.display()))?;
        let virt = run(
            &r.replay,
            Options {
                trace: TraceLevel::None,
                ..Options::default()
            },
        );
        let same = match (&virt.verdict, &r.report.verdict) {
            (dsync_sim::Verdict::Pass, dsync_sim::Verdict::Pass) => true,
            (
                dsync_sim::Verdict::Fail { check: a, .. },
                dsync_sim::Verdict::Fail { check: b, .. },
            ) => a == b,
            _ => false,
        };
        out!(
            "replay   wrote {} ({} events); in the simulator it {}: {}",
            path.display(),
            r.replay.timeline.len(),
            if same {
                "reproduces"
            } else {
                "does NOT reproduce"
            },
            virt.verdict.describe()
        );
    }
    Ok(if expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `real     wall=… rtt_p50=… rtt_p99=… server_cpu=… server_peak_rss=…`
fn real_line(r: &dsync_sim::real::RealReport) -> String {
    let rtt = r.rtt_ms.map_or("rtt=none".to_string(), |(p50, p99)| {
        format!("rtt_p50={p50:.1}ms rtt_p99={p99:.1}ms")
    });
    format!(
        "real     wall={:.1}s {rtt} server_cpu={:.2}s server_peak_rss={:.1}MiB",
        r.wall_s, r.server_cpu_s, r.server_peak_rss_mib
    )
}

/// `pass`, or the check that failed.
fn verdict_kind(v: &dsync_sim::Verdict) -> &'static str {
    match v {
        dsync_sim::Verdict::Pass => "pass",
        dsync_sim::Verdict::Fail { check, .. } => check.name(),
    }
}

fn cmd_parity(files: Vec<PathBuf>, args: &RealArgs) -> anyhow::Result<ExitCode> {
    let files = if files.is_empty() {
        let mut v: Vec<PathBuf> = std::fs::read_dir("scenarios")
            .context("listing scenarios/ (run from the repository, or name the files)")?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "ron"))
            .collect();
        v.sort();
        v
    } else {
        files
    };
    let opts = args.options(None)?;
    out!(
        "{:<26} {:<9} {:<9} {:>9} {:>9}  {:<31}  {:<31}  {}",
        "scenario",
        "sim",
        "real",
        "conv sim",
        "conv real",
        "sim edits/sent/dropped/resets",
        "real edits/sent/dropped/resets",
        "real wall, rtt p99, server cpu, rss"
    );
    let mut differ = Vec::new();
    let mut unsupported = 0;
    for file in &files {
        let sc = match load_or_exit(file) {
            Ok(s) => s,
            Err(code) => return Ok(code),
        };
        if let Some(why) = dsync_sim::real::unsupported(&sc) {
            unsupported += 1;
            out!("{:<26} unsupported on the real side: {why}", sc.name);
            continue;
        }
        let sim = run(
            &sc,
            Options {
                trace: TraceLevel::None,
                ..Options::default()
            },
        );
        let real = match dsync_sim::real::run(&sc, &opts) {
            Ok(r) => r,
            Err(e) => {
                out!("{:<26} real run failed to run: {e:#}", sc.name);
                differ.push(sc.name.clone());
                continue;
            }
        };
        let conv = |s: &dsync_sim::Summary| {
            s.converge_ms
                .map_or("-".to_string(), |ms| format!("{:.2}s", ms as f64 / 1000.0))
        };
        let counters =
            |s: &dsync_sim::Summary| format!("{}/{}/{}/{}", s.edits, s.sent, s.dropped, s.resets);
        let (a, b) = (
            verdict_kind(&sim.verdict),
            verdict_kind(&real.report.verdict),
        );
        let mark = if a == b { "" } else { "  ← DIFFERS" };
        out!(
            "{:<26} {:<9} {:<9} {:>9} {:>9}  {:<31}  {:<31}  {:.1}s, {}, {:.2}s, {:.0} MiB{mark}",
            sc.name,
            a,
            b,
            conv(&sim.summary),
            conv(&real.report.summary),
            counters(&sim.summary),
            counters(&real.report.summary),
            real.wall_s,
            real.rtt_ms
                .map_or("-".to_string(), |(_, p99)| format!("{p99:.1} ms")),
            real.server_cpu_s,
            real.server_peak_rss_mib
        );
        if a != b {
            out!("    sim:  {}", sim.verdict.describe());
            out!("    real: {}", real.report.verdict.describe());
            differ.push(sc.name.clone());
        }
    }
    out!(
        "parity   {} scenarios: {} ran both ways, {} differ{}, {unsupported} unsupported on the real side",
        files.len(),
        files.len() - unsupported,
        differ.len(),
        if differ.is_empty() {
            String::new()
        } else {
            format!(" ({})", differ.join(", "))
        }
    );
    Ok(if differ.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
