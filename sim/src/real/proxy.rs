//! The fault-injecting TCP proxy of a real run: one loopback listener per client, each
//! connection relayed to the server frame by frame (frames are lines), every frame given a
//! fate drawn exactly as the simulator draws it ([`crate::world::net::draw`]): a latency, and
//! on a stream link a connection reset for `drop`, a split in two writes, damage or a line of
//! garbage ahead; on a datagram link a lost, doubled or held-back frame (TCP still carries the
//! bytes; the proxy is what loses, doubles and reorders). Partitions stall a stream link and
//! drop on a datagram link, at delivery, as in the simulator.
//!
//! Bounded: each direction of a connection holds at most [`MAX_QUEUED`] frames; past it the
//! connection is reset (counted), as a link that gave up would.

use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::time::{Duration, Instant};

use super::Clock;
use crate::scenario::{Event, Fate, LinkFaults, LinkModel, Node, Scenario, Timed};
use crate::world::net::{blocked, draw, link_faults};
use crate::world::wire;
use crate::world::Summary;

/// Frames one direction of a connection may hold in the proxy.
pub const MAX_QUEUED: usize = 4_096;

/// A partition in force: (id, one side, other side, one way).
type Partition = (u64, Vec<Node>, Vec<Node>, bool);

/// The network's state, shared by every link.
pub struct Net {
    state: Mutex<NetState>,
    /// Partitions lifted or faults stopped: stalled frames look again.
    changed: Notify,
    clock: Clock,
    stream: bool,
    /// The scenario, for its links' faults.
    sc: Scenario,
    max_frame_bytes: usize,
}

struct NetState {
    partitions: Vec<Partition>,
    next_partition: u64,
    stopped: bool,
    random: bool,
    server: Option<SocketAddr>,
    counts: BTreeMap<(Node, Node), u64>,
    explicit: BTreeMap<(Node, Node, u64), Fate>,
    rng_net: ChaCha8Rng,
    rng_fault: ChaCha8Rng,
    counters: Summary,
    recorded: Vec<Timed>,
    /// Live connections per client, to reset them when the client crashes.
    conns: BTreeMap<usize, Vec<Arc<Conn>>>,
}

/// One relayed connection: closed once, from either end or by the proxy.
struct Conn {
    closed: Notify,
    done: std::sync::atomic::AtomicBool,
}

impl Conn {
    fn close(&self) {
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.closed.notify_waiters();
        }
    }
    fn is_closed(&self) -> bool {
        self.done.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Net {
    /// The network of `sc` (random fates from `seed`; none without one).
    pub fn new(sc: &Scenario, seed: Option<u64>, clock: Clock, max_frame_bytes: usize) -> Net {
        let mut explicit = BTreeMap::new();
        for t in &sc.timeline {
            if let Event::DropMessage { from, to, nth } = t.event {
                explicit.insert((from, to, nth), Fate::Drop);
            }
        }
        let s = seed.unwrap_or(0);
        Net {
            state: Mutex::new(NetState {
                partitions: Vec::new(),
                next_partition: 0,
                stopped: false,
                random: seed.is_some(),
                server: None,
                counts: BTreeMap::new(),
                explicit,
                rng_net: crate::world::rng(s, crate::world::STREAM_NET),
                rng_fault: crate::world::rng(s, crate::world::STREAM_FAULT),
                counters: Summary::default(),
                recorded: Vec::new(),
                conns: BTreeMap::new(),
            }),
            changed: Notify::new(),
            clock,
            stream: sc.topology.link == LinkModel::Stream,
            sc: sc.clone(),
            max_frame_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the server listens now (`None` while it is down).
    pub fn set_server(&self, addr: Option<SocketAddr>) {
        self.lock().server = addr;
    }

    /// A partition; returns its id.
    pub fn partition(&self, a: Vec<Node>, b: Vec<Node>, one_way: bool) -> u64 {
        let mut st = self.lock();
        let id = st.next_partition;
        st.next_partition += 1;
        st.partitions.push((id, a, b, one_way));
        id
    }

    /// Lift one partition.
    pub fn unpartition(&self, id: u64) {
        self.lock().partitions.retain(|p| p.0 != id);
        self.changed.notify_waiters();
    }

    /// Lift every partition.
    pub fn heal(&self) {
        self.lock().partitions.clear();
        self.changed.notify_waiters();
    }

    /// End of faults: no more random fates (frames take the lowest latency), no partitions.
    pub fn stop_faults(&self) {
        let mut st = self.lock();
        st.stopped = true;
        st.partitions.clear();
        drop(st);
        self.changed.notify_waiters();
    }

    /// Reset every connection of client `i` (it crashed).
    pub fn reset_client(&self, i: usize) {
        let conns = self.lock().conns.remove(&i).unwrap_or_default();
        for c in conns {
            c.close();
        }
    }

    /// Whether `from` → `to` is blocked by a partition.
    pub fn blocked(&self, from: Node, to: Node) -> bool {
        blocked(&self.lock().partitions, from, to)
    }

    /// The faults of the link `from` → `to`.
    pub fn faults(&self, from: Node, to: Node) -> &LinkFaults {
        link_faults(&self.sc, from, to)
    }

    /// What the network did so far (the network fields of a run's summary).
    pub fn counters(&self) -> Summary {
        self.lock().counters.clone()
    }

    /// Every frame's fate so far, as timeline events.
    pub fn recorded(&self) -> Vec<Timed> {
        self.lock().recorded.clone()
    }

    /// The fate of the next frame on `from` → `to`.
    fn fate(&self, from: Node, to: Node, frame: &[u8]) -> Fate {
        let f = self.faults(from, to).clone();
        let now = self.clock.now_ms();
        let mut st = self.lock();
        st.counters.sent += 1;
        let nth = {
            let c = st.counts.entry((from, to)).or_insert(0);
            *c += 1;
            *c
        };
        let fate = match st.explicit.get(&(from, to, nth)).copied() {
            Some(f) => f,
            None if !st.random || st.stopped => Fate::Delay(f.latency_ms.0),
            None => {
                let st = &mut *st;
                let (fate, reordered) =
                    draw(&f, self.stream, &mut st.rng_net, &mut st.rng_fault, frame);
                if reordered {
                    st.counters.reordered += 1;
                }
                fate
            }
        };
        st.recorded.push(Timed {
            at_ms: now,
            event: Event::Net {
                from,
                to,
                nth,
                fate,
            },
        });
        fate
    }

    fn count(&self, f: impl FnOnce(&mut Summary)) {
        f(&mut self.lock().counters);
    }
}

/// Listen for client `i` on loopback; relay each connection to the server. Returns the
/// address the client is to connect to.
pub async fn listen(net: Arc<Net>, i: usize) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let net = net.clone();
            tokio::spawn(relay(net, i, client));
        }
    });
    Ok(addr)
}

async fn relay(net: Arc<Net>, i: usize, client: TcpStream) {
    let Some(server) = net.lock().server else {
        // The server is down: the client's connection fails, as it would without a proxy.
        return;
    };
    let Ok(Ok(upstream)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(server)).await
    else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let conn = Arc::new(Conn {
        closed: Notify::new(),
        done: std::sync::atomic::AtomicBool::new(false),
    });
    net.lock().conns.entry(i).or_default().push(conn.clone());
    let (cr, cw) = client.into_split();
    let (sr, sw) = upstream.into_split();
    let up = pump(
        net.clone(),
        conn.clone(),
        Node::Client(i),
        Node::Server,
        cr,
        sw,
    );
    let down = pump(
        net.clone(),
        conn.clone(),
        Node::Server,
        Node::Client(i),
        sr,
        cw,
    );
    tokio::join!(up, down);
    conn.close();
    if let Some(v) = net.lock().conns.get_mut(&i) {
        v.retain(|c| !Arc::ptr_eq(c, &conn));
    }
}

/// A frame (or piece) to write at a time; `seq` keeps equal times in order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    seq: u64,
    bytes: Vec<u8>,
}

/// One direction of a connection: read frames, give each its fate, write them when due.
async fn pump(
    net: Arc<Net>,
    conn: Arc<Conn>,
    from: Node,
    to: Node,
    mut reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
) {
    let (tx, rx) = mpsc::channel::<Due>(MAX_QUEUED);
    let writing = tokio::spawn(write_due(net.clone(), conn.clone(), from, to, rx, writer));
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut seq = 0u64;
    let mut last = Instant::now();
    'read: loop {
        let n = tokio::select! {
            r = reader.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = conn.closed.notified() => break,
        };
        if conn.is_closed() {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let frame: Vec<u8> = buf.drain(..=end).collect();
            let fate = net.fate(from, to, &frame);
            let now = Instant::now();
            let at = |ms: u64| now + net.clock.wall(ms);
            // A stream keeps its order: nothing is due before what went ahead of it.
            let ordered = |t: Instant, last: &mut Instant| {
                let t = if net.stream { t.max(*last) } else { t };
                *last = t;
                t
            };
            let mut pieces: Vec<(Instant, Vec<u8>)> = Vec::new();
            match fate {
                Fate::Drop => {
                    net.count(|c| c.dropped += 1);
                    if net.stream {
                        // A lost frame on a stream is a reset connection.
                        net.count(|c| c.conn_resets += 1);
                        conn.close();
                        break 'read;
                    }
                }
                Fate::Delay(ms) => pieces.push((ordered(at(ms), &mut last), frame)),
                Fate::Duplicate(a, b) => {
                    net.count(|c| c.duplicated += 1);
                    pieces.push((ordered(at(a), &mut last), frame.clone()));
                    pieces.push((ordered(at(b), &mut last), frame));
                }
                Fate::Corrupt(ms) => {
                    let mut f = frame;
                    if wire::corrupt(&mut f) {
                        net.count(|c| c.corrupted += 1);
                    }
                    pieces.push((ordered(at(ms), &mut last), f));
                }
                Fate::Mangle(ms) => {
                    let mut f = frame;
                    if f.len() >= 2 {
                        wire::mangle(&mut f);
                        net.count(|c| c.corrupted += 1);
                    }
                    pieces.push((ordered(at(ms), &mut last), f));
                }
                Fate::Split(a, b) => {
                    if frame.len() >= 2 {
                        net.count(|c| c.split_frames += 1);
                        let cut = wire::split_point(&frame);
                        let t1 = ordered(at(a), &mut last);
                        pieces.push((t1, frame[..cut].to_vec()));
                        pieces.push((ordered(at(b), &mut last), frame[cut..].to_vec()));
                    } else {
                        pieces.push((ordered(at(a), &mut last), frame));
                    }
                }
                Fate::Garbage(ms) => {
                    net.count(|c| c.garbage += 1);
                    let nth = seq;
                    let mut g = wire::garbage(&frame, nth, net.max_frame_bytes);
                    g.extend_from_slice(&frame);
                    pieces.push((ordered(at(ms), &mut last), g));
                }
            }
            for (at, bytes) in pieces {
                seq += 1;
                if tx.try_send(Due { at, seq, bytes }).is_err() {
                    // More than the proxy holds for one direction: give up on the link.
                    net.count(|c| c.conn_resets += 1);
                    conn.close();
                    break 'read;
                }
            }
        }
    }
    // The end of what this side sent: what is under way still arrives (as over TCP), then
    // the writer closes the connection. A reset closed it already.
    drop(tx);
    let _ = writing.await;
}

async fn write_due(
    net: Arc<Net>,
    conn: Arc<Conn>,
    from: Node,
    to: Node,
    mut rx: mpsc::Receiver<Due>,
    mut writer: OwnedWriteHalf,
) {
    let mut due: BinaryHeap<std::cmp::Reverse<Due>> = BinaryHeap::new();
    let mut open = true;
    loop {
        if conn.is_closed() {
            break;
        }
        let next = due.peek().map(|d| d.0.at);
        tokio::select! {
            d = rx.recv(), if open => match d {
                Some(d) => due.push(std::cmp::Reverse(d)),
                None => open = false,
            },
            _ = sleep_until(next), if next.is_some() => {
                let Some(std::cmp::Reverse(d)) = due.pop() else { continue };
                // A partition: a stream stalls (the frame waits for the heal), a datagram
                // link loses the frame.
                let mut lost = false;
                while net.blocked(from, to) {
                    if !net.stream {
                        lost = true;
                        break;
                    }
                    let changed = net.changed.notified();
                    tokio::select! {
                        _ = changed => {}
                        _ = conn.closed.notified() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
                if lost {
                    net.count(|c| c.dropped += 1);
                    continue;
                }
                if writer.write_all(&d.bytes).await.is_err() {
                    break;
                }
                if d.bytes.last() == Some(&b'\n') {
                    net.count(|c| c.delivered += 1);
                }
            },
            _ = conn.closed.notified() => break,
            else => break,
        }
    }
    conn.close();
    let _ = writer.shutdown().await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
