//! The simulation proper: one thread, virtual time in integer milliseconds, an event queue keyed
//! by (time, sequence), seeded `rand_chacha` streams, and the real engines and store.
//!
//! Invariants:
//! - No wall clock, no thread, no `HashMap` iteration: a scenario and seed give one trace.
//! - Randomness comes from three independent streams (network, faults, workload), so adding
//!   a client's typing does not shift which messages the network drops.
//! - The server persists through `dsync_store::SqliteStore` (in memory) and commits every batch of
//!   `Persist` outputs before sending what follows them, exactly like the real server.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use dsync_engine::{
    ClientEngine, ClientEvent, ClientMsg, ClientOutput, Config, Edit, MergeStrategy, PeerId,
    ServerEngine, ServerMsg, ServerOutput, Stats, Time,
};
use dsync_store::{SqliteStore, Store};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::oracle::{Ledger, Marker, Progress, TokenOrder, PROGRESS_WITHIN_MS};
use crate::scenario::{
    Direction, Event, Fate, LinkFaults, LinkModel, Merge, Node, Scenario, Timed,
};

/// The document every scenario edits.
pub const DOC: &str = "doc";

/// How much trace to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceLevel {
    /// No trace lines (swarm).
    None,
    /// Faults, checks and notable engine events.
    Summary,
    /// Every message and edit as well.
    Full,
}

/// Run options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Use this seed instead of the file's.
    pub seed: Option<u64>,
    /// Trace detail.
    pub trace: TraceLevel,
    /// Record every random choice as explicit timeline events (for `shrink`).
    pub record: bool,
    /// Collect the data of the HTML report.
    pub chart: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: None,
            trace: TraceLevel::Summary,
            record: false,
            chart: false,
        }
    }
}

/// Which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckKind {
    /// An invariant broke during the run.
    Safety,
    /// No convergence within the bound after faults stopped.
    Liveness,
    /// Tokens lost, duplicated or invented.
    Intent,
}

impl CheckKind {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Safety => "safety",
            CheckKind::Liveness => "liveness",
            CheckKind::Intent => "intent",
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// A check failed.
    Fail {
        /// Which.
        check: CheckKind,
        /// Simulated time of the failure.
        at_ms: u64,
        /// What was wrong.
        detail: String,
    },
}

impl Verdict {
    /// One line: `pass`, or `<check> failed at t=…: <detail>`.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Pass => "pass".into(),
            Verdict::Fail {
                check,
                at_ms,
                detail,
            } => {
                format!("{} failed at {}: {detail}", check.name(), fmt_time(*at_ms))
            }
        }
    }
}

/// Counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Simulated time at the end.
    pub sim_ms: u64,
    /// Messages sent.
    pub sent: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages lost (dropped, blocked, or to a crashed node).
    pub dropped: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Messages held back to reorder them.
    pub reordered: u64,
    /// Messages corrupted in flight.
    pub corrupted: u64,
    /// Connection resets (stream links).
    pub conn_resets: u64,
    /// Full-text resets performed by clients.
    pub resets: u64,
    /// Backup-shadow restores on the server.
    pub rollbacks: u64,
    /// Edits retransmitted by clients.
    pub retransmits: u64,
    /// Edits skipped as duplicates (both sides).
    pub duplicates_skipped: u64,
    /// Stale messages ignored (both sides).
    pub stale_skipped: u64,
    /// Fuzzy patches dropped (both sides).
    pub patches_dropped: u64,
    /// Sessions resumed.
    pub resumes: u64,
    /// Server: diffs that stood in for a session's lost exact change.
    pub link_fallbacks: u64,
    /// Server: change-log entries dropped while a session still needed them.
    pub log_overflows: u64,
    /// Exact merges that failed and fell back to texts (both sides): always a bug.
    pub merge_fallbacks: u64,
    /// Client resets merged by diff (the reset's base unknown to the client).
    pub inexact_resets: u64,
    /// Local edits made.
    pub edits: u64,
    /// Time from the end of faults to convergence.
    pub converge_ms: Option<u64>,
    /// Digest of the final master text.
    pub final_digest: String,
}

impl Summary {
    /// The one-line summary of the trace.
    pub fn line(&self) -> String {
        format!(
            "summary  sent={} delivered={} dropped={} dup={} reordered={} corrupted={} conn_resets={} edits={} resets={} rollbacks={} retransmits={} dups_skipped={} stale_skipped={} patches_dropped={} resumes={} inexact_resets={} link_fallbacks={} log_overflows={} merge_fallbacks={}",
            self.sent, self.delivered, self.dropped, self.duplicated, self.reordered, self.corrupted,
            self.conn_resets, self.edits, self.resets, self.rollbacks, self.retransmits,
            self.duplicates_skipped, self.stale_skipped, self.patches_dropped, self.resumes,
            self.inexact_resets, self.link_fallbacks, self.log_overflows, self.merge_fallbacks
        )
    }
}

/// One message for the sequence chart.
#[derive(Debug, Clone)]
pub struct ChartMsg {
    /// Sender.
    pub from: Node,
    /// Receiver.
    pub to: Node,
    /// Sent at.
    pub sent_ms: u64,
    /// Delivered at (None: lost).
    pub delivered_ms: Option<u64>,
    /// "sent", "dropped", "duplicate", "delayed", "corrupted", "blocked", "stalled".
    pub fate: &'static str,
    /// Short description.
    pub label: String,
}

/// Data of the HTML report.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Messages (the first few thousand).
    pub messages: Vec<ChartMsg>,
    /// (time, per-client divergence in chars from the master; None while down).
    pub divergence: Vec<(u64, Vec<Option<u64>>)>,
    /// (time, label) of faults.
    pub faults: Vec<(u64, String)>,
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// The resolved settings, one per line.
    pub settings: Vec<String>,
    /// Trace lines.
    pub trace: Vec<String>,
    /// Counters.
    pub summary: Summary,
    /// Verdict.
    pub verdict: Verdict,
    /// The run's random choices as explicit events (with `Options::record`).
    pub recorded: Vec<Timed>,
    /// HTML report data (with `Options::chart`).
    pub chart: Option<Chart>,
    /// Final master text.
    pub final_text: String,
    /// Every node's final text, server first (`S`, `c0`, `c1`, …); `None` for a node that is
    /// down at the end.
    pub node_texts: Vec<(String, Option<String>)>,
}

impl Report {
    /// The report of a run that panicked: a safety failure with the panic's message.
    pub fn panicked(message: String) -> Report {
        Report {
            settings: Vec::new(),
            trace: Vec::new(),
            summary: Summary::default(),
            verdict: Verdict::Fail {
                check: CheckKind::Safety,
                at_ms: 0,
                detail: format!("panicked: {message}"),
            },
            recorded: Vec::new(),
            chart: None,
            final_text: String::new(),
            node_texts: Vec::new(),
        }
    }
}

/// Format simulated time as the trace does.
pub fn fmt_time(ms: u64) -> String {
    format!("t={:06}.{:03}", ms / 1000, ms % 1000)
}

/// `#abcd(len)`: a short digest of a text.
pub fn digest(text: &str) -> String {
    format!("#{:04x}({})", crc32(text) & 0xffff, text.chars().count())
}

fn crc32(text: &str) -> u32 {
    dsync_engine::Checksum::of(text).0
}

fn node_name(n: Node) -> String {
    match n {
        Node::Server => "S".into(),
        Node::Client(i) => format!("c{i}"),
    }
}

fn merge_of(m: Merge) -> MergeStrategy {
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

impl Payload {
    fn label(&self) -> String {
        let edits = |e: &[Edit]| -> String {
            e.iter()
                .map(|e| match e {
                    Edit::Delta { version, delta, .. } => {
                        format!("v{version}:{}", delta.ops().len())
                    }
                    Edit::Full { version, text, .. } => format!("v{version}:full{}", digest(text)),
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Payload::Up(ClientMsg::Connect { seq, resume, .. }) => {
                format!(
                    "connect seq={seq}{}",
                    if resume.is_some() { " resume" } else { "" }
                )
            }
            Payload::Up(ClientMsg::ClientSync {
                seq,
                server_version,
                edits: e,
                ..
            }) => {
                format!("client_sync seq={seq} m={server_version} [{}]", edits(e))
            }
            Payload::Up(m) => format!("{m:?}").to_lowercase(),
            Payload::Down(ServerMsg::ConnectOk {
                seq, resumed, text, ..
            }) => {
                format!(
                    "connect_ok seq={seq} resumed={resumed} text={}",
                    digest(text)
                )
            }
            Payload::Down(ServerMsg::ServerSync {
                seq,
                client_version,
                edits: e,
                ..
            }) => {
                format!("server_sync seq={seq} n={client_version} [{}]", edits(e))
            }
            Payload::Down(ServerMsg::Error { code, .. }) => format!("error {}", code.as_str()),
            Payload::Down(m) => format!("{m:?}").to_lowercase(),
        }
    }

    /// Does this message still change state (edits, connects, errors), unlike an empty poll and
    /// its empty reply?
    fn substantive(&self) -> bool {
        match self {
            Payload::Up(ClientMsg::ClientSync { edits, .. }) => !edits.is_empty(),
            Payload::Down(ServerMsg::ServerSync { edits, .. }) => !edits.is_empty(),
            Payload::Up(ClientMsg::Ping | ClientMsg::Pong)
            | Payload::Down(ServerMsg::Ping | ServerMsg::Pong) => false,
            _ => true,
        }
    }

    /// Corrupt the first edit's checksum (what a bit flip the transport missed would do; the
    /// receiver's CRC check must catch it). Returns false if there is nothing to corrupt.
    fn corrupt(&mut self) -> bool {
        let edits = match self {
            Payload::Up(ClientMsg::ClientSync { edits, .. }) => edits,
            Payload::Down(ServerMsg::ServerSync { edits, .. }) => edits,
            _ => return false,
        };
        match edits.first_mut() {
            Some(Edit::Delta { checksum, .. }) | Some(Edit::Full { checksum, .. }) => {
                checksum.0 ^= 0x0100_0001;
                true
            }
            None => false,
        }
    }
}

#[derive(Debug)]
struct Flight {
    from: Node,
    to: Node,
    conn: u64,
    payload: Payload,
    chart: Option<usize>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    at: u64,
    seq: u64,
    ev: Ev,
}

/// A local edit, from the timeline or a workload.
#[derive(Debug, Clone)]
enum LocalEdit {
    Insert { pos: usize, text: String },
    Delete { pos: usize, len: usize },
    InsertToken { slot: usize, token: String },
    DeleteToken { token: String },
}

struct ClientSlot {
    engine: Option<ClientEngine>,
    incarnation: u32,
    /// Stream: the current connection (also the peer id); datagram: the incarnation's peer id.
    conn: u64,
    conn_up: bool,
    backoff_ms: u64,
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

#[derive(Default)]
struct TokenBook {
    inserted: BTreeMap<String, (usize, u32)>,
    deleted: BTreeMap<String, (usize, u32)>,
    lost_ok: BTreeSet<String>,
    resurrect_ok: BTreeSet<String>,
}

/// Parse the tokens of a text. Err on a malformed token fragment.
fn tokens_in(text: &str) -> Result<BTreeMap<&str, usize>, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some(open) = rest.find(['⟨', '⟩']) {
        let tail = &rest[open..];
        if tail.starts_with('⟩') {
            return Err(format!("stray '⟩' in {:?}", excerpt(tail)));
        }
        let Some(close) = tail.find('⟩') else {
            return Err(format!("unclosed token at {:?}", excerpt(tail)));
        };
        let token = &tail[..close + '⟩'.len_utf8()];
        let inner = &token['⟨'.len_utf8()..token.len() - '⟩'.len_utf8()];
        let ok = inner.split_once(':').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
        if !ok {
            return Err(format!("malformed token {token:?}"));
        }
        *out.entry(token).or_insert(0) += 1;
        rest = &tail[token.len()..];
    }
    Ok(out)
}

fn excerpt(s: &str) -> String {
    s.chars().take(24).collect()
}

/// Char positions where a token may be inserted: the start and after each token.
/// The tokens of a text with their byte spans, in order (malformed fragments skipped).
fn token_spans(text: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find('⟨') {
        let b = from + open;
        let Some(close) = text[b..].find('⟩') else {
            break;
        };
        let e = b + close + '⟩'.len_utf8();
        let token = &text[b..e];
        if token[3..].contains('⟨') {
            // `⟨⟨…⟩`: start again at the inner opening.
            from = b + '⟨'.len_utf8();
            continue;
        }
        out.push((b, e, token));
        from = e;
    }
    out
}

fn token_slots(text: &str) -> Vec<usize> {
    let mut slots = vec![0];
    for (i, c) in text.chars().enumerate() {
        if c == '⟩' {
            slots.push(i + 1);
        }
    }
    slots
}

/// `S,c0,c2`: nodes as a fault line names them.
fn node_list(v: &[Node]) -> String {
    v.iter()
        .map(|n| node_name(*n))
        .collect::<Vec<_>>()
        .join(",")
}

fn divergence(a: &str, b: &str) -> u64 {
    if a == b {
        return 0;
    }
    let p = dsync_engine::delta::common_prefix_len(a, b);
    let s = dsync_engine::delta::common_suffix_len(a, b, a.len().min(b.len()) - p);
    let da = a[p..a.len() - s].chars().count();
    let db = b[p..b.len() - s].chars().count();
    da.max(db) as u64
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
    random: bool,
    config: Config,
    server: Option<ServerEngine>,
    server_timer_gen: u64,
    server_timer_at: Option<u64>,
    server_past: Stats,
    store: Box<dyn Store>,
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
    stalled: BTreeMap<(Node, Node), VecDeque<usize>>,
    next_conn: u64,
    stopped_at: Option<u64>,
    deadline: Option<u64>,
    book: TokenBook,
    /// What users' edits did, per character (intent: the final text must account for it).
    ledger: Ledger,
    /// Where users placed their tokens relative to others (intent: order kept).
    order: TokenOrder,
    /// Reachable clients get their typing acknowledged while faults go on elsewhere.
    progress: Progress,
    /// A plain insert or delete happened (then text between tokens is not known).
    plain_edits: bool,
    trace: Vec<String>,
    recorded: Vec<Timed>,
    chart: Option<Chart>,
    last_sample: Option<u64>,
    summary: Summary,
    verdict: Option<Verdict>,
}

const STREAM_NET: u64 = 0x6e65_7477_6f72_6b00;
const STREAM_FAULT: u64 = 0x6661_756c_7473_0000;
const STREAM_WORK: u64 = 0x776f_726b_6c6f_6164;
/// Charted messages at most (keeps the HTML report small).
const CHART_MAX_MESSAGES: usize = 3_000;
/// First reconnect delay on stream links; doubles up to `RECONNECT_MAX_MS`.
const RECONNECT_MIN_MS: u64 = 250;
const RECONNECT_MAX_MS: u64 = 4_000;
/// A run never goes past this much virtual time, whatever the file says.
pub const MAX_SIM_MS: u64 = 24 * 3_600_000;
/// Events one instant of virtual time may hold before the run counts as a livelock: time
/// stands still while events keep coming (a busy run moves time on, however many clients poll).
pub const MAX_EVENTS_PER_INSTANT: u64 = 100_000;
/// A run handles at most this many events in all: a bound on the work of any scenario (256
/// clients polling every 100 ms for a simulated hour stay well below it).
pub const MAX_EVENTS: u64 = 200_000_000;

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
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
    let mut sim = Sim::new(sc, opts, store);
    sim.run();
    sim.finish()
}

impl<'a> Sim<'a> {
    fn new(sc: &'a Scenario, opts: Options, store: Box<dyn Store>) -> Sim<'a> {
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
        let mut fates = BTreeMap::new();
        for t in &sc.timeline {
            match &t.event {
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
                engine: None,
                incarnation: 0,
                conn: 0,
                conn_up: false,
                backoff_ms: RECONNECT_MIN_MS,
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
            random: seed.is_some(),
            config,
            server: None,
            server_timer_gen: 0,
            server_timer_at: None,
            server_past: Stats::default(),
            store,
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
            stalled: BTreeMap::new(),
            next_conn: 1,
            stopped_at: None,
            deadline: None,
            book: TokenBook::default(),
            ledger: Ledger::new(&sc.topology.initial_text, sc.topology.clients),
            order: TokenOrder::default(),
            progress: Progress::new(sc.topology.clients),
            plain_edits: sc.workload.typing.is_some(),
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
                "engine sync_interval_ms={} retransmit_ms={} heartbeat_ms={} merge={:?}{}",
                sc.engine.sync_interval_ms,
                sc.engine.retransmit_ms,
                sc.engine.heartbeat_ms,
                sc.engine.merge,
                sc.engine
                    .max_log_entries
                    .map_or(String::new(), |n| format!(" max_log_entries={n}"))
            ),
            format!(
                "network latency_ms={}..{} drop={} duplicate={} reorder={} (+{} ms) corrupt={}",
                n.latency_ms.0,
                n.latency_ms.1,
                n.drop,
                n.duplicate,
                n.reorder,
                n.reorder_delay_ms,
                n.corrupt
            ),
        ];
        for l in &sc.links {
            let f = &l.faults;
            v.push(format!(
                "link c{} {:?} latency_ms={}..{} drop={} duplicate={} reorder={} corrupt={}",
                l.client,
                l.direction,
                f.latency_ms.0,
                f.latency_ms.1,
                f.drop,
                f.duplicate,
                f.reorder,
                f.corrupt
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
                    text: Some(sc.topology.initial_text.clone()),
                    version: 0,
                    sessions: vec![],
                    removed_sessions: vec![],
                    changes: vec![],
                    changes_needed_after: 0,
                }],
                0,
            )
            .expect("in-memory SQLite commit");
        self.start_server();
        for i in 0..self.clients.len() {
            self.start_client(i);
        }
        for (i, t) in sc.timeline.iter().enumerate() {
            if !matches!(t.event, Event::DropMessage { .. } | Event::Net { .. }) {
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
        }
    }

    // ----- nodes -------------------------------------------------------------------------

    fn start_server(&mut self) {
        let mut s = ServerEngine::new(self.config);
        s.set_merge(DOC, self.config.merge);
        self.server = Some(s);
    }

    fn client_id(i: usize, inc: u32) -> String {
        if inc == 0 {
            format!("c{i}")
        } else {
            format!("c{i}.{inc}")
        }
    }

    fn start_client(&mut self, i: usize) {
        let inc = self.clients[i].incarnation;
        let engine = ClientEngine::new(self.config, Self::client_id(i, inc), DOC);
        let conn = self.next_conn;
        self.next_conn += 1;
        let slot = &mut self.clients[i];
        slot.engine = Some(engine);
        slot.conn = conn;
        slot.last_versions = (0, 0, 0);
        slot.conn_up = false;
        match self.sc.topology.link {
            LinkModel::Datagram => {
                let now = self.node_now(Node::Client(i));
                if let Some(e) = self.clients[i].engine.as_mut() {
                    e.connect(now);
                }
                self.client_out(i);
            }
            LinkModel::Stream => self.reconnect(i),
        }
    }

    /// Stream: open a connection if the server is up (else retry with backoff). Datagram:
    /// send `connect` again.
    fn reconnect(&mut self, i: usize) {
        self.clients[i].reconnect_pending = None;
        if self.clients[i].engine.is_none() {
            return;
        }
        if self.sc.topology.link == LinkModel::Stream {
            if self.server.is_none() || self.blocked(Node::Client(i), Node::Server) {
                return self.schedule_reconnect(i);
            }
            let conn = self.next_conn;
            self.next_conn += 1;
            self.clients[i].conn = conn;
            self.clients[i].conn_up = true;
            self.log_full("conn", || format!("c{i} connected as peer {conn}"));
        }
        let now = self.node_now(Node::Client(i));
        if let Some(e) = self.clients[i].engine.as_mut() {
            e.disconnected();
            e.connect(now);
        }
        self.client_out(i);
    }

    fn schedule_reconnect(&mut self, i: usize) {
        if self.clients[i].reconnect_pending.is_some() || self.clients[i].engine.is_none() {
            return;
        }
        let delay = self.clients[i].backoff_ms;
        self.clients[i].backoff_ms = (delay * 2).min(RECONNECT_MAX_MS);
        self.clients[i].reconnect_gen += 1;
        let gen = self.clients[i].reconnect_gen;
        self.clients[i].reconnect_pending = Some(gen);
        self.schedule(self.now + delay, Ev::Reconnect(i, gen));
    }

    /// Stream: the connection of client `i` broke. `tell_server`: the server has not noticed.
    fn conn_lost(&mut self, i: usize, tell_server: bool) {
        if !self.clients[i].conn_up {
            return;
        }
        self.clients[i].conn_up = false;
        let peer = PeerId(self.clients[i].conn);
        if tell_server {
            let now = Time(self.now);
            if let Some(s) = self.server.as_mut() {
                s.handle_disconnect(now, peer);
            }
            self.server_out();
        }
        if let Some(e) = self.clients[i].engine.as_mut() {
            e.disconnected();
        }
        self.arm(Node::Client(i));
        self.schedule_reconnect(i);
    }

    fn crash(&mut self, node: Node) {
        match node {
            Node::Server => {
                let Some(s) = self.server.take() else { return };
                self.server_past.add(s.stats());
                self.server_timer_at = None;
                self.fault("crash S (uncommitted state lost)".into());
                self.check_durable("after the server crashed");
                if self.sc.topology.link == LinkModel::Stream {
                    for i in 0..self.clients.len() {
                        self.conn_lost(i, false);
                    }
                }
            }
            Node::Client(i) => {
                let Some(e) = self.clients[i].engine.take() else {
                    return;
                };
                self.fault(format!("crash c{i} (unsent typing lost)"));
                self.ledger.crashed(i);
                let inc = self.clients[i].incarnation;
                self.clients[i].past.add(e.stats());
                self.clients[i].timer_at = None;
                // Intent: what this incarnation did that never became durable may vanish.
                let durable = self
                    .store
                    .load(DOC)
                    .ok()
                    .flatten()
                    .map(|d| d.text)
                    .unwrap_or_default();
                let durable_tokens: BTreeSet<String> = tokens_in(&durable)
                    .map(|m| m.keys().map(|s| s.to_string()).collect())
                    .unwrap_or_default();
                for (t, who) in &self.book.inserted {
                    if *who == (i, inc) && !durable_tokens.contains(t) {
                        self.book.lost_ok.insert(t.clone());
                    }
                }
                // A deletion that was not durable may vanish too: the token is in the store, or
                // this incarnation inserted it and the insertion is still in flight (it can land
                // after the crash, while the deletion never will).
                for (t, who) in &self.book.deleted {
                    let unsent_own = self.book.inserted.get(t) == Some(&(i, inc))
                        && self.book.lost_ok.contains(t);
                    if *who == (i, inc) && (durable_tokens.contains(t) || unsent_own) {
                        self.book.resurrect_ok.insert(t.clone());
                    }
                }
                if self.clients[i].conn_up {
                    self.clients[i].conn_up = false;
                    let peer = PeerId(self.clients[i].conn);
                    let now = Time(self.now);
                    if let Some(s) = self.server.as_mut() {
                        s.handle_disconnect(now, peer);
                    }
                    self.server_out();
                }
            }
        }
    }

    fn restart(&mut self, node: Node) {
        match node {
            Node::Server => {
                if self.server.is_some() {
                    return;
                }
                self.fault("restart S".into());
                self.start_server();
            }
            Node::Client(i) => {
                if self.clients[i].engine.is_some() {
                    return;
                }
                self.clients[i].incarnation += 1;
                let id = Self::client_id(i, self.clients[i].incarnation);
                self.fault(format!("restart c{i} as {id}"));
                self.clients[i].backoff_ms = RECONNECT_MIN_MS;
                self.start_client(i);
            }
        }
    }

    fn node_now(&self, node: Node) -> Time {
        match node {
            Node::Server => Time(self.now),
            Node::Client(i) => {
                let d = self.clients[i].drift_pct;
                Time((self.now as i64 + self.now as i64 * d / 100).max(0) as u64)
            }
        }
    }

    fn to_global(&self, node: Node, t: Time) -> u64 {
        match node {
            Node::Server => t.0,
            Node::Client(i) => {
                let d = self.clients[i].drift_pct;
                // Inverse of node_now, rounded up so a timer never fires early.
                let num = t.0 as i128 * 100;
                let den = (100 + d) as i128;
                ((num + den - 1) / den).max(0) as u64
            }
        }
    }

    /// Re-arm a node's timer from its engine's `poll_timeout`.
    fn arm(&mut self, node: Node) {
        let next = match node {
            Node::Server => self.server.as_ref().and_then(|s| s.poll_timeout()),
            Node::Client(i) => self.clients[i]
                .engine
                .as_ref()
                .and_then(|e| e.poll_timeout()),
        };
        let at = next.map(|t| self.to_global(node, t).max(self.now));
        let (cur, gen) = match node {
            Node::Server => (&mut self.server_timer_at, &mut self.server_timer_gen),
            Node::Client(i) => {
                let c = &mut self.clients[i];
                (&mut c.timer_at, &mut c.timer_gen)
            }
        };
        if *cur == at {
            return;
        }
        *cur = at;
        *gen += 1;
        let g = *gen;
        if let Some(at) = at {
            self.schedule(at, Ev::Timer(node, g));
        }
    }

    fn timer(&mut self, node: Node, gen: u64) {
        let now = self.node_now(node);
        match node {
            Node::Server => {
                if gen != self.server_timer_gen {
                    return;
                }
                self.server_timer_at = None;
                if let Some(s) = self.server.as_mut() {
                    s.handle_timeout(now);
                }
                self.server_out();
            }
            Node::Client(i) => {
                if gen != self.clients[i].timer_gen {
                    return;
                }
                self.clients[i].timer_at = None;
                if let Some(e) = self.clients[i].engine.as_mut() {
                    e.handle_timeout(now);
                }
                self.client_out(i);
            }
        }
        self.arm(node);
    }

    fn client_out(&mut self, i: usize) {
        while let Some(out) = self.clients[i]
            .engine
            .as_mut()
            .and_then(|e| e.poll_output())
        {
            match out {
                ClientOutput::Send(m) => self.send(Node::Client(i), Node::Server, Payload::Up(m)),
                ClientOutput::Event(ev) => {
                    match &ev {
                        ClientEvent::Connected { .. } => {
                            self.clients[i].backoff_ms = RECONNECT_MIN_MS
                        }
                        ClientEvent::ServerSilent => match self.sc.topology.link {
                            LinkModel::Stream => self.conn_lost(i, true),
                            LinkModel::Datagram => self.schedule_reconnect(i),
                        },
                        _ => {}
                    }
                    let show = !matches!(ev, ClientEvent::RemoteChange);
                    if show {
                        self.log("event", format!("c{i} {ev:?}"));
                    }
                }
            }
        }
        self.arm(Node::Client(i));
    }

    fn server_out(&mut self) {
        let mut batch = Vec::new();
        while let Some(out) = self.server.as_mut().and_then(|s| s.poll_output()) {
            match out {
                ServerOutput::Persist(r) => batch.push(r),
                ServerOutput::Send { to, msg } => {
                    self.commit(&mut batch);
                    let Some(i) = self.client_of_peer(to) else {
                        continue;
                    };
                    self.send(Node::Server, Node::Client(i), Payload::Down(msg));
                }
                ServerOutput::Disconnect { peer, reason } => {
                    self.commit(&mut batch);
                    if let Some(i) = self.client_of_peer(peer) {
                        self.log("event", format!("S dropped c{i}: {reason}"));
                        if self.sc.topology.link == LinkModel::Stream {
                            self.conn_lost(i, false);
                        }
                    }
                }
            }
        }
        self.commit(&mut batch);
        self.arm(Node::Server);
    }

    /// Commit persist records before anything that follows them is sent.
    fn commit(&mut self, batch: &mut Vec<dsync_engine::PersistRecord>) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.store.commit(batch, self.now) {
            self.fail(CheckKind::Safety, format!("store commit failed: {e}"));
        }
        for r in batch.iter() {
            self.removed_sessions
                .extend(r.removed_sessions.iter().cloned());
            for s in &r.sessions {
                self.removed_sessions.remove(&s.client_id);
            }
        }
        batch.clear();
        if self.sc.checks.intent {
            let master = self.master_text();
            self.check_master_tokens(&master);
        }
    }

    fn client_of_peer(&self, peer: PeerId) -> Option<usize> {
        self.clients.iter().position(|c| {
            c.conn == peer.0
                && c.engine.is_some()
                && (c.conn_up || self.sc.topology.link == LinkModel::Datagram)
        })
    }

    // ----- network -----------------------------------------------------------------------

    fn link_faults(&self, from: Node, to: Node) -> &LinkFaults {
        let (client, dir) = match (from, to) {
            (Node::Client(c), _) => (c, Direction::Up),
            (_, Node::Client(c)) => (c, Direction::Down),
            _ => return &self.sc.network,
        };
        self.sc
            .links
            .iter()
            .rev()
            .find(|l| l.client == client && (l.direction == dir || l.direction == Direction::Both))
            .map_or(&self.sc.network, |l| &l.faults)
    }

    fn blocked(&self, from: Node, to: Node) -> bool {
        self.partitions.iter().any(|(_, a, b, one_way)| {
            (a.contains(&from) && b.contains(&to))
                || (!one_way && b.contains(&from) && a.contains(&to))
        })
    }

    fn draw_fate(&mut self, from: Node, to: Node) -> Fate {
        let f = self.link_faults(from, to).clone();
        let (lo, hi) = f.latency_ms;
        if !self.random || self.stopped_at.is_some() {
            return Fate::Delay(lo);
        }
        // Latencies come from the network stream, fault decisions from the fault stream.
        let lat = self.rng_net.random_range(lo..=hi);
        let r = &mut self.rng_fault;
        let stream = self.sc.topology.link == LinkModel::Stream;
        if f.drop > 0.0 && r.random_bool(f.drop) {
            return Fate::Drop;
        }
        if stream {
            return Fate::Delay(lat);
        }
        if f.duplicate > 0.0 && r.random_bool(f.duplicate) {
            let lat2 = self.rng_net.random_range(lo..=hi);
            return Fate::Duplicate(lat, lat2);
        }
        if f.corrupt > 0.0 && r.random_bool(f.corrupt) {
            return Fate::Corrupt(lat);
        }
        if f.reorder > 0.0 && r.random_bool(f.reorder) {
            self.summary.reordered += 1;
            return Fate::Delay(lat + f.reorder_delay_ms);
        }
        Fate::Delay(lat)
    }

    fn send(&mut self, from: Node, to: Node, payload: Payload) {
        self.summary.sent += 1;
        let nth = {
            let c = self.link_counts.entry((from, to)).or_insert(0);
            *c += 1;
            *c
        };
        let explicit = self.fates.get(&(from, to, nth)).copied();
        let fate = match explicit {
            Some(f) => f,
            None => self.draw_fate(from, to),
        };
        if self.opts.record {
            self.recorded.push(Timed {
                at_ms: self.now,
                event: Event::Net {
                    from,
                    to,
                    nth,
                    fate,
                },
            });
        }
        let label = payload.label();
        let conn = match (from, to) {
            (Node::Client(i), _) | (_, Node::Client(i)) => self.clients[i].conn,
            _ => 0,
        };
        let stream = self.sc.topology.link == LinkModel::Stream;
        let link = format!("{}->{}#{nth}", node_name(from), node_name(to));
        let chart_idx = self.chart_msg(from, to, label.clone());
        // A datagram sent into a partition is lost; a stream stalls (at delivery time).
        if !stream && self.blocked(from, to) {
            self.summary.dropped += 1;
            self.set_chart(chart_idx, None, "blocked");
            self.log_full("drop", || format!("{link:<12} blocked {label}"));
            return;
        }
        match fate {
            Fate::Drop => {
                self.summary.dropped += 1;
                self.set_chart(chart_idx, None, "dropped");
                self.log_full("drop", || format!("{link:<12} {label}"));
                if stream {
                    self.summary.conn_resets += 1;
                    let i = match (from, to) {
                        (Node::Client(i), _) | (_, Node::Client(i)) => i,
                        _ => return,
                    };
                    self.log("fault", format!("connection of c{i} reset"));
                    self.conn_lost(i, true);
                }
            }
            Fate::Delay(lat) => {
                self.log_full("send", || format!("{link:<12} {label} (+{lat}ms)"));
                self.launch(from, to, conn, payload, lat, chart_idx);
            }
            Fate::Duplicate(l1, l2) => {
                self.summary.duplicated += 1;
                self.log_full("dup", || format!("{link:<12} {label} (+{l1}ms, +{l2}ms)"));
                let copy = self.chart_msg(from, to, format!("{label} (copy)"));
                self.set_chart(copy, None, "duplicate");
                self.launch(from, to, conn, payload.clone(), l1, chart_idx);
                self.launch(from, to, conn, payload, l2, copy);
            }
            Fate::Corrupt(lat) => {
                let mut payload = payload;
                if payload.corrupt() {
                    self.summary.corrupted += 1;
                    self.set_chart(chart_idx, None, "corrupted");
                }
                self.log_full("corrupt", || format!("{link:<12} {label} (+{lat}ms)"));
                self.launch(from, to, conn, payload, lat, chart_idx);
            }
        }
    }

    fn chart_msg(&mut self, from: Node, to: Node, label: String) -> Option<usize> {
        let now = self.now;
        let c = self.chart.as_mut()?;
        if c.messages.len() >= CHART_MAX_MESSAGES {
            return None;
        }
        c.messages.push(ChartMsg {
            from,
            to,
            sent_ms: now,
            delivered_ms: None,
            fate: "sent",
            label,
        });
        Some(c.messages.len() - 1)
    }

    fn set_chart(&mut self, idx: Option<usize>, delivered: Option<u64>, fate: &'static str) {
        if let (Some(c), Some(i)) = (self.chart.as_mut(), idx) {
            let m = &mut c.messages[i];
            if delivered.is_some() {
                m.delivered_ms = delivered;
            }
            if m.fate == "sent" || fate != "sent" {
                m.fate = fate;
            }
        }
    }

    fn launch(
        &mut self,
        from: Node,
        to: Node,
        conn: u64,
        payload: Payload,
        lat: u64,
        chart: Option<usize>,
    ) {
        let mut at = self.now + lat;
        if self.sc.topology.link == LinkModel::Stream {
            let last = self.stream_last.entry((from, to)).or_insert(0);
            at = at.max(*last);
            *last = at;
        }
        let flight = Flight {
            from,
            to,
            conn,
            payload,
            chart,
        };
        let id = self.park(flight);
        self.schedule(at, Ev::Deliver(id));
    }

    fn take_flight(&mut self, id: usize) -> Option<Flight> {
        let f = self.flights.get_mut(id)?.take()?;
        self.free_flights.push(id);
        self.in_flight -= 1;
        self.in_flight_substantive -= usize::from(f.payload.substantive());
        Some(f)
    }

    fn deliver(&mut self, id: usize) {
        let Some(f) = self.take_flight(id) else {
            return;
        };
        let stream = self.sc.topology.link == LinkModel::Stream;
        let client = match (f.from, f.to) {
            (Node::Client(i), _) | (_, Node::Client(i)) => i,
            _ => return,
        };
        let link = (f.from, f.to);
        // Stream links: a message of a closed connection never arrives; a partition stalls.
        if stream {
            if f.conn != self.clients[client].conn || !self.clients[client].conn_up {
                self.summary.dropped += 1;
                self.set_chart(f.chart, None, "dropped");
                return;
            }
            let backlog = self.stalled.get(&link).is_some_and(|q| !q.is_empty());
            if self.blocked(f.from, f.to) || backlog {
                self.set_chart(f.chart, None, "stalled");
                let id = self.park(f);
                self.stalled.entry(link).or_default().push_back(id);
                return;
            }
        } else if self.blocked(f.from, f.to) {
            self.summary.dropped += 1;
            self.set_chart(f.chart, None, "blocked");
            return;
        }
        self.hand_over(f);
    }

    /// Put a message in the flight table (the twin of `take_flight`); a stalled one stays
    /// there, out of the event queue, until its link heals.
    fn park(&mut self, f: Flight) -> usize {
        self.in_flight += 1;
        self.in_flight_substantive += usize::from(f.payload.substantive());
        match self.free_flights.pop() {
            Some(id) => {
                self.flights[id] = Some(f);
                id
            }
            None => {
                self.flights.push(Some(f));
                self.flights.len() - 1
            }
        }
    }

    fn hand_over(&mut self, f: Flight) {
        let label = f.payload.label();
        let link = format!("{}->{}", node_name(f.from), node_name(f.to));
        match (f.to, f.payload) {
            (Node::Server, Payload::Up(msg)) => {
                let Node::Client(_) = f.from else { return };
                if self.server.is_none() {
                    self.summary.dropped += 1;
                    self.set_chart(f.chart, None, "dropped");
                    return;
                }
                self.summary.delivered += 1;
                self.set_chart(f.chart, Some(self.now), "sent");
                self.log_full("deliver", || format!("{link:<12} {label}"));
                self.ensure_loaded(&msg);
                // The sender's address is the one it was sent from: a datagram from a client's
                // previous life comes from that life's peer, never from the restarted client's
                // (crediting it to the new one made the server skip the new client's requests as
                // stale for a minute: scenarios/regressions/old-datagram-after-restart-min.ron).
                let peer = PeerId(f.conn);
                let now = Time(self.now);
                if let Some(s) = self.server.as_mut() {
                    s.handle_message(now, peer, msg);
                }
                self.server_out();
            }
            (Node::Client(i), Payload::Down(msg)) => {
                if self.clients[i].engine.is_none() {
                    self.summary.dropped += 1;
                    self.set_chart(f.chart, None, "dropped");
                    return;
                }
                self.summary.delivered += 1;
                self.set_chart(f.chart, Some(self.now), "sent");
                self.log_full("deliver", || format!("{link:<12} {label}"));
                let now = self.node_now(Node::Client(i));
                if let Some(e) = self.clients[i].engine.as_mut() {
                    e.handle_message(now, msg);
                }
                self.client_out(i);
            }
            _ => {}
        }
    }

    fn ensure_loaded(&mut self, msg: &ClientMsg) {
        let Some(server) = self.server.as_ref() else {
            return;
        };
        let Some(doc) = server.document_needed(msg).map(str::to_string) else {
            return;
        };
        let stored = match self.store.load(&doc) {
            Ok(d) => d.unwrap_or_default(),
            Err(e) => return self.fail(CheckKind::Safety, format!("store load failed: {e}")),
        };
        let text = stored.text.clone();
        if let Some(s) = self.server.as_mut() {
            if let Err(e) = s.load_document(&doc, stored) {
                return self.fail(CheckKind::Safety, format!("load_document failed: {e}"));
            }
            // Safety: after a (re)load the master is exactly the last committed state.
            if s.master(&doc) != Some(text.as_str()) {
                self.fail(
                    CheckKind::Safety,
                    "loaded master differs from the committed store".into(),
                );
            }
        }
    }

    fn heal(&mut self) {
        self.partitions.clear();
        self.release_stalled();
    }

    /// Lift one partition (its `for_ms` ran out).
    fn unpartition(&mut self, id: u64) {
        let Some(i) = self.partitions.iter().position(|p| p.0 == id) else {
            return;
        };
        let (_, a, b, one_way) = self.partitions.remove(i);
        self.fault(format!(
            "heal partition [{}] | [{}] {}",
            node_list(&a),
            node_list(&b),
            if one_way { "one-way" } else { "symmetric" }
        ));
        self.release_stalled();
    }

    /// Send on what stalled on links that no partition blocks any more.
    fn release_stalled(&mut self) {
        let links: Vec<(Node, Node)> = self
            .stalled
            .keys()
            .copied()
            .filter(|&(from, to)| !self.blocked(from, to))
            .collect();
        for link in links {
            let ids: Vec<usize> = self
                .stalled
                .remove(&link)
                .map(Vec::from)
                .unwrap_or_default();
            for id in ids {
                if let Some(f) = self.take_flight(id) {
                    // Resent in order after the heal, each with the link's minimum latency.
                    let lat = self.link_faults(f.from, f.to).latency_ms.0;
                    self.launch(f.from, f.to, f.conn, f.payload, lat, f.chart);
                }
            }
        }
    }

    // ----- timeline and workloads -------------------------------------------------------

    fn script(&mut self, ev: Event) {
        match ev {
            Event::Partition {
                a,
                b,
                one_way,
                for_ms,
            } => {
                let kind = if one_way { "one-way" } else { "symmetric" };
                self.fault(format!(
                    "partition [{}] | [{}] {kind}",
                    node_list(&a),
                    node_list(&b)
                ));
                let id = self.next_partition;
                self.next_partition += 1;
                self.partitions.push((id, a, b, one_way));
                if let Some(d) = for_ms {
                    self.schedule(self.now + d, Ev::Unpartition(id));
                }
            }
            Event::Heal => {
                self.fault("heal".into());
                self.heal();
            }
            Event::Crash(n) => self.crash(n),
            Event::Halt(n) => {
                self.halted.insert(n);
                self.crash(n);
            }
            Event::Restart(n) => {
                self.halted.remove(&n);
                self.restart(n);
            }
            Event::Insert { client, pos, text } => {
                self.local_edit(client, LocalEdit::Insert { pos, text })
            }
            Event::Delete { client, pos, len } => {
                self.local_edit(client, LocalEdit::Delete { pos, len })
            }
            Event::InsertToken {
                client,
                slot,
                token,
            } => self.local_edit(client, LocalEdit::InsertToken { slot, token }),
            Event::DeleteToken { client, token } => {
                self.local_edit(client, LocalEdit::DeleteToken { token })
            }
            Event::StopFaults => self.stop_faults(),
            Event::DropMessage { .. } | Event::Net { .. } => {}
        }
    }

    fn stop_faults(&mut self) {
        if self.stopped_at.is_some() {
            return;
        }
        self.stopped_at = Some(self.now);
        self.deadline = Some(self.now + self.sc.checks.converge_within_ms);
        self.schedule(self.now + self.sc.checks.converge_within_ms, Ev::Deadline);
        self.fault("stop faults: heal, restart crashed nodes, quiet network".into());
        self.heal();
        if self.server.is_none() && !self.halted.contains(&Node::Server) {
            self.restart(Node::Server);
        }
        for i in 0..self.clients.len() {
            if self.clients[i].engine.is_none() && !self.halted.contains(&Node::Client(i)) {
                self.restart(Node::Client(i));
            }
        }
        if self.opts.record {
            self.recorded.push(Timed {
                at_ms: self.now,
                event: Event::StopFaults,
            });
        }
    }

    fn start_workloads(&mut self) {
        if !self.random {
            return;
        }
        let n = self.clients.len();
        let pick = |list: &[usize]| -> Vec<usize> {
            if list.is_empty() {
                (0..n).collect()
            } else {
                list.to_vec()
            }
        };
        if let Some(t) = self.sc.workload.typing.clone() {
            for i in pick(&t.clients) {
                let gap = self.typing_gap(t.rate_per_s);
                self.schedule(t.from_ms + gap, Ev::Typing(i));
            }
        }
        if let Some(t) = self.sc.workload.tokens.clone() {
            for i in pick(&t.clients) {
                let gap = self.rng_work.random_range(0..=t.every_ms * 2);
                self.schedule(t.from_ms + gap, Ev::Token(i));
            }
        }
    }

    fn typing_gap(&mut self, rate: f64) -> u64 {
        let mean = 1000.0 / rate;
        (self.rng_work.random_range(0.0..2.0) * mean) as u64 + 1
    }

    fn typing(&mut self, i: usize) {
        let Some(t) = self.sc.workload.typing.clone() else {
            return;
        };
        if self.now >= t.until_ms || self.stopped_at.is_some() {
            return;
        }
        let alphabet: Vec<char> = t
            .alphabet
            .as_deref()
            .unwrap_or("abcdefghijklmnopqrstuvwxyz ")
            .chars()
            .collect();
        let len = self.clients[i]
            .engine
            .as_ref()
            .map_or(0, |e| e.text().chars().count());
        let del = len > 0 && self.rng_work.random_bool(t.delete_chance.clamp(0.0, 1.0));
        let pos = self.rng_work.random_range(0..=len);
        let ch = alphabet[self.rng_work.random_range(0..alphabet.len())];
        let gap = self.typing_gap(t.rate_per_s);
        self.schedule(self.now + gap, Ev::Typing(i));
        let edit = if del {
            LocalEdit::Delete {
                pos: pos.min(len - 1),
                len: 1,
            }
        } else {
            LocalEdit::Insert {
                pos,
                text: ch.to_string(),
            }
        };
        self.local_edit(i, edit);
    }

    fn token_action(&mut self, i: usize) {
        let Some(t) = self.sc.workload.tokens.clone() else {
            return;
        };
        if self.now >= t.until_ms || self.stopped_at.is_some() {
            return;
        }
        let gap = self.rng_work.random_range(1..=t.every_ms * 2);
        self.schedule(self.now + gap, Ev::Token(i));
        let text = self.clients[i]
            .engine
            .as_ref()
            .map(|e| e.text().to_string())
            .unwrap_or_default();
        let visible: Vec<String> = tokens_in(&text)
            .map(|m| m.keys().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        let del = !visible.is_empty() && self.rng_work.random_bool(t.delete_chance.clamp(0.0, 1.0));
        let pick = self.rng_work.random_range(0..usize::MAX);
        let edit = if del {
            LocalEdit::DeleteToken {
                token: visible[pick % visible.len()].clone(),
            }
        } else {
            let k = self.clients[i].next_token;
            self.clients[i].next_token += 1;
            LocalEdit::InsertToken {
                slot: pick,
                token: format!("⟨{i}:{k}⟩"),
            }
        };
        self.local_edit(i, edit);
    }

    fn local_edit(&mut self, i: usize, edit: LocalEdit) {
        let inc = self.clients[i].incarnation;
        let Some(engine) = self.clients[i].engine.as_mut() else {
            self.log_full("edit", || format!("c{i} is down; edit ignored"));
            return;
        };
        let before = engine.text().to_string();
        let len = before.chars().count();
        // Where a token went (char position), for the order oracle.
        let mut token_at = None;
        let (desc, recorded) = match &edit {
            LocalEdit::Insert { pos, text } => {
                let p = (*pos).min(len);
                let _ = engine.insert(p, text);
                (
                    format!("+{:?}@{p}", excerpt(text)),
                    Event::Insert {
                        client: i,
                        pos: p,
                        text: text.clone(),
                    },
                )
            }
            LocalEdit::Delete { pos, len: n } => {
                let p = (*pos).min(len);
                let e = (p + n).min(len);
                let _ = engine.delete(p, e);
                (
                    format!("-{}@{p}", e - p),
                    Event::Delete {
                        client: i,
                        pos: p,
                        len: e - p,
                    },
                )
            }
            LocalEdit::InsertToken { slot, token } => {
                let slots = token_slots(&before);
                let p = slots[slot % slots.len()];
                let _ = engine.insert(p, token);
                token_at = Some(p);
                (
                    format!("+{token}@{p}"),
                    Event::InsertToken {
                        client: i,
                        slot: *slot,
                        token: token.clone(),
                    },
                )
            }
            LocalEdit::DeleteToken { token } => {
                let d = match before.find(token.as_str()) {
                    Some(b) => {
                        let p = before[..b].chars().count();
                        let _ = engine.delete(p, p + token.chars().count());
                        format!("-{token}@{p}")
                    }
                    None => format!("-{token} (not visible)"),
                };
                (
                    d,
                    Event::DeleteToken {
                        client: i,
                        token: token.clone(),
                    },
                )
            }
        };
        let after = engine.text().to_string();
        self.summary.edits += 1;
        self.ledger.edit(i, &before, &after);
        match &edit {
            LocalEdit::Insert { .. } | LocalEdit::Delete { .. } => self.plain_edits = true,
            LocalEdit::InsertToken { token, .. } if before != after => {
                // Its neighbours where it went: the last token ending at or before it, the
                // first starting at or after it.
                let p = token_at.unwrap_or(0);
                let at = before
                    .char_indices()
                    .nth(p)
                    .map_or(before.len(), |(b, _)| b);
                let spans = token_spans(&before);
                let left = spans.iter().rev().find(|(_, e, _)| *e <= at).map(|s| s.2);
                let right = spans.iter().find(|(b, _, _)| *b >= at).map(|s| s.2);
                self.order.placed(left, token, right);
            }
            _ => {}
        }
        if self.sc.checks.intent {
            let b = tokens_in(&before).unwrap_or_default();
            let a = tokens_in(&after).unwrap_or_default();
            for t in a.keys().filter(|t| !b.contains_key(*t)) {
                self.book.inserted.entry(t.to_string()).or_insert((i, inc));
            }
            for t in b.keys().filter(|t| !a.contains_key(*t)) {
                self.book.deleted.entry(t.to_string()).or_insert((i, inc));
            }
        }
        if self.opts.record {
            self.recorded.push(Timed {
                at_ms: self.now,
                event: recorded,
            });
        }
        self.log_full("edit", || format!("c{i} {desc} text={}", digest(&after)));
    }

    // ----- checks ------------------------------------------------------------------------

    fn master_text(&self) -> String {
        match self.server.as_ref().and_then(|s| s.master(DOC)) {
            Some(m) => m.to_string(),
            None => self
                .store
                .load(DOC)
                .ok()
                .flatten()
                .map(|d| d.text)
                .unwrap_or_default(),
        }
    }

    /// Safety: versions only move forward within a session (a reset may move them).
    fn check_versions(&mut self) {
        for i in 0..self.clients.len() {
            let Some(e) = self.clients[i].engine.as_ref() else {
                continue;
            };
            // Everything this client typed so far is acknowledged, hence durable.
            if self.ledger.has_unsettled(i) && e.is_settled() {
                self.ledger.settled(i);
            }
            let sh = e.shadow();
            let now = (sh.client_version, sh.server_version, e.stats().resets);
            let (n0, m0, r0) = self.clients[i].last_versions;
            if now.2 == r0 && (now.0 < n0 || now.1 < m0) {
                let detail = format!(
                    "c{i} versions went back from (n={n0}, m={m0}) to (n={}, m={})",
                    now.0, now.1
                );
                self.fail(CheckKind::Safety, detail);
            }
            self.clients[i].last_versions = now;
        }
    }

    /// Safety: durability of acknowledgements. Every edit a client saw acknowledged is in the
    /// store: the client's session there has applied at least as many of its edits (the
    /// server commits before it acknowledges, and applies each version once). Checked against
    /// the store's own content after every server crash and at the end.
    fn check_durable(&mut self, when: &str) {
        let stored = match self.store.load(DOC) {
            Ok(d) => d.unwrap_or_default(),
            Err(e) => return self.fail(CheckKind::Safety, format!("store load failed: {e}")),
        };
        for i in 0..self.clients.len() {
            let Some(e) = self.clients[i].engine.as_ref() else {
                continue;
            };
            let acked = e
                .pending()
                .first()
                .map_or(e.shadow().client_version, |p| p.version());
            if acked == 0 || self.removed_sessions.contains(e.client_id()) {
                continue;
            }
            let held = stored
                .sessions
                .iter()
                .find(|s| s.client_id == e.client_id())
                .map(|s| s.shadow.client_version);
            if held.is_none_or(|n| n < acked) {
                let held = held.map_or("no session".to_string(), |n| format!("n={n}"));
                let detail = format!(
                    "durability {when}: c{i} saw its edits up to n={acked} acknowledged, but the \
                     store holds {held} for {}",
                    e.client_id()
                );
                return self.fail(CheckKind::Safety, detail);
            }
        }
    }

    /// Liveness during faults, for runs that draw their faults (explicit timelines name each
    /// message's fate): see [`Progress`].
    fn check_progress(&mut self) {
        if !self.random || self.stopped_at.is_some() || self.verdict.is_some() {
            return;
        }
        for i in 0..self.clients.len() {
            let state = self.progress_state(i);
            // A slow clock stretches the client's timers.
            let slow = (-self.clients[i].drift_pct).clamp(0, 50) as u64;
            let bound = PROGRESS_WITHIN_MS * 100 / (100 - slow);
            if let Err(stuck) = self.progress.observe(i, self.now, state, bound) {
                return self.fail(
                    CheckKind::Liveness,
                    format!(
                        "no progress during faults: c{i} could reach the server over a clean \
                         link for {:.3}s with typing to send, and none of it was acknowledged",
                        stuck as f64 / 1000.0
                    ),
                );
            }
        }
    }

    /// Client `i`'s acknowledgement marker when it is reachable with typing to send.
    fn progress_state(&self, i: usize) -> Option<Marker> {
        let e = self.clients[i].engine.as_ref()?;
        self.server.as_ref()?;
        let (c, s) = (Node::Client(i), Node::Server);
        let clean = |f: &LinkFaults| f.drop == 0.0 && f.corrupt == 0.0;
        if self.blocked(c, s)
            || self.blocked(s, c)
            || !clean(self.link_faults(c, s))
            || !clean(self.link_faults(s, c))
        {
            return None;
        }
        let oldest = e.pending().first().map(|p| p.version());
        if oldest.is_none() && e.text() == e.shadow().text {
            return None;
        }
        let acked_below = oldest.unwrap_or(e.shadow().client_version);
        Some((acked_below, e.stats().resets))
    }

    /// Safety: merges stay exact. A failed exact merge is a bookkeeping bug; a session whose
    /// exact change was lost is one too, unless the change log overflowed its limit.
    fn check_exact(&mut self) {
        let mut server = self.server_past;
        if let Some(s) = &self.server {
            server.add(s.stats());
        }
        let mut merge_fallbacks = server.merge_fallbacks;
        for c in &self.clients {
            merge_fallbacks += c.past.merge_fallbacks;
            merge_fallbacks += c.engine.as_ref().map_or(0, |e| e.stats().merge_fallbacks);
        }
        if merge_fallbacks > 0 {
            return self.fail(
                CheckKind::Safety,
                format!("{merge_fallbacks} exact merges failed and fell back to texts"),
            );
        }
        if server.link_fallbacks > 0 && server.log_overflows == 0 {
            self.fail(
                CheckKind::Safety,
                "a session's exact change to the master was lost without a log overflow; a diff stood in"
                    .into(),
            );
        }
    }

    /// Safety (token runs): the master never holds a duplicated or invented token.
    fn check_master_tokens(&mut self, master: &str) {
        match tokens_in(master) {
            Err(why) => self.fail(CheckKind::Intent, format!("master: {why}")),
            Ok(map) => {
                for (t, n) in map {
                    if n > 1 {
                        return self.fail(CheckKind::Intent, format!("master holds {t} {n} times"));
                    }
                    if !self.book.inserted.contains_key(t) {
                        return self.fail(
                            CheckKind::Intent,
                            format!("master holds {t}, which nobody inserted"),
                        );
                    }
                }
            }
        }
    }

    fn check_intent_final(&mut self, master: &str) {
        if !self.sc.checks.intent {
            return;
        }
        // Every run: the text accounts for what users typed and deleted.
        let may_drop = self.config.merge == MergeStrategy::FuzzyPatch;
        match self.ledger.check(master, may_drop) {
            Ok(line) => self.log("check", line),
            Err(why) => return self.fail(CheckKind::Intent, why),
        }
        if self.book.inserted.is_empty() && self.book.deleted.is_empty() {
            return;
        }
        self.check_master_tokens(master);
        if self.verdict.is_some() {
            return;
        }
        let present = tokens_in(master).unwrap_or_default();
        let mut lost = Vec::new();
        let mut resurrected = Vec::new();
        for t in self.book.inserted.keys() {
            let here = present.contains_key(t.as_str());
            let deleted = self.book.deleted.contains_key(t);
            if !deleted && !here && !self.book.lost_ok.contains(t) {
                lost.push(t.clone());
            }
            if deleted && here && !self.book.resurrect_ok.contains(t) {
                resurrected.push(t.clone());
            }
        }
        if !lost.is_empty() {
            let n = lost.len();
            lost.truncate(5);
            return self.fail(
                CheckKind::Intent,
                format!("{n} tokens lost, e.g. {}", lost.join(" ")),
            );
        }
        if !resurrected.is_empty() {
            let n = resurrected.len();
            resurrected.truncate(5);
            self.fail(
                CheckKind::Intent,
                format!(
                    "{n} deleted tokens came back, e.g. {}",
                    resurrected.join(" ")
                ),
            );
        }
        // Order: a token stays between the tokens it was placed between.
        let positions: BTreeMap<&str, usize> = token_spans(master)
            .into_iter()
            .enumerate()
            .map(|(k, (_, _, t))| (t, k))
            .collect();
        let judged = match self.order.check(&positions) {
            Ok(n) => n,
            Err(why) => return self.fail(CheckKind::Intent, why),
        };
        // Text between tokens: with tokens only, it is the initial text, untouched.
        if !self.plain_edits {
            let mut between = String::with_capacity(master.len());
            let mut last = 0;
            for (b, e, _) in token_spans(master) {
                between.push_str(&master[last..b]);
                last = e;
            }
            between.push_str(&master[last..]);
            if between != self.sc.topology.initial_text {
                return self.fail(
                    CheckKind::Intent,
                    format!(
                        "the text between tokens changed: {:?}, expected the initial {:?}",
                        excerpt(&between),
                        excerpt(&self.sc.topology.initial_text)
                    ),
                );
            }
        }
        let kept = present.len();
        self.log(
            "check",
            format!(
                "intent ok: {kept} tokens present, {} inserted, {} deleted, {judged} orders kept",
                self.book.inserted.len(),
                self.book.deleted.len()
            ),
        );
    }

    /// Liveness: everything agrees, nothing pending or in flight.
    fn converged(&self) -> Result<(), String> {
        let Some(server) = self.server.as_ref() else {
            return Err("server down".into());
        };
        // Empty polls and their empty replies may be under way: they change nothing.
        if self.in_flight_substantive > 0 {
            return Err(format!(
                "{} messages with edits in flight",
                self.in_flight_substantive
            ));
        }
        let Some(master) = server.master(DOC) else {
            return Err("document not loaded".into());
        };
        for (i, c) in self.clients.iter().enumerate() {
            let Some(e) = c.engine.as_ref() else {
                return Err(format!("c{i} down"));
            };
            if !e.is_connected() || !e.pending().is_empty() || e.text() != e.shadow().text {
                return Err(format!("c{i} not settled (pending={})", e.pending().len()));
            }
            if e.text() != master {
                return Err(format!(
                    "c{i} text {} != master {}",
                    digest(e.text()),
                    digest(master)
                ));
            }
            let Some((shadow, _)) = server.session(DOC, e.client_id()) else {
                return Err(format!("no server session for c{i}"));
            };
            if shadow != e.shadow() {
                return Err(format!(
                    "c{i} shadow (n={}, m={}) != server's (n={}, m={})",
                    e.shadow().client_version,
                    e.shadow().server_version,
                    shadow.client_version,
                    shadow.server_version
                ));
            }
            if server.pending_len(DOC, e.client_id()) != Some(0) {
                return Err(format!("server has edits pending for c{i}"));
            }
        }
        Ok(())
    }

    fn sample(&mut self) {
        if self.chart.is_none() || self.last_sample.is_some_and(|t| self.now < t + 100) {
            return;
        }
        self.last_sample = Some(self.now);
        let master = self.master_text();
        let row: Vec<Option<u64>> = self
            .clients
            .iter()
            .map(|c| c.engine.as_ref().map(|e| divergence(e.text(), &master)))
            .collect();
        let now = self.now;
        if let Some(c) = self.chart.as_mut() {
            c.divergence.push((now, row));
        }
    }

    fn finish(mut self) -> Report {
        self.check_durable("at the end");
        let mut server = self.server_past;
        if let Some(s) = &self.server {
            server.add(s.stats());
        }
        let mut client = Stats::default();
        for c in &self.clients {
            client.add(&c.past);
            if let Some(e) = &c.engine {
                client.add(e.stats());
            }
        }
        let s = &mut self.summary;
        s.sim_ms = self.now;
        s.resets = client.resets;
        s.rollbacks = server.rollbacks;
        s.retransmits = client.retransmits;
        s.duplicates_skipped = server.duplicates_skipped + client.duplicates_skipped;
        s.stale_skipped = server.stale_skipped + client.stale_skipped;
        s.patches_dropped = server.patches_dropped + client.patches_dropped;
        s.resumes = server.resumes;
        s.link_fallbacks = server.link_fallbacks;
        s.log_overflows = server.log_overflows;
        s.merge_fallbacks = server.merge_fallbacks + client.merge_fallbacks;
        s.inexact_resets = client.inexact_resets;
        let final_text = self.master_text();
        self.summary.final_digest = digest(&final_text);
        let mut node_texts = vec![(
            "S".to_string(),
            self.server.as_ref().map(|_| final_text.clone()),
        )];
        for (i, c) in self.clients.iter().enumerate() {
            node_texts.push((
                format!("c{i}"),
                c.engine.as_ref().map(|e| e.text().to_string()),
            ));
        }
        let line = self.summary.line();
        if self.opts.trace != TraceLevel::None {
            self.trace.push(line);
        }
        Report {
            settings: Self::settings(self.sc, &self.opts),
            trace: self.trace,
            summary: self.summary,
            verdict: self.verdict.unwrap_or(Verdict::Pass),
            recorded: self.recorded,
            chart: self.chart,
            final_text,
            node_texts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_parsing() {
        let m = tokens_in("⟨1:2⟩⟨3:4⟩x⟨1:2⟩").unwrap();
        assert_eq!(m["⟨1:2⟩"], 2);
        assert!(tokens_in("⟨1:2").is_err());
        assert!(tokens_in("⟨1:2⟩⟩").is_err());
        assert!(tokens_in("⟨a:2⟩").is_err());
        assert_eq!(token_slots("⟨1:2⟩ab⟨3:4⟩"), vec![0, 5, 12]);
    }
}
