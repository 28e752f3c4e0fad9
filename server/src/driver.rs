//! The tokio TCP driver: accepts connections, splits JSON lines, and feeds one
//! [`ServerNode`] (engine + [`SqliteStore`] + decoding + loading + the batch rule) on a
//! dedicated thread.
//!
//! Why a thread and not a task: the engine and the store are synchronous (SQLite commits with
//! `synchronous=FULL` wait for the disk). One thread owns both, so there is no lock, and a batch
//! of inputs is handled, committed in one transaction, and only then answered.
//!
//! Invariants: nothing a connection sends reaches another connection except through the engine;
//! a connection's outgoing queue is bounded (a peer that does not read is dropped); replies come
//! only from [`ServerNode::commit`], after the batch's commit returned `Ok`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use dsync_engine::{Config, ErrorCode, PeerId, ServerMsg, Time};
use dsync_net::{encode_server, LineBuffer};
use dsync_node::{Output, ServerNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use dsync_store::{SqliteStore, StoreError};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// SQLite database file.
    pub db: PathBuf,
    /// Engine settings (heartbeat, limits, merge strategy).
    pub engine: Config,
    /// Largest accepted frame, in bytes.
    pub max_frame_bytes: usize,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Most frames queued for one connection before it is dropped as too slow.
    pub max_queued_frames: usize,
    /// Most inputs the engine handles before it commits and answers.
    pub max_batch: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            db: PathBuf::from("documents.db"),
            engine: Config::default(),
            max_frame_bytes: dsync_net::DEFAULT_MAX_FRAME_BYTES,
            max_connections: 10_000,
            max_queued_frames: 1_024,
            max_batch: 256,
        }
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
    /// The engine thread died.
    #[error("engine thread stopped unexpectedly")]
    EngineGone,
}

enum Input {
    Open(PeerId, SocketAddr, mpsc::Sender<String>),
    Frame(PeerId, Result<String, dsync_net::DecodeError>),
    Closed(PeerId),
    Shutdown,
}

/// A running server: its bound address, and a way to stop it.
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// Stop accepting, let the engine finish its batch and close the store cleanly.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|_| ServerError::EngineGone)?
    }
}

/// Open the store, bind, and serve in the background until [`Running::shutdown`].
pub async fn start(cfg: ServerConfig) -> Result<Running, ServerError> {
    let store = SqliteStore::open(&cfg.db).map_err(|error| ServerError::Store {
        path: cfg.db.clone(),
        error,
    })?;
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
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(serve(cfg, store, listener, stop_rx));
    Ok(Running { addr, stop, task })
}

async fn serve(
    cfg: ServerConfig,
    store: SqliteStore,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let (tx, rx) = std_mpsc::channel::<Input>();
    let engine_cfg = cfg.clone();
    let engine = std::thread::Builder::new()
        .name("dsync-engine".into())
        .spawn(move || engine_thread(engine_cfg, store, rx))
        .map_err(|_| ServerError::EngineGone)?;
    let mut next_peer = 1u64;
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let peer = PeerId(next_peer);
                next_peer += 1;
                if open.load(std::sync::atomic::Ordering::Relaxed) >= cfg.max_connections {
                    tracing::warn!(%remote, "refusing connection: at the maximum");
                    tokio::spawn(refuse(stream, cfg.max_connections));
                    continue;
                }
                open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(peer = peer.0, %remote, "connection opened");
                let tx = tx.clone();
                let open = open.clone();
                let (max_frame, max_queue) = (cfg.max_frame_bytes, cfg.max_queued_frames);
                tokio::spawn(async move {
                    let why = connection(peer, remote, stream, tx, max_frame, max_queue).await;
                    open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(peer = peer.0, %remote, reason = %why, "connection closed");
                });
            }
        }
    }
    tracing::info!("shutting down: no new connections; committing and closing the store");
    let _ = tx.send(Input::Shutdown);
    tokio::task::spawn_blocking(move || engine.join())
        .await
        .map_err(|_| ServerError::EngineGone)?
        .map_err(|_| ServerError::EngineGone)?
}

async fn refuse(mut stream: TcpStream, max: usize) {
    let msg = ServerMsg::Error {
        doc: None,
        code: ErrorCode::TooManyConnections,
        message: format!("the server has its maximum of {max} connections"),
    };
    let _ = stream.write_all(encode_server(&msg).as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Serve one connection until it ends; returns why it ended (for the log).
async fn connection(
    peer: PeerId,
    remote: SocketAddr,
    stream: TcpStream,
    tx: std_mpsc::Sender<Input>,
    max_frame: usize,
    max_queue: usize,
) -> String {
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<String>(max_queue);
    if tx.send(Input::Open(peer, remote, out_tx)).is_err() {
        return "the server is stopping".into();
    }
    let writer = tokio::spawn(async move {
        while let Some(line) = out_rx.recv().await {
            if wr.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut frames = LineBuffer::new(max_frame);
    let mut buf = vec![0u8; 64 * 1024];
    let why = loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) => break "the peer closed it".to_string(),
            Err(e) => break format!("read failed: {e}"),
            Ok(n) => n,
        };
        frames.push(&buf[..n]);
        while let Some(frame) = frames.next_frame() {
            if tx.send(Input::Frame(peer, frame)).is_err() {
                writer.abort();
                return "the server is stopping".into();
            }
        }
        if writer.is_finished() {
            break "the server closed it".to_string();
        }
    };
    let _ = tx.send(Input::Closed(peer));
    writer.abort();
    why
}

fn engine_thread(
    cfg: ServerConfig,
    store: SqliteStore,
    rx: std_mpsc::Receiver<Input>,
) -> Result<(), ServerError> {
    let start = Instant::now();
    let now = || Time(start.elapsed().as_millis() as u64);
    let mut node = ServerNode::new(cfg.engine, store, cfg.max_frame_bytes);
    let mut conns: BTreeMap<PeerId, mpsc::Sender<String>> = BTreeMap::new();
    // Peer addresses and the documents in memory, for the log only.
    let mut remotes: BTreeMap<PeerId, SocketAddr> = BTreeMap::new();
    let mut loaded: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let store_err = |error| ServerError::Store {
        path: cfg.db.clone(),
        error,
    };
    loop {
        let wait = node
            .poll_timeout()
            .map(|t| Duration::from_millis(t.0.saturating_sub(now().0)))
            .unwrap_or(Duration::from_secs(3600));
        let first = match rx.recv_timeout(wait) {
            Ok(i) => Some(i),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch: Vec<Input> = first.into_iter().collect();
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(i) => batch.push(i),
                Err(_) => break,
            }
        }
        let mut shutdown = false;
        for input in batch {
            let t = now();
            match input {
                Input::Open(peer, remote, out) => {
                    conns.insert(peer, out);
                    remotes.insert(peer, remote);
                }
                Input::Frame(peer, frame) => node.receive_frame(t, peer, frame),
                Input::Closed(peer) => {
                    conns.remove(&peer);
                    remotes.remove(&peer);
                    node.closed(t, peer);
                }
                Input::Shutdown => shutdown = true,
            }
        }
        node.handle_timeout(now());
        // The engine loads a document on its first `connect` and lets it go when its last
        // session detaches (the store has it).
        for doc in node.engine().documents() {
            if loaded.insert(doc.to_string()) {
                let bytes = node.engine().master(doc).map_or(0, str::len);
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
        let released = match node.commit(now().0) {
            Ok((n, released)) => {
                node = n;
                released
            }
            Err(failed) => {
                // Nothing of this batch may be acknowledged, and the engine already counted it
                // as applied: stop. Clients keep their edits and resend to the next server.
                tracing::error!(error = %failed.error, "store commit failed; stopping");
                return Err(store_err(failed.error));
            }
        };
        for out in released.outputs {
            match out {
                Output::Send { to, msg, line } => {
                    log_reply(to, remotes.get(&to), &msg);
                    if let Some(c) = conns.get(&to) {
                        if c.try_send(line).is_err() {
                            tracing::warn!(peer = to.0, "peer too slow or gone; dropping it");
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
        if shutdown {
            break;
        }
    }
    node.into_store().close().map_err(store_err)?;
    tracing::info!("store closed cleanly");
    Ok(())
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
        ServerMsg::Error { doc, code, message } => {
            tracing::info!(
                peer = peer.0,
                %remote,
                doc = doc.as_deref().unwrap_or("-"),
                code = code.as_str(),
                reason = %message,
                "refused"
            );
        }
        ServerMsg::Ping | ServerMsg::Pong => {}
    }
}
