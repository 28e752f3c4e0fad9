//! One TCP connection: reads into a [`LineBuffer`] only as fast as the engine thread handles
//! what was read (backpressure), writes what the engine releases, and ends on its own deadlines.
//!
//! Bounds (docs/protocol.md, "Bounded resources"):
//! - inbound bytes — a partial frame and the frames waiting for the engine — are paid for with
//!   permits from two semaphores, the connection's own (`max_frame_bytes` + two reads) and the
//!   server's ([`Budget`]); a byte is read only once both have a permit for it, and the permits
//!   go back when the engine thread has handled the frame (dropped the [`Inbound`]). A peer that
//!   sends faster than it is served waits in its own socket buffer, not in our memory;
//! - outbound bytes are counted per connection ([`Outbox`]); the engine thread closes a
//!   connection whose queue would pass its limit, at once (the queue is dropped unsent);
//! - time: a connection must send its first frame, and finish any frame it has begun, within
//!   `frame_timeout`, and say something (a frame) every `idle_timeout` once it has spoken; the
//!   engine's heartbeats ping the peers it knows well before that.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dsync_engine::ClientMsg;
use dsync_engine::PeerId;
use dsync_net::{decode_client, DecodeError, LineBuffer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Most bytes asked for per read.
pub const READ_CHUNK: usize = 64 * 1024;
/// A connection's first read buffer: it doubles (up to [`READ_CHUNK`]) while reads fill it, so
/// an idle connection holds 4 KiB for reading rather than 64 (10,000 idle clients: 40 MiB,
/// not 640).
pub const FIRST_READ_BUFFER: usize = 4 * 1024;

/// Bytes a connection may hold without the server's permits: its small frames are read even
/// when partial large frames hold the whole server budget (they would otherwise starve every
/// reader until the frame timeout). Past this, every byte a connection holds is paid for from
/// the server's budget too. So memory held inbound is at most the server's budget plus two of
/// these per connection (one buffered, one in the engine's queue).
pub const FREE_BYTES: usize = 16 * 1024;

/// Inbound byte permits: the server's (shared by every connection) and one connection's; and
/// the connection's one slot for a frame in the engine's queue.
#[derive(Clone)]
pub struct Budget {
    global: Arc<Semaphore>,
    conn: Arc<Semaphore>,
    slot: Arc<Semaphore>,
}

/// Permits held for bytes read and not yet handled: one of the connection's per byte, and one
/// of the server's per byte past the connection's [`FREE_BYTES`].
pub struct Held {
    global: OwnedSemaphorePermit,
    conn: OwnedSemaphorePermit,
}

impl Held {
    fn bytes(&self) -> usize {
        self.conn.num_permits()
    }

    /// Take the permits of `n` bytes (all there are, at most), with as many of the server's
    /// as there are for them: a frame carries its share of the server's budget with it.
    fn split(&mut self, n: usize) -> Option<Held> {
        let n = n.min(self.bytes());
        let g = n.min(self.global.num_permits());
        Some(Held {
            global: self.global.split(g)?,
            conn: self.conn.split(n)?,
        })
    }

    /// Keep the permits of `bytes` bytes (the buffer's), and of the server's only what they
    /// need past the free allowance; give the rest back.
    fn trim_to(&mut self, bytes: usize) {
        drop(self.conn.split(self.bytes().saturating_sub(bytes)));
        let need = bytes.saturating_sub(FREE_BYTES);
        drop(
            self.global
                .split(self.global.num_permits().saturating_sub(need)),
        );
    }

    fn merge(&mut self, other: Held) {
        self.global.merge(other.global);
        self.conn.merge(other.conn);
    }
}

impl Budget {
    /// A connection's budget within the server's.
    pub fn new(global: Arc<Semaphore>, per_connection: usize) -> Budget {
        Budget {
            global,
            conn: Arc::new(Semaphore::new(per_connection)),
            slot: Arc::new(Semaphore::new(1)),
        }
    }

    /// Wait until the connection's previous frame was handled.
    pub(crate) async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slot.clone().acquire_owned().await.ok()
    }

    /// Permits for the next read, and how many bytes it may take: a whole chunk when the
    /// server's budget has room for what passes the free allowance; otherwise what the
    /// allowance has left, without waiting; with nothing left of it, wait for the server's. The
    /// connection's own permits come first (so it holds no server permits while it waits for
    /// its own).
    async fn for_read(&self, held: &Held) -> Option<(Held, usize)> {
        let chunk = u32::try_from(READ_CHUNK).ok()?;
        let conn = self.conn.clone().acquire_many_owned(chunk).await.ok()?;
        let free = FREE_BYTES.saturating_sub(held.bytes()).min(READ_CHUNK);
        let need = u32::try_from(READ_CHUNK - free).ok()?;
        let global = match self.global.clone().try_acquire_many_owned(need) {
            Ok(g) => g,
            Err(_) if free > 0 => {
                let none = self.global.clone().try_acquire_many_owned(0).ok()?;
                return Some((Held { global: none, conn }, free));
            }
            Err(_) => self.global.clone().acquire_many_owned(need).await.ok()?,
        };
        Some((Held { global, conn }, READ_CHUNK))
    }

    /// Permits for a whole frame of `len` bytes already received (a WebSocket message: the
    /// WebSocket reader holds at most one, of at most the frame limit): the connection's for
    /// every byte, the server's for what passes the free allowance. Waits for both.
    pub(crate) async fn for_frame(&self, len: usize) -> Option<Held> {
        let len = u32::try_from(len).ok()?;
        let conn = self.conn.clone().acquire_many_owned(len).await.ok()?;
        let need = len.saturating_sub(u32::try_from(FREE_BYTES).ok()?);
        let global = self.global.clone().acquire_many_owned(need).await.ok()?;
        Some(Held { global, conn })
    }

    fn empty(&self) -> Option<Held> {
        Some(Held {
            global: self.global.clone().try_acquire_many_owned(0).ok()?,
            conn: self.conn.clone().try_acquire_many_owned(0).ok()?,
        })
    }
}

/// A frame read from a connection, with the permits for its bytes and the connection's one
/// slot: dropping it (after the engine handled it) lets the connection send its next frame and
/// read that much more. One frame per connection in the engine's queue: a peer's burst waits
/// in its own socket, and whoever else sends is served between its frames.
pub struct Inbound {
    /// The frame's message, decoded on the connection's task so the engine thread does not
    /// (or why it is not one).
    pub msg: Result<ClientMsg, DecodeError>,
    /// The frame's length in bytes (for the metrics).
    pub bytes: usize,
    /// When the whole frame had arrived (the request round trip's start, for the metrics).
    pub received: std::time::Instant,
    /// The permits for its bytes.
    pub(crate) _held: Option<Held>,
    pub(crate) _slot: OwnedSemaphorePermit,
}

/// What a connection tells the engine thread.
pub enum Event {
    /// A connection opened; its outbox.
    Open(PeerId, SocketAddr, Outbox),
    /// A frame.
    Frame(PeerId, Inbound),
    /// The connection ended.
    Closed(PeerId),
    /// The server is stopping (the flag is set): wakes the engine thread if it waits.
    Stop,
    /// A question from the HTTP endpoints, answered between batches.
    Query(crate::http::Query),
    /// Create a document with a text (`PUT /documents/{doc}`): handled in the batch, so its
    /// record is committed with it, and answered after that commit; `Ok(false)`: it exists
    /// already.
    Create(
        String,
        String,
        tokio::sync::oneshot::Sender<Result<bool, String>>,
    ),
}

/// The sending half of a connection's outgoing queue, kept by the engine thread.
pub struct Outbox {
    pub(crate) tx: mpsc::UnboundedSender<String>,
    pub(crate) queued: Arc<AtomicUsize>,
    pub(crate) close: Arc<Notify>,
    pub(crate) max_bytes: usize,
}

impl Outbox {
    /// Queue `line` unless that would pass the limit (an empty queue takes any one line, so a
    /// reply larger than the limit can still be sent). False: the connection must be dropped
    /// as too slow (call [`Outbox::close`]).
    pub fn send(&self, line: String) -> bool {
        let queued = self.queued.load(Ordering::Acquire);
        if queued > 0 && queued.saturating_add(line.len()) > self.max_bytes {
            return false;
        }
        self.queued.fetch_add(line.len(), Ordering::AcqRel);
        self.tx.send(line).is_ok()
    }

    /// Close the connection now, dropping what is queued.
    pub fn close(&self) {
        self.close.notify_one();
    }
}

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Largest frame.
    pub max_frame_bytes: usize,
    /// Most bytes queued to send.
    pub max_outbound_bytes: usize,
    /// Time to send a first frame, and to finish a frame once begun.
    pub frame_timeout: Duration,
    /// Longest silence (no complete frame) once a peer has spoken.
    pub idle_timeout: Duration,
    /// Largest delta text a frame's edit may hold (the engine's `max_delta_bytes`).
    pub max_delta_bytes: usize,
}

/// Tell the engine thread a connection opened, handing it the sending half of the connection's
/// outgoing queue; the receiving half, the queued-bytes count and the close signal stay with
/// the connection's writer. `None`: the server is stopping.
#[allow(clippy::type_complexity)]
pub(crate) fn open(
    peer: PeerId,
    remote: SocketAddr,
    events: &std::sync::mpsc::Sender<Event>,
    limits: &ConnLimits,
) -> Option<(
    mpsc::UnboundedReceiver<String>,
    Arc<AtomicUsize>,
    Arc<Notify>,
)> {
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let queued = Arc::new(AtomicUsize::new(0));
    let close = Arc::new(Notify::new());
    let outbox = Outbox {
        tx,
        queued: queued.clone(),
        close: close.clone(),
        max_bytes: limits.max_outbound_bytes,
    };
    events.send(Event::Open(peer, remote, outbox)).ok()?;
    Some((rx, queued, close))
}

/// Wait for the connection's one slot in the engine's queue, then hand it the frame (`len`
/// bytes, paid for by `held`). `Err`: why the connection ends instead (the server stops, the
/// engine closed it as too slow, or its writer ended).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn hand_over(
    peer: PeerId,
    events: &std::sync::mpsc::Sender<Event>,
    budget: &Budget,
    close: &Notify,
    writer: &mut tokio::task::JoinHandle<()>,
    msg: Result<ClientMsg, DecodeError>,
    len: usize,
    held: Option<Held>,
) -> Result<(), String> {
    let slot = tokio::select! {
        s = budget.slot() => match s {
            Some(s) => s,
            None => return Err("the server is stopping".to_string()),
        },
        () = close.notified() => return Err(TOO_SLOW.to_string()),
        _ = writer => return Err("closed by the server".to_string()),
    };
    let received = std::time::Instant::now();
    let inbound = Inbound {
        msg,
        bytes: len,
        received,
        _held: held,
        _slot: slot,
    };
    events
        .send(Event::Frame(peer, inbound))
        .map_err(|_| "the server is stopping".to_string())
}

/// Serve one connection until it ends; returns why it ended (for the log). `events` must
/// accept without blocking (the engine thread's channel).
pub async fn serve<S>(
    peer: PeerId,
    remote: SocketAddr,
    stream: S,
    events: std::sync::mpsc::Sender<Event>,
    budget: Budget,
    limits: ConnLimits,
) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let Some((mut rx, queued, close)) = open(peer, remote, &events, &limits) else {
        return "the server is stopping".into();
    };
    let mut writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            let n = line.len();
            if wr.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            queued.fetch_sub(n, Ordering::AcqRel);
        }
        // The engine dropped the outbox (it closed the connection after its last reply).
        let _ = wr.shutdown().await;
    });
    let mut frames = LineBuffer::new(limits.max_frame_bytes);
    let mut buf = vec![0u8; FIRST_READ_BUFFER];
    // Permits for the bytes `frames` holds.
    let Some(mut held) = budget.empty() else {
        writer.abort();
        return "the server is stopping".into();
    };
    // Until the first frame, and while a frame is incomplete: when it must be done.
    let first_by = Instant::now() + limits.frame_timeout;
    let mut deadline = Some(first_by);
    let mut spoken = false;
    // Frames of the last read not yet handed to the engine (one at a time), with their bytes'
    // permits: the read is not repeated until they are all handed over.
    let mut ready_frames: std::collections::VecDeque<(
        Result<ClientMsg, DecodeError>,
        Option<Held>,
    )> = std::collections::VecDeque::new();
    let why = loop {
        if let Some((frame, bytes)) = ready_frames.pop_front() {
            // Our own queue is what it waits for here, so no deadline runs.
            let len = bytes.as_ref().map_or(0, Held::bytes);
            let handed = hand_over(
                peer,
                &events,
                &budget,
                &close,
                &mut writer,
                frame,
                len,
                bytes,
            );
            if let Err(why) = handed.await {
                break why;
            }
            continue;
        }
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let read = async {
            let (more, max) = budget.for_read(&held).await?;
            let max = max.min(buf.len());
            Some((rd.read(&mut buf[..max]).await, more))
        };
        let (result, more) = tokio::select! {
            r = read => match r {
                Some(r) => r,
                None => break "the server is stopping".to_string(),
            },
            () = timeout => break if frames.in_frame() {
                format!("a frame was not finished within {:?}", limits.frame_timeout)
            } else if spoken {
                format!("silent for {:?}", limits.idle_timeout)
            } else {
                format!("no frame within {:?} of connecting", limits.frame_timeout)
            },
            () = close.notified() => break TOO_SLOW.to_string(),
            _ = &mut writer => break "closed by the server".to_string(),
        };
        let n = match result {
            Ok(0) => break "the peer closed it".to_string(),
            Err(e) => break format!("read failed: {e}"),
            Ok(n) => n,
        };
        held.merge(more);
        frames.push(&buf[..n]);
        if n == buf.len() && buf.len() < READ_CHUNK {
            buf.resize((buf.len() * 2).min(READ_CHUNK), 0);
        }
        let mut got_one = false;
        while let Some(frame) = frames.next_frame() {
            got_one = true;
            let len = frame.as_ref().map_or(0, String::len);
            // Decoded here, on a runtime worker: the engine thread is the server's one
            // serial stage, and decoding was a fifth of its time under load.
            let msg = frame.and_then(|f| decode_client(&f, limits.max_delta_bytes));
            ready_frames.push_back((msg, held.split(len)));
        }
        // What the buffer no longer holds (the read's unused part, newlines, blank lines,
        // skipped bytes) is free, and so are the server's permits it does not need.
        held.trim_to(frames.buffered());
        spoken |= got_one;
        deadline = if !spoken {
            // Blank lines are not a first frame.
            Some(first_by)
        } else if frames.in_frame() {
            // A frame begun in this read gets the whole timeout; one still going keeps its own.
            deadline
                .filter(|_| !got_one)
                .or_else(|| Some(Instant::now() + limits.frame_timeout))
        } else if got_one {
            // Heartbeats watch the peers the engine knows; this catches the ones it does not
            // (a peer that sent only refused frames), a little after the engine would.
            Some(Instant::now() + limits.idle_timeout)
        } else {
            deadline
        };
    };
    let _ = events.send(Event::Closed(peer));
    writer.abort();
    why
}

pub(crate) const TOO_SLOW: &str = "dropped as too slow: its replies passed the outgoing limit";
