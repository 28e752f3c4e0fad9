//! Criterion benches: `local_sync` (one edit and a full round trip on 1 KB, 10 KB and 100 KB
//! documents), `trace_replay` (trace prefixes through dsync, yrs and diamond-types),
//! `two_writers` (two clients editing both ends of one document), `wire` (frame encode+decode).
//! Run with `cargo bench -p dsync-benches`; medians are what to quote.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dsync_benches::{
    load_trace, positions, run_diamond, run_dsync, run_yrs, synthetic_document, DsyncPair,
};
use dsync_engine::{Checksum, ClientMsg, Delta, Edit};
use dsync_net::{decode_client, encode_client};

/// One op = one single-char edit at a random position (inserts and deletes alternate, so the
/// document keeps its size), then a full sync round trip in process: client delta, server
/// strict apply + merge + persist record + reply, client apply; checksums included; no
/// socket, no JSON (the `wire` group measures frames).
fn local_sync(c: &mut Criterion) {
    let mut g = c.benchmark_group("local_sync");
    for size in [1_000usize, 10_000, 100_000] {
        let doc = synthetic_document(size);
        let pos = positions(size, 4096);
        g.throughput(Throughput::Elements(1));
        g.bench_function(
            BenchmarkId::from_parameter(format!("{}KB", size / 1000)),
            |b| {
                let mut pair = DsyncPair::new(&doc);
                pair.json = false;
                let mut i = 0usize;
                b.iter(|| {
                    let len = pair.client.engine().text().len();
                    // Positions are ASCII-safe: the synthetic document is ASCII. Inserts and
                    // deletes alternate so the document keeps its size.
                    if i % 2 == 0 {
                        let at = pos[i % pos.len()] % (len + 1);
                        pair.client.edit_bytes(at, 0, "x").expect("ascii position");
                    } else {
                        let at = pos[i % pos.len()] % len.max(1);
                        pair.client.edit_bytes(at, 1, "").expect("ascii position");
                    }
                    pair.sync();
                    i += 1;
                });
            },
        );
    }
    g.finish();
}

fn trace_replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("trace_replay");
    g.sample_size(10);
    for name in ["automerge-paper", "seph-blog1"] {
        let t = load_trace(name, Some(10_000)).expect("trace loads");
        g.throughput(Throughput::Elements(t.chars.len() as u64));
        for every in [1usize, 10, 100] {
            g.bench_function(BenchmarkId::new(format!("dsync/{name}"), every), |b| {
                b.iter(|| run_dsync(&t, every).expect("dsync replay"))
            });
            g.bench_function(BenchmarkId::new(format!("yrs/{name}"), every), |b| {
                b.iter(|| run_yrs(&t, every).expect("yrs replay"))
            });
            g.bench_function(
                BenchmarkId::new(format!("diamond-types/{name}"), every),
                |b| b.iter(|| run_diamond(&t, every).expect("diamond replay")),
            );
        }
    }
    g.finish();
}

/// Client A replays automerge-paper at the top of the document, client B seph-blog1 at the
/// bottom, both syncing every 10 transactions through one server; the final text is known:
/// A's text, the separator, B's text.
fn two_writers(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_writers");
    g.sample_size(10);
    let a = load_trace("automerge-paper", Some(3_000)).expect("trace");
    let b = load_trace("seph-blog1", Some(3_000)).expect("trace");
    g.throughput(Throughput::Elements((a.bytes.len() + b.bytes.len()) as u64));
    g.bench_function("automerge+seph/every-10", |bench| {
        bench.iter(|| {
            let expected = format!("{}\n---\n{}", a.end, b.end);
            let got = dsync_benches::two_writers(&a, &b, 10);
            assert_eq!(got, expected);
        })
    });
    g.finish();
}

fn wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    let shadow = synthetic_document(10_000);
    let mut next = shadow.clone();
    next.insert(5_000, 'x');
    let msg = ClientMsg::ClientSync {
        doc: "bench".into(),
        seq: 42,
        server_version: 7,
        edits: vec![Edit::Delta {
            version: 9,
            delta: Delta::diff(&shadow, &next),
            checksum: Checksum::of(&next),
        }],
    };
    let bytes = encode_client(&msg).len();
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("client_sync_keystroke_encode_decode", |b| {
        b.iter(|| decode_client(&encode_client(&msg), usize::MAX).expect("decodes"))
    });
    g.finish();
}

// criterion's macros generate undocumented public functions.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, local_sync, trace_replay, two_writers, wire);
}
criterion_main!(group::benches);
