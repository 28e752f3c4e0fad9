//! Prometheus metrics (`GET /metrics` on `--http-listen`): the engine thread updates them after
//! every batch; the HTTP task only encodes them.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use dsync_engine::Stats;
use dsync_node::NodeStats;

/// Every metric the server exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Open connections (TCP and WebSocket).
    pub connections: IntGauge,
    /// Documents in memory.
    pub documents: IntGauge,
    /// Time from the first input of a batch to its replies queued (what a round trip spends in
    /// the server, commit included).
    pub batch_seconds: Histogram,
    /// Time of one store commit.
    pub commit_seconds: Histogram,
    /// Per request: from its frame's arrival (waiting for the engine thread included) to the
    /// replies of the batch that handled it queued, commit included: the server's share of a
    /// client's round trip.
    pub request_seconds: Histogram,
    /// `error` messages sent, by code.
    pub refusals: IntCounterVec,
    /// Bytes of frames received and sent.
    pub bytes_in: IntCounter,
    /// Bytes queued to peers.
    pub bytes_out: IntCounter,
    /// The engine's and the node's counters, by name.
    events: IntCounterVec,
    last: (Stats, NodeStats),
}

impl Metrics {
    /// Register every metric (the names are fixed: registering cannot fail).
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let latency = [
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        let h = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(latency.to_vec()))
                .expect("valid histogram options")
        };
        let m = Metrics {
            connections: IntGauge::new("dsync_connections", "Open connections (TCP and WebSocket)")
                .expect("valid gauge"),
            documents: IntGauge::new("dsync_documents_open", "Documents in memory")
                .expect("valid gauge"),
            batch_seconds: h(
                "dsync_batch_seconds",
                "From a batch's first input to its replies queued, commit included",
            ),
            commit_seconds: h("dsync_commit_seconds", "One store commit"),
            request_seconds: h(
                "dsync_request_seconds",
                "Per request: from its frame's arrival to its batch's replies queued (the server's share of a round trip)",
            ),
            refusals: IntCounterVec::new(
                Opts::new("dsync_refusals_total", "error messages sent, by code"),
                &["code"],
            )
            .expect("valid counter"),
            bytes_in: IntCounter::new("dsync_bytes_in_total", "Bytes of frames received")
                .expect("valid counter"),
            bytes_out: IntCounter::new("dsync_bytes_out_total", "Bytes queued to peers")
                .expect("valid counter"),
            events: IntCounterVec::new(
                Opts::new("dsync_events_total", "The engine's and the node's counters"),
                &["event"],
            )
            .expect("valid counter"),
            registry,
            last: Default::default(),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 9] = [
            Box::new(m.connections.clone()),
            Box::new(m.documents.clone()),
            Box::new(m.batch_seconds.clone()),
            Box::new(m.commit_seconds.clone()),
            Box::new(m.request_seconds.clone()),
            Box::new(m.refusals.clone()),
            Box::new(m.bytes_in.clone()),
            Box::new(m.bytes_out.clone()),
            Box::new(m.events.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are distinct");
        }
        m
    }

    /// Count what the engine and the node counted since the last call.
    pub fn observe(&mut self, engine: &Stats, node: NodeStats) {
        let (e0, n0) = &self.last;
        let pairs = [
            ("edits_applied", engine.edits_applied, e0.edits_applied),
            ("rollbacks", engine.rollbacks, e0.rollbacks),
            ("resets", engine.resets, e0.resets),
            (
                "duplicates_skipped",
                engine.duplicates_skipped,
                e0.duplicates_skipped,
            ),
            ("stale_skipped", engine.stale_skipped, e0.stale_skipped),
            ("resumes", engine.resumes, e0.resumes),
            (
                "corrupt_ignored",
                engine.corrupt_ignored,
                e0.corrupt_ignored,
            ),
            ("link_fallbacks", engine.link_fallbacks, e0.link_fallbacks),
            ("log_overflows", engine.log_overflows, e0.log_overflows),
            (
                "merge_fallbacks",
                engine.merge_fallbacks,
                e0.merge_fallbacks,
            ),
            (
                "sessions_refused",
                engine.sessions_refused,
                e0.sessions_refused,
            ),
            ("slowed_down", engine.slowed_down, e0.slowed_down),
            ("hints", engine.hints, e0.hints),
            ("unauthorized", engine.unauthorized, e0.unauthorized),
            (
                "read_only_refused",
                engine.read_only_refused,
                e0.read_only_refused,
            ),
            ("frames", node.frames, n0.frames),
            ("decode_errors", node.decode_errors, n0.decode_errors),
            ("loads", node.loads, n0.loads),
            ("load_failures", node.load_failures, n0.load_failures),
            ("commits", node.commits, n0.commits),
        ];
        for (name, now, before) in pairs {
            if now > before {
                self.events.with_label_values(&[name]).inc_by(now - before);
            }
        }
        self.last = (*engine, node);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
