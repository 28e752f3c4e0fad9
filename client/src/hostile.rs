//! Hostile peers, for measuring what they cost an honest client: one honest client types into
//! its own document (the load generator with one client) while raw connections attack the same
//! server, and the report gives the honest client's round trips next to what the attack did.
//!
//! Loopback only, bounded in time and in what it sends. The attacks are the ones a server must
//! survive (docs/protocol.md, "Bounded resources"):
//! - `flood`: one connection sends large frames that are slow to decode, as fast as the server
//!   reads them;
//! - `slow-reader`: one connection earns large replies (full-text resets of a 256 KiB document)
//!   and never reads them;
//! - `slowloris`: many connections (from 127.0.0.2, another "host") send one byte a second and
//!   never finish a line, and a few hold an almost-full frame each;
//! - `cr-edit`: valid edits inserting `"\ra"` many times, which the server must normalise to
//!   `\n` (once quadratic);
//! - `reset-storm`: one connection reads every reply and asks at once for another full-text
//!   reset of an almost 4 MiB document (a tiny request with a wrong `server_version`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dsync_engine::{Checksum, ClientMsg, Delta, DeltaOp, Edit, PROTOCOL_VERSION};
use dsync_net::encode_client;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::load::{self, LoadConfig, LoadError, LoadReport};

/// Longest hostile run.
pub const MAX_DURATION: Duration = Duration::from_secs(300);
/// Most connections the slowloris attack opens.
pub const MAX_CONNECTIONS: usize = 5_000;

/// Which attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// Large, slow-to-decode frames as fast as the server reads.
    Flood,
    /// Large replies earned and never read.
    SlowReader,
    /// Lines never finished: one byte a second, and almost-full frames held.
    Slowloris,
    /// Valid edits full of `\r`.
    CrEdit,
    /// Full-text resets of a large document asked for as fast as they are read.
    ResetStorm,
}

impl Attack {
    /// The attack's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Attack::Flood => "flood",
            Attack::SlowReader => "slow-reader",
            Attack::Slowloris => "slowloris",
            Attack::CrEdit => "cr-edit",
            Attack::ResetStorm => "reset-storm",
        }
    }
}

/// Settings of a hostile run.
#[derive(Debug, Clone)]
pub struct HostileConfig {
    /// Server, `host:port`, on loopback.
    pub server: String,
    /// The attack.
    pub attack: Attack,
    /// How long the honest client types (the attack runs as long).
    pub duration: Duration,
    /// Size of the flood's frames and of the slowloris' held frames, in bytes.
    pub frame_bytes: usize,
    /// Connections the slowloris opens (one byte a second each).
    pub connections: usize,
}

/// What a hostile run measured.
#[derive(Debug, Clone)]
pub struct HostileReport {
    /// The honest client's load report.
    pub honest: LoadReport,
    /// What the attack did, in its own words.
    pub attack: String,
}

/// Run the attack beside one honest client.
pub async fn run(cfg: HostileConfig) -> Result<HostileReport, LoadError> {
    if cfg.duration.is_zero() || cfg.duration > MAX_DURATION {
        return Err(LoadError::Bounds(format!(
            "--duration must be 1 to {} s",
            MAX_DURATION.as_secs()
        )));
    }
    if cfg.connections == 0 || cfg.connections > MAX_CONNECTIONS {
        return Err(LoadError::Bounds(format!(
            "--connections must be 1 to {MAX_CONNECTIONS}"
        )));
    }
    if cfg.frame_bytes < 64 || cfg.frame_bytes > 256 << 20 {
        return Err(LoadError::Bounds(
            "--frame-bytes must be 64 B to 256 MiB".into(),
        ));
    }
    let server = load::loopback(&cfg.server).await?;
    // The attack gets a head start, so the honest client arrives at a server under attack (a
    // slowloris has its connections open, a flood its queue full).
    let end = Instant::now() + HEAD_START + cfg.duration;
    let status = Status::default();
    let attack = tokio::spawn(attack(server, cfg.clone(), end, status.clone()));
    tokio::time::sleep(HEAD_START).await;
    let honest = load::run(LoadConfig {
        server: cfg.server.clone(),
        doc: "honest".into(),
        docs: 1,
        clients: 1,
        duration: cfg.duration,
        rate_per_s: 2.0,
        text_bytes: 0,
        typists: None,
    });
    let honest = honest.await;
    // The attack ends with the typing (cut off at its end time); whatever it holds is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(5), attack).await;
    Ok(HostileReport {
        honest: honest?,
        attack: status.get(),
    })
}

/// How long the attack runs before the honest client starts.
pub const HEAD_START: Duration = Duration::from_secs(2);

/// What the attack has done so far, kept up to date by the attack so that a report exists
/// whenever it is cut off.
#[derive(Clone, Default)]
struct Status(std::sync::Arc<std::sync::Mutex<String>>);

impl Status {
    fn set(&self, s: String) {
        if let Ok(mut g) = self.0.lock() {
            *g = s;
        }
    }
    fn get(&self) -> String {
        self.0.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

async fn attack(server: SocketAddr, cfg: HostileConfig, end: Instant, st: Status) {
    let left = end.saturating_duration_since(Instant::now());
    let _ = match cfg.attack {
        Attack::Flood => tokio::time::timeout(left, flood(server, cfg.frame_bytes, &st)).await,
        Attack::SlowReader => tokio::time::timeout(left, slow_reader(server, &st)).await,
        Attack::Slowloris => {
            let what = slowloris(server, cfg.connections, cfg.frame_bytes, end, &st);
            tokio::time::timeout(left, what).await
        }
        Attack::CrEdit => tokio::time::timeout(left, cr_edits(server, &st)).await,
        Attack::ResetStorm => tokio::time::timeout(left, reset_storm(server, &st)).await,
    };
}

/// A `client_sync` frame of about `bytes` whose delta is all JSON escapes (slow to decode).
pub fn slow_frame(bytes: usize) -> Vec<u8> {
    let head = b"{\"type\":\"client_sync\",\"doc\":\"flood\",\"seq\":1,\"server_version\":0,\"edits\":[{\"version\":0,\"delta\":\"+";
    let tail = b"\",\"checksum\":0}]}\n";
    let n = bytes.saturating_sub(head.len() + tail.len()) / 6;
    let mut f = Vec::with_capacity(bytes);
    f.extend_from_slice(head);
    for _ in 0..n {
        f.extend_from_slice(b"\\u00e9");
    }
    f.extend_from_slice(tail);
    f
}

async fn flood(server: SocketAddr, frame_bytes: usize, st: &Status) {
    let frame = slow_frame(frame_bytes);
    let Ok(mut s) = TcpStream::connect(server).await else {
        return st.set("flood: could not connect".into());
    };
    let mut sent = 0u64;
    let started = Instant::now();
    let say = |sent: u64, how: &str| {
        format!(
            "flood: {sent} frames of {} bytes written in {:.1} s{how}",
            frame.len(),
            started.elapsed().as_secs_f64()
        )
    };
    // The replies (errors) are not read: a flooder need not.
    while s.write_all(&frame).await.is_ok() {
        sent += 1;
        st.set(say(sent, ""));
    }
    st.set(say(sent, ", then the server closed the connection"));
}

/// A raw connection with `doc` open as `client_id` (a fresh session), and the `connect_ok`.
pub async fn connect_doc(
    server: SocketAddr,
    doc: &str,
    client_id: &str,
) -> std::io::Result<(tokio::io::BufReader<TcpStream>, serde_json::Value)> {
    let s = TcpStream::connect(server).await?;
    let mut s = tokio::io::BufReader::new(s);
    let msg = ClientMsg::Connect {
        protocol: PROTOCOL_VERSION,
        doc: doc.into(),
        client_id: client_id.into(),
        token: None,
        seq: 1,
        resume: None,
        hints: false,
    };
    s.get_mut()
        .write_all(encode_client(&msg).as_bytes())
        .await?;
    let mut line = String::new();
    s.read_line(&mut line).await?;
    let v: serde_json::Value = serde_json::from_str(&line)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok((s, v))
}

/// One edit inserting `text` at the end of `base` (at versions 0/0), as a `client_sync` line.
pub fn insert_at_end(doc: &str, seq: u64, base: &str, text: &str) -> String {
    let end = base.encode_utf16().count();
    let mut ops = Vec::new();
    if end > 0 {
        ops.push(DeltaOp::Keep(end));
    }
    ops.push(DeltaOp::Insert(text.into()));
    encode_client(&ClientMsg::ClientSync {
        doc: doc.into(),
        seq,
        server_version: 0,
        edits: vec![Edit::Delta {
            version: 0,
            delta: Delta::from_ops(ops),
            checksum: Checksum::of(&format!("{base}{text}")),
        }],
    })
}

async fn slow_reader(server: SocketAddr, st: &Status) {
    let doc = "slow-reader";
    let Ok((mut s, ok)) = connect_doc(server, doc, "slow-reader").await else {
        return st.set("slow-reader: could not open its document".into());
    };
    let text = ok["text"].as_str().unwrap_or_default().to_string();
    // Make the document 256 KiB (if it is not already), read that reply, then never read again.
    if text.len() < 256 << 10 {
        let line = insert_at_end(doc, 2, &text, &"x".repeat((256 << 10) - text.len()));
        if s.get_mut().write_all(line.as_bytes()).await.is_err() {
            return st.set("slow-reader: closed before the document was filled".into());
        }
        let mut reply = String::new();
        let _ = s.read_line(&mut reply).await;
    }
    // Each request claims a server version the session never had: the reply is a full-text
    // reset of the whole document, again and again.
    let mut seq = 3u64;
    let mut sent = 0u64;
    let started = Instant::now();
    let say = |sent: u64, how: &str| {
        format!(
            "slow-reader: {sent} requests earning a 256 KiB reset each, none read, in {:.1} s{how}",
            started.elapsed().as_secs_f64()
        )
    };
    loop {
        let line = earn_reset(doc, seq);
        if s.get_mut().write_all(line.as_bytes()).await.is_err() {
            break;
        }
        seq += 1;
        sent += 1;
        st.set(say(sent, ""));
        if sent % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    st.set(say(sent, ", then the server closed the connection"));
}

/// Connect from another loopback address than the honest client's (127.0.0.2 towards an IPv4
/// server), as an attacker on another host would: per-address limits then tell them apart.
async fn connect_from_elsewhere(server: SocketAddr) -> std::io::Result<TcpStream> {
    if !server.is_ipv4() {
        return TcpStream::connect(server).await;
    }
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0)))?;
    socket.connect(server).await
}

async fn slowloris(
    server: SocketAddr,
    conns: usize,
    frame_bytes: usize,
    end: Instant,
    st: &Status,
) {
    // A few connections each hold an almost-full frame.
    let big = 20usize;
    let mut held = Vec::new();
    let mut big_sent = 0usize;
    let frame = slow_frame(frame_bytes);
    let almost = &frame[..frame.len() - 2];
    for _ in 0..big {
        if let Ok(mut s) = connect_from_elsewhere(server).await {
            if tokio::time::timeout(Duration::from_secs(5), s.write_all(almost))
                .await
                .is_ok_and(|r| r.is_ok())
            {
                big_sent += 1;
            }
            held.push(s);
        }
    }
    // Many connections drip one byte a second.
    let mut drips = Vec::new();
    for _ in 0..conns {
        match connect_from_elsewhere(server).await {
            Ok(s) => drips.push(s),
            Err(_) => break,
        }
    }
    let opened = drips.len();
    let say = |alive: usize, k: usize| {
        format!(
            "slowloris: {big_sent}/{big} connections holding {} bytes each, {opened}/{conns} dripping one byte a second; {alive} still open after {k} bytes each",
            almost.len()
        )
    };
    st.set(say(opened, 0));
    let line = b"{\"type\":\"ping\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    let mut k = 0usize;
    let mut alive = opened;
    while Instant::now() < end && alive > 0 {
        alive = 0;
        let i = k % line.len();
        for s in &mut drips {
            if s.write_all(&line[i..i + 1]).await.is_ok() {
                alive += 1;
            }
        }
        k += 1;
        st.set(say(alive, k));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn cr_edits(server: SocketAddr, st: &Status) {
    // 300,000 × "\ra": 600 KB, well inside the document limit.
    let insert = "\ra".repeat(300_000);
    let mut sent = 0u64;
    let mut answered = 0u64;
    let mut worst = Duration::ZERO;
    loop {
        let doc = format!("cr-{sent}");
        let Ok((mut s, ok)) = connect_doc(server, &doc, &doc).await else {
            break;
        };
        let text = ok["text"].as_str().unwrap_or_default().to_string();
        let line = insert_at_end(&doc, 2, &text, &insert);
        let t = Instant::now();
        if s.get_mut().write_all(line.as_bytes()).await.is_err() {
            break;
        }
        sent += 1;
        let mut reply = String::new();
        st.set(format!(
            "cr-edit: {sent} edits of 300,000 \"\\ra\" sent, {answered} answered, slowest answer {:.0} ms (one waiting)",
            worst.as_secs_f64() * 1e3
        ));
        match s.read_line(&mut reply).await {
            Ok(n) if n > 0 => {
                answered += 1;
                worst = worst.max(t.elapsed());
            }
            _ => break,
        }
        st.set(format!(
            "cr-edit: {sent} edits of 300,000 \"\\ra\" sent, {answered} answered, slowest answer {:.0} ms",
            worst.as_secs_f64() * 1e3
        ));
    }
}

/// A tiny `client_sync` whose `server_version` the session never had: it earns a full-text
/// reset of the whole document.
fn earn_reset(doc: &str, seq: u64) -> String {
    encode_client(&ClientMsg::ClientSync {
        doc: doc.into(),
        seq,
        server_version: 1_000_000,
        edits: vec![],
    })
}

async fn reset_storm(server: SocketAddr, st: &Status) {
    let doc = "reset-storm";
    let Ok((mut s, ok)) = connect_doc(server, doc, doc).await else {
        return st.set("reset-storm: could not open its document".into());
    };
    // Make the document just under the default limit of 4 MiB.
    let text = ok["text"].as_str().unwrap_or_default().to_string();
    let size = (4 << 20) - 1024;
    if text.len() < size {
        let line = insert_at_end(doc, 2, &text, &"x".repeat(size - text.len()));
        let mut reply = String::new();
        if s.get_mut().write_all(line.as_bytes()).await.is_err()
            || s.read_line(&mut reply).await.is_err()
        {
            return st.set("reset-storm: closed before the document was filled".into());
        }
    }
    let started = Instant::now();
    let (mut seq, mut sent, mut full, mut slowed) = (3u64, 0u64, 0usize, 0u64);
    let say = |sent: u64, full: usize, slowed: u64, how: &str| {
        format!(
            "reset-storm: {sent} requests in {:.1} s earned {:.1} MiB of full text, {slowed} slow_down{how}",
            started.elapsed().as_secs_f64(),
            full as f64 / (1 << 20) as f64
        )
    };
    let mut reply = String::new();
    loop {
        let line = earn_reset(doc, seq);
        reply.clear();
        if s.get_mut().write_all(line.as_bytes()).await.is_err()
            || !matches!(s.read_line(&mut reply).await, Ok(n) if n > 0)
        {
            break;
        }
        seq += 1;
        sent += 1;
        if reply.contains("\"slow_down\"") {
            slowed += 1;
        } else if reply.contains("\"server_sync\"") {
            full += reply.len();
        }
        st.set(say(sent, full, slowed, ""));
    }
    st.set(say(
        sent,
        full,
        slowed,
        ", then the server closed the connection",
    ));
}
