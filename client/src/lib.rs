//! `dsync-client`: a thin tokio driver over [`dsync_node::ClientNode`] — one TCP
//! connection, one document — with reconnection, plus the command language the terminal
//! client and its scripted mode speak, and the load generator.
//!
//! Invariants: the engine is driven as everywhere (feed one input, drain every output, re-arm
//! the timer from `poll_timeout`); unacknowledged edits live in the engine and survive any
//! number of reconnections; every wait is bounded; every queue is bounded (edits: 1,024
//! requests, then `edit` waits; notices: [`MAX_NOTICES`], then the oldest are dropped and the
//! reader is told how many).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use dsync_client::{Edit, Session, SessionConfig};
//!
//! let session = Session::start(SessionConfig::new("localhost:7878", "notes"), None);
//! session.wait_connected(Duration::from_secs(5)).await?;
//! session.edit(Edit::Append("hello".into())).await?;
//! let synced = session.wait_converged(Duration::from_secs(5)).await?;
//! println!("{}", synced.text);
//! session.stop().await;
//! # Ok(()) }
//! ```

pub mod history;
pub mod hostile;
pub mod load;
pub mod usage;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsync_engine::{ClientEvent, ClientMsg, Config, Rope, Time};
use dsync_node::{ClientNode, ClientNodeConfig, ClientNodeOutput};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, watch};

/// Most notices a session keeps for a reader that has not read them; past this the oldest are
/// dropped and the reader gets [`Notice::Missed`].
pub const MAX_NOTICES: usize = 256;

/// Longest text kept in a [`Change`] for display (chars); the counts stay exact.
pub const CHANGE_PREVIEW_CHARS: usize = 60;

/// Something that happened to a session, as it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The document is open on the server (`resumed`: the previous session continued).
    Connected {
        /// True when the server resumed this client's session.
        resumed: bool,
    },
    /// A connection attempt failed; the next one is in `retry_in`.
    ConnectFailed {
        /// Why (the resolver's or the socket's error).
        cause: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// An open connection ended; unsent edits are kept and the next attempt is in `retry_in`.
    Disconnected {
        /// Why.
        cause: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// Remote changes were merged into the text.
    RemoteChange(Change),
    /// The server replaced this client's copy with its text; local typing was merged onto it.
    Reset,
    /// Typing that could never be accepted was dropped (the document would exceed the server's
    /// size limit); the text is the server's again.
    LocalChangeDropped {
        /// The protocol's error code (`document_too_large`).
        reason: String,
    },
    /// The server refused something.
    ServerError {
        /// The protocol's error code (`bad_delta`, `too_many_clients`, …).
        code: String,
        /// The server's message.
        message: String,
    },
    /// A frame from the server could not be decoded; it was skipped.
    BadFrame(String),
    /// This reader fell behind and this many older notices were dropped.
    Missed(u64),
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = |d: &Duration| d.as_secs_f64();
        match self {
            Notice::Connected { resumed: true } => write!(f, "connected (session resumed)"),
            Notice::Connected { resumed: false } => write!(f, "connected"),
            Notice::ConnectFailed { cause, retry_in } => {
                write!(
                    f,
                    "cannot connect: {cause}; retrying in {:.2} s",
                    secs(retry_in)
                )
            }
            Notice::Disconnected { cause, retry_in } => write!(
                f,
                "disconnected: {cause}; your edits are kept, reconnecting in {:.2} s",
                secs(retry_in)
            ),
            Notice::RemoteChange(c) => write!(f, "remote: {c}"),
            Notice::Reset => write!(
                f,
                "reset: the server's text replaced ours, local typing kept"
            ),
            Notice::ServerError { code, message } => write!(f, "server error {code}: {message}"),
            Notice::LocalChangeDropped { reason } => write!(
                f,
                "your latest typing was dropped ({reason}): the document would pass the server's size limit"
            ),
            Notice::BadFrame(e) => write!(f, "bad frame from the server (skipped): {e}"),
            Notice::Missed(n) => write!(f, "({n} older notices dropped)"),
        }
    }
}

/// What remote changes did to the text, as one span: at `line:column` (1-based, in chars),
/// `removed` chars were replaced by `inserted`. Several changes merged at once show as the one
/// span that covers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Char position of the span.
    pub at: usize,
    /// Line of the span (1-based).
    pub line: usize,
    /// Column of the span (1-based, chars).
    pub column: usize,
    /// Chars removed.
    pub removed: usize,
    /// The removed text, cut to [`CHANGE_PREVIEW_CHARS`].
    pub removed_text: String,
    /// Chars inserted.
    pub inserted: usize,
    /// The inserted text, cut to [`CHANGE_PREVIEW_CHARS`].
    pub inserted_text: String,
}

impl Change {
    /// The span where `before` and `after` differ (common prefix and suffix removed), or
    /// `None` when they are equal.
    pub fn between(before: &str, after: &str) -> Option<Change> {
        if before == after {
            return None;
        }
        let prefix = dsync_engine::diff::common_prefix_len(before, after);
        let (b_rest, a_rest) = (&before[prefix..], &after[prefix..]);
        let suffix =
            dsync_engine::diff::common_suffix_len(b_rest, a_rest, b_rest.len().min(a_rest.len()));
        let removed = &b_rest[..b_rest.len() - suffix];
        let inserted = &a_rest[..a_rest.len() - suffix];
        let head = &before[..prefix];
        let line = head.matches('\n').count() + 1;
        let column = head.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let cut = |t: &str| -> String {
            let n = t.chars().count();
            if n <= CHANGE_PREVIEW_CHARS {
                t.to_string()
            } else {
                let mut s: String = t.chars().take(CHANGE_PREVIEW_CHARS).collect();
                s.push('…');
                s
            }
        };
        Some(Change {
            at: head.chars().count(),
            line,
            column,
            removed: removed.chars().count(),
            removed_text: cut(removed),
            inserted: inserted.chars().count(),
            inserted_text: cut(inserted),
        })
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} ", self.line, self.column)?;
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        match (self.removed, self.inserted) {
            (0, n) => write!(f, "+{n} char{} {:?}", plural(n), self.inserted_text),
            (n, 0) => write!(f, "-{n} char{} {:?}", plural(n), self.removed_text),
            (r, i) => write!(
                f,
                "-{r} char{} {:?} +{i} char{} {:?}",
                plural(r),
                self.removed_text,
                plural(i),
                self.inserted_text
            ),
        }
    }
}

/// What a session shows to its user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The current text (a rope: the engine's own, shared, so a snapshot costs no copy).
    pub text: Rope,
    /// A connection is up and the document open.
    pub connected: bool,
    /// Nothing pending, nothing in flight, no unsent typing.
    pub settled: bool,
    /// Empty round trips completed since the last change (local or remote).
    pub quiet_polls: u32,
    /// Remote changes merged so far.
    pub remote_changes: u64,
    /// The client id the session runs under now (it changes if the server said
    /// `session_taken`).
    pub client_id: String,
    /// Edits of this session the server acknowledged: every client version below this one
    /// (so the server's stored session holds at least this many).
    pub acked: u64,
    /// The engine's counters.
    pub stats: dsync_engine::Stats,
    /// The other clients' cursors, as the server last listed them (only when this session
    /// sends presence: [`SessionConfig::presence`]).
    pub others: Vec<dsync_engine::PeerPresence>,
}

impl Snapshot {
    /// Converged as far as this client can tell: connected, and two empty round trips since
    /// the last change, local or remote (a local edit starts the count again, and a round trip
    /// that carried an edit is not empty), so nothing of its own is pending and whatever the
    /// server had has arrived. A poll may be in flight: with thousands of clients polling, one
    /// always is somewhere, and requiring none made idle loads never look converged.
    pub fn converged(&self) -> bool {
        self.connected && self.quiet_polls >= 2
    }
}

/// A change the user asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Insert text before a char position.
    Insert(usize, String),
    /// Delete chars `start..end`.
    Delete(usize, usize),
    /// Append at the end.
    Append(String),
    /// Replace the whole text.
    Replace(String),
}

/// Round-trip measurements (for the load mode).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Round-trip times of completed sync requests, in microseconds.
    pub rtt_us: Mutex<Vec<u64>>,
    /// Errors: `error` messages received and connections lost.
    pub errors: std::sync::atomic::AtomicU64,
}

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Server address, `host:port` (a name is resolved again at every connection attempt).
    pub server: String,
    /// Document name.
    pub doc: String,
    /// Client id (unique per run of the client).
    pub client_id: String,
    /// Engine settings.
    pub engine: Config,
    /// First reconnect delay; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Largest frame accepted from the server.
    pub max_frame_bytes: usize,
    /// Describe each remote change as a [`Notice::RemoteChange`] (compares the text before and
    /// after; the load generator turns it off).
    pub describe_changes: bool,
    /// The token every `connect` carries (a server with access control requires one:
    /// `dsync-server token`).
    pub token: Option<String>,
    /// Speak TLS to the server, verifying its certificate with this configuration
    /// ([`tls_config`]) against the host part of `server`.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Take part in presence under this name: the session's cursor (where it last edited)
    /// goes to the other clients, and theirs come back ([`Snapshot::others`]). `None`: no
    /// presence traffic (the load generator).
    pub presence: Option<String>,
}

impl SessionConfig {
    /// Defaults for `doc` on `server` (`host:port`), with a fresh client id.
    pub fn new(server: impl ToString, doc: &str) -> Self {
        SessionConfig {
            server: server.to_string(),
            doc: doc.to_string(),
            client_id: fresh_client_id(),
            engine: Config::default(),
            reconnect_min: Duration::from_millis(dsync_node::RECONNECT_MIN_MS),
            reconnect_max: Duration::from_millis(dsync_node::RECONNECT_MAX_MS),
            max_frame_bytes: dsync_net::DEFAULT_MAX_FRAME_BYTES,
            describe_changes: true,
            token: None,
            tls: None,
            presence: None,
        }
    }
}

/// One line about another client's cursor, for `show`: who (name, token subject and client
/// id), and where as line:column of `text` (1-based; the other client's text may differ from
/// ours by changes in flight, so the place is where it was, near enough).
pub fn describe_presence(text: &str, p: &dsync_engine::PeerPresence) -> String {
    let place = |at: u64| {
        let before: String = text.chars().take(at as usize).collect();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{line}:{column}")
    };
    let who = match (p.name.is_empty(), p.user.is_empty()) {
        (false, false) => format!("{} ({}, {})", p.name, p.user, p.id),
        (false, true) => format!("{} ({})", p.name, p.id),
        (true, false) => format!("{} ({})", p.user, p.id),
        (true, true) => p.id.clone(),
    };
    if p.anchor == p.cursor {
        format!("{who} at {}", place(p.cursor))
    } else {
        format!(
            "{who} at {}, selecting from {}",
            place(p.cursor),
            place(p.anchor)
        )
    }
}

/// A TLS client configuration that verifies the server: against the certificates in `ca` (a
/// PEM file: a private authority, or a self-signed server certificate), else against the
/// web's public roots (Mozilla's, from `webpki-roots`). There is no way to turn verification
/// off.
pub fn tls_config(
    ca: Option<&std::path::Path>,
) -> anyhow::Result<Arc<tokio_rustls::rustls::ClientConfig>> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                anyhow::bail!("{} holds no usable certificate", path.display());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// What a connection to the server is: TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Open the TLS session on `tcp` when the config asks for one, naming the host of `server`.
async fn wrap(cfg: &SessionConfig, tcp: TcpStream) -> Result<Box<dyn Io>, String> {
    let Some(tls) = &cfg.tls else {
        return Ok(Box::new(tcp));
    };
    let host = cfg
        .server
        .rsplit_once(':')
        .map_or(cfg.server.as_str(), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("TLS: {host:?} is not a server name: {e}"))?;
    let handshake = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp);
    match tokio::time::timeout(Duration::from_secs(5), handshake).await {
        Ok(Ok(s)) => Ok(Box::new(s)),
        Ok(Err(e)) => Err(format!("TLS: {e}")),
        Err(_) => Err("TLS: no handshake within 5 s".into()),
    }
}

/// A client id unlikely to repeat: process id, time and a counter (not a secret).
pub fn fresh_client_id() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("c-{}-{:x}-{n}", std::process::id(), t & 0xffff_ffff_ffff)
}

/// An edit and where to say whether it was applied.
/// An edit worked out from the text as it is when the session applies it: `None` changes
/// nothing.
pub type ComputeEdit = Box<dyn FnOnce(&str) -> Option<Edit> + Send>;

/// What the session task is asked to do with the text.
enum EditRequest {
    /// An edit, and where to say whether it was applied.
    Edit(Edit, tokio::sync::oneshot::Sender<Result<(), String>>),
    /// An edit computed from the text at that moment, and where to send the text before and
    /// after it.
    Computed(
        ComputeEdit,
        tokio::sync::oneshot::Sender<Result<(String, String), String>>,
    ),
}

/// A running session: send edits, watch the text, read its notices.
pub struct Session {
    edits: mpsc::Sender<EditRequest>,
    state: watch::Receiver<Snapshot>,
    notices: broadcast::Receiver<Notice>,
    task: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Start a session in the background; it connects and reconnects by itself.
    pub fn start(cfg: SessionConfig, metrics: Option<Arc<Metrics>>) -> Session {
        let (edits, edit_rx) = mpsc::channel(1024);
        let (state_tx, state) = watch::channel(Snapshot::default());
        let (notice_tx, notices) = broadcast::channel(MAX_NOTICES);
        let task = tokio::spawn(run(cfg, edit_rx, state_tx, notice_tx, metrics));
        Session {
            edits,
            state,
            notices,
            task,
        }
    }

    /// Apply an edit to the local text (it syncs with the next cycle). Returns once the edit
    /// is in the text (and the snapshot), or why it was refused.
    pub async fn edit(&self, e: Edit) -> anyhow::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.edits
            .send(EditRequest::Edit(e, tx))
            .await
            .map_err(|_| anyhow::anyhow!("session stopped"))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => anyhow::bail!("{why}"),
            Err(_) => anyhow::bail!("session stopped"),
        }
    }

    /// Apply the edit `f` works out from the text as it is at that moment (no remote change
    /// can land between reading the text and editing it), and return the text before and
    /// after. Test harnesses use this to place an edit relative to what the text holds.
    pub async fn edit_computed(&self, f: ComputeEdit) -> anyhow::Result<(String, String)> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.edits
            .send(EditRequest::Computed(f, tx))
            .await
            .map_err(|_| anyhow::anyhow!("session stopped"))?;
        match rx.await {
            Ok(Ok(texts)) => Ok(texts),
            Ok(Err(why)) => anyhow::bail!("{why}"),
            Err(_) => anyhow::bail!("session stopped"),
        }
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.state.borrow().clone()
    }

    /// A receiver that changes with the snapshot.
    pub fn watch(&self) -> watch::Receiver<Snapshot> {
        self.state.clone()
    }

    /// The next notice, waiting for one; `None` once the session stopped.
    pub async fn next_notice(&mut self) -> Option<Notice> {
        match self.notices.recv().await {
            Ok(n) => Some(n),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Notice::Missed(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The notices not read yet, oldest first, without waiting.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        let mut v = Vec::new();
        loop {
            match self.notices.try_recv() {
                Ok(n) => v.push(n),
                Err(broadcast::error::TryRecvError::Lagged(n)) => v.push(Notice::Missed(n)),
                Err(_) => break,
            }
        }
        v
    }

    /// Errors reported so far (server `error` messages, undecodable frames), oldest first;
    /// other notices read on the way are dropped.
    pub fn take_errors(&mut self) -> Vec<String> {
        self.take_notices()
            .into_iter()
            .filter(|n| matches!(n, Notice::ServerError { .. } | Notice::BadFrame(_)))
            .map(|n| n.to_string())
            .collect()
    }

    /// Wait until the document is open (its text has arrived) or `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<Snapshot> {
        let mut rx = self.state.clone();
        let done = tokio::time::timeout(timeout, rx.wait_for(|s| s.connected)).await;
        match done {
            Ok(Ok(s)) => Ok(s.clone()),
            _ => anyhow::bail!(
                "could not open the document within {} ms",
                timeout.as_millis()
            ),
        }
    }

    /// Wait until converged (see [`Snapshot::converged`]) or `timeout`.
    pub async fn wait_converged(&self, timeout: Duration) -> anyhow::Result<Snapshot> {
        let mut rx = self.state.clone();
        let done = tokio::time::timeout(timeout, rx.wait_for(Snapshot::converged)).await;
        match done {
            Ok(Ok(s)) => Ok(s.clone()),
            _ => anyhow::bail!("not converged within {} ms", timeout.as_millis()),
        }
    }

    /// Stop at once, as a crash would: the connection drops and whatever was not
    /// acknowledged is lost with the task (the session can be stopped from anywhere that
    /// holds it).
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Stop the session (unsent typing is dropped with it).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

struct Driver {
    node: ClientNode,
    start: Instant,
    state: watch::Sender<Snapshot>,
    notices: broadcast::Sender<Notice>,
    metrics: Option<Arc<Metrics>>,
    sent_at: Vec<(u64, Instant)>,
    describe_changes: bool,
    /// Our presence name, if this session takes part.
    presence: Option<String>,
}

impl Driver {
    fn now(&self) -> Time {
        Time(self.start.elapsed().as_millis() as u64)
    }

    fn publish(&self) {
        let e = self.node.engine();
        let snap = Snapshot {
            text: e.text().clone(),
            connected: e.is_connected(),
            settled: e.is_settled(),
            quiet_polls: self.node.quiet_polls(),
            remote_changes: self.node.remote_changes(),
            client_id: e.client_id().to_string(),
            acked: e
                .pending()
                .first()
                .map_or(e.shadow().client_version, |p| p.version()),
            stats: *e.stats(),
            others: e.others().to_vec(),
        };
        self.state.send_if_modified(|s| {
            let changed = *s != snap;
            *s = snap;
            changed
        });
    }

    /// Make the user's edit; then the user's cursor is where it ended (presence).
    fn edit(&mut self, e: Edit) -> Result<(), dsync_engine::EngineError> {
        let at = self.edit_end(&e);
        self.node.edit(|eng| match e {
            Edit::Insert(at, s) => eng.insert(at, &s),
            Edit::Delete(a, b) => eng.delete(a, b),
            Edit::Append(s) => {
                let n = eng.text().len_chars();
                eng.insert(n, &s)
            }
            Edit::Replace(s) => eng.set_text(&s),
        })?;
        self.moved_to(at);
        Ok(())
    }

    fn apply(&mut self, req: EditRequest) {
        match req {
            EditRequest::Edit(e, reply) => {
                let r = self.edit(e);
                self.publish();
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            EditRequest::Computed(f, reply) => {
                let before = self.node.engine().text().to_string();
                let r = match f(&before) {
                    Some(e) => self.edit(e),
                    None => Ok(()),
                };
                let after = self.node.engine().text().to_string();
                self.publish();
                let _ = reply.send(r.map(|()| (before, after)).map_err(|e| e.to_string()));
            }
        }
    }

    /// Where an edit leaves this user's cursor (chars): after what it inserted, or where it
    /// deleted.
    fn edit_end(&self, e: &Edit) -> usize {
        let len = self.node.engine().text().len_chars();
        match e {
            Edit::Insert(at, s) => at + s.chars().count(),
            Edit::Delete(a, _) => *a,
            Edit::Append(s) => len + s.chars().count(),
            Edit::Replace(s) => s.chars().count(),
        }
    }

    /// Our cursor moved to `at`: tell the others, if this session takes part in presence.
    fn moved_to(&mut self, at: usize) {
        if let Some(name) = &self.presence {
            let name = name.clone();
            self.node.set_presence(&name, at as u64, at as u64);
        }
    }

    async fn wait_taking_edits(
        &mut self,
        edits: &mut mpsc::Receiver<EditRequest>,
        delay: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                e = edits.recv() => match e {
                    Some(e) => self.apply(e),
                    None => return false,
                },
            }
        }
    }

    fn notify(&self, n: Notice) {
        let _ = self.notices.send(n);
    }

    /// Take the node's outputs: frames go to `out`, the rest to notices and metrics. False when
    /// the server went silent (the connection must be dropped).
    fn drain(&mut self, out: &mut String) -> bool {
        let mut alive = true;
        let mut remote = false;
        // Notices go out after the snapshot is published, so a reader woken by one sees the
        // state it describes.
        let mut notices = Vec::new();
        while let Some(o) = self.node.poll_output() {
            match o {
                ClientNodeOutput::Transmit(t) => {
                    if let ClientMsg::ClientSync { seq, .. } = &t.msg {
                        if self.metrics.is_some() {
                            self.sent_at.push((*seq, Instant::now()));
                            if self.sent_at.len() > 64 {
                                self.sent_at.remove(0);
                            }
                        }
                    }
                    out.push_str(&t.line);
                }
                ClientNodeOutput::Answered { seq } => {
                    if let Some(m) = &self.metrics {
                        if let Some(i) = self.sent_at.iter().position(|(s, _)| *s == seq) {
                            let us = self.sent_at[i].1.elapsed().as_micros() as u64;
                            self.sent_at.drain(..=i);
                            if let Ok(mut v) = m.rtt_us.lock() {
                                v.push(us);
                            }
                        }
                    }
                }
                ClientNodeOutput::BadFrame(e) => notices.push(Notice::BadFrame(e.to_string())),
                ClientNodeOutput::Event(ev) => match ev {
                    ClientEvent::RemoteChange => remote = true,
                    ClientEvent::ServerSilent => alive = false,
                    ClientEvent::ServerError { code, message } => {
                        if let Some(m) = &self.metrics {
                            m.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        notices.push(Notice::ServerError {
                            code: code.as_str().to_string(),
                            message,
                        });
                    }
                    ClientEvent::Reset => notices.push(Notice::Reset),
                    ClientEvent::LocalChangeDropped { reason } => {
                        notices.push(Notice::LocalChangeDropped {
                            reason: reason.as_str().to_string(),
                        })
                    }
                    ClientEvent::Connected { resumed } => {
                        notices.push(Notice::Connected { resumed })
                    }
                    // The snapshot carries the others' cursors.
                    ClientEvent::Presence => {}
                },
            }
        }
        // Describe remote changes against what readers saw last (the load generator's sessions
        // skip the comparison).
        if remote && self.describe_changes {
            if let Some(c) = Change::between(
                &self.state.borrow().text.flat(),
                &self.node.engine().text().flat(),
            ) {
                notices.push(Notice::RemoteChange(c));
            }
        }
        self.publish();
        for n in notices {
            self.notify(n);
        }
        alive
    }
}

async fn run(
    cfg: SessionConfig,
    mut edits: mpsc::Receiver<EditRequest>,
    state: watch::Sender<Snapshot>,
    notices: broadcast::Sender<Notice>,
    metrics: Option<Arc<Metrics>>,
) {
    let node_cfg = ClientNodeConfig {
        max_frame_bytes: cfg.max_frame_bytes,
        reconnect_min_ms: cfg.reconnect_min.as_millis().max(1) as u64,
        reconnect_max_ms: cfg.reconnect_max.max(cfg.reconnect_min).as_millis().max(1) as u64,
    };
    let mut node = ClientNode::new(cfg.engine, node_cfg, cfg.client_id.clone(), cfg.doc.clone());
    node.set_token(cfg.token.clone());
    if let Some(name) = &cfg.presence {
        node.set_presence(name, 0, 0);
    }
    let mut d = Driver {
        node,
        start: Instant::now(),
        state,
        notices,
        metrics,
        sent_at: Vec::new(),
        describe_changes: cfg.describe_changes,
        presence: cfg.presence.clone(),
    };
    loop {
        let connected = match tokio::time::timeout(
            Duration::from_secs(5),
            TcpStream::connect(cfg.server.as_str()),
        )
        .await
        {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                wrap(&cfg, s).await
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 5 s".to_string()),
        };
        let stream = match connected {
            Ok(s) => s,
            Err(cause) => {
                let retry_in = Duration::from_millis(d.node.attempt_failed());
                d.notify(Notice::ConnectFailed { cause, retry_in });
                if !d.wait_taking_edits(&mut edits, retry_in).await {
                    return;
                }
                continue;
            }
        };
        tracing::debug!(server = %cfg.server, doc = %cfg.doc, "connected");
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = String::new();
        let now = d.now();
        d.node.connected(now);
        let mut ok = d.drain(&mut out);
        let mut cause = "the server went silent (no answer to heartbeats)".to_string();
        while ok {
            if !out.is_empty() {
                if let Err(e) = wr.write_all(out.as_bytes()).await {
                    cause = format!("write failed: {e}");
                    break;
                }
                out.clear();
            }
            let wake = d
                .node
                .poll_timeout()
                .map(|t| d.start + Duration::from_millis(t.0))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
            tokio::select! {
                r = rd.read(&mut buf) => {
                    let n = match r {
                        Ok(0) => { cause = "the server closed the connection".into(); break }
                        Err(e) => { cause = format!("read failed: {e}"); break }
                        Ok(n) => n,
                    };
                    let now = d.now();
                    d.node.receive_bytes(now, &buf[..n]);
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    let now = d.now();
                    d.node.handle_timeout(now);
                }
                e = edits.recv() => match e {
                    Some(e) => d.apply(e),
                    None => return,
                },
            }
            ok = d.drain(&mut out);
        }
        tracing::debug!(%cause, "connection lost; reconnecting");
        if let Some(m) = &d.metrics {
            m.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let retry_in = Duration::from_millis(d.node.lost());
        d.drain(&mut String::new());
        d.notify(Notice::Disconnected { cause, retry_in });
        if !d.wait_taking_edits(&mut edits, retry_in).await {
            return;
        }
    }
}

/// One command of the terminal client and its scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print the text.
    Show,
    /// An edit.
    Edit(Edit),
    /// Wait until converged, at most this long.
    Wait(Duration),
    /// Sleep.
    Sleep(Duration),
    /// Print the help.
    Help,
    /// Stop.
    Quit,
}

impl Command {
    /// Empty the whole document: said explicitly, never by a `replace` with no text.
    pub const CLEAR: Command = Command::Edit(Edit::Replace(String::new()));
}

/// The command language, for `help`.
pub const HELP: &str = "commands:
  show | print            print the text
  insert POS TEXT         insert TEXT before char POS (\\n for a newline, \\\\ for a backslash)
  delete START END        delete chars START..END
  append TEXT             add TEXT at the end
  replace TEXT            replace the whole text with TEXT (not empty)
  clear                   empty the whole document
  wait [MS]               wait until in sync with the server (default 10000 ms)
  sleep MS                pause
  help                    this text
  quit                    leave";

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parse one line. Blank lines and `#` comments give `Ok(None)`.
pub fn parse_command(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
    let num = |s: &str, what: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| format!("{what} must be a number, not {s:?}"))
    };
    let cmd = match word {
        "show" | "print" => Command::Show,
        "help" | "?" => Command::Help,
        "quit" | "exit" => Command::Quit,
        "append" if rest.is_empty() => return Err("usage: append TEXT".into()),
        "append" => Command::Edit(Edit::Append(unescape(rest))),
        "replace" if rest.is_empty() => {
            return Err(
                "usage: replace TEXT (it replaces the whole document; `clear` empties it)".into(),
            )
        }
        "replace" => Command::Edit(Edit::Replace(unescape(rest))),
        "clear" if rest.trim().is_empty() => Command::CLEAR,
        "clear" => return Err("usage: clear (no arguments; it empties the document)".into()),
        "insert" => {
            let (pos, text) = rest.split_once(' ').ok_or("usage: insert POS TEXT")?;
            Command::Edit(Edit::Insert(num(pos, "POS")?, unescape(text)))
        }
        "delete" => {
            let mut it = rest.split_whitespace();
            let (a, b) = (
                it.next().ok_or("usage: delete START END")?,
                it.next().ok_or("usage: delete START END")?,
            );
            Command::Edit(Edit::Delete(num(a, "START")?, num(b, "END")?))
        }
        "wait" => Command::Wait(Duration::from_millis(if rest.trim().is_empty() {
            10_000
        } else {
            num(rest, "MS")? as u64
        })),
        "sleep" => Command::Sleep(Duration::from_millis(num(rest, "MS")? as u64)),
        other => return Err(format!("unknown command {other:?}; try `help`")),
    };
    Ok(Some(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_described_by_place_and_text() {
        let c = Change::between("ab\ncd", "ab\ncXd").unwrap();
        assert_eq!((c.at, c.line, c.column), (4, 2, 2));
        assert_eq!(c.to_string(), "2:2 +1 char \"X\"");
        let c = Change::between("hello world", "hello").unwrap();
        assert_eq!(c.to_string(), "1:6 -6 chars \" world\"");
        let c = Change::between("été", "éTé").unwrap();
        assert_eq!(c.to_string(), "1:2 -1 char \"t\" +1 char \"T\"");
        assert_eq!(Change::between("same", "same"), None);
        let long = "x".repeat(500);
        let c = Change::between("", &long).unwrap();
        assert_eq!(c.inserted, 500);
        assert_eq!(c.inserted_text.chars().count(), CHANGE_PREVIEW_CHARS + 1);
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse_command("insert 3 a b\\n").unwrap(),
            Some(Command::Edit(Edit::Insert(3, "a b\n".into())))
        );
        assert_eq!(
            parse_command("delete 1 4").unwrap(),
            Some(Command::Edit(Edit::Delete(1, 4)))
        );
        assert_eq!(parse_command("  # note").unwrap(), None);
        assert_eq!(
            parse_command("wait").unwrap(),
            Some(Command::Wait(Duration::from_secs(10)))
        );
        assert!(parse_command("insert x y").is_err());
        // An empty document is asked for by name, never by a `replace` with no text.
        assert!(parse_command("replace").unwrap_err().contains("clear"));
        assert!(parse_command("replace ").is_err());
        assert_eq!(parse_command("clear").unwrap(), Some(Command::CLEAR));
        assert!(parse_command("append").is_err());
        assert!(parse_command("frobnicate")
            .unwrap_err()
            .contains("unknown command"));
    }
}
