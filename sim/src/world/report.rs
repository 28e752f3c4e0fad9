//! What a run reports: trace level, options, verdicts, the summary line, chart data, and the
//! report itself.

use super::*;

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
    /// Frames whose bytes were damaged in flight.
    pub corrupted: u64,
    /// Frames split in two pieces (stream).
    pub split_frames: u64,
    /// Frames that rode in a flight already in the air (stream).
    pub coalesced: u64,
    /// Lines of garbage sent ahead of frames.
    pub garbage: u64,
    /// Frames a node could not decode (both sides): damage, garbage, the frame limit.
    pub decode_errors: u64,
    /// Server commits that failed (the server stopped without acknowledging the batch).
    pub failed_commits: u64,
    /// Server crashes after a commit and before its replies went out.
    pub crashes_after_commit: u64,
    /// Server crashes inside a batch (handled, not committed).
    pub crashes_in_batch: u64,
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
    /// Server: `changed` hints sent.
    pub hints: u64,
    /// Clients: sync cycles a hint started at once.
    pub hinted_syncs: u64,
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
            "summary  sent={} delivered={} dropped={} dup={} reordered={} corrupted={} split={} coalesced={} garbage={} decode_errors={} failed_commits={} crashes_after_commit={} crashes_in_batch={} conn_resets={} edits={} resets={} rollbacks={} retransmits={} dups_skipped={} stale_skipped={} patches_dropped={} resumes={} inexact_resets={} link_fallbacks={} log_overflows={} merge_fallbacks={} hints={} hinted_syncs={}",
            self.sent, self.delivered, self.dropped, self.duplicated, self.reordered, self.corrupted,
            self.split_frames, self.coalesced, self.garbage, self.decode_errors,
            self.failed_commits, self.crashes_after_commit, self.crashes_in_batch,
            self.conn_resets, self.edits, self.resets, self.rollbacks, self.retransmits,
            self.duplicates_skipped, self.stale_skipped, self.patches_dropped, self.resumes,
            self.inexact_resets, self.link_fallbacks, self.log_overflows, self.merge_fallbacks,
            self.hints, self.hinted_syncs
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
pub fn digest<T: dsync_engine::rope::TextRead + ?Sized>(text: &T) -> String {
    let chars = text.slice(0..text.len()).chars().count();
    format!("#{:04x}({chars})", text.crc32() & 0xffff)
}
