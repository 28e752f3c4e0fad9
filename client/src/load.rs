//! The load generator: N clients on loopback, each typing at a human rate into one document
//! (or idle, at rate 0), for a bounded time; reports round-trip percentiles, round trips and
//! edits per second, and errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Edit, Metrics, Session, SessionConfig};

/// Most clients one load run may start.
pub const MAX_CLIENTS: usize = 10_000;
/// Longest load run.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Largest text a load run seeds its documents with (the server's default document limit).
pub const MAX_TEXT_BYTES: usize = 4 << 20;
/// How long the clients have to open their documents before typing starts.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// Load settings.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Server, `host:port`; it must resolve to a loopback address.
    pub server: String,
    /// Document name; with `docs` > 1, client i edits `{doc}-{i % docs}`.
    pub doc: String,
    /// Number of documents the clients are spread over.
    pub docs: usize,
    /// Number of clients.
    pub clients: usize,
    /// How long they type.
    pub duration: Duration,
    /// Keystrokes per second per client; 0: the clients only keep in sync (idle).
    pub rate_per_s: f64,
    /// Before the clients start, each document is set to a text of this many bytes (0: the
    /// documents are left as they are).
    pub text_bytes: usize,
    /// How many of the clients type (the first ones; spread over the documents like the
    /// others); the rest stay idle. `None`: all of them.
    pub typists: Option<usize>,
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Clients started.
    pub clients: usize,
    /// Sync round trips completed.
    pub round_trips: usize,
    /// Median round trip.
    pub p50: Duration,
    /// 99th percentile round trip.
    pub p99: Duration,
    /// Keystrokes typed per second (all clients).
    pub edits_per_s: f64,
    /// Sync round trips completed per second (all clients) over the typing period and the
    /// settling after it: what the server answers, idle clients' polls included.
    pub round_trips_per_s: f64,
    /// Errors and lost connections.
    pub errors: u64,
    /// Clients connected (their document open) at the end.
    pub connected: usize,
    /// Connected clients, in sync with the server, whose text equals that of the first such
    /// client on the same document at the end.
    pub converged: usize,
    /// Why the first client that could not open its document within [`CONNECT_WITHIN`] failed.
    pub connect_failure: Option<String>,
}

impl LoadReport {
    /// Every client connected and converged, and nothing went wrong.
    pub fn ok(&self) -> bool {
        self.connected == self.clients && self.converged == self.clients && self.errors == 0
    }
}

/// Why a load run was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a loopback address.
    #[error("load mode only targets loopback addresses (127.0.0.0/8 or ::1), not {0}")]
    NotLoopback(String),
    /// The server name did not resolve.
    #[error("cannot resolve {server}: {error}")]
    Resolve {
        /// The name.
        server: String,
        /// Why.
        error: String,
    },
    /// Out of bounds.
    #[error("{0}")]
    Bounds(String),
    /// A document could not be seeded with its text.
    #[error("seeding {doc}: {why}")]
    Seed {
        /// The document.
        doc: String,
        /// Why.
        why: String,
    },
}

/// `bytes` of lines of prose (ASCII), the text a load run seeds its documents with.
pub fn filler(bytes: usize) -> String {
    const LINE: &str = "the quick brown fox jumps over the lazy dog, then naps in the sun.\n";
    let mut s = LINE.repeat(bytes / LINE.len() + 1);
    s.truncate(bytes);
    s
}

/// Set `doc` to `text` through a session of its own, and wait until the server holds it.
async fn seed(server: SocketAddr, doc: &str, text: &str) -> Result<(), LoadError> {
    let fail = |why: String| LoadError::Seed {
        doc: doc.to_string(),
        why,
    };
    let s = Session::start(SessionConfig::new(server, doc), None);
    let done = async {
        s.wait_connected(CONNECT_WITHIN).await?;
        s.edit(Edit::Replace(text.to_string())).await?;
        s.wait_converged(Duration::from_secs(60)).await?;
        anyhow::Ok(())
    }
    .await;
    s.stop().await;
    done.map_err(|e| fail(e.to_string()))
}

/// Resolve `server` to a loopback address, or say why not.
pub async fn loopback(server: &str) -> Result<SocketAddr, LoadError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(server)
        .await
        .map_err(|e| LoadError::Resolve {
            server: server.to_string(),
            error: e.to_string(),
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.ip().is_loopback())
        .copied()
        .ok_or_else(|| LoadError::NotLoopback(server.to_string()))
}

/// Run the load.
pub async fn run(cfg: LoadConfig) -> Result<LoadReport, LoadError> {
    let server = loopback(&cfg.server).await?;
    if cfg.clients == 0 || cfg.clients > MAX_CLIENTS {
        return Err(LoadError::Bounds(format!(
            "--clients must be 1 to {MAX_CLIENTS}"
        )));
    }
    if cfg.duration.is_zero() || cfg.duration > MAX_DURATION {
        return Err(LoadError::Bounds(format!(
            "--duration must be 1 to {} s",
            MAX_DURATION.as_secs()
        )));
    }
    if cfg.docs == 0 || cfg.docs > cfg.clients {
        return Err(LoadError::Bounds("--docs must be 1 to --clients".into()));
    }
    if cfg.text_bytes > MAX_TEXT_BYTES {
        return Err(LoadError::Bounds(format!(
            "--text-bytes must be at most {MAX_TEXT_BYTES}"
        )));
    }
    if !(cfg.rate_per_s >= 0.0 && cfg.rate_per_s <= 50.0) {
        return Err(LoadError::Bounds(
            "--rate must be in [0, 50] keystrokes per second (0: idle clients)".into(),
        ));
    }
    let metrics = Arc::new(Metrics::default());
    let mut sessions = Vec::with_capacity(cfg.clients);
    let doc_of = |i: usize| {
        if cfg.docs == 1 {
            cfg.doc.clone()
        } else {
            format!("{}-{}", cfg.doc, i % cfg.docs)
        }
    };
    if cfg.text_bytes > 0 {
        let text = filler(cfg.text_bytes);
        for d in 0..cfg.docs {
            seed(server, &doc_of(d), &text).await?;
        }
    }
    let mut started = Vec::with_capacity(cfg.clients);
    for i in 0..cfg.clients {
        let mut sc = SessionConfig::new(server, &doc_of(i));
        sc.describe_changes = false;
        started.push(Session::start(sc, Some(metrics.clone())));
    }
    // Every client gets its document open before typing starts, bounded; why one could not is
    // kept for the report.
    let open_by = tokio::time::Instant::now() + CONNECT_WITHIN;
    let mut connect_failure = None;
    for s in &mut started {
        let left = open_by.saturating_duration_since(tokio::time::Instant::now());
        if s.wait_connected(left).await.is_err() && connect_failure.is_none() {
            connect_failure = s.take_notices().into_iter().rev().find_map(|n| match n {
                crate::Notice::ConnectFailed { cause, .. }
                | crate::Notice::Disconnected { cause, .. } => Some(cause),
                crate::Notice::ServerError { code, message } => Some(format!("{code}: {message}")),
                _ => None,
            });
            connect_failure.get_or_insert_with(|| {
                format!("not connected within {} s", CONNECT_WITHIN.as_secs())
            });
        }
    }
    let nobody = started.iter().all(|s| !s.snapshot().connected);
    if nobody {
        let connected = 0;
        for s in started {
            s.stop().await;
        }
        return Ok(LoadReport {
            clients: cfg.clients,
            round_trips: 0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            edits_per_s: 0.0,
            round_trips_per_s: 0.0,
            errors: metrics.errors.load(std::sync::atomic::Ordering::Relaxed),
            connected,
            converged: 0,
            connect_failure,
        });
    }
    sessions.extend(started.into_iter().map(Arc::new));
    let start = Instant::now();
    let typed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut typists = Vec::new();
    let end = start + cfg.duration;
    let rounds_before = metrics.rtt_us.lock().map(|v| v.len()).unwrap_or(0);
    let typing = cfg.typists.unwrap_or(cfg.clients).min(cfg.clients);
    for (i, s) in sessions.iter().enumerate() {
        if cfg.rate_per_s == 0.0 || i >= typing {
            break;
        }
        let s = s.clone();
        let typed = typed.clone();
        let every = Duration::from_secs_f64(1.0 / cfg.rate_per_s);
        typists.push(tokio::spawn(async move {
            // Spread the clients' first keystrokes over one interval (never past the end: at
            // low rates one interval is longer than the run).
            let spread = every.mul_f64((i % 97) as f64 / 97.0);
            tokio::time::sleep(spread.min(end.saturating_duration_since(Instant::now()))).await;
            let mut k = 0u64;
            while Instant::now() < end {
                let ch = char::from(b'a' + (k % 26) as u8);
                if s.edit(Edit::Append(ch.to_string())).await.is_ok() {
                    typed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                k += 1;
                tokio::time::sleep(every).await;
            }
        }));
    }
    for t in typists {
        let _ = t.await;
    }
    // Idle clients: the period passes with nothing typed.
    tokio::time::sleep_until(end.into()).await;
    let elapsed = start.elapsed();
    // Let the last edits travel, bounded.
    let settle = tokio::time::Instant::now() + Duration::from_secs(30);
    for s in &sessions {
        let _ = tokio::time::timeout_at(settle, s.wait_converged(Duration::from_secs(30))).await;
    }
    let snaps: Vec<crate::Snapshot> = sessions.iter().map(|s| s.snapshot()).collect();
    let connected = snaps.iter().filter(|s| s.connected).count();
    // Per document, the text of its first converged client is the reference.
    let docs = cfg.docs.max(1);
    let mut reference: Vec<Option<&crate::Rope>> = vec![None; docs];
    let mut converged = 0;
    for (i, s) in snaps.iter().enumerate() {
        if !s.converged() {
            continue;
        }
        let r = reference[i % docs].get_or_insert(&s.text);
        if **r == s.text {
            converged += 1;
        }
    }
    for s in sessions {
        if let Ok(s) = Arc::try_unwrap(s) {
            s.stop().await;
        }
    }
    let rounds_per_s = {
        let n = metrics.rtt_us.lock().map(|v| v.len()).unwrap_or(0);
        n.saturating_sub(rounds_before) as f64 / start.elapsed().as_secs_f64().max(1e-9)
    };
    let mut rtt = metrics.rtt_us.lock().map(|v| v.clone()).unwrap_or_default();
    rtt.sort_unstable();
    let pct = |p: f64| -> Duration {
        if rtt.is_empty() {
            return Duration::ZERO;
        }
        let i = ((rtt.len() as f64 - 1.0) * p).round() as usize;
        Duration::from_micros(rtt[i])
    };
    Ok(LoadReport {
        clients: cfg.clients,
        round_trips: rtt.len(),
        p50: pct(0.50),
        p99: pct(0.99),
        edits_per_s: typed.load(std::sync::atomic::Ordering::Relaxed) as f64
            / elapsed.as_secs_f64(),
        round_trips_per_s: rounds_per_s,
        errors: metrics.errors.load(std::sync::atomic::Ordering::Relaxed),
        connected,
        converged,
        connect_failure,
    })
}
