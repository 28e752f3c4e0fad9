//! The simulation proper: one thread, virtual time in integer milliseconds, an event queue keyed
//! by (time, sequence), seeded `rand_chacha` streams, and the real engines and store.
//!
//! Invariants:
//! - No wall clock, no thread, no `HashMap` iteration: a scenario and seed give one trace.
//! - Randomness comes from three independent streams (network, faults, workload), so adding
//!   a client's typing does not shift which messages the network drops.
//! - The server and the clients are the nodes the binaries run (`dsync_node::ServerNode` over
//!   `dsync_store::SqliteStore` in memory, `dsync_node::ClientNode`): the batch rule, decoding,
//!   framing and backoff are theirs. What travels between them is the bytes of `dsync-net`
//!   frames.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use dsync_engine::{
    ClientEvent, ClientMsg, Config, Edit, MergeStrategy, PeerId, ServerEngine, ServerMsg, Stats,
    Time,
};
use dsync_node::{ClientNode, ClientNodeConfig, ClientNodeOutput, Output, ServerNode};
use dsync_store::{SqliteStore, Store};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::intent::{tokens_in, LocalEdit, Users};
use crate::oracle::{Marker, Progress, PROGRESS_WITHIN_MS};
use crate::scenario::{
    CommitFate, Direction, Event, Fate, LinkFaults, LinkModel, Merge, Node, Scenario, Timed,
};

/// The document every scenario edits.
pub const DOC: &str = "doc";

mod checks;
mod disk;
pub(crate) mod net;
mod nodes;
mod report;
pub(crate) mod wire;
mod workload;

pub(crate) use checks::node_list;
use disk::SimStore;
pub use report::*;

fn node_name(n: Node) -> String {
    match n {
        Node::Server => "S".into(),
        Node::Client(i) => format!("c{i}"),
    }
}

pub(crate) fn merge_of(m: Merge) -> MergeStrategy {
    match m {
        Merge::ThreeWay => MergeStrategy::ThreeWay,
        Merge::FuzzyPatch => MergeStrategy::FuzzyPatch,
        Merge::Overwrite => MergeStrategy::Overwrite,
    }
}

#[derive(Debug, Clone)]
enum Payload {
    Up(ClientMsg),
    Down(ServerMsg),
}

/// Bytes in the air: a frame, a piece of one, or several coalesced. `msgs` are the messages
/// whose last byte this flight carries (for traces, charts and counts), with their chart rows.
#[derive(Debug)]
struct Flight {
    from: Node,
    to: Node,
    conn: u64,
    bytes: Vec<u8>,
    msgs: Vec<(Payload, Option<usize>)>,
    /// Unique per flight (slots are reused): a stream's tail is coalesced into only if it is
    /// still the same flight.
    serial: u64,
}

impl Flight {
    fn substantive(&self) -> usize {
        self.msgs.iter().filter(|(p, _)| p.substantive()).count()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Script(usize),
    StopFaults,
    Deliver(usize),
    Timer(Node, u64),
    Typing(usize),
    Token(usize),
    /// A stream client's reconnect attempt: (client, generation); stale ones are ignored.
    Reconnect(usize, u64),
    Deadline,
    Unpartition(u64),
    /// The server commits its batch.
    Commit,
    /// A supervisor restarts the server after a storage fault.
    RestartServer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    at: u64,
    seq: u64,
    ev: Ev,
}

struct ClientSlot {
    node: Option<ClientNode>,
    incarnation: u32,
    /// Stream: the current connection (also the peer id); datagram: the incarnation's peer id.
    conn: u64,
    conn_up: bool,
    /// The generation of the one reconnect attempt scheduled, if any. Opening a connection
    /// any other way (a restart) makes it stale: a client never opens two connections.
    reconnect_pending: Option<u64>,
    reconnect_gen: u64,
    timer_gen: u64,
    timer_at: Option<u64>,
    drift_pct: i64,
    /// Counters of crashed incarnations.
    past: Stats,
    /// (n, m, resets) last seen, for the monotonic-versions check.
    last_versions: (u64, u64, u64),
    next_token: u64,
}

/// A running simulation.
pub struct Sim<'a> {
    sc: &'a Scenario,
    opts: Options,
    now: u64,
    queue: BinaryHeap<Reverse<Item>>,
    seq: u64,
    rng_net: ChaCha8Rng,
    rng_fault: ChaCha8Rng,
    rng_work: ChaCha8Rng,
    /// Seeds of the server's session keys, one per start (its own stream: drawing keys moves
    /// no other random choice).
    rng_keys: ChaCha8Rng,
    random: bool,
    config: Config,
    server: Option<ServerNode<SimStore>>,
    server_timer_gen: u64,
    server_timer_at: Option<u64>,
    server_past: Stats,
    /// The server's disk: shared with the server node, kept across its crashes.
    store: SimStore,
    /// A commit is scheduled for the server's current batch.
    commit_pending: bool,
    /// Commits so far (numbering storage fates).
    commits: u64,
    /// Explicit storage fates by commit number (from `Commit` timeline events).
    commit_fates: BTreeMap<u64, CommitFate>,
    /// The largest frame either side accepts.
    max_frame_bytes: usize,
    /// Client ids whose session a committed record removed (the durability check skips them).
    removed_sessions: BTreeSet<String>,
    clients: Vec<ClientSlot>,
    /// Partitions in force: (id, one side, other side, one way).
    partitions: Vec<(u64, Vec<Node>, Vec<Node>, bool)>,
    next_partition: u64,
    /// When everything first agreed after faults stopped, and the master's digest then.
    converged_at: Option<(u64, String)>,
    /// Events handled, in all and at the current instant (livelock guards).
    events: u64,
    instant_events: u64,
    /// Nodes crashed for good (`Halt`): the end of faults leaves them down.
    halted: BTreeSet<Node>,
    link_counts: BTreeMap<(Node, Node), u64>,
    fates: BTreeMap<(Node, Node, u64), Fate>,
    flights: Vec<Option<Flight>>,
    free_flights: Vec<usize>,
    in_flight: usize,
    /// Messages in flight that still change state (see `Payload::substantive`).
    in_flight_substantive: usize,
    stream_last: BTreeMap<(Node, Node), u64>,
    /// A stream link's last flight still in the air: (flight id, serial, arrival).
    stream_tail: BTreeMap<(Node, Node), (usize, u64, u64)>,
    next_serial: u64,
    stalled: BTreeMap<(Node, Node), VecDeque<usize>>,
    next_conn: u64,
    stopped_at: Option<u64>,
    deadline: Option<u64>,
    /// What users did (intent: the final text must account for it).
    users: Users,
    /// Reachable clients get their typing acknowledged while faults go on elsewhere.
    progress: Progress,
    trace: Vec<String>,
    recorded: Vec<Timed>,
    chart: Option<Chart>,
    last_sample: Option<u64>,
    summary: Summary,
    verdict: Option<Verdict>,
}

pub(crate) const STREAM_NET: u64 = 0x6e65_7477_6f72_6b00;
pub(crate) const STREAM_FAULT: u64 = 0x6661_756c_7473_0000;
pub(crate) const STREAM_WORK: u64 = 0x776f_726b_6c6f_6164;
const STREAM_KEYS: u64 = 0x6b65_7973_0000_0000;
/// Charted messages at most (keeps the HTML report small).
const CHART_MAX_MESSAGES: usize = 3_000;
/// A run never goes past this much virtual time, whatever the file says.
pub const MAX_SIM_MS: u64 = 24 * 3_600_000;
/// Events one instant of virtual time may hold before the run counts as a livelock: time
/// stands still while events keep coming (a busy run moves time on, however many clients poll).
pub const MAX_EVENTS_PER_INSTANT: u64 = 100_000;
/// A run handles at most this many events in all: a bound on the work of any scenario (256
/// clients polling every 100 ms for a simulated hour stay well below it).
pub const MAX_EVENTS: u64 = 200_000_000;

pub(crate) fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream)
}

/// Run a scenario to its verdict.
pub fn run(sc: &Scenario, opts: Options) -> Report {
    // An in-memory SQLite database: same schema, same transactions as dsync-server's file.
    let store = SqliteStore::open_in_memory().expect("in-memory SQLite always opens");
    run_with_store(sc, opts, Box::new(store))
}

/// Run a scenario over the given store (empty when handed over); tests plant faulty stores
/// here to show the checks catch them.
pub fn run_with_store(sc: &Scenario, opts: Options, store: Box<dyn Store>) -> Report {
    let mut sim = Sim::new(sc, opts, SimStore::new(store));
    sim.run();
    sim.finish()
}

impl<'a> Sim<'a> {
    fn new(sc: &'a Scenario, opts: Options, store: SimStore) -> Sim<'a> {
        let seed = opts.seed.or(sc.seed);
        let s = seed.unwrap_or(0);
        let mut config = Config {
            sync_interval_ms: sc.engine.sync_interval_ms,
            retransmit_ms: sc.engine.retransmit_ms,
            heartbeat_ms: sc.engine.heartbeat_ms,
            merge: merge_of(sc.engine.merge),
            ..Config::default()
        };
        if let Some(n) = sc.engine.max_log_entries {
            config.limits.max_log_entries = n;
        }
        if let Some(h) = sc.engine.hints {
            config.hints = h;
        }
        if let Some(ms) = sc.engine.max_idle_sync_ms {
            config.max_idle_sync_ms = ms;
        }
        let mut fates = BTreeMap::new();
        let mut commit_fates = BTreeMap::new();
        for t in &sc.timeline {
            match &t.event {
                Event::Commit { nth, fate } => {
                    commit_fates.insert(*nth, *fate);
                }
                Event::DropMessage { from, to, nth } => {
                    fates.insert((*from, *to, *nth), Fate::Drop);
                }
                Event::Net {
                    from,
                    to,
                    nth,
                    fate,
                } => {
                    fates.insert((*from, *to, *nth), *fate);
                }
                _ => {}
            }
        }
        let clients = (0..sc.topology.clients)
            .map(|i| ClientSlot {
                node: None,
                incarnation: 0,
                conn: 0,
                conn_up: false,
                reconnect_pending: None,
                reconnect_gen: 0,
                timer_gen: 0,
                timer_at: None,
                drift_pct: sc.topology.clock_drift_pct.get(i).copied().unwrap_or(0) as i64,
                past: Stats::default(),
                last_versions: (0, 0, 0),
                next_token: 1,
            })
            .collect();
        Sim {
            sc,
            opts,
            now: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            rng_net: rng(s, STREAM_NET),
            rng_fault: rng(s, STREAM_FAULT),
            rng_work: rng(s, STREAM_WORK),
            rng_keys: rng(s, STREAM_KEYS),
            random: seed.is_some(),
            config,
            server: None,
            server_timer_gen: 0,
            server_timer_at: None,
            server_past: Stats::default(),
            store,
            commit_pending: false,
            commits: 0,
            commit_fates,
            max_frame_bytes: sc
                .engine
                .max_frame_bytes
                .unwrap_or(config.limits.frame_bytes()),
            removed_sessions: BTreeSet::new(),
            clients,
            partitions: Vec::new(),
            next_partition: 0,
            converged_at: None,
            events: 0,
            instant_events: 0,
            halted: BTreeSet::new(),
            link_counts: BTreeMap::new(),
            fates,
            flights: Vec::new(),
            free_flights: Vec::new(),
            in_flight: 0,
            in_flight_substantive: 0,
            stream_last: BTreeMap::new(),
            stream_tail: BTreeMap::new(),
            next_serial: 0,
            stalled: BTreeMap::new(),
            next_conn: 1,
            stopped_at: None,
            deadline: None,
            users: Users::new(
                &sc.topology.initial_text,
                sc.topology.clients,
                sc.workload.typing.is_some(),
                sc.checks.intent,
            ),
            progress: Progress::new(sc.topology.clients),
            trace: Vec::new(),
            recorded: Vec::new(),
            chart: opts.chart.then(Chart::default),
            last_sample: None,
            summary: Summary::default(),
            verdict: None,
        }
    }

    /// The resolved settings, printed before a run.
    pub fn settings(sc: &Scenario, opts: &Options) -> Vec<String> {
        let seed = opts.seed.or(sc.seed);
        let n = &sc.network;
        let mut v = vec![
            format!("scenario {:?}: {}", sc.name, sc.description.trim()),
            format!(
                "seed {}",
                seed.map_or("none (explicit timeline only)".to_string(), |s| s
                    .to_string())
            ),
            format!(
                "topology clients={} link={:?} initial_text={} drift_pct={:?}",
                sc.topology.clients,
                sc.topology.link,
                digest(&sc.topology.initial_text),
                sc.topology.clock_drift_pct
            ),
            format!(
                "engine sync_interval_ms={} retransmit_ms={} heartbeat_ms={} merge={:?}{}{}{}{}",
                sc.engine.sync_interval_ms,
                sc.engine.retransmit_ms,
                sc.engine.heartbeat_ms,
                sc.engine.merge,
                sc.engine
                    .max_log_entries
                    .map_or(String::new(), |n| format!(" max_log_entries={n}")),
                sc.engine
                    .max_frame_bytes
                    .map_or(String::new(), |n| format!(" max_frame_bytes={n}")),
                sc.engine
                    .max_idle_sync_ms
                    .map_or(String::new(), |n| format!(" max_idle_sync_ms={n}")),
                sc.engine
                    .hints
                    .map_or(String::new(), |h| format!(" hints={h}"))
            ),
            format!(
                "network latency_ms={}..{} drop={} duplicate={} reorder={} (+{} ms) corrupt={} split={} garbage={}",
                n.latency_ms.0,
                n.latency_ms.1,
                n.drop,
                n.duplicate,
                n.reorder,
                n.reorder_delay_ms,
                n.corrupt,
                n.split,
                n.garbage
            ),
            format!(
                "storage fail={} crash_after_commit={} crash_in_batch={} restart_ms={} commit_ms={}",
                sc.storage.fail,
                sc.storage.crash_after_commit,
                sc.storage.crash_in_batch,
                sc.storage.restart_ms,
                sc.storage.commit_ms
            ),
        ];
        for l in &sc.links {
            let f = &l.faults;
            v.push(format!(
                "link c{} {:?} latency_ms={}..{} drop={} duplicate={} reorder={} corrupt={} split={} garbage={}",
                l.client,
                l.direction,
                f.latency_ms.0,
                f.latency_ms.1,
                f.drop,
                f.duplicate,
                f.reorder,
                f.corrupt,
                f.split,
                f.garbage
            ));
        }
        if let Some(t) = &sc.workload.typing {
            v.push(format!(
                "workload typing clients={:?} rate_per_s={} {}..{} ms delete_chance={}",
                t.clients, t.rate_per_s, t.from_ms, t.until_ms, t.delete_chance
            ));
        }
        if let Some(t) = &sc.workload.tokens {
            v.push(format!(
                "workload tokens clients={:?} every_ms={} {}..{} ms delete_chance={}",
                t.clients, t.every_ms, t.from_ms, t.until_ms, t.delete_chance
            ));
        }
        v.push(format!("timeline {} events", sc.timeline.len()));
        v.push(format!(
            "checks stop_faults_at_ms={} converge_within_ms={} intent={} expect={:?}",
            sc.checks.stop_faults_at_ms, sc.checks.converge_within_ms, sc.checks.intent, sc.expect
        ));
        v
    }

    fn log(&mut self, kind: &str, text: String) {
        if self.opts.trace != TraceLevel::None {
            self.trace
                .push(format!("{} {:<8} {}", fmt_time(self.now), kind, text));
        }
    }

    fn log_full(&mut self, kind: &str, text: impl FnOnce() -> String) {
        if self.opts.trace == TraceLevel::Full {
            let t = text();
            self.log(kind, t);
        }
    }

    fn fault(&mut self, text: String) {
        if let Some(c) = &mut self.chart {
            c.faults.push((self.now, text.clone()));
        }
        self.log("fault", text);
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Item {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn fail(&mut self, check: CheckKind, detail: String) {
        if self.verdict.is_none() {
            self.log("check", format!("FAILED {} {}", check.name(), detail));
            self.verdict = Some(Verdict::Fail {
                check,
                at_ms: self.now,
                detail,
            });
        }
    }

    fn run(&mut self) {
        let sc = self.sc;
        self.store
            .commit(
                &[dsync_engine::PersistRecord {
                    doc: DOC.into(),
                    text: Some(sc.topology.initial_text.as_str().into()),
                    version: 0,
                    sessions: vec![],
                    removed_sessions: vec![],
                    changes: vec![],
                    changes_needed_after: 0,
                }],
                0,
            )
            .expect("the initial commit goes to a store without faults");
        self.start_server();
        for i in 0..self.clients.len() {
            self.start_client(i);
        }
        for (i, t) in sc.timeline.iter().enumerate() {
            if !matches!(
                t.event,
                Event::DropMessage { .. } | Event::Net { .. } | Event::Commit { .. }
            ) {
                self.schedule(t.at_ms, Ev::Script(i));
            }
        }
        self.schedule(sc.checks.stop_faults_at_ms, Ev::StopFaults);
        self.start_workloads();
        while self.verdict.is_none() {
            let Some(Reverse(item)) = self.queue.pop() else {
                // Nothing left to happen: either converged already or never will.
                if self.stopped_at.is_none() {
                    self.stop_faults();
                    continue;
                }
                if self.converged_at.is_some() {
                    // Converged, and nothing can happen any more: it stays so.
                    self.verdict = Some(Verdict::Pass);
                    break;
                }
                self.fail(
                    CheckKind::Liveness,
                    "no events left and not converged".into(),
                );
                break;
            };
            if item.at > self.now {
                self.instant_events = 0;
            }
            self.now = item.at;
            self.instant_events += 1;
            if self.instant_events > MAX_EVENTS_PER_INSTANT {
                self.fail(
                    CheckKind::Liveness,
                    format!(
                        "more than {MAX_EVENTS_PER_INSTANT} events at t={}: a livelock",
                        fmt_time(self.now)
                    ),
                );
                break;
            }
            self.events += 1;
            if self.events > MAX_EVENTS {
                self.fail(
                    CheckKind::Liveness,
                    format!("more than {MAX_EVENTS} events: the run is too long to finish"),
                );
                break;
            }
            if self.now > MAX_SIM_MS {
                self.fail(
                    CheckKind::Liveness,
                    format!("virtual time passed {MAX_SIM_MS} ms"),
                );
                break;
            }
            self.handle(item.ev);
            self.after_event();
        }
    }

    fn after_event(&mut self) {
        self.check_versions();
        self.check_exact();
        self.check_progress();
        self.sample();
        if let (Some((at, digest_then)), None) = (&self.converged_at, &self.verdict) {
            // Convergence must hold, not only happen: nobody types any more, so the master
            // never changes again, and at the end of the window everything still agrees.
            let (at, digest_then) = (*at, digest_then.clone());
            let master = self.master_text();
            if digest(&master) != digest_then {
                return self.fail(
                    CheckKind::Liveness,
                    format!(
                        "converged at {} on {digest_then}, then the master changed to {}",
                        fmt_time(at),
                        digest(&master)
                    ),
                );
            }
            if self.now >= at + self.stable_ms() {
                match self.converged() {
                    Ok(()) => {
                        self.log(
                            "check",
                            format!(
                                "still converged {:.3}s later",
                                (self.now - at) as f64 / 1000.0
                            ),
                        );
                        self.verdict = Some(Verdict::Pass);
                    }
                    Err(why) => self.fail(
                        CheckKind::Liveness,
                        format!("converged at {}, then diverged: {why}", fmt_time(at)),
                    ),
                }
            }
            return;
        }
        if let (Some(stop), None) = (self.stopped_at, &self.verdict) {
            if let Err(why) = self.converged() {
                if self.deadline.is_some_and(|d| self.now >= d) {
                    let bound = self.sc.checks.converge_within_ms;
                    self.fail(
                        CheckKind::Liveness,
                        format!("not converged {bound} ms after faults stopped: {why}"),
                    );
                }
            } else {
                let took = self.now - stop;
                self.summary.converge_ms = Some(took);
                let master = self.master_text();
                let names: Vec<String> = std::iter::once("S".to_string())
                    .chain((0..self.clients.len()).map(|i| format!("c{i}")))
                    .collect();
                self.log(
                    "check",
                    format!(
                        "converged {} text={} after_stop={:.3}s",
                        names.join(","),
                        digest(&master),
                        took as f64 / 1000.0
                    ),
                );
                self.check_intent_final(&master);
                if self.verdict.is_none() {
                    self.converged_at = Some((self.now, digest(&master)));
                    let end = self.now + self.stable_ms();
                    self.schedule(end, Ev::Deadline);
                }
            }
        }
    }

    /// How long convergence must hold before the run passes: two sync cycles, at least 1 s.
    fn stable_ms(&self) -> u64 {
        (2 * self.config.sync_interval_ms).max(1_000)
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Script(i) => {
                let ev = self.sc.timeline[i].event.clone();
                self.script(ev);
            }
            Ev::StopFaults => self.stop_faults(),
            Ev::Deliver(id) => self.deliver(id),
            Ev::Timer(node, gen) => self.timer(node, gen),
            Ev::Typing(i) => self.typing(i),
            Ev::Token(i) => self.token_action(i),
            Ev::Reconnect(i, gen) => {
                if self.clients[i].reconnect_pending == Some(gen) {
                    self.reconnect(i);
                }
            }
            Ev::Deadline => {}
            Ev::Unpartition(id) => self.unpartition(id),
            Ev::Commit => self.commit_server(),
            Ev::RestartServer => {
                if !self.halted.contains(&Node::Server) {
                    self.restart(Node::Server);
                }
            }
        }
    }

    // ----- nodes -------------------------------------------------------------------------
}
