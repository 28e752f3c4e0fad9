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

pub mod proxy;
mod server;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use dsync_client::{ComputeEdit, Edit, Metrics, Session, SessionConfig};
use dsync_engine::{Config, MergeStrategy, Stats};
use dsync_store::{SqliteStore, Store};
use rand::Rng;
use tokio::time::{Duration, Instant};

use crate::intent::{tokens_in, LocalEdit, Resolved, Users};
use crate::oracle::{Progress, PROGRESS_WITHIN_MS};
use crate::scenario::{Event, LinkModel, Merge, Node, Scenario, Timed};
use crate::world::{digest, fmt_time, CheckKind, Options, Report, Sim, Summary, Verdict, DOC};
use proxy::Net;
use server::ServerProc;

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
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Whatever is still running (proxies, sessions) stops with the runtime.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    out
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
    fn at(&self, ms: u64) -> Instant {
        self.start + self.wall(ms)
    }
}

/// One scenario client: its proxy address, its current session (none while crashed), its
/// incarnation, the counters of crashed incarnations, the next token number.
struct ClientSlot {
    proxy: SocketAddr,
    session: Option<Arc<Session>>,
    inc: u32,
    past: Stats,
    next_token: u64,
}

/// What the workloads, the timeline and the checks share.
struct Shared {
    clock: Clock,
    clients: Mutex<Vec<ClientSlot>>,
    users: Mutex<Users>,
    /// Edits and faults as they happened (scenario times), for the replay.
    recorded: Mutex<Vec<Timed>>,
    trace: Mutex<Vec<String>>,
    stopped: AtomicBool,
    config: Config,
    metrics: Arc<Metrics>,
    edits: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn log(&self, kind: &str, text: String) {
        let line = format!("{} {:<8} {}", fmt_time(self.clock.now_ms()), kind, text);
        lock(&self.trace).push(line);
    }

    fn record(&self, event: Event) {
        let at_ms = self.clock.now_ms();
        lock(&self.recorded).push(Timed { at_ms, event });
    }

    fn client_id(i: usize, inc: u32) -> String {
        if inc == 0 {
            format!("c{i}")
        } else {
            format!("c{i}.{inc}")
        }
    }

    fn start_client(&self, i: usize) {
        let mut clients = lock(&self.clients);
        let slot = &mut clients[i];
        let mut cfg = SessionConfig::new(slot.proxy, DOC);
        cfg.client_id = Self::client_id(i, slot.inc);
        cfg.engine = self.config;
        cfg.reconnect_min = self.clock.wall(dsync_node::RECONNECT_MIN_MS);
        cfg.reconnect_max = self.clock.wall(dsync_node::RECONNECT_MAX_MS);
        cfg.describe_changes = false;
        slot.session = Some(Arc::new(Session::start(cfg, Some(self.metrics.clone()))));
    }

    fn session(&self, i: usize) -> Option<(Arc<Session>, u32)> {
        let clients = lock(&self.clients);
        clients[i].session.clone().map(|s| (s, clients[i].inc))
    }

    /// Make a local edit on client `i`, chosen from its text at that moment by `choose`
    /// (which returns the edit, or `None` for nothing), and keep it in the users' books.
    async fn local_edit(
        &self,
        i: usize,
        choose: impl FnOnce(&str) -> LocalEdit + Send + 'static,
    ) -> bool {
        let Some((session, inc)) = self.session(i) else {
            return false;
        };
        let chosen: Arc<Mutex<Option<(LocalEdit, Resolved)>>> = Arc::default();
        let out = chosen.clone();
        let f: ComputeEdit = Box::new(move |text: &str| {
            let edit = choose(text);
            let r = edit.resolve(i, text);
            let change = r.change.clone();
            *lock(&out) = Some((edit, r));
            change.map(|(start, end, text)| {
                if text.is_empty() {
                    Edit::Delete(start, end)
                } else {
                    Edit::Insert(start, text)
                }
            })
        });
        let Ok((before, after)) = session.edit_computed(f).await else {
            return false;
        };
        let Some((edit, r)) = lock(&chosen).take() else {
            return false;
        };
        self.edits.fetch_add(1, Ordering::Relaxed);
        lock(&self.users).record(i, inc, &edit, &r, &before, &after);
        self.record(r.event);
        matches!(edit, LocalEdit::InsertToken { .. })
    }
}

fn merge_of(m: Merge) -> MergeStrategy {
    match m {
        Merge::ThreeWay => MergeStrategy::ThreeWay,
        Merge::FuzzyPatch => MergeStrategy::FuzzyPatch,
        Merge::Overwrite => MergeStrategy::Overwrite,
    }
}

/// The store the server starts on: the document with the scenario's initial text.
fn seed_store(db: &Path, initial: &str) -> anyhow::Result<()> {
    let mut store = SqliteStore::open(db).context("creating the database")?;
    store
        .commit(
            &[dsync_engine::PersistRecord {
                doc: DOC.into(),
                text: Some(initial.to_string()),
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

/// The checks' state across the run.
struct Judge {
    verdict: Option<Verdict>,
    progress: Progress,
    converged_at: Option<u64>,
}

impl Judge {
    fn fail(&mut self, shared: &Shared, check: CheckKind, detail: String) {
        if self.verdict.is_none() {
            shared.log("check", format!("FAILED {} {}", check.name(), detail));
            self.verdict = Some(Verdict::Fail {
                check,
                at_ms: shared.clock.now_ms(),
                detail,
            });
        }
    }
}

async fn run_async(sc: &Scenario, opts: &RealOptions) -> anyhow::Result<RealReport> {
    let seed = opts.seed.or(sc.seed);
    let random = seed.is_some();
    let dir = tempfile::Builder::new()
        .prefix("dsync-real-")
        .tempdir()
        .context("creating a scratch folder")?;
    let db = dir.path().join("documents.db");
    seed_store(&db, &sc.topology.initial_text)?;
    let clock = Clock::new(opts.speed);
    let scale = |ms: u64| (clock.wall(ms).as_millis() as u64).max(1);
    let config = Config {
        sync_interval_ms: scale(sc.engine.sync_interval_ms),
        retransmit_ms: scale(sc.engine.retransmit_ms),
        heartbeat_ms: scale(sc.engine.heartbeat_ms),
        merge: merge_of(sc.engine.merge),
        ..Config::default()
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
    let mut workloads = Vec::new();
    if random {
        let s = seed.unwrap_or(0);
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
            let alphabet: Vec<char> = t
                .alphabet
                .as_deref()
                .unwrap_or("abcdefghijklmnopqrstuvwxyz ")
                .chars()
                .collect();
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
    }
    let mut judge = Judge {
        verdict: None,
        progress: Progress::new(n),
        converged_at: None,
    };
    let mut timeline: Vec<Timed> = sc
        .timeline
        .iter()
        .filter(|t| !matches!(t.event, Event::DropMessage { .. }))
        .cloned()
        .collect();
    timeline.sort_by_key(|t| t.at_ms);
    let mut timeline = timeline.into_iter().peekable();
    let mut halted: BTreeSet<Node> = BTreeSet::new();
    let mut unpartitions: Vec<(u64, u64)> = Vec::new();
    let mut stopped_at: Option<u64> = None;
    let mut converge_ms = None;
    let stable_ms = (2 * sc.engine.sync_interval_ms).max(1_000);
    let settle_wait = clock.wall(
        sc.network.latency_ms.1.max(
            sc.links
                .iter()
                .map(|l| l.faults.latency_ms.1 + l.faults.reorder_delay_ms)
                .max()
                .unwrap_or(0),
        ),
    ) + Duration::from_millis(100);
    loop {
        let now = clock.now_ms();
        // Timeline events that are due.
        while timeline.peek().is_some_and(|t| t.at_ms <= now) {
            let Some(t) = timeline.next() else { break };
            if stopped_at.is_some() && !is_edit(&t.event) {
                continue;
            }
            match t.event {
                Event::Partition {
                    a,
                    b,
                    one_way,
                    for_ms,
                } => {
                    let kind = if one_way { "one-way" } else { "symmetric" };
                    shared.log(
                        "fault",
                        format!("partition [{}] | [{}] {kind}", names(&a), names(&b)),
                    );
                    shared.record(Event::Partition {
                        a: a.clone(),
                        b: b.clone(),
                        one_way,
                        for_ms,
                    });
                    let id = net.partition(a, b, one_way);
                    if let Some(d) = for_ms {
                        unpartitions.push((now + d, id));
                    }
                }
                Event::Heal => {
                    shared.log("fault", "heal".into());
                    shared.record(Event::Heal);
                    net.heal();
                }
                Event::Crash(node) | Event::Halt(node) => {
                    let halt = matches!(t.event, Event::Halt(_));
                    if halt {
                        halted.insert(node);
                    }
                    shared.record(if halt {
                        Event::Halt(node)
                    } else {
                        Event::Crash(node)
                    });
                    crash(
                        &shared,
                        &net,
                        &mut server,
                        &db,
                        node,
                        settle_wait,
                        &mut judge,
                    )
                    .await;
                }
                Event::Restart(node) => {
                    halted.remove(&node);
                    shared.record(Event::Restart(node));
                    restart(&shared, &net, &mut server, node).await?;
                }
                Event::Insert { client, pos, text } if client < n => {
                    shared
                        .local_edit(client, move |_| LocalEdit::Insert { pos, text })
                        .await;
                }
                Event::Delete { client, pos, len } if client < n => {
                    shared
                        .local_edit(client, move |_| LocalEdit::Delete { pos, len })
                        .await;
                }
                Event::InsertToken {
                    client,
                    slot,
                    token,
                } if client < n => {
                    shared
                        .local_edit(client, move |_| LocalEdit::InsertToken { slot, token })
                        .await;
                }
                Event::DeleteToken { client, token } if client < n => {
                    shared
                        .local_edit(client, move |_| LocalEdit::DeleteToken { token })
                        .await;
                }
                Event::StopFaults => {
                    stop(&shared, &net, &mut server, &halted, &mut stopped_at).await?;
                }
                _ => {}
            }
        }
        unpartitions.retain(|(at, id)| {
            if *at <= now {
                net.unpartition(*id);
                false
            } else {
                true
            }
        });
        if stopped_at.is_none() && now >= sc.checks.stop_faults_at_ms {
            stop(&shared, &net, &mut server, &halted, &mut stopped_at).await?;
        }
        // What each client's books can settle, and progress during faults.
        let snaps: Vec<Option<dsync_client::Snapshot>> = {
            let clients = lock(&shared.clients);
            clients
                .iter()
                .map(|c| c.session.as_ref().map(|s| s.snapshot()))
                .collect()
        };
        {
            // A snapshot is published before an edit's call returns, so a settled one read
            // under the books' lock covers every edit the books hold for that client.
            let mut users = lock(&shared.users);
            let settled: Vec<bool> = lock(&shared.clients)
                .iter()
                .map(|c| c.session.as_ref().is_some_and(|s| s.snapshot().settled))
                .collect();
            for (i, settled) in settled.into_iter().enumerate() {
                if settled && users.ledger.has_unsettled(i) {
                    users.ledger.settled(i);
                }
            }
        }
        if random && stopped_at.is_none() && judge.verdict.is_none() {
            for (i, s) in snaps.iter().enumerate() {
                let state = s.as_ref().and_then(|s| {
                    let c = Node::Client(i);
                    let clean = |f: &crate::scenario::LinkFaults| f.drop == 0.0 && f.corrupt == 0.0;
                    let reachable = server.running()
                        && s.connected
                        && !net.blocked(c, Node::Server)
                        && !net.blocked(Node::Server, c)
                        && clean(net.faults(c, Node::Server))
                        && clean(net.faults(Node::Server, c));
                    (reachable && !s.settled).then_some((s.acked, s.stats.resets))
                });
                if let Err(stuck) = judge.progress.observe(i, now, state, PROGRESS_WITHIN_MS) {
                    judge.fail(
                        &shared,
                        CheckKind::Liveness,
                        format!(
                            "no progress during faults: c{i} could reach the server over a clean link for {:.3}s with typing to send, and none of it was acknowledged",
                            stuck as f64 / 1000.0
                        ),
                    );
                }
            }
        }
        if let Some(stop_at) = stopped_at {
            match converged(&snaps, server.running(), &halted) {
                Ok(text) => {
                    if judge.converged_at.is_none() {
                        let took = now.saturating_sub(stop_at);
                        converge_ms = Some(took);
                        judge.converged_at = Some(now);
                        let names: Vec<String> = std::iter::once("S".to_string())
                            .chain((0..n).map(|i| format!("c{i}")))
                            .collect();
                        shared.log(
                            "check",
                            format!(
                                "converged {} text={} after_stop={:.3}s",
                                names.join(","),
                                digest(&text),
                                took as f64 / 1000.0
                            ),
                        );
                        if sc.checks.intent {
                            let may_drop = config.merge == MergeStrategy::FuzzyPatch;
                            let (log, verdict) = lock(&shared.users).check_final(
                                &text,
                                may_drop,
                                &sc.topology.initial_text,
                            );
                            for line in log {
                                shared.log("check", line);
                            }
                            if let Err(why) = verdict {
                                judge.fail(&shared, CheckKind::Intent, why);
                            }
                        }
                    } else if judge.converged_at.is_some_and(|t| now >= t + stable_ms) {
                        break;
                    }
                }
                Err(why) => {
                    if judge.converged_at.is_some() {
                        // Something moved after convergence (a late frame): look again.
                        judge.converged_at = None;
                        converge_ms = None;
                    }
                    if now >= stop_at + sc.checks.converge_within_ms {
                        let bound = sc.checks.converge_within_ms;
                        judge.fail(
                            &shared,
                            CheckKind::Liveness,
                            format!("not converged {bound} ms after faults stopped: {why}"),
                        );
                    }
                }
            }
        }
        if judge.verdict.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for w in &workloads {
        w.abort();
    }
    // The end: what the clients saw acknowledged must be in the file, and the file must hold
    // the text they agree on. The server is killed first (`kill -9`, like any crash: what it
    // acknowledged is durable, or the check fails).
    let final_text = snaps_text(&shared);
    tokio::time::sleep(settle_wait).await;
    let usage = server.kill();
    durable(&shared, &db, "at the end", &mut judge);
    if judge.verdict.is_none() {
        if let (Some(text), Ok(Some(stored))) = (
            &final_text,
            SqliteStore::open(&db).and_then(|s| s.load(DOC)),
        ) {
            if *text != stored.text {
                judge.fail(
                    &shared,
                    CheckKind::Safety,
                    format!(
                        "the clients agree on {} but the database holds {}",
                        digest(text),
                        digest(&stored.text)
                    ),
                );
            }
        }
    }
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
    if judge.verdict.is_none() && clients_stats.merge_fallbacks > 0 {
        judge.fail(
            &shared,
            CheckKind::Safety,
            format!(
                "{} exact merges failed and fell back to texts",
                clients_stats.merge_fallbacks
            ),
        );
    }
    let counters = net.counters();
    let summary = Summary {
        sim_ms: clock.now_ms(),
        sent: counters.sent,
        delivered: counters.delivered,
        dropped: counters.dropped,
        duplicated: counters.duplicated,
        reordered: counters.reordered,
        corrupted: counters.corrupted,
        split_frames: counters.split_frames,
        garbage: counters.garbage,
        conn_resets: counters.conn_resets,
        resets: clients_stats.resets,
        retransmits: clients_stats.retransmits,
        duplicates_skipped: clients_stats.duplicates_skipped,
        stale_skipped: clients_stats.stale_skipped,
        patches_dropped: clients_stats.patches_dropped,
        resumes: clients_stats.resumes,
        inexact_resets: clients_stats.inexact_resets,
        merge_fallbacks: clients_stats.merge_fallbacks,
        edits: shared.edits.load(Ordering::Relaxed),
        converge_ms,
        final_digest: final_text.as_deref().map(digest).unwrap_or_default(),
        ..Summary::default()
    };
    let mut trace = std::mem::take(&mut *lock(&shared.trace));
    trace.push(summary.line());
    let node_texts = {
        let clients = lock(&shared.clients);
        let mut v = vec![("S".to_string(), final_text.clone())];
        for (i, c) in clients.iter().enumerate() {
            v.push((
                format!("c{i}"),
                c.session.as_ref().map(|s| s.snapshot().text),
            ));
        }
        v
    };
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
    if let Some(at) = stopped_at {
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
            verdict: judge.verdict.unwrap_or(Verdict::Pass),
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

fn names(v: &[Node]) -> String {
    v.iter()
        .map(|n| match n {
            Node::Server => "S".to_string(),
            Node::Client(i) => format!("c{i}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The text every live client agrees on, if they all do (read at the end).
fn snaps_text(shared: &Shared) -> Option<String> {
    let clients = lock(&shared.clients);
    let texts: Vec<String> = clients
        .iter()
        .filter_map(|c| c.session.as_ref().map(|s| s.snapshot().text))
        .collect();
    let first = texts.first()?.clone();
    texts.iter().all(|t| *t == first).then_some(first)
}

/// Everyone agrees: the server is up, every client not halted is up, connected, has seen two
/// empty round trips since its last change (so nothing of its own is pending and it has what
/// the server had), and all hold one text.
fn converged(
    snaps: &[Option<dsync_client::Snapshot>],
    server_up: bool,
    halted: &BTreeSet<Node>,
) -> Result<String, String> {
    if !server_up {
        return Err("server down".into());
    }
    let mut text: Option<&str> = None;
    for (i, s) in snaps.iter().enumerate() {
        let Some(s) = s else {
            if halted.contains(&Node::Client(i)) {
                continue;
            }
            return Err(format!("c{i} down"));
        };
        // Two empty round trips since the last change, local or remote: nothing of its own
        // was pending then (a local edit starts the count again) and it had what the server
        // had. A poll may be in flight (the snapshot's `settled` counts that too).
        if !s.connected || s.quiet_polls < 2 {
            return Err(format!(
                "c{i} not settled (connected={} quiet_polls={})",
                s.connected, s.quiet_polls
            ));
        }
        match text {
            None => text = Some(&s.text),
            Some(t) if t != s.text => {
                return Err(format!(
                    "c{i} text {} != c0's {}",
                    digest(&s.text),
                    digest(t)
                ))
            }
            Some(_) => {}
        }
    }
    Ok(text.unwrap_or_default().to_string())
}

/// Durability: every edit a client saw acknowledged is in the file (its session there has
/// applied at least as many of its edits).
fn durable(shared: &Shared, db: &Path, when: &str, judge: &mut Judge) {
    let stored = match SqliteStore::open(db).and_then(|s| s.load(DOC)) {
        Ok(d) => d.unwrap_or_default(),
        Err(e) => {
            return judge.fail(
                shared,
                CheckKind::Safety,
                format!("reading the database {when}: {e}"),
            )
        }
    };
    if let Err(why) = lock(&shared.users).check_master_tokens(&stored.text) {
        if shared_checks_tokens(shared) {
            return judge.fail(
                shared,
                CheckKind::Intent,
                format!("{why} (in the database {when})"),
            );
        }
    }
    let snaps: Vec<(usize, dsync_client::Snapshot)> = lock(&shared.clients)
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.session.as_ref().map(|s| (i, s.snapshot())))
        .collect();
    for (i, s) in snaps {
        if s.acked == 0 {
            continue;
        }
        let held = stored
            .sessions
            .iter()
            .find(|r| r.client_id == s.client_id)
            .map(|r| r.shadow.client_version);
        if held.is_none_or(|n| n < s.acked) {
            let held = held.map_or("no session".to_string(), |n| format!("n={n}"));
            return judge.fail(
                shared,
                CheckKind::Safety,
                format!(
                    "durability {when}: c{i} saw its edits up to n={} acknowledged, but the database holds {held} for {}",
                    s.acked, s.client_id
                ),
            );
        }
    }
    shared.log("check", format!("durable {when}: {}", digest(&stored.text)));
}

fn shared_checks_tokens(shared: &Shared) -> bool {
    lock(&shared.users).tokens
}

async fn crash(
    shared: &Shared,
    net: &Net,
    server: &mut ServerProc,
    db: &Path,
    node: Node,
    settle_wait: Duration,
    judge: &mut Judge,
) {
    match node {
        Node::Server => {
            if !server.running() {
                return;
            }
            shared.log("fault", "crash S (kill -9; uncommitted state lost)".into());
            net.set_server(None);
            server.kill();
            // Replies the server wrote before it died still reach their clients.
            tokio::time::sleep(settle_wait).await;
            durable(shared, db, "after the crash", judge);
        }
        Node::Client(i) => {
            let taken = {
                let mut clients = lock(&shared.clients);
                let Some(c) = clients.get_mut(i) else { return };
                let s = c.session.take();
                if let Some(s) = &s {
                    c.past.add(&s.snapshot().stats);
                }
                s.map(|s| (s, c.inc))
            };
            let Some((session, inc)) = taken else { return };
            shared.log("fault", format!("crash c{i} (unsent typing lost)"));
            session.abort();
            net.reset_client(i);
            let durable_text = SqliteStore::open(db)
                .and_then(|s| s.load(DOC))
                .ok()
                .flatten()
                .map(|d| d.text)
                .unwrap_or_default();
            lock(&shared.users).crashed(i, inc, &durable_text);
        }
    }
}

async fn restart(
    shared: &Shared,
    net: &Net,
    server: &mut ServerProc,
    node: Node,
) -> anyhow::Result<()> {
    match node {
        Node::Server => {
            if server.running() {
                return Ok(());
            }
            shared.log("fault", "restart S (same database, same port)".into());
            let addr = server.start().await?;
            net.set_server(Some(addr));
        }
        Node::Client(i) => {
            let up = lock(&shared.clients)
                .get(i)
                .is_none_or(|c| c.session.is_some());
            if up {
                return Ok(());
            }
            let inc = {
                let mut clients = lock(&shared.clients);
                clients[i].inc += 1;
                clients[i].inc
            };
            shared.log(
                "fault",
                format!("restart c{i} as {}", Shared::client_id(i, inc)),
            );
            shared.start_client(i);
        }
    }
    Ok(())
}

async fn stop(
    shared: &Shared,
    net: &Net,
    server: &mut ServerProc,
    halted: &BTreeSet<Node>,
    stopped_at: &mut Option<u64>,
) -> anyhow::Result<()> {
    if stopped_at.is_some() {
        return Ok(());
    }
    *stopped_at = Some(shared.clock.now_ms());
    shared.stopped.store(true, Ordering::SeqCst);
    shared.log(
        "fault",
        "stop faults: heal, restart crashed nodes, quiet network".into(),
    );
    net.stop_faults();
    if !server.running() && !halted.contains(&Node::Server) {
        restart(shared, net, server, Node::Server).await?;
    }
    let n = lock(&shared.clients).len();
    for i in 0..n {
        if !halted.contains(&Node::Client(i)) {
            restart(shared, net, server, Node::Client(i)).await?;
        }
    }
    Ok(())
}

/// The link model's name, for the parity table.
pub fn link_name(l: LinkModel) -> &'static str {
    match l {
        LinkModel::Stream => "stream",
        LinkModel::Datagram => "datagram",
    }
}
