//! Scenario files: RON, every field documented in `scenarios/README.md`, unknown fields refused,
//! errors with line and column. Times are integer milliseconds of virtual time.

use serde::{Deserialize, Serialize};

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, shown in traces.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Seed of every random stream. `None` makes every random fault and workload inert: the
    /// run is fully described by the timeline (shrunk files are like that).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Clients, initial text, link model.
    pub topology: Topology,
    /// Engine settings shared by all nodes.
    #[serde(default)]
    pub engine: EngineSettings,
    /// Fault defaults for every link, both directions.
    #[serde(default)]
    pub network: LinkFaults,
    /// Per-link overrides.
    #[serde(default)]
    pub links: Vec<LinkOverride>,
    /// Generated edits.
    #[serde(default)]
    pub workload: Workload,
    /// Random faults of the server's disk.
    #[serde(default)]
    pub storage: StorageFaults,
    /// Explicit events.
    #[serde(default)]
    pub timeline: Vec<Timed>,
    /// Checks and bounds.
    pub checks: Checks,
    /// The verdict the run must reach.
    #[serde(default)]
    pub expect: Expect,
}

/// Who is in the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Number of clients (1 to 256).
    pub clients: usize,
    /// The document's text before anyone connects.
    #[serde(default)]
    pub initial_text: String,
    /// How links carry messages.
    #[serde(default)]
    pub link: LinkModel,
    /// Per-client clock drift in percent (index = client); missing entries are 0. A client
    /// with +10 has a clock that runs 10% fast relative to the server's: its timers fire 10%
    /// early. From -50 to +100.
    #[serde(default)]
    pub clock_drift_pct: Vec<i32>,
}

/// How a link carries messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LinkModel {
    /// In order, like TCP: no holes. A partition stalls it; `drop` is the chance that a message
    /// resets the connection (both ends notice, the client reconnects). Frames may be split
    /// (`split`) and are coalesced when they would arrive together. `duplicate` and `reorder`
    /// do not apply.
    #[default]
    Stream,
    /// Independent messages: each may be dropped, duplicated, delayed past later ones or
    /// corrupted. A partition drops.
    Datagram,
}

/// The merge strategy, as named in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Merge {
    /// Three-way merge (the default).
    #[default]
    ThreeWay,
    /// Fraser's fuzzy patch.
    FuzzyPatch,
    /// Last writer wins (unsafe baseline).
    Overwrite,
}

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Client sync cycle.
    pub sync_interval_ms: u64,
    /// Client resend timeout.
    pub retransmit_ms: u64,
    /// Heartbeat; a peer silent for 3 of them is dropped.
    pub heartbeat_ms: u64,
    /// Merge strategy.
    pub merge: Merge,
    /// Most exact master changes the server keeps (default: the engine's 4,096). A small value
    /// makes idle sessions outrun the log, so their next merge falls back to a diff once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_log_entries: Option<usize>,
    /// Largest frame either node accepts, in bytes (default: what the engine's limits need,
    /// about 67 MiB). A smaller one keeps garbage past the limit cheap; a legal frame larger
    /// than it is refused like any other, and the run shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_frame_bytes: Option<usize>,
    /// Clients ask for `changed` hints (default: yes). The regression scenarios shrunk before
    /// hints existed turn them off, with the idle back-off, so their message flow is the one
    /// they were recorded with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hints: Option<bool>,
    /// Longest client sync cycle while nothing changes (default: the engine's 2,000 ms;
    /// `sync_interval_ms` or less: no back-off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_idle_sync_ms: Option<u64>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            sync_interval_ms: 500,
            retransmit_ms: 2_000,
            heartbeat_ms: 30_000,
            merge: Merge::ThreeWay,
            max_log_entries: None,
            max_frame_bytes: None,
            hints: None,
            max_idle_sync_ms: None,
        }
    }
}

/// Random faults of one link direction. Probabilities are per message, 0.0 to 1.0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkFaults {
    /// Latency, uniform in `[min, max]` ms.
    pub latency_ms: (u64, u64),
    /// Chance a message is lost (stream: the connection resets).
    pub drop: f64,
    /// Chance a message arrives twice (datagram).
    pub duplicate: f64,
    /// Chance a message is held back by `reorder_delay_ms` extra (datagram).
    pub reorder: f64,
    /// Extra delay of a reordered message.
    pub reorder_delay_ms: u64,
    /// Chance a frame's bytes are damaged in flight: three times in four, for a frame with an
    /// edit, a byte of that edit's delta or text changed (`Corrupt`: the checksum or the delta
    /// codec catches it); otherwise a byte made invalid UTF-8 or the frame cut short (`Mangle`:
    /// decoding catches it). On streams this models damage the transport missed.
    pub corrupt: f64,
    /// Stream: chance a frame is split in two pieces that travel with their own latencies (the
    /// receiver's line splitter must join them).
    pub split: f64,
    /// Chance a line of garbage goes ahead of a frame (sometimes longer than the frame limit).
    pub garbage: f64,
}

impl Default for LinkFaults {
    fn default() -> Self {
        LinkFaults {
            latency_ms: (10, 60),
            drop: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay_ms: 300,
            corrupt: 0.0,
            split: 0.0,
            garbage: 0.0,
        }
    }
}

/// Random faults of the server's disk, drawn per commit (a batch of inputs that produced
/// persist records or not). Probabilities 0.0 to 1.0; after each fault the server is restarted
/// `restart_ms` later (a supervisor), on the store as the fault left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageFaults {
    /// Chance a commit fails (disk full, I/O error): nothing of the batch is durable or
    /// acknowledged, and the server stops.
    pub fail: f64,
    /// Chance the server crashes after a commit returned and before it sent anything.
    pub crash_after_commit: f64,
    /// Chance the server crashes inside a batch: inputs handled, nothing committed.
    pub crash_in_batch: f64,
    /// Delay before the server is restarted after a storage fault.
    pub restart_ms: u64,
    /// How long after its first input a batch is committed (inputs arriving meanwhile join it;
    /// 0 = at the same instant, after what is already queued for it).
    pub commit_ms: u64,
}

impl Default for StorageFaults {
    fn default() -> Self {
        StorageFaults {
            fail: 0.0,
            crash_after_commit: 0.0,
            crash_in_batch: 0.0,
            restart_ms: 500,
            commit_ms: 0,
        }
    }
}

/// What happened to one commit (written by `shrink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommitFate {
    /// The commit failed; the server stopped.
    Fail,
    /// The commit returned; the server crashed before sending.
    CrashAfterCommit,
    /// The server crashed with the batch handled and not committed.
    CrashInBatch,
}

/// Which direction of a client's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
    /// Both.
    Both,
}

/// Faults for one client's link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOverride {
    /// The client.
    pub client: usize,
    /// Which direction.
    pub direction: Direction,
    /// The faults, replacing the defaults.
    pub faults: LinkFaults,
}

/// Generated edits (from the workload random stream).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Random typing.
    pub typing: Option<Typing>,
    /// The unique-token workload.
    pub tokens: Option<Tokens>,
}

/// Random typing: single-char inserts and deletes at random places.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Typing {
    /// Which clients type (empty: all).
    #[serde(default)]
    pub clients: Vec<usize>,
    /// Keystrokes per second per client.
    pub rate_per_s: f64,
    /// Start.
    #[serde(default)]
    pub from_ms: u64,
    /// End (typing also stops at `StopFaults`).
    pub until_ms: u64,
    /// Characters typed (default: lowercase letters and space).
    #[serde(default)]
    pub alphabet: Option<String>,
    /// Chance a keystroke is a delete.
    #[serde(default)]
    pub delete_chance: f64,
}

impl Typing {
    /// The characters typed: `alphabet`, or lowercase letters and space.
    pub fn chars(&self) -> Vec<char> {
        self.alphabet
            .as_deref()
            .unwrap_or("abcdefghijklmnopqrstuvwxyz ")
            .chars()
            .collect()
    }
}

/// Each client inserts unique tokens `⟨client:k⟩` between tokens and deletes tokens it sees,
/// so the right final text is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// Which clients (empty: all).
    #[serde(default)]
    pub clients: Vec<usize>,
    /// Mean gap between a client's actions.
    pub every_ms: u64,
    /// Chance an action deletes a visible token instead of inserting.
    #[serde(default)]
    pub delete_chance: f64,
    /// Start.
    #[serde(default)]
    pub from_ms: u64,
    /// End (also stops at `StopFaults`).
    pub until_ms: u64,
}

/// A node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Node {
    /// The server.
    Server,
    /// Client number i.
    Client(usize),
}

/// What the network did with one message (recorded by `shrink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fate {
    /// Lost (stream: connection reset).
    Drop,
    /// Delivered once after this latency.
    Delay(u64),
    /// Delivered twice, after these latencies.
    Duplicate(u64, u64),
    /// Delivered after this latency with a byte of its first edit changed (a frame without an
    /// edit is delivered as it is).
    Corrupt(u64),
    /// Delivered after this latency with bytes that break decoding (invalid UTF-8, or cut short).
    Mangle(u64),
    /// Stream: split in two pieces delivered after these latencies.
    Split(u64, u64),
    /// Delivered after this latency, behind a line of garbage.
    Garbage(u64),
}

/// An event of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// Block messages from `a` to `b` (and `b` to `a` unless `one_way`).
    Partition {
        /// One side.
        a: Vec<Node>,
        /// The other side.
        b: Vec<Node>,
        /// Only `a` → `b` is blocked.
        #[serde(default)]
        one_way: bool,
        /// Lift this partition (only this one) after this long; without it the partition lasts
        /// until a `Heal` or the end of faults.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        for_ms: Option<u64>,
    },
    /// Lift every partition.
    Heal,
    /// Crash a node (a client loses its unsent typing; the server keeps what it committed).
    Crash(Node),
    /// Crash a node for good: the end of faults does not restart it (only an explicit
    /// `Restart` does). A server down for good makes the run fail its liveness check.
    Halt(Node),
    /// Restart a crashed node (a client comes back as a new client id).
    Restart(Node),
    /// Client inserts text at a char position (clamped).
    Insert {
        /// Who.
        client: usize,
        /// Char position.
        pos: usize,
        /// Text.
        text: String,
    },
    /// Client deletes `len` chars at a char position (clamped).
    Delete {
        /// Who.
        client: usize,
        /// Char position.
        pos: usize,
        /// Length in chars.
        len: usize,
    },
    /// Client inserts a token at token boundary number `slot` (modulo the boundaries it sees).
    InsertToken {
        /// Who.
        client: usize,
        /// Boundary index.
        slot: usize,
        /// The token, e.g. `⟨0:3⟩`.
        token: String,
    },
    /// Client deletes a token if it sees it.
    DeleteToken {
        /// Who.
        client: usize,
        /// The token.
        token: String,
    },
    /// Drop the nth (from 1) message sent from `from` to `to`.
    DropMessage {
        /// Sender.
        from: Node,
        /// Receiver.
        to: Node,
        /// Which one, counting from 1.
        nth: u64,
    },
    /// The network's choice for the nth message on a link (written by `shrink`).
    Net {
        /// Sender.
        from: Node,
        /// Receiver.
        to: Node,
        /// Which one, counting from 1.
        nth: u64,
        /// What happened to it.
        fate: Fate,
    },
    /// The fate of the server's nth commit (counting from 1; written by `shrink`).
    Commit {
        /// Which one, counting from 1.
        nth: u64,
        /// What happened to it.
        fate: CommitFate,
    },
    /// End of the fault phase: heal, restart crashed nodes, stop random faults and workloads.
    StopFaults,
}

/// An event at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timed {
    /// When.
    pub at_ms: u64,
    /// What.
    pub event: Event,
}

/// Checks and their bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// When faults stop, if no `StopFaults` event comes earlier.
    pub stop_faults_at_ms: u64,
    /// Everything must agree within this long after faults stop.
    pub converge_within_ms: u64,
    /// Check token intent (every surviving token once, none invented, none lost).
    #[serde(default)]
    pub intent: bool,
}

/// The verdict a scenario expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Expect {
    /// Every check passes.
    #[default]
    Pass,
    /// The intent check fails (used to show what the harness catches).
    FailIntent,
    /// The liveness check fails.
    FailLiveness,
    /// A safety check fails.
    FailSafety,
}

impl Expect {
    /// The expected verdict in words.
    pub fn describe(self) -> &'static str {
        match self {
            Expect::Pass => "every check to pass",
            Expect::FailIntent => "the intent check to fail",
            Expect::FailLiveness => "the liveness check to fail",
            Expect::FailSafety => "a safety check to fail",
        }
    }
}

/// A scenario file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// RON syntax or schema error, with position.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// File name.
        file: String,
        /// Line (1-based).
        line: usize,
        /// Column (1-based).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The file parsed but makes no sense.
    #[error("{file}: {message}")]
    Invalid {
        /// File name.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The file could not be read.
    #[error("{file}: {error}")]
    Io {
        /// File name.
        file: String,
        /// The I/O error.
        error: std::io::Error,
    },
}

/// Largest accepted client count.
pub const MAX_CLIENTS: usize = 256;

impl Scenario {
    /// Parse RON text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = ron::from_str(text).map_err(|e| ScenarioError::Parse {
            file: file.to_string(),
            line: e.position.line,
            column: e.position.col,
            message: e.code.to_string(),
        })?;
        s.validate().map_err(|message| ScenarioError::Invalid {
            file: file.to_string(),
            message,
        })?;
        Ok(s)
    }

    /// Read and parse a file.
    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError::Io {
            file: file.clone(),
            error,
        })?;
        Scenario::parse(&text, &file)
    }

    /// RON text of this scenario (as `swarm` and `shrink` write it).
    pub fn to_ron(&self) -> String {
        let cfg = ron::ser::PrettyConfig::new()
            .depth_limit(4)
            .separate_tuple_members(false)
            .enumerate_arrays(false);
        // Serialising plain data cannot fail.
        ron::ser::to_string_pretty(self, cfg).expect("scenario serialises")
    }

    /// Every mistake that parsing alone does not catch.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.topology.clients;
        if n == 0 || n > MAX_CLIENTS {
            return Err(format!(
                "topology.clients must be 1 to {MAX_CLIENTS}, not {n}"
            ));
        }
        let client_ok = |c: usize, what: &str| -> Result<(), String> {
            if c >= n {
                Err(format!(
                    "{what} names client {c}, but there are {n} clients (0 to {})",
                    n - 1
                ))
            } else {
                Ok(())
            }
        };
        let node_ok = |node: &Node, what: &str| match node {
            Node::Server => Ok(()),
            Node::Client(c) => client_ok(*c, what),
        };
        let faults_ok = |f: &LinkFaults, what: &str| -> Result<(), String> {
            for (name, p) in [
                ("drop", f.drop),
                ("duplicate", f.duplicate),
                ("reorder", f.reorder),
                ("corrupt", f.corrupt),
                ("split", f.split),
                ("garbage", f.garbage),
            ] {
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!(
                        "{what}.{name} must be between 0.0 and 1.0, not {p}"
                    ));
                }
            }
            if f.latency_ms.0 > f.latency_ms.1 {
                return Err(format!(
                    "{what}.latency_ms: min {} is above max {}",
                    f.latency_ms.0, f.latency_ms.1
                ));
            }
            Ok(())
        };
        if self.topology.clock_drift_pct.len() > n {
            return Err(format!(
                "topology.clock_drift_pct has {} entries for {n} clients",
                self.topology.clock_drift_pct.len()
            ));
        }
        if let Some(d) = self
            .topology
            .clock_drift_pct
            .iter()
            .find(|d| !(-50..=100).contains(*d))
        {
            return Err(format!(
                "topology.clock_drift_pct: {d} is outside -50..=100 (percent)"
            ));
        }
        faults_ok(&self.network, "network")?;
        for (i, l) in self.links.iter().enumerate() {
            client_ok(l.client, &format!("links[{i}]"))?;
            faults_ok(&l.faults, &format!("links[{i}].faults"))?;
        }
        for (name, p) in [
            ("fail", self.storage.fail),
            ("crash_after_commit", self.storage.crash_after_commit),
            ("crash_in_batch", self.storage.crash_in_batch),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!(
                    "storage.{name} must be between 0.0 and 1.0, not {p}"
                ));
            }
        }
        if self.storage.restart_ms == 0 {
            return Err("storage.restart_ms must be above 0".into());
        }
        if self.engine.max_frame_bytes.is_some_and(|n| n < 1024) {
            return Err("engine.max_frame_bytes must be at least 1024".into());
        }
        if self.engine.sync_interval_ms == 0
            || self.engine.retransmit_ms == 0
            || self.engine.heartbeat_ms == 0
        {
            return Err("engine intervals must be above 0 ms".into());
        }
        if let Some(t) = &self.workload.typing {
            for c in &t.clients {
                client_ok(*c, "workload.typing.clients")?;
            }
            if !(t.rate_per_s > 0.0 && t.rate_per_s <= 1000.0) {
                return Err(format!(
                    "workload.typing.rate_per_s must be in (0, 1000], not {}",
                    t.rate_per_s
                ));
            }
            if t.alphabet.as_deref() == Some("") {
                return Err("workload.typing.alphabet must not be empty".into());
            }
        }
        if let Some(t) = &self.workload.tokens {
            for c in &t.clients {
                client_ok(*c, "workload.tokens.clients")?;
            }
            if t.every_ms == 0 {
                return Err("workload.tokens.every_ms must be above 0".into());
            }
        }
        for (i, t) in self.timeline.iter().enumerate() {
            let what = format!("timeline[{i}]");
            match &t.event {
                Event::Partition { a, b, .. } => {
                    for node in a.iter().chain(b) {
                        node_ok(node, &what)?;
                    }
                }
                Event::Crash(node) | Event::Restart(node) | Event::Halt(node) => {
                    node_ok(node, &what)?
                }
                Event::Insert { client, .. }
                | Event::Delete { client, .. }
                | Event::InsertToken { client, .. }
                | Event::DeleteToken { client, .. } => client_ok(*client, &what)?,
                Event::DropMessage { from, to, nth } | Event::Net { from, to, nth, .. } => {
                    node_ok(from, &what)?;
                    node_ok(to, &what)?;
                    if (*from == Node::Server) == (*to == Node::Server) {
                        return Err(format!("{what}: a link joins the server and a client"));
                    }
                    if *nth == 0 {
                        return Err(format!("{what}: nth counts from 1"));
                    }
                }
                Event::Commit { nth, .. } => {
                    if *nth == 0 {
                        return Err(format!("{what}: nth counts from 1"));
                    }
                }
                Event::Heal | Event::StopFaults => {}
            }
        }
        if self.checks.converge_within_ms == 0 {
            return Err("checks.converge_within_ms must be above 0".into());
        }
        Ok(())
    }
}
