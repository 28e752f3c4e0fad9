//! `dsync-client`: a thin tokio driver over [`dsync_engine::ClientEngine`] — one TCP
//! connection, one document — with reconnection, plus the command language the terminal
//! client and its scripted mode speak, and the load generator.
//!
//! Invariants: the engine is driven as everywhere (feed one input, drain every output, re-arm
//! the timer from `poll_timeout`); unacknowledged edits live in the engine and survive any
//! number of reconnections; every wait is bounded.

pub mod load;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsync_engine::{ClientEngine, ClientEvent, ClientMsg, ClientOutput, Config, ServerMsg, Time};
use dsync_net::{decode_server, encode_client, LineBuffer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

/// What a session shows to its user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The current text.
    pub text: String,
    /// A connection is up and the document open.
    pub connected: bool,
    /// Nothing pending, nothing in flight, no unsent typing.
    pub settled: bool,
    /// Empty round trips completed since the last change (local or remote).
    pub quiet_polls: u32,
    /// Remote changes merged so far.
    pub remote_changes: u64,
}

impl Snapshot {
    /// Converged as far as this client can tell: settled, and two empty round trips since the
    /// last change, so whatever the server had has arrived.
    pub fn converged(&self) -> bool {
        self.connected && self.settled && self.quiet_polls >= 2
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
    /// Server address.
    pub server: SocketAddr,
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
}

impl SessionConfig {
    /// Defaults for `doc` on `server`, with a fresh client id.
    pub fn new(server: SocketAddr, doc: &str) -> Self {
        SessionConfig {
            server,
            doc: doc.to_string(),
            client_id: fresh_client_id(),
            engine: Config::default(),
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(5),
            max_frame_bytes: dsync_net::DEFAULT_MAX_FRAME_BYTES,
        }
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
type EditRequest = (Edit, tokio::sync::oneshot::Sender<Result<(), String>>);

/// A running session: send edits, watch the text.
pub struct Session {
    edits: mpsc::Sender<EditRequest>,
    state: watch::Receiver<Snapshot>,
    errors: mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Start a session in the background; it connects and reconnects by itself.
    pub fn start(cfg: SessionConfig, metrics: Option<Arc<Metrics>>) -> Session {
        let (edits, edit_rx) = mpsc::channel(1024);
        let (state_tx, state) = watch::channel(Snapshot::default());
        let (err_tx, errors) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(cfg, edit_rx, state_tx, err_tx, metrics));
        Session {
            edits,
            state,
            errors,
            task,
        }
    }

    /// Apply an edit to the local text (it syncs with the next cycle). Returns once the edit
    /// is in the text (and the snapshot), or why it was refused.
    pub async fn edit(&self, e: Edit) -> anyhow::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.edits
            .send((e, tx))
            .await
            .map_err(|_| anyhow::anyhow!("session stopped"))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
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

    /// Errors reported so far (bad commands, server `error` messages), oldest first.
    pub fn take_errors(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(e) = self.errors.try_recv() {
            v.push(e);
        }
        v
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

    /// Stop the session (unsent typing is dropped with it).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

struct Driver {
    engine: ClientEngine,
    start: Instant,
    state: watch::Sender<Snapshot>,
    errors: mpsc::UnboundedSender<String>,
    metrics: Option<Arc<Metrics>>,
    sent_at: Vec<(u64, Instant)>,
    quiet: u32,
    remote: u64,
}

impl Driver {
    fn now(&self) -> Time {
        Time(self.start.elapsed().as_millis() as u64)
    }

    fn publish(&self) {
        let e = &self.engine;
        let snap = Snapshot {
            text: e.text().to_string(),
            connected: e.is_connected(),
            settled: e.is_settled(),
            quiet_polls: self.quiet,
            remote_changes: self.remote,
        };
        self.state.send_if_modified(|s| {
            let changed = *s != snap;
            *s = snap;
            changed
        });
    }

    fn apply(&mut self, (e, reply): EditRequest) {
        let eng = &mut self.engine;
        let r = match e {
            Edit::Insert(at, s) => eng.insert(at, &s),
            Edit::Delete(a, b) => eng.delete(a, b),
            Edit::Append(s) => {
                let n = eng.text().chars().count();
                eng.insert(n, &s)
            }
            Edit::Replace(s) => eng.set_text(&s),
        };
        self.quiet = 0;
        self.publish();
        let _ = reply.send(r.map_err(|e| e.to_string()));
    }

    /// Drain outputs into `out` (frames to write); returns false when the server went silent.
    fn drain(&mut self, out: &mut String) -> bool {
        let mut alive = true;
        while let Some(o) = self.engine.poll_output() {
            match o {
                ClientOutput::Send(m) => {
                    if let ClientMsg::ClientSync { seq, .. } = &m {
                        if self.metrics.is_some() {
                            self.sent_at.push((*seq, Instant::now()));
                            if self.sent_at.len() > 64 {
                                self.sent_at.remove(0);
                            }
                        }
                    }
                    out.push_str(&encode_client(&m));
                }
                ClientOutput::Event(ev) => match ev {
                    ClientEvent::RemoteChange => {
                        self.remote += 1;
                        self.quiet = 0;
                    }
                    ClientEvent::ServerSilent => alive = false,
                    ClientEvent::ServerError { code, message } => {
                        if let Some(m) = &self.metrics {
                            m.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        let _ = self
                            .errors
                            .send(format!("server error {}: {message}", code.as_str()));
                    }
                    ClientEvent::Reset | ClientEvent::Connected { .. } => {}
                },
            }
        }
        self.publish();
        alive
    }

    fn on_message(&mut self, msg: ServerMsg) {
        if let ServerMsg::ServerSync { seq, edits, .. } = &msg {
            if let Some(m) = &self.metrics {
                if let Some(i) = self.sent_at.iter().position(|(s, _)| s == seq) {
                    let us = self.sent_at[i].1.elapsed().as_micros() as u64;
                    self.sent_at.drain(..=i);
                    if let Ok(mut v) = m.rtt_us.lock() {
                        v.push(us);
                    }
                }
            }
            let empty = edits.is_empty();
            let now = self.now();
            self.engine.handle_message(now, msg);
            if empty && self.engine.is_settled() {
                self.quiet = self.quiet.saturating_add(1);
            }
            return;
        }
        let now = self.now();
        self.engine.handle_message(now, msg);
    }
}

async fn run(
    cfg: SessionConfig,
    mut edits: mpsc::Receiver<EditRequest>,
    state: watch::Sender<Snapshot>,
    errors: mpsc::UnboundedSender<String>,
    metrics: Option<Arc<Metrics>>,
) {
    let mut d = Driver {
        engine: ClientEngine::new(cfg.engine, cfg.client_id.clone(), cfg.doc.clone()),
        start: Instant::now(),
        state,
        errors,
        metrics,
        sent_at: Vec::new(),
        quiet: 0,
        remote: 0,
    };
    let mut backoff = cfg.reconnect_min;
    loop {
        let stream = match tokio::time::timeout(
            Duration::from_secs(5),
            TcpStream::connect(cfg.server),
        )
        .await
        {
            Ok(Ok(s)) => s,
            _ => {
                // Keep taking edits while the server is away; they sync after reconnecting.
                let deadline = tokio::time::Instant::now() + backoff;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        e = edits.recv() => match e {
                            Some(e) => d.apply(e),
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(cfg.reconnect_max);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tracing::info!(server = %cfg.server, doc = %cfg.doc, "connected");
        let (mut rd, mut wr) = stream.into_split();
        let mut frames = LineBuffer::new(cfg.max_frame_bytes);
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = String::new();
        let now = d.now();
        d.engine.connect(now);
        let mut ok = d.drain(&mut out);
        while ok {
            if !out.is_empty() {
                if wr.write_all(out.as_bytes()).await.is_err() {
                    break;
                }
                out.clear();
            }
            let wake = d
                .engine
                .poll_timeout()
                .map(|t| d.start + Duration::from_millis(t.0))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
            tokio::select! {
                r = rd.read(&mut buf) => {
                    let n = match r { Ok(0) | Err(_) => break, Ok(n) => n };
                    frames.push(&buf[..n]);
                    while let Some(f) = frames.next_frame() {
                        match f.map_err(|e| e.to_string()).and_then(|t| decode_server(&t, cfg.engine.limits.max_delta_bytes).map_err(|e| e.to_string())) {
                            Ok(msg) => {
                                if matches!(msg, ServerMsg::ConnectOk { .. }) {
                                    backoff = cfg.reconnect_min;
                                }
                                d.on_message(msg);
                            }
                            Err(e) => { let _ = d.errors.send(format!("bad frame from server: {e}")); }
                        }
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    let now = d.now();
                    d.engine.handle_timeout(now);
                }
                e = edits.recv() => match e {
                    Some(e) => d.apply(e),
                    None => return,
                },
            }
            ok = d.drain(&mut out);
        }
        tracing::warn!("connection lost; reconnecting");
        if let Some(m) = &d.metrics {
            m.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        d.engine.disconnected();
        d.publish();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(cfg.reconnect_max);
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

/// The command language, for `help`.
pub const HELP: &str = "commands:
  show | print            print the text
  insert POS TEXT         insert TEXT before char POS (\\n for a newline, \\\\ for a backslash)
  delete START END        delete chars START..END
  append TEXT             add TEXT at the end
  replace TEXT            replace the whole text
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
        "append" => Command::Edit(Edit::Append(unescape(rest))),
        "replace" => Command::Edit(Edit::Replace(unescape(rest))),
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
        assert!(parse_command("frobnicate")
            .unwrap_err()
            .contains("unknown command"));
    }
}
