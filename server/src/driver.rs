//! The tokio TCP driver: accepts connections, splits JSON lines, and feeds one
//! [`ServerNode`] (engine + [`SqliteStore`] + decoding + loading + the batch rule) on a
//! dedicated thread.
//!
//! Why a thread and not a task: the engine and the store are synchronous (SQLite commits with
//! `synchronous=FULL` wait for the disk). One thread owns both, so there is no lock, and a batch
//! of inputs is handled, committed in one transaction, and only then answered.
//!
//! Invariants: nothing a connection sends reaches another connection except through the engine;
//! every byte read and not yet handled is paid for from a bounded budget, and a connection
//! reads only when it has one (`conn.rs`); a connection's outgoing queue is bounded in bytes (a
//! peer that does not read is closed); replies come only from [`ServerNode::commit`], after the
//! batch's commit returned `Ok`; a failed commit stops the server.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsync_engine::{Access, Config, ErrorCode, PeerId, Secret, ServerMsg, Time};
use dsync_net::encode_server;
use dsync_node::{Output, ServerNode};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::conn::{self, Budget, ConnLimits, Event, Outbox, READ_CHUNK};
use dsync_store::{SqliteStore, StoreError};

/// Server settings. Every queue and buffer has its limit here (docs/protocol.md, "Bounded
/// resources").
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// SQLite database file.
    pub db: PathBuf,
    /// Create the database file if it is missing or empty. Without it the server refuses to
    /// start on a missing or empty file: a store that was expected and is gone must be noticed,
    /// not silently replaced by an empty one.
    pub create: bool,
    /// Largest database file, in bytes; a commit past it fails and stops the server.
    pub max_db_bytes: Option<u64>,
    /// Engine settings (heartbeat, limits, merge strategy).
    pub engine: Config,
    /// Largest accepted frame, in bytes.
    pub max_frame_bytes: usize,
    /// Most simultaneous connections (lowered at start to fit the open-file limit).
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address (the binary's default: a tenth of
    /// `max_connections`).
    pub max_connections_per_ip: usize,
    /// Most bytes read from peers and not yet handled, over all connections: partial frames
    /// and frames waiting for the engine. At the limit, connections wait before reading more.
    pub max_inbound_bytes: usize,
    /// Most bytes queued for one connection; a connection whose replies would pass it is closed
    /// as too slow (an empty queue takes one reply of any size).
    pub max_outbound_bytes: usize,
    /// Time a new connection has for its first frame, and any frame has to finish once begun.
    pub frame_timeout: Duration,
    /// Most inputs the engine handles before it commits and answers.
    pub max_batch: usize,
    /// Detached sessions of documents not in memory, unchanged for this long, are forgotten
    /// (at start and every hour); a client coming back after that starts a new session and
    /// merges its unsent typing. `None`: kept until a document's session limit evicts them.
    pub session_retention: Option<Duration>,
    /// Who may open what: `None` is open access (anyone may read and write every document);
    /// `Some(secret)` requires a token signed with it in every `connect`.
    pub secret: Option<Secret>,
    /// Also serve WebSocket clients here (the same messages, one per text message).
    pub ws_listen: Option<SocketAddr>,
    /// Serve every listener over TLS ([`crate::tls::server_config`]): TCP lines inside TLS,
    /// WebSocket as `wss`, the HTTP endpoints as `https` ([`crate::http::serve_tls`]). A
    /// connection that does not complete the handshake in time is closed.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Serve the HTTP endpoints here (`/healthz`, `/metrics`, `/documents`: [`crate::http`]).
    pub http_listen: Option<SocketAddr>,
    /// How much of each document's history the store keeps (`GET /documents/{doc}/history`).
    pub history: dsync_store::HistoryLimits,
    /// Serve the browser editor built in this folder (`web/build.sh` writes `web/dist`) on the
    /// HTTP listener; needs `http_listen` and `ws_listen` ([`crate::web`]).
    pub web_root: Option<PathBuf>,
}

/// The default of [`ServerConfig::session_retention`]: 30 days.
pub const DEFAULT_SESSION_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often old sessions are collected.
const COLLECT_EVERY: Duration = Duration::from_secs(3600);

/// Milliseconds since the Unix epoch: the store's update times (so retention spans restarts).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The default of [`ServerConfig::max_inbound_bytes`].
pub const DEFAULT_MAX_INBOUND_BYTES: usize = 256 << 20;
/// The default of [`ServerConfig::max_outbound_bytes`].
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 16 << 20;
/// Open files the server keeps for itself (the database, its WAL, the listener, the runtime):
/// the connection limit is fitted under the process's open-file limit minus this.
pub const RESERVED_FDS: usize = 64;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            db: PathBuf::from("documents.db"),
            create: false,
            max_db_bytes: None,
            engine: Config::default(),
            max_frame_bytes: dsync_net::DEFAULT_MAX_FRAME_BYTES,
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            max_inbound_bytes: DEFAULT_MAX_INBOUND_BYTES,
            max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
            frame_timeout: Duration::from_secs(30),
            max_batch: 256,
            session_retention: Some(DEFAULT_SESSION_RETENTION),
            secret: None,
            ws_listen: None,
            tls: None,
            http_listen: None,
            web_root: None,
            history: dsync_store::HistoryLimits::default(),
        }
    }
}

impl ServerConfig {
    /// What one connection may hold inbound: a whole frame, plus the read that finishes it.
    fn per_connection_inbound(&self) -> usize {
        self.max_frame_bytes.saturating_add(2 * READ_CHUNK)
    }
}

/// Why the server stopped. Each message holds its cause, so it prints once: the causes are
/// part of the text, not a `source()` chain (which `{:#}` would print a second time).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listener could not be set up.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The store could not be opened or failed.
    #[error("store {path}: {error}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// The store error.
        error: StoreError,
    },
    /// The settings do not fit together.
    #[error("{0}")]
    Config(String),
    /// The engine thread died.
    #[error("engine thread stopped unexpectedly")]
    EngineGone,
}

/// A running server: its bound address, and a way to stop it.
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The WebSocket address actually bound, if one was asked for.
    pub ws_addr: Option<SocketAddr>,
    /// The HTTP address actually bound, if one was asked for.
    pub http_addr: Option<SocketAddr>,
    /// The connection limit in force (the configured one, or lower to fit the open-file limit).
    pub max_connections: usize,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// Stop accepting, let the engine finish its batch and close the store cleanly.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|_| ServerError::EngineGone)?
    }

    /// Serve until `signal` completes (then shut down) or the server stops on its own — a
    /// failed commit ends it with the store's error, so the process can exit non-zero and a
    /// supervisor restart it. `Ok(true)`: stopped by the signal.
    pub async fn until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<bool, ServerError> {
        tokio::select! {
            () = signal => self.shutdown().await.map(|()| true),
            ended = &mut self.task => match ended {
                Ok(Ok(())) => Ok(false),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ServerError::EngineGone),
            },
        }
    }
}

/// The open-file limit of this process (soft), where the system says (Linux).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Open the store, bind, and serve in the background until [`Running::shutdown`].
pub async fn start(mut cfg: ServerConfig) -> Result<Running, ServerError> {
    if cfg.max_inbound_bytes < cfg.per_connection_inbound() {
        return Err(ServerError::Config(format!(
            "the inbound limit ({} bytes) is below what one largest frame needs ({} bytes)",
            cfg.max_inbound_bytes,
            cfg.per_connection_inbound()
        )));
    }
    if cfg.max_connections == 0 || cfg.max_connections_per_ip == 0 {
        return Err(ServerError::Config(
            "the connection limits must be at least 1".into(),
        ));
    }
    if let Some(fds) = open_file_limit() {
        let fit = fds.saturating_sub(RESERVED_FDS).max(1);
        if cfg.max_connections > fit {
            tracing::warn!(
                configured = cfg.max_connections,
                open_file_limit = fds,
                lowered_to = fit,
                "connection limit lowered to fit the open-file limit (raise it with `ulimit -n`)"
            );
            cfg.max_connections = fit;
        }
    }
    let opened = if cfg.create {
        SqliteStore::open(&cfg.db)
    } else {
        SqliteStore::open_existing(&cfg.db)
    };
    let mut store = opened.map_err(|error| ServerError::Store {
        path: cfg.db.clone(),
        error,
    })?;
    store.set_history_limits(cfg.history);
    if let Some(bytes) = cfg.max_db_bytes {
        store
            .set_max_bytes(bytes)
            .map_err(|error| ServerError::Store {
                path: cfg.db.clone(),
                error,
            })?;
    }
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|error| ServerError::Listen {
            addr: cfg.listen,
            error,
        })?;
    let addr = listener.local_addr().map_err(|error| ServerError::Listen {
        addr: cfg.listen,
        error,
    })?;
    if let Some(root) = &cfg.web_root {
        if cfg.http_listen.is_none() || cfg.ws_listen.is_none() {
            return Err(ServerError::Config(
                "the browser editor (--web-root) is served on --http-listen and talks to --ws-listen: give both".into(),
            ));
        }
        crate::web::check_root(root).map_err(ServerError::Config)?;
    }
    let (ws_listener, ws_addr) = bind_optional(cfg.ws_listen).await?;
    let (http_listener, http_addr) = bind_optional(cfg.http_listen).await?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let max_connections = cfg.max_connections;
    let listeners = Listeners {
        tcp: listener,
        ws: ws_listener,
        http: http_listener,
    };
    let task = tokio::spawn(serve(cfg, store, listeners, stop_rx));
    Ok(Running {
        addr,
        ws_addr,
        http_addr,
        max_connections,
        stop,
        task,
    })
}

/// Bind `at` if given: the listener and the address it got.
async fn bind_optional(
    at: Option<SocketAddr>,
) -> Result<(Option<TcpListener>, Option<SocketAddr>), ServerError> {
    let Some(at) = at else {
        return Ok((None, None));
    };
    let bound = |error| ServerError::Listen { addr: at, error };
    let l = TcpListener::bind(at).await.map_err(bound)?;
    let a = l.local_addr().map_err(bound)?;
    Ok((Some(l), Some(a)))
}

/// Open connections, in all and per address.
#[derive(Default)]
struct Census {
    total: usize,
    per_ip: BTreeMap<IpAddr, usize>,
}

/// The bound listeners: the protocol over TCP, over WebSocket, and the HTTP endpoints.
struct Listeners {
    tcp: TcpListener,
    ws: Option<TcpListener>,
    http: Option<TcpListener>,
}

async fn serve(
    cfg: ServerConfig,
    store: SqliteStore,
    listeners: Listeners,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let Listeners {
        tcp: listener,
        ws: ws_listener,
        http: http_listener,
    } = listeners;
    let (tx, rx) = std_mpsc::channel::<Event>();
    let metrics = Arc::new(Mutex::new(crate::metrics::Metrics::new()));
    let http = http_listener.map(|l| {
        let web = crate::web::Web {
            root: cfg.web_root.clone(),
            ws_port: ws_listener
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.port()),
            ws_tls: cfg.tls.is_some(),
        };
        let app = crate::http::router(tx.clone(), metrics.clone(), cfg.secret, web);
        let mut stop = stop.clone();
        let tls = cfg.tls.clone();
        tokio::spawn(async move {
            let quit = async move {
                let _ = stop.changed().await;
            };
            match tls {
                Some(tls) => crate::http::serve_tls(l, app, tls, quit).await,
                None => {
                    if let Err(e) = axum::serve(l, app).with_graceful_shutdown(quit).await {
                        tracing::warn!(error = %e, "the HTTP endpoints stopped");
                    }
                }
            }
        })
    });
    let stopping = Arc::new(AtomicBool::new(false));
    // Session keys are secrets: their seed comes from the operating system, fresh per start.
    let key_seed = {
        use rand_chacha::rand_core::{RngCore, SeedableRng};
        let mut seed = [0u8; 32];
        rand_chacha::ChaCha20Rng::try_from_os_rng()
            .map_err(|e| ServerError::Config(format!("no randomness for session keys: {e}")))?
            .fill_bytes(&mut seed);
        seed
    };
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let engine = {
        let (cfg, stopping, metrics) = (cfg.clone(), stopping.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("dsync-engine".into())
            .spawn(move || {
                let r = engine_thread(cfg, store, rx, &stopping, key_seed, &metrics);
                let _ = done_tx.send(());
                r
            })
            .map_err(|_| ServerError::EngineGone)?
    };
    let inbound = Arc::new(Semaphore::new(cfg.max_inbound_bytes));
    let limits = ConnLimits {
        max_frame_bytes: cfg.max_frame_bytes,
        max_outbound_bytes: cfg.max_outbound_bytes,
        frame_timeout: cfg.frame_timeout,
        idle_timeout: Duration::from_millis(cfg.engine.heartbeat_ms.saturating_mul(4)),
        max_delta_bytes: cfg.engine.limits.max_delta_bytes,
    };
    let census = Arc::new(Mutex::new(Census::default()));
    let mut next_peer = 1u64;
    // Accept errors (out of file descriptors, mostly) back off instead of spinning, and are
    // logged once per back-off, with how many there were.
    let mut backoff = Duration::ZERO;
    let mut accept_errors = 0u64;
    loop {
        let ws_accept = async {
            match &ws_listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        let (accepted, websocket) = tokio::select! {
            _ = stop.changed() => break,
            _ = &mut done_rx => break,
            accepted = listener.accept() => (accepted, false),
            accepted = ws_accept => (accepted, true),
        };
        let (stream, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                accept_errors += 1;
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                if backoff == Duration::from_secs(1) || accept_errors == 1 {
                    tracing::warn!(error = %e, errors = accept_errors, retry_in = ?backoff, "accept failed");
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = &mut done_rx => break,
                    () = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        backoff = Duration::ZERO;
        accept_errors = 0;
        let peer = PeerId(next_peer);
        next_peer += 1;
        let ip = remote.ip();
        let refused = {
            let mut c = census.lock().map_err(|_| ServerError::EngineGone)?;
            let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
            if c.total >= cfg.max_connections {
                Some(format!(
                    "the server has its maximum of {} connections",
                    cfg.max_connections
                ))
            } else if from_ip >= cfg.max_connections_per_ip {
                Some(format!(
                    "{ip} has its maximum of {} connections",
                    cfg.max_connections_per_ip
                ))
            } else {
                c.total += 1;
                *c.per_ip.entry(ip).or_insert(0) += 1;
                None
            }
        };
        if let Some(why) = refused {
            tracing::warn!(%remote, reason = %why, "refusing connection");
            if !websocket {
                tokio::spawn(refuse(stream, why));
            }
            continue;
        }
        tracing::info!(peer = peer.0, %remote, websocket, "connection opened");
        let (tx, census) = (tx.clone(), census.clone());
        let budget = Budget::new(inbound.clone(), cfg.per_connection_inbound());
        let tls = cfg.tls.clone();
        tokio::spawn(async move {
            let why = match tls {
                None if websocket => {
                    crate::ws::serve(peer, remote, stream, tx, budget, limits).await
                }
                None => conn::serve(peer, remote, stream, tx, budget, limits).await,
                Some(tls) => {
                    let handshake = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
                    match tokio::time::timeout(limits.frame_timeout, handshake).await {
                        Ok(Ok(s)) if websocket => {
                            crate::ws::serve(peer, remote, s, tx, budget, limits).await
                        }
                        Ok(Ok(s)) => conn::serve(peer, remote, s, tx, budget, limits).await,
                        Ok(Err(e)) => format!("TLS handshake failed: {e}"),
                        Err(_) => format!("no TLS handshake within {:?}", limits.frame_timeout),
                    }
                }
            };
            if let Ok(mut c) = census.lock() {
                c.total -= 1;
                if let Some(n) = c.per_ip.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        c.per_ip.remove(&ip);
                    }
                }
            }
            tracing::info!(peer = peer.0, %remote, reason = %why, "connection closed");
        });
    }
    tracing::info!("shutting down: no new connections; committing and closing the store");
    stopping.store(true, Ordering::Release);
    // Wake the engine thread if it waits for input (connections still hold senders).
    let _ = tx.send(Event::Stop);
    drop(tx);
    drop(listener);
    drop(ws_listener);
    if let Some(h) = http {
        h.abort();
    }
    tokio::task::spawn_blocking(move || engine.join())
        .await
        .map_err(|_| ServerError::EngineGone)?
        .map_err(|_| ServerError::EngineGone)?
}

async fn refuse(mut stream: TcpStream, message: String) {
    let msg = ServerMsg::Error {
        doc: None,
        code: ErrorCode::TooManyConnections,
        message,
        seq: None,
    };
    let _ = stream.write_all(encode_server(&msg).as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn engine_thread(
    cfg: ServerConfig,
    store: SqliteStore,
    rx: std_mpsc::Receiver<Event>,
    stopping: &AtomicBool,
    key_seed: [u8; 32],
    metrics: &Mutex<crate::metrics::Metrics>,
) -> Result<(), ServerError> {
    let start = Instant::now();
    let now = || Time(start.elapsed().as_millis() as u64);
    let mut node = ServerNode::new(cfg.engine, store, cfg.max_frame_bytes, key_seed);
    if let Some(secret) = cfg.secret {
        // Token expiry is checked against the wall time at `start` plus the engine's clock.
        node.set_access(Access::Tokens {
            secret,
            unix_ms_at_zero: wall_ms(),
        });
    }
    let mut conns: BTreeMap<PeerId, Outbox> = BTreeMap::new();
    // Peer addresses and the documents in memory, for the log only.
    let mut remotes: BTreeMap<PeerId, SocketAddr> = BTreeMap::new();
    let mut loaded: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let store_err = |error| ServerError::Store {
        path: cfg.db.clone(),
        error,
    };
    let mut collect_at = Instant::now();
    loop {
        if Instant::now() >= collect_at {
            collect_at = Instant::now() + COLLECT_EVERY;
            if let Some(keep) = cfg.session_retention {
                let before = wall_ms().saturating_sub(keep.as_millis() as u64);
                let gone = node.maintain(|store, engine| {
                    store.collect_sessions(before, |doc| engine.is_loaded(doc))
                });
                match gone {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(sessions = n, "forgot sessions past their retention"),
                    Err(e) => tracing::warn!(error = %e, "collecting old sessions failed"),
                }
            }
            match node.maintain(|store, _| store.collect_history(wall_ms())) {
                Ok(0) => {}
                Ok(n) => tracing::info!(changes = n, "folded history past its retention"),
                Err(e) => tracing::warn!(error = %e, "collecting old history failed"),
            }
        }
        let wait = node
            .poll_timeout()
            .map(|t| Duration::from_millis(t.0.saturating_sub(now().0)))
            .unwrap_or(Duration::from_secs(3600));
        // Connections keep their senders until they end: a stopping server sets the flag and
        // wakes this thread with `Event::Stop`, so an idle server does not poll the flag.
        let wait = if stopping.load(Ordering::Acquire) {
            Duration::ZERO
        } else {
            wait
        };
        let first = match rx.recv_timeout(wait) {
            Ok(i) => Some(i),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch: Vec<Event> = first.into_iter().collect();
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(i) => batch.push(i),
                Err(_) => break,
            }
        }
        // Stopping: what is queued is dropped unanswered (its senders resend to the next
        // server); the batch in hand was handled, committed and answered.
        let shutdown = stopping.load(Ordering::Acquire);
        let batch_began = Instant::now();
        let mut bytes_in = 0u64;
        // When each frame of the batch arrived (its round trip ends with the batch's replies).
        let mut arrived = Vec::new();
        // Answered after the commit: never ahead of what is durable.
        let mut queries = Vec::new();
        let mut created = Vec::new();
        for input in batch {
            let t = now();
            match input {
                Event::Open(peer, remote, out) => {
                    conns.insert(peer, out);
                    remotes.insert(peer, remote);
                }
                // The frame's permits go back when it is dropped here, after it was handled.
                Event::Frame(_, _) if shutdown => {}
                Event::Frame(peer, inbound) => {
                    bytes_in += inbound.bytes as u64;
                    arrived.push(inbound.received);
                    node.receive_decoded(t, peer, inbound.msg);
                }
                Event::Stop => {}
                Event::Create(doc, text, tx) => {
                    let made = node.create_document(&doc, &text);
                    created.push((doc, made, tx));
                }
                Event::Query(q) => queries.push(q),
                Event::Closed(peer) => {
                    conns.remove(&peer);
                    remotes.remove(&peer);
                    node.closed(t, peer);
                }
            }
        }
        node.handle_timeout(now());
        // The engine loads a document on its first `connect` and lets it go when its last
        // session detaches (the store has it).
        for doc in node.engine().documents() {
            if loaded.insert(doc.to_string()) {
                let bytes = node.engine().master(doc).map_or(0, |t| t.len());
                tracing::info!(doc, bytes, "document loaded");
            }
        }
        loaded.retain(|doc| {
            let still = node.engine().is_loaded(doc);
            if !still {
                tracing::info!(doc, "document unloaded: no session attached");
            }
            still
        });
        // Commit every persist record of the batch in one transaction; only then answer.
        let commit_began = Instant::now();
        let committed = node.commit(wall_ms());
        let commit_took = commit_began.elapsed();
        let released = match committed {
            Ok((n, released)) => {
                node = n;
                released
            }
            Err(failed) => {
                // Nothing of this batch may be acknowledged, and the engine already counted it
                // as applied: stop the whole server (`serve` sees this thread end), so the
                // process exits non-zero. Clients keep their edits and resend to the next one.
                tracing::error!(error = %failed.error, "store commit failed; the server stops");
                return Err(store_err(failed.error));
            }
        };
        let mut bytes_out = 0u64;
        let mut refusals: Vec<&'static str> = Vec::new();
        for out in released.outputs {
            match out {
                Output::Send { to, msg, line } => {
                    log_reply(to, remotes.get(&to), &msg);
                    bytes_out += line.len() as u64;
                    if let ServerMsg::Error { code, .. } = &msg {
                        refusals.push(code.as_str());
                    }
                    if let Some(c) = conns.get(&to) {
                        if !c.send(line) {
                            tracing::warn!(
                                peer = to.0,
                                limit = cfg.max_outbound_bytes,
                                "peer too slow: its queued replies passed the limit; closing it"
                            );
                            c.close();
                            conns.remove(&to);
                            node.closed(now(), to);
                        }
                    }
                }
                Output::Disconnect { peer, reason } => {
                    tracing::info!(peer = peer.0, %reason, "closing connection");
                    conns.remove(&peer);
                }
            }
        }
        for q in queries {
            answer(&mut node, q);
        }
        for (doc, made, tx) in created {
            node.release(&doc);
            let _ = tx.send(made);
        }
        if let Ok(mut m) = metrics.lock() {
            m.connections.set(conns.len() as i64);
            m.documents.set(loaded.len() as i64);
            m.bytes_in.inc_by(bytes_in);
            m.bytes_out.inc_by(bytes_out);
            for code in refusals {
                m.refusals.with_label_values(&[code]).inc();
            }
            if !released.records.is_empty() {
                m.commit_seconds.observe(commit_took.as_secs_f64());
            }
            if bytes_in > 0 {
                m.batch_seconds.observe(batch_began.elapsed().as_secs_f64());
            }
            for at in arrived {
                m.request_seconds.observe(at.elapsed().as_secs_f64());
            }
            m.observe(node.engine_stats(), node.stats());
        }
        if shutdown {
            break;
        }
    }
    node.into_store().close().map_err(store_err)?;
    tracing::info!("store closed cleanly");
    Ok(())
}

/// Answer an HTTP endpoint's question from the engine (a loaded document) or the store.
fn answer(node: &mut ServerNode<SqliteStore>, q: crate::http::Query) {
    use crate::http::Query;
    use dsync_store::Store as _;
    match q {
        Query::Health(tx) => {
            let _ = tx.send(());
        }
        Query::List(tx) => {
            let docs = node.maintain(|store, _| store.documents());
            let _ = tx.send(docs.map_err(|e| e.to_string()));
        }
        Query::Read(doc, tx) => {
            let found =
                node.maintain(
                    |store, engine| match (engine.master(&doc), engine.version(&doc)) {
                        (Some(text), Some(v)) => Ok(Some((v, String::from(text)))),
                        _ => store
                            .load(&doc)
                            .map(|d| d.map(|d| (d.version, String::from(&d.text)))),
                    },
                );
            let _ = tx.send(found.map_err(|e| e.to_string()));
        }
        Query::History(doc, after, limit, tx) => {
            let page = node.maintain(|store, _| history_page(store, &doc, after, limit));
            let _ = tx.send(page.map_err(|e| e.to_string()));
        }
        Query::TextAt(doc, version, tx) => {
            let text = node.maintain(|store, _| store.text_as_of(&doc, version));
            let _ = tx.send(
                text.map(|t| t.map(|t| t.to_string()))
                    .map_err(|e| e.to_string()),
            );
        }
    }
}

/// Up to `limit` kept changes of `doc` after `after`, each as a delta on the text before it
/// (replayed from the text as of the first one's version: O(text + changes)).
fn history_page(
    store: &SqliteStore,
    doc: &str,
    after: u64,
    limit: usize,
) -> Result<Option<crate::http::HistoryPage>, dsync_store::StoreError> {
    let Some(h) = store.history(doc, after, limit)? else {
        return Ok(None);
    };
    let mut changes = Vec::with_capacity(h.changes.len());
    if let Some(first) = h.changes.first() {
        let Some(mut text) = store.text_as_of(doc, first.version - 1)? else {
            return Ok(None);
        };
        for c in h.changes {
            let delta = dsync_engine::Delta::from_operation(&c.op, &text).to_string();
            c.op.apply_in_place(&mut text)
                .map_err(|e| dsync_store::StoreError::Corrupt {
                    table: "history",
                    what: e.to_string(),
                })?;
            changes.push(crate::http::HistoryEntry {
                version: c.version,
                at_ms: c.at_ms,
                delta,
            });
        }
    }
    Ok(Some(crate::http::HistoryPage {
        doc: doc.to_string(),
        base_version: h.base_version,
        base_at_ms: h.base_at_ms,
        latest: h.latest,
        changes,
    }))
}

/// Log what an operator wants to see of a reply: sessions opened, resets and refusals.
fn log_reply(peer: PeerId, remote: Option<&SocketAddr>, msg: &ServerMsg) {
    let remote = remote.map_or_else(|| "-".to_string(), SocketAddr::to_string);
    match msg {
        ServerMsg::ConnectOk {
            doc,
            resumed,
            server_version,
            ..
        } => {
            tracing::info!(peer = peer.0, %remote, doc, resumed, version = server_version, "session opened");
        }
        ServerMsg::ServerSync { doc, edits, .. } => {
            for e in edits {
                if let dsync_engine::Edit::Full { version, .. } = e {
                    tracing::info!(peer = peer.0, %remote, doc, version, "reset: full text sent");
                }
            }
        }
        ServerMsg::Error {
            doc, code, message, ..
        } => {
            tracing::info!(
                peer = peer.0,
                %remote,
                doc = doc.as_deref().unwrap_or("-"),
                code = code.as_str(),
                reason = %message,
                "refused"
            );
        }
        ServerMsg::Ping
        | ServerMsg::Pong
        | ServerMsg::Changed { .. }
        | ServerMsg::Presence { .. } => {}
    }
}
