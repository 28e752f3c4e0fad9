//! End-to-end tests on real sockets (127.0.0.1, port 0) and, for `kill -9`, the real server
//! binary: clients converge, acknowledged edits survive a crash, bad input is refused without
//! touching anyone else, silent peers are evicted.

use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use dsync_client::Edit;
use dsync_engine::Config;
use dsync_server::{start, ServerConfig};
use dsync_store::Store;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::T;

fn db_path(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    (dir, p)
}

mod common;
use common::{drain_stderr, listening, server_cfg, session, spawn_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_converge_and_a_late_third_gets_the_text() {
    let (_dir, db) = db_path("documents.db");
    let server = start(server_cfg(db)).await.unwrap();
    let a = session(server.addr, "notes");
    let b = session(server.addr, "notes");
    a.wait_connected(T).await.unwrap();
    b.wait_connected(T).await.unwrap();
    // Concurrent edits from both sides.
    for i in 0..10 {
        a.edit(Edit::Append(format!("<a{i}>"))).await.unwrap();
        b.edit(Edit::Insert(0, format!("<b{i}>"))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let sa = a.wait_converged(T).await.unwrap();
    let sb = b.wait_converged(T).await.unwrap();
    let sa = if sa.text == sb.text {
        sa
    } else {
        a.wait_converged(T).await.unwrap()
    };
    assert_eq!(sa.text, b.snapshot().text);
    for i in 0..10 {
        assert_eq!(
            sa.text.to_string().matches(&format!("<a{i}>")).count(),
            1,
            "{}",
            sa.text
        );
        assert_eq!(
            sa.text.to_string().matches(&format!("<b{i}>")).count(),
            1,
            "{}",
            sa.text
        );
    }
    let c = session(server.addr, "notes");
    let sc = c.wait_converged(T).await.unwrap();
    assert_eq!(sc.text, sa.text);
    // Another document on the same server is independent.
    let d = session(server.addr, "other");
    assert_eq!(d.wait_converged(T).await.unwrap().text, "");
    for s in [a, b, c, d] {
        s.stop().await;
    }
    server.shutdown().await.unwrap();
}

/// Limits on the wire, with the default limits: a paste that triples when percent-encoded
/// (1.5 MB of CJK, a 4.5 MB delta) reaches the other client, and a document of exactly the
/// maximum size made of quotes (which JSON doubles) can be opened. Both used to be refused
/// forever: the delta limit was the document limit, and the frame limit 8 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_biggest_paste_and_the_biggest_document_go_through() {
    let (_dir, db) = db_path("documents.db");
    let server = start(server_cfg(db)).await.unwrap();
    let a = session(server.addr, "big");
    let b = session(server.addr, "big");
    a.wait_connected(T).await.unwrap();
    b.wait_connected(T).await.unwrap();
    let paste = "漢".repeat(500_000);
    a.edit(Edit::Append(paste.clone())).await.unwrap();
    let long = Duration::from_secs(120);
    let mut state = b.watch();
    tokio::time::timeout(long, state.wait_for(|s| s.text == paste))
        .await
        .expect("the paste reached the other client")
        .unwrap();
    for s in [a, b] {
        s.stop().await;
    }
    // The largest document there may be, of the character JSON escapes.
    let max = dsync_engine::Limits::default().max_document_bytes;
    let c = session(server.addr, "quotes");
    c.wait_connected(T).await.unwrap();
    c.edit(Edit::Append("\"".repeat(max))).await.unwrap();
    c.wait_converged(long).await.unwrap();
    let d = session(server.addr, "quotes");
    let opened = d.wait_connected(long).await.unwrap();
    assert_eq!(opened.text.len(), max);
    for s in [c, d] {
        s.stop().await;
    }
    server.shutdown().await.unwrap();
}

/// The real server binary on `db` at `listen`: the process and its address.
fn spawn_at(db: &std::path::Path, listen: &str) -> (Child, SocketAddr) {
    let mut child = spawn_server(db, listen, &[], None);
    // Its log goes to a thread that reads it, so a full pipe never blocks the server.
    let _log = drain_stderr(&mut child);
    let (addr, _) = listening(&mut child);
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_edit_and_unacknowledged_ones_arrive_later() {
    let (_dir, db) = db_path("documents.db");
    let (mut server, addr) = spawn_at(&db, "127.0.0.1:0");
    let a = session(addr, "doc");
    let b = session(addr, "doc");
    a.wait_connected(T).await.unwrap();
    b.wait_connected(T).await.unwrap();
    a.edit(Edit::Append("acked-one ".into())).await.unwrap();
    b.edit(Edit::Append("acked-two ".into())).await.unwrap();
    a.wait_converged(T).await.unwrap();
    b.wait_converged(T).await.unwrap();
    // Keep typing and kill the server in the middle of it.
    for i in 0..5 {
        a.edit(Edit::Append(format!("a{i} "))).await.unwrap();
        b.edit(Edit::Append(format!("b{i} "))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    // Typed while the server is down: only in the clients.
    a.edit(Edit::Append("offline-a ".into())).await.unwrap();
    // What the store held at the kill holds every acknowledged edit.
    let stored = dsync_store::SqliteStore::open(&db)
        .unwrap()
        .load("doc")
        .unwrap()
        .unwrap()
        .text
        .to_string();
    assert!(
        stored.contains("acked-one") && stored.contains("acked-two"),
        "{stored}"
    );
    let (mut server2, addr2) = spawn_at(&db, &addr.to_string());
    assert_eq!(addr2, addr);
    let sa = a.wait_converged(T).await.unwrap();
    let sb = b.wait_converged(T).await.unwrap();
    let text = if sa.text == sb.text {
        sa.text
    } else {
        a.wait_converged(T).await.unwrap().text
    };
    assert_eq!(text, b.snapshot().text);
    for want in ["acked-one", "acked-two", "offline-a"]
        .into_iter()
        .map(String::from)
        .chain((0..5).flat_map(|i| [format!("a{i}"), format!("b{i}")]))
    {
        assert_eq!(
            text.to_string().matches(&want).count(),
            1,
            "{want} in {text:?}"
        );
    }
    a.stop().await;
    b.stop().await;
    server2.kill().unwrap();
    server2.wait().unwrap();
}

async fn raw(
    addr: SocketAddr,
) -> (
    tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let s = TcpStream::connect(addr).await.unwrap();
    let (r, w) = s.into_split();
    (tokio::io::BufReader::new(r).lines(), w)
}

async fn next_json(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>,
) -> serde_json::Value {
    let line = tokio::time::timeout(T, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("connection closed");
    serde_json::from_str(&line).unwrap()
}

async fn expect_error(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>,
    code: &str,
) {
    loop {
        let v = next_json(lines).await;
        if v["type"] == "error" {
            assert_eq!(v["code"], code, "{v}");
            assert!(!v["message"].as_str().unwrap().is_empty());
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_disturbs_nobody() {
    let (_dir, db) = db_path("documents.db");
    let server = start(ServerConfig {
        max_frame_bytes: 4096,
        ..server_cfg(db)
    })
    .await
    .unwrap();
    let good = session(server.addr, "shared");
    good.wait_connected(T).await.unwrap();
    good.edit(Edit::Append("before ".into())).await.unwrap();
    good.wait_converged(T).await.unwrap();

    let (mut lines, mut w) = raw(server.addr).await;
    w.write_all(b"this is not json\n").await.unwrap();
    expect_error(&mut lines, "bad_message").await;
    w.write_all(b"{\"type\":\"launch\"}\n").await.unwrap();
    expect_error(&mut lines, "bad_message").await;
    w.write_all(format!("{{\"type\":\"ping\",\"pad\":\"{}\"}}\n", "x".repeat(10_000)).as_bytes())
        .await
        .unwrap();
    expect_error(&mut lines, "frame_too_large").await;
    w.write_all(b"{\"type\":\"connect\",\"protocol\":2,\"doc\":\"shared\",\"client_id\":\"evil\",\"seq\":1}\n").await.unwrap();
    expect_error(&mut lines, "unsupported_protocol").await;
    w.write_all(b"{\"type\":\"client_sync\",\"doc\":\"shared\",\"seq\":2,\"server_version\":0,\"edits\":[]}\n").await.unwrap();
    expect_error(&mut lines, "unknown_session").await;
    w.write_all(b"{\"type\":\"connect\",\"protocol\":1,\"doc\":\"shared\",\"client_id\":\"evil\",\"seq\":3}\n").await.unwrap();
    let ok = next_json(&mut lines).await;
    assert_eq!(ok["type"], "connect_ok");
    let text = ok["text"].as_str().unwrap().to_string();
    // A delta that does not fit the shadow, then one whose checksum is wrong.
    w.write_all(b"{\"type\":\"client_sync\",\"doc\":\"shared\",\"seq\":4,\"server_version\":0,\"edits\":[{\"version\":0,\"delta\":\"=9999\\t+x\",\"checksum\":1}]}\n").await.unwrap();
    expect_error(&mut lines, "bad_delta").await;
    let n = text.encode_utf16().count();
    w.write_all(format!("{{\"type\":\"client_sync\",\"doc\":\"shared\",\"seq\":5,\"server_version\":0,\"edits\":[{{\"version\":0,\"delta\":\"={n}\\t+EVIL\",\"checksum\":12345}}]}}\n").as_bytes()).await.unwrap();
    // Second failure in a row: the session is reset (a full-text server_sync) and nothing of
    // the bad edit reached the master.
    loop {
        let v = next_json(&mut lines).await;
        if v["type"] == "server_sync" {
            assert!(v["edits"][0]["text"].is_string(), "{v}");
            break;
        }
    }
    // The well-behaved client still works and never saw the garbage.
    good.edit(Edit::Append("after".into())).await.unwrap();
    let s = good.wait_converged(T).await.unwrap();
    assert_eq!(s.text, "before after");
    let mut good = good;
    assert!(good.take_errors().is_empty());
    good.stop().await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_evicted_after_its_heartbeats() {
    let (_dir, db) = db_path("documents.db");
    let server = start(ServerConfig {
        engine: Config {
            heartbeat_ms: 200,
            ..Config::default()
        },
        ..server_cfg(db)
    })
    .await
    .unwrap();
    let (mut lines, mut w) = raw(server.addr).await;
    w.write_all(
        b"{\"type\":\"connect\",\"protocol\":1,\"doc\":\"d\",\"client_id\":\"quiet\",\"seq\":1}\n",
    )
    .await
    .unwrap();
    assert_eq!(next_json(&mut lines).await["type"], "connect_ok");
    // Say nothing more; the server pings, then closes the connection.
    let started = std::time::Instant::now();
    let mut pinged = false;
    while let Ok(Some(l)) = tokio::time::timeout(T, lines.next_line()).await.unwrap() {
        pinged |= l.contains("\"ping\"");
    }
    let took = started.elapsed();
    assert!(pinged, "no ping before eviction");
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(5),
        "evicted after {took:?}"
    );
    server.shutdown().await.unwrap();
}
