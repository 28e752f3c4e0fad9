//! `dsync-benches`: workloads shared by the criterion benches and the `bench-report` binary —
//! real editing traces (Joseph Gentle's `editing-traces`, CC BY 4.0, shipped in
//! `benches/traces/`; see its README for the credit and the format) replayed through dsync's engines and, side by side, through yrs and diamond-types.
//!
//! Every replay checks its final text against the trace's `endContent` (or the prefix's own
//! replay): a fast run that produces the wrong text fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dsync_engine::{Config, PeerId, ServerEngine, StoredDocument, Time};
use dsync_node::{ClientNode, ClientNodeConfig, ClientNodeOutput, Output, ServerNode};
use dsync_store::MemStore;

/// One patch in the units of the system that applies it.
#[derive(Debug, Clone)]
pub struct Patch {
    /// Position.
    pub pos: usize,
    /// Length deleted.
    pub del: usize,
    /// Text inserted.
    pub ins: String,
}

/// A trace, prepared in the three position units the systems use.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Short name (`automerge-paper`, `seph-blog1`).
    pub name: String,
    /// Text before the first transaction.
    pub start: String,
    /// Text after the last replayed transaction.
    pub end: String,
    /// Transactions in chars (diamond-types).
    pub chars: Vec<Vec<Patch>>,
    /// Transactions in UTF-8 bytes (dsync).
    pub bytes: Vec<Vec<Patch>>,
    /// Transactions in UTF-16 units (yrs).
    pub utf16: Vec<Vec<Patch>>,
}

impl Trace {
    /// `n` keystrokes into a synthetic ASCII document of `size` bytes: single characters
    /// inserted and deleted alternately at deterministic positions (so the document keeps its
    /// size), each its own transaction. The size-scaling table replays it at one sync per
    /// keystroke: what one keystroke's round trip costs at that size.
    pub fn keystrokes(size: usize, n: usize) -> Trace {
        let start = synthetic_document(size);
        let pos = positions(size, n.max(1));
        let mut text = start.clone();
        let mut txns = Vec::with_capacity(n);
        for (i, p) in pos.iter().take(n).enumerate() {
            let patch = if i % 2 == 0 || text.is_empty() {
                let at = p % (text.len() + 1);
                text.insert(at, 'x');
                Patch {
                    pos: at,
                    del: 0,
                    ins: "x".into(),
                }
            } else {
                let at = p % text.len();
                text.remove(at);
                Patch {
                    pos: at,
                    del: 1,
                    ins: String::new(),
                }
            };
            txns.push(vec![patch]);
        }
        // ASCII: chars, bytes and UTF-16 units are the same positions.
        Trace {
            name: format!("keystrokes-{size}"),
            start,
            end: text,
            chars: txns.clone(),
            bytes: txns.clone(),
            utf16: txns,
        }
    }
}

/// The traces shipped with the repository, by name: `benches/traces/NAME.json.gz`.
pub const SHIPPED_TRACES: [&str; 2] = ["automerge-paper", "seph-blog1"];

/// Where the traces are: `$DSYNC_TRACES` when set, else `benches/traces/` of this checkout.
pub fn traces_dir() -> PathBuf {
    std::env::var_os("DSYNC_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("traces"))
}

/// Load a trace by name (`NAME.json.gz` in [`traces_dir`]), keeping its first `limit`
/// transactions (all if `None`).
pub fn load_trace(name: &str, limit: Option<usize>) -> Result<Trace, String> {
    load_trace_file(&traces_dir().join(format!("{name}.json.gz")), limit)
}

/// Load a trace file in the editing-traces format (gzip-compressed or plain JSON, told apart
/// by the gzip magic bytes), keeping its first `limit` transactions (all if `None`). Its name
/// is the file name without `.json.gz` / `.json`.
pub fn load_trace_file(path: &Path, limit: Option<usize>) -> Result<Trace, String> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = file_name
        .trim_end_matches(".gz")
        .trim_end_matches(".json")
        .to_string();
    let raw = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "trace {} not found. The shipped traces are in benches/traces/ of the repository; \
                 point DSYNC_TRACES (or bench-report --traces DIR) at a folder holding NAME.json.gz, \
                 or pass a file with bench-report --trace FILE",
                path.display()
            )
        } else {
            format!("{}: {e}", path.display())
        }
    })?;
    let mut json = String::new();
    if raw.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut json)
            .map_err(|e| format!("{}: not a readable gzip file: {e}", path.display()))?;
    } else {
        json = String::from_utf8(raw)
            .map_err(|e| format!("{}: neither gzip nor UTF-8 JSON: {e}", path.display()))?;
    }
    let v: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |what: &str| {
        format!(
            "{}: {what} (the editing-traces format is described in benches/traces/README.md)",
            path.display()
        )
    };
    let start = v["startContent"]
        .as_str()
        .ok_or_else(|| bad("startContent missing"))?
        .to_string();
    let full_end = v["endContent"]
        .as_str()
        .ok_or_else(|| bad("endContent missing"))?
        .to_string();
    let txns = v["txns"].as_array().ok_or_else(|| bad("txns missing"))?;
    let n = limit.unwrap_or(txns.len()).min(txns.len());
    let mut rope = ropey::Rope::from_str(&start);
    let (mut chars, mut bytes, mut utf16) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for t in &txns[..n] {
        let (mut c, mut b, mut u) = (Vec::new(), Vec::new(), Vec::new());
        for p in t["patches"]
            .as_array()
            .ok_or_else(|| bad("a transaction without patches"))?
        {
            let pos = p[0]
                .as_u64()
                .ok_or_else(|| bad("a patch without a position"))? as usize;
            let del = p[1]
                .as_u64()
                .ok_or_else(|| bad("a patch without a count"))? as usize;
            let ins = p[2]
                .as_str()
                .ok_or_else(|| bad("a patch without inserted text"))?
                .to_string();
            if pos.checked_add(del).is_none_or(|e| e > rope.len_chars()) {
                return Err(bad("a patch past the end of the text"));
            }
            let (b0, b1) = (rope.char_to_byte(pos), rope.char_to_byte(pos + del));
            let (u0, u1) = (rope.char_to_utf16_cu(pos), rope.char_to_utf16_cu(pos + del));
            c.push(Patch {
                pos,
                del,
                ins: ins.clone(),
            });
            b.push(Patch {
                pos: b0,
                del: b1 - b0,
                ins: ins.clone(),
            });
            u.push(Patch {
                pos: u0,
                del: u1 - u0,
                ins: ins.clone(),
            });
            rope.remove(pos..pos + del);
            rope.insert(pos, &ins);
        }
        chars.push(c);
        bytes.push(b);
        utf16.push(u);
    }
    let end = rope.to_string();
    if n == txns.len() && end != full_end {
        return Err(bad("replaying the trace does not give endContent"));
    }
    Ok(Trace {
        name,
        start,
        end,
        chars,
        bytes,
        utf16,
    })
}

/// What one replay measured.
#[derive(Debug, Clone)]
pub struct Run {
    /// Transactions replayed.
    pub ops: usize,
    /// Time taken.
    pub elapsed: Duration,
    /// Bytes exchanged between the replicas (both directions).
    pub wire_bytes: u64,
}

impl Run {
    /// Transactions per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A dsync client node and server node in one process (the nodes the binaries run, the server
/// over `dsync_store::MemStore`), exchanging real protocol frames: the full protocol minus the
/// socket. Every server batch is committed to the store before its replies go out.
pub struct DsyncPair {
    /// The client.
    pub client: ClientNode,
    server: Option<ServerNode<MemStore>>,
    /// Bytes on the wire so far (0 without JSON).
    pub wire_bytes: u64,
    /// Pass frames through the receivers' decoders (the wire), or hand the messages over as
    /// values (the nodes still encode what they send).
    pub json: bool,
    now: u64,
    peer: PeerId,
}

impl DsyncPair {
    /// A connected pair on a document holding `start`.
    pub fn new(start: &str) -> DsyncPair {
        let cfg = Config::default();
        let mut p = DsyncPair {
            client: bench_client(cfg, "c0"),
            server: Some(bench_server(cfg, start)),
            wire_bytes: 0,
            json: true,
            now: 0,
            peer: PeerId(1),
        };
        p.client.connected(Time(0));
        p.pump();
        p
    }

    /// The server's engine.
    pub fn server(&self) -> &ServerEngine {
        self.server
            .as_ref()
            .expect("the server node is back after every call")
            .engine()
    }

    /// Deliver everything until both sides are quiet.
    pub fn pump(&mut self) {
        let now = Time(self.now);
        let mut server = self.server.take().expect("the server node is here");
        loop {
            let mut moved = false;
            while let Some(o) = self.client.poll_output() {
                if let ClientNodeOutput::Transmit(t) = o {
                    if self.json {
                        self.wire_bytes += t.line.len() as u64;
                        server.receive_datagram(now, self.peer, t.line.as_bytes());
                    } else {
                        server.handle_message(now, self.peer, t.msg);
                    }
                    moved = true;
                }
            }
            let (s, released) = commit(server, self.now);
            server = s;
            for o in released {
                if let Output::Send { msg, line, .. } = o {
                    if self.json {
                        self.wire_bytes += line.len() as u64;
                        self.client.receive_datagram(now, line.as_bytes());
                    } else {
                        self.client.handle_message(now, msg);
                    }
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        self.server = Some(server);
    }

    /// Apply one transaction (byte positions) to the client's text.
    pub fn apply(&mut self, txn: &[Patch]) {
        self.client.edit(|e| {
            for p in txn {
                e.edit_bytes(p.pos, p.del, &p.ins)
                    .expect("trace patch fits");
            }
        });
    }

    /// One full sync round trip.
    pub fn sync(&mut self) {
        self.now += 1;
        self.client.sync_now(Time(self.now));
        self.pump();
    }
}

/// Commit a server node's batch (the in-memory store does not fail).
fn commit(server: ServerNode<MemStore>, now: u64) -> (ServerNode<MemStore>, Vec<Output>) {
    match server.commit(now) {
        Ok((s, released)) => (s, released.outputs),
        Err(f) => panic!("the in-memory store failed: {}", f.error),
    }
}

/// A client node for the document `bench`.
fn bench_client(cfg: Config, id: &str) -> ClientNode {
    ClientNode::new(cfg, ClientNodeConfig::for_engine(&cfg), id, "bench")
}

/// A server node whose store holds the document `bench` with `text`.
fn bench_server(cfg: Config, text: &str) -> ServerNode<MemStore> {
    let mut store = MemStore::new();
    store.insert(
        "bench",
        StoredDocument {
            text: text.into(),
            ..StoredDocument::default()
        },
    );
    ServerNode::new(cfg, store, cfg.limits.frame_bytes(), [7; 32])
}

/// Replay a trace through dsync, syncing every `every` transactions.
pub fn run_dsync(t: &Trace, every: usize) -> Result<Run, String> {
    let mut p = DsyncPair::new(&t.start);
    let start = Instant::now();
    for (i, txn) in t.bytes.iter().enumerate() {
        p.apply(txn);
        if (i + 1) % every == 0 || i + 1 == t.bytes.len() {
            p.sync();
        }
    }
    let elapsed = start.elapsed();
    check(&t.end, &p.client.engine().text().flat(), "dsync client")?;
    let master = p.server().master("bench").map(String::from);
    check(
        &t.end,
        master.as_deref().unwrap_or_default(),
        "dsync server",
    )?;
    Ok(Run {
        ops: t.bytes.len(),
        elapsed,
        wire_bytes: p.wire_bytes,
    })
}

/// Replay a trace through two yrs replicas, sending updates every `every` transactions.
pub fn run_yrs(t: &Trace, every: usize) -> Result<Run, String> {
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, ReadTxn, Text, Transact};
    let opts = || yrs::Options {
        offset_kind: yrs::OffsetKind::Utf16,
        ..yrs::Options::default()
    };
    let (a, b) = (
        yrs::Doc::with_options(opts()),
        yrs::Doc::with_options(opts()),
    );
    let (ta, tb) = (a.get_or_insert_text("t"), b.get_or_insert_text("t"));
    {
        let mut txn = a.transact_mut();
        ta.insert(&mut txn, 0, &t.start);
    }
    // Each transaction's own update is what a yrs application sends (incremental, like the
    // `observe_update_v1` callback); they are buffered and applied to the replica at the cadence.
    let mut wire = 0u64;
    let mut buffered: Vec<Vec<u8>> = Vec::new();
    let flush = |buffered: &mut Vec<Vec<u8>>, wire: &mut u64| -> Result<(), String> {
        let mut tx = b.transact_mut();
        for update in buffered.drain(..) {
            *wire += update.len() as u64;
            let u = yrs::Update::decode_v1(&update).map_err(|e| e.to_string())?;
            tx.apply_update(u).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    {
        let sv = b.transact().state_vector();
        buffered.push(a.transact().encode_state_as_update_v1(&sv));
        flush(&mut buffered, &mut wire)?;
    }
    let start = Instant::now();
    for (i, txn) in t.utf16.iter().enumerate() {
        {
            let mut tx = a.transact_mut();
            for p in txn {
                if p.del > 0 {
                    ta.remove_range(&mut tx, p.pos as u32, p.del as u32);
                }
                if !p.ins.is_empty() {
                    ta.insert(&mut tx, p.pos as u32, &p.ins);
                }
            }
            buffered.push(tx.encode_update_v1());
        }
        if (i + 1) % every == 0 || i + 1 == t.utf16.len() {
            flush(&mut buffered, &mut wire)?;
        }
    }
    let elapsed = start.elapsed();
    check(&t.end, &tb.get_string(&b.transact()), "yrs replica")?;
    Ok(Run {
        ops: t.utf16.len(),
        elapsed,
        wire_bytes: wire,
    })
}

/// Replay a trace through two diamond-types replicas, sending ops every `every` transactions.
pub fn run_diamond(t: &Trace, every: usize) -> Result<Run, String> {
    use diamond_types::list::encoding::ENCODE_PATCH;
    use diamond_types::list::ListCRDT;
    let (mut a, mut b) = (ListCRDT::new(), ListCRDT::new());
    let agent = a.get_or_create_agent_id("a");
    if !t.start.is_empty() {
        a.insert(agent, 0, &t.start);
    }
    let mut sent = a.oplog.local_version();
    let mut wire = 0u64;
    let bytes = a.oplog.encode(diamond_types::list::encoding::ENCODE_FULL);
    wire += bytes.len() as u64;
    b.merge_data_and_ff(&bytes).map_err(|e| format!("{e:?}"))?;
    let start = Instant::now();
    for (i, txn) in t.chars.iter().enumerate() {
        for p in txn {
            if p.del > 0 {
                a.delete(agent, p.pos..p.pos + p.del);
            }
            if !p.ins.is_empty() {
                a.insert(agent, p.pos, &p.ins);
            }
        }
        if (i + 1) % every == 0 || i + 1 == t.chars.len() {
            let bytes = a.oplog.encode_from(ENCODE_PATCH, &sent);
            sent = a.oplog.local_version();
            wire += bytes.len() as u64;
            b.merge_data_and_ff(&bytes).map_err(|e| format!("{e:?}"))?;
        }
    }
    let elapsed = start.elapsed();
    check(
        &t.end,
        &b.branch.content().to_string(),
        "diamond-types replica",
    )?;
    Ok(Run {
        ops: t.chars.len(),
        elapsed,
        wire_bytes: wire,
    })
}

/// Two clients on one server: `a` replays its trace at the top of the document, `b` at the
/// bottom (after a separator), both syncing every `every` of their transactions. Returns the
/// server's final text, which must be `a.end + "\n---\n" + b.end`.
pub fn two_writers(a: &Trace, b: &Trace, every: usize) -> String {
    let cfg = Config::default();
    let mut server = Some(bench_server(cfg, &format!("{}\n---\n{}", a.start, b.start)));
    let mut clients = [bench_client(cfg, "a"), bench_client(cfg, "b")];
    let mut now = 0u64;
    let pump =
        |slot: &mut Option<ServerNode<MemStore>>, clients: &mut [ClientNode; 2], now: u64| {
            let mut server = slot.take().expect("the server node is here");
            loop {
                let mut moved = false;
                for (i, c) in clients.iter_mut().enumerate() {
                    while let Some(o) = c.poll_output() {
                        if let ClientNodeOutput::Transmit(t) = o {
                            server.receive_datagram(Time(now), PeerId(i as u64), t.line.as_bytes());
                            moved = true;
                        }
                    }
                }
                let (s, released) = commit(server, now);
                server = s;
                for o in released {
                    if let Output::Send { to, line, .. } = o {
                        clients[to.0 as usize].receive_datagram(Time(now), line.as_bytes());
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
            *slot = Some(server);
        };
    for c in clients.iter_mut() {
        c.connected(Time(0));
    }
    pump(&mut server, &mut clients, now);
    // B's part is at the end: its positions count back from the end of the text.
    let mut b_len = b.start.len();
    let n = a.bytes.len().max(b.bytes.len());
    for i in 0..n {
        if let Some(txn) = a.bytes.get(i) {
            clients[0].edit(|e| {
                for p in txn {
                    e.edit_bytes(p.pos, p.del, &p.ins).expect("a fits");
                }
            });
        }
        if let Some(txn) = b.bytes.get(i) {
            clients[1].edit(|e| {
                for p in txn {
                    let base = e.text().len() - b_len;
                    e.edit_bytes(base + p.pos, p.del, &p.ins).expect("b fits");
                    b_len = b_len - p.del + p.ins.len();
                }
            });
        }
        if (i + 1) % every == 0 || i + 1 == n {
            now += 1;
            for c in clients.iter_mut() {
                c.sync_now(Time(now));
            }
            pump(&mut server, &mut clients, now);
        }
    }
    // A last round so both clients hold the final text.
    for _ in 0..2 {
        now += 1;
        for c in clients.iter_mut() {
            c.sync_now(Time(now));
        }
        pump(&mut server, &mut clients, now);
    }
    let server = server.expect("the server node is here");
    server
        .engine()
        .master("bench")
        .map(String::from)
        .unwrap_or_default()
}

fn check(want: &str, got: &str, who: &str) -> Result<(), String> {
    if want == got {
        Ok(())
    } else {
        Err(format!(
            "{who} ended with {} bytes, expected {} (texts differ)",
            got.len(),
            want.len()
        ))
    }
}

/// A document of about `len` bytes of plain text.
pub fn synthetic_document(len: usize) -> String {
    let words = [
        "sync ", "shadow ", "delta ", "merge ", "server ", "client ", "edit ", "text\n",
    ];
    let mut s = String::with_capacity(len + 8);
    let mut i = 0usize;
    while s.len() < len {
        s.push_str(words[i % words.len()]);
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    s.truncate(len);
    s
}

/// Deterministic positions for single-char edits (a 64-bit LCG; no `rand` needed here).
pub fn positions(len: usize, n: usize) -> Vec<usize> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as usize) % (len + 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_three_systems_reach_the_same_text() {
        let t = load_trace("seph-blog1", Some(3_000)).unwrap();
        for every in [1, 10] {
            run_dsync(&t, every).unwrap();
            run_yrs(&t, every).unwrap();
            run_diamond(&t, every).unwrap();
        }
    }

    #[test]
    fn two_writers_end_with_both_texts_in_place() {
        let a = load_trace("automerge-paper", Some(1_500)).unwrap();
        let b = load_trace("seph-blog1", Some(1_500)).unwrap();
        assert_eq!(
            two_writers(&a, &b, 10),
            format!("{}\n---\n{}", a.end, b.end)
        );
    }

    #[test]
    fn full_automerge_trace_replays_to_end_content() {
        // Loading checks the replay against endContent.
        let t = load_trace("automerge-paper", None).unwrap();
        assert_eq!(t.chars.len(), 259_778);
        assert_eq!(t.end.chars().count(), 104_852);
    }
}
