//! `dsync-sim real`: a scenario in wall-clock time against the real binaries, so that what the
//! simulator proves can be seen to hold for what people run.
//!
//! The server is the `dsync-server` binary on a fresh SQLite file in a scratch folder, on a
//! loopback port; each scenario client is the reference client's session
//! ([`dsync_client::Session`], the code `dsync-client` runs) connected through a fault proxy
//! ([`proxy`]) that gives every frame the fate the simulator would draw. Timeline events map to
//! real actions: a server crash is `kill -9` and a restart on the same file and port; a client
//! crash aborts its session (its unsent typing is lost) and a restart opens a new one under a
//! new client id. Users' edits are kept in the same books as in the simulator
//! ([`crate::intent::Users`]) and judged by the same checks: durability of every acknowledged
//! edit read back from the SQLite file after each crash and at the end, progress during faults,
//! convergence after them, intent on the final text.
//!
//! Unlike the rest of this crate, this module reads the wall clock (it is the point) and is not
//! deterministic: thread scheduling decides the order of events within a few milliseconds. What
//! happened is recorded as a seed-free scenario (every frame's fate, every edit, every fault at
//! its time) that the simulator can replay.
//!
//! Bounded: one hard wall-clock limit per run, loopback only, at most 64 clients; the server
//! process is killed and the scratch folder removed when the run ends, fails or is interrupted
//! (both are owned by values whose `Drop` does it).
#![allow(clippy::disallowed_methods)]

mod checks;
mod faults;
pub mod proxy;
mod server;
mod shared;
mod workload;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use dsync_client::Metrics;
use dsync_engine::{Config, Stats};
use dsync_store::{SqliteStore, Store};
use tokio::time::{Duration, Instant};

use crate::intent::Users;
use crate::scenario::{Event, Node, Scenario, Timed};
use crate::world::{digest, CheckKind, Options, Report, Sim, Summary, Verdict, DOC};
use checks::Judge;
use proxy::Net;
use server::ServerProc;
use shared::{lock, ClientSlot, Shared};

/// Most clients a real run starts.
pub const MAX_CLIENTS: usize = 64;

/// Settings of a real run.
#[derive(Debug, Clone)]
pub struct RealOptions {
    /// The `dsync-server` binary.
    pub server_bin: PathBuf,
    /// Scenario milliseconds per wall millisecond (2 runs a 20 s scenario in 10 s).
    pub speed: f64,
    /// Seed, overriding the file's.
    pub seed: Option<u64>,
    /// Hard wall-clock limit (default: the scenario's length at this speed plus a minute).
    pub max_wall: Option<std::time::Duration>,
}

/// What a real run saw.
#[derive(Debug, Clone)]
pub struct RealReport {
    /// Settings, trace, counters and verdict, as a simulated run reports them.
    pub report: Report,
    /// Wall seconds the run took.
    pub wall_s: f64,
    /// Round trips of the clients' sync requests: p50 and p99 in ms (none without any).
    pub rtt_ms: Option<(f64, f64)>,
    /// CPU seconds of every server process of the run, together.
    pub server_cpu_s: f64,
    /// The largest peak resident set of the run's server processes, in MiB.
    pub server_peak_rss_mib: f64,
    /// What happened, as a seed-free scenario the simulator replays: every fault and edit at
    /// its scenario time, every frame's fate.
    pub replay: Scenario,
}

/// Why the real side cannot run `sc` as written, if it cannot.
pub fn unsupported(sc: &Scenario) -> Option<String> {
    let s = &sc.storage;
    if s.fail > 0.0 || s.crash_after_commit > 0.0 || s.crash_in_batch > 0.0 || s.commit_ms > 0 {
        return Some("storage faults (failed commits, crashes around a commit, commit delays) are drawn per commit inside the simulator's store; the real server's disk cannot be faulted per commit".into());
    }
    if sc.topology.clock_drift_pct.iter().any(|d| *d != 0) {
        return Some("clock drift: the real clients and server share this machine's clock".into());
    }
    if sc.topology.clients > MAX_CLIENTS {
        return Some(format!(
            "{} clients; a real run starts at most {MAX_CLIENTS}",
            sc.topology.clients
        ));
    }
    if sc.engine.max_log_entries.is_some() || sc.engine.max_frame_bytes.is_some() {
        return Some(
            "max_log_entries and max_frame_bytes below the engine's limits are simulator settings the server binary does not take".into(),
        );
    }
    for t in &sc.timeline {
        match t.event {
            Event::Net { .. } => {
                return Some("explicit per-frame fates (a recorded run): the real side draws its own; replay it in the simulator".into())
            }
            Event::Commit { .. } => {
                return Some("explicit commit fates: the real server's commits cannot be faulted one by one".into())
            }
            _ => {}
        }
    }
    None
}

/// The `dsync-server` binary beside this executable (`cargo build -p dsync-server` in the same
/// profile puts it there).
pub fn server_beside_me() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating dsync-sim")?;
    let dir = me.parent().context("dsync-sim has no folder")?;
    let bin = dir.join(format!("dsync-server{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        anyhow::bail!(
            "no dsync-server beside {} — build it in the same profile (cargo build --release -p dsync-server), or give --server-bin",
            me.display()
        );
    }
    Ok(bin)
}

/// Run `sc` against the real binaries.
pub fn run(sc: &Scenario, opts: &RealOptions) -> anyhow::Result<RealReport> {
    if let Some(why) = unsupported(sc) {
        anyhow::bail!(
            "scenario {:?} cannot run against the binaries: {why}",
            sc.name
        );
    }
    if !(opts.speed > 0.0 && opts.speed <= 100.0) {
        anyhow::bail!("--speed must be above 0 and at most 100");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let limit = opts.max_wall.unwrap_or_else(|| {
        let ms = sc.checks.stop_faults_at_ms + sc.checks.converge_within_ms + 5_000;
        std::time::Duration::from_secs_f64(ms as f64 / 1000.0 / opts.speed + 60.0)
    });
    let out = rt.block_on(async {
        tokio::select! {
            r = tokio::time::timeout(limit, run_async(sc, opts)) => match r {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("the run passed its wall-clock limit of {:.0} s", limit.as_secs_f64())),
            },
            why = interrupted() => Err(anyhow::anyhow!("{why}")),
        }
    });
    // Whatever is still running (proxies, sessions) stops with the runtime.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    out
}

/// Ctrl-C, or SIGTERM on Unix: the run is dropped, which kills its server and removes its
/// folder. (A SIGKILL of `dsync-sim` itself leaves the server running until its clients go.)
async fn interrupted() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupted",
                _ = term.recv() => "terminated",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "interrupted"
}

/// Scenario time, from wall time: `speed` scenario milliseconds per wall millisecond.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    speed: f64,
}

impl Clock {
    fn new(speed: f64) -> Clock {
        Clock {
            start: Instant::now(),
            speed,
        }
    }

    /// Scenario milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        (self.start.elapsed().as_secs_f64() * 1000.0 * self.speed) as u64
    }

    /// The wall duration of `ms` scenario milliseconds.
    pub fn wall(&self, ms: u64) -> Duration {
        Duration::from_secs_f64(ms as f64 / 1000.0 / self.speed)
    }

    /// The wall instant of scenario time `ms`.
    pub(crate) fn at(&self, ms: u64) -> Instant {
        self.start + self.wall(ms)
    }
}

/// The store the server starts on: the document with the scenario's initial text.
fn seed_store(db: &Path, initial: &str) -> anyhow::Result<()> {
    let mut store = SqliteStore::open(db).context("creating the database")?;
    store
        .commit(
            &[dsync_engine::PersistRecord {
                doc: DOC.into(),
                text: Some(initial.into()),
                version: 0,
                sessions: vec![],
                removed_sessions: vec![],
                changes: vec![],
                changes_needed_after: 0,
            }],
            0,
        )
        .context("writing the initial text")?;
    store.close().context("closing the database")?;
    Ok(())
}

/// A real run in progress: what the timeline and the checks act on.
struct Run<'a> {
    sc: &'a Scenario,
    shared: Arc<Shared>,
    net: Arc<Net>,
    server: ServerProc,
    db: PathBuf,
    judge: Judge,
    /// Random faults and workloads are on (the scenario has a seed).
    random: bool,
    /// Nodes down for good.
    halted: BTreeSet<Node>,
    /// Partitions that lift by themselves: (scenario time, id).
    unpartitions: Vec<(u64, u64)>,
    stopped_at: Option<u64>,
    /// How long after a crash frames already written still arrive (the longest latency).
    settle_wait: Duration,
}

async fn run_async(sc: &Scenario, opts: &RealOptions) -> anyhow::Result<RealReport> {
    let seed = opts.seed.or(sc.seed);
    let dir = tempfile::Builder::new()
        .prefix("dsync-real-")
        .tempdir()
        .context("creating a scratch folder")?;
    let db = dir.path().join("documents.db");
    seed_store(&db, &sc.topology.initial_text)?;
    let clock = Clock::new(opts.speed);
    let scale = |ms: u64| (clock.wall(ms).as_millis() as u64).max(1);
    let defaults = Config::default();
    let config = Config {
        sync_interval_ms: scale(sc.engine.sync_interval_ms),
        max_idle_sync_ms: scale(
            sc.engine
                .max_idle_sync_ms
                .unwrap_or(defaults.max_idle_sync_ms),
        ),
        hints: sc.engine.hints.unwrap_or(defaults.hints),
        retransmit_ms: scale(sc.engine.retransmit_ms),
        heartbeat_ms: scale(sc.engine.heartbeat_ms),
        merge: crate::world::merge_of(sc.engine.merge),
        ..defaults
    };
    let mut server = ServerProc::new(&opts.server_bin, &db, &config, dir.path());
    let net = Arc::new(Net::new(sc, seed, clock, config.limits.frame_bytes()));
    let addr = server.start().await?;
    net.set_server(Some(addr));
    let n = sc.topology.clients;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let proxy = proxy::listen(net.clone(), i)
            .await
            .context("opening the proxy")?;
        clients.push(ClientSlot {
            proxy,
            session: None,
            inc: 0,
            past: Stats::default(),
            next_token: 1,
        });
    }
    let shared = Arc::new(Shared {
        clock,
        clients: Mutex::new(clients),
        users: Mutex::new(Users::new(
            &sc.topology.initial_text,
            n,
            sc.workload.typing.is_some(),
            sc.checks.intent,
        )),
        recorded: Mutex::new(Vec::new()),
        trace: Mutex::new(Vec::new()),
        stopped: AtomicBool::new(false),
        config,
        metrics: Arc::new(Metrics::default()),
        edits: AtomicU64::new(0),
    });
    shared.log(
        "real",
        format!(
            "server {} on {addr} (pid {}), database {}, speed {}",
            opts.server_bin.display(),
            server.pid().unwrap_or(0),
            db.display(),
            opts.speed
        ),
    );
    for i in 0..n {
        shared.start_client(i);
    }
    let workloads = match seed {
        Some(s) => workload::spawn(&shared, sc, s),
        None => Vec::new(),
    };
    let longest = sc
        .links
        .iter()
        .map(|l| l.faults.latency_ms.1 + l.faults.reorder_delay_ms)
        .chain([sc.network.latency_ms.1 + sc.network.reorder_delay_ms])
        .max()
        .unwrap_or(0);
    let mut run = Run {
        sc,
        shared: shared.clone(),
        net: net.clone(),
        server,
        db,
        judge: Judge::new(n),
        random: seed.is_some(),
        halted: BTreeSet::new(),
        unpartitions: Vec::new(),
        stopped_at: None,
        settle_wait: clock.wall(longest) + Duration::from_millis(100),
    };
    let mut timeline: Vec<Timed> = sc
        .timeline
        .iter()
        .filter(|t| !matches!(t.event, Event::DropMessage { .. }))
        .cloned()
        .collect();
    timeline.sort_by_key(|t| t.at_ms);
    let mut timeline = timeline.into_iter().peekable();
    loop {
        let now = clock.now_ms();
        while let Some(t) = timeline.next_if(|t| t.at_ms <= now) {
            // After the end of faults only edits still happen.
            if run.stopped_at.is_none() || is_edit(&t.event) {
                run.apply(t).await?;
            }
        }
        run.unpartitions.retain(|(at, id)| {
            let due = *at <= now;
            if due {
                net.unpartition(*id);
            }
            !due
        });
        if run.stopped_at.is_none() && now >= sc.checks.stop_faults_at_ms {
            run.stop().await?;
        }
        let snaps = run.snapshots();
        run.settle();
        run.check_progress(now, &snaps);
        if run.check_convergence(now, &snaps) || run.judge.verdict.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for w in &workloads {
        w.abort();
    }
    let (final_text, usage) = run.finish_checks().await;
    let clients_stats = {
        let clients = lock(&shared.clients);
        let mut total = Stats::default();
        for c in clients.iter() {
            total.add(&c.past);
            if let Some(s) = &c.session {
                total.add(&s.snapshot().stats);
            }
        }
        total
    };
    if clients_stats.merge_fallbacks > 0 {
        let detail = format!(
            "{} exact merges failed and fell back to texts",
            clients_stats.merge_fallbacks
        );
        run.judge.fail(&shared, CheckKind::Safety, detail);
    }
    // The network's counters, with the clients' and the users' beside them.
    let summary = Summary {
        sim_ms: clock.now_ms(),
        resets: clients_stats.resets,
        retransmits: clients_stats.retransmits,
        duplicates_skipped: clients_stats.duplicates_skipped,
        stale_skipped: clients_stats.stale_skipped,
        patches_dropped: clients_stats.patches_dropped,
        resumes: clients_stats.resumes,
        inexact_resets: clients_stats.inexact_resets,
        merge_fallbacks: clients_stats.merge_fallbacks,
        edits: shared.edits.load(Ordering::Relaxed),
        converge_ms: run.judge.converge_ms,
        final_digest: final_text.as_deref().map(digest).unwrap_or_default(),
        ..net.counters()
    };
    let mut trace = std::mem::take(&mut *lock(&shared.trace));
    trace.push(summary.line());
    let snaps = run.snapshots();
    let mut node_texts = vec![("S".to_string(), final_text.clone())];
    for (i, s) in snaps.into_iter().enumerate() {
        node_texts.push((format!("c{i}"), s.map(|s| s.text.to_string())));
    }
    let rtt_ms = {
        let mut v = lock(&shared.metrics.rtt_us).clone();
        v.sort_unstable();
        (!v.is_empty()).then(|| {
            let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
            (at(0.5), at(0.99))
        })
    };
    for c in lock(&shared.clients).iter() {
        if let Some(s) = &c.session {
            s.abort();
        }
    }
    let mut recorded = net.recorded();
    recorded.extend(lock(&shared.recorded).iter().cloned());
    if let Some(at) = run.stopped_at {
        recorded.push(Timed {
            at_ms: at,
            event: Event::StopFaults,
        });
    }
    recorded.sort_by_key(|t| t.at_ms);
    let mut replay = sc.clone();
    replay.name = format!("{}-real", sc.name);
    replay.description = format!(
        "what a real run of {:?} did (seed {}), as explicit events",
        sc.name,
        seed.map_or("none".into(), |s| s.to_string())
    );
    replay.seed = None;
    replay.workload = Default::default();
    replay.timeline = recorded;
    let wall_s = clock.start.elapsed().as_secs_f64();
    drop(dir);
    Ok(RealReport {
        report: Report {
            settings: Sim::settings(
                sc,
                &Options {
                    seed,
                    ..Options::default()
                },
            ),
            trace,
            summary,
            verdict: run.judge.verdict.take().unwrap_or(Verdict::Pass),
            recorded: Vec::new(),
            chart: None,
            final_text: final_text.unwrap_or_default(),
            node_texts,
        },
        wall_s,
        rtt_ms,
        server_cpu_s: usage.0,
        server_peak_rss_mib: usage.1,
        replay,
    })
}

fn is_edit(e: &Event) -> bool {
    matches!(
        e,
        Event::Insert { .. }
            | Event::Delete { .. }
            | Event::InsertToken { .. }
            | Event::DeleteToken { .. }
    )
}
