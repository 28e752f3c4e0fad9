//! Presence through a real loopback server with the terminal client's session: each user's
//! cursor (where it last edited) reaches the others, as `show` prints it, and leaves with the
//! connection.

use std::time::{Duration, Instant};

use dsync_client::{describe_presence, Edit, Session, SessionConfig};
use dsync_server::start;

#[allow(dead_code)] // the helpers other test files use
mod common;
use common::{server_cfg, T};

fn named(addr: std::net::SocketAddr, name: &str) -> Session {
    let mut cfg = SessionConfig::new(addr, "notes");
    cfg.engine.sync_interval_ms = 100;
    cfg.presence = Some(name.into());
    Session::start(cfg, None)
}

/// Wait until `s` lists the others as `want` (what `show` prints for each).
async fn wait_for(s: &Session, want: &[&str]) {
    let start = Instant::now();
    loop {
        let snap = s.snapshot();
        let text = snap.text.to_string();
        let seen: Vec<String> = snap
            .others
            .iter()
            .map(|p| describe_presence(&text, p))
            .collect();
        if seen.len() == want.len() && seen.iter().zip(want).all(|(s, w)| s.starts_with(w)) {
            return;
        }
        assert!(start.elapsed() < T, "saw {seen:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_users_cursor_reaches_the_others_and_leaves_with_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_cfg(dir.path().join("db"))).await.unwrap();
    let alice = named(server.addr, "alice");
    let bob = named(server.addr, "bob");
    alice.wait_connected(T).await.unwrap();
    bob.wait_connected(T).await.unwrap();
    // Before anyone types, both sit at the start.
    wait_for(&bob, &["alice ("]).await;
    wait_for(&alice, &["bob ("]).await;

    alice.edit(Edit::Append("one\ntwo".into())).await.unwrap();
    bob.wait_converged(T).await.unwrap();
    wait_for(&bob, &["alice ("]).await;
    let snap = bob.snapshot();
    let line = describe_presence(&snap.text.to_string(), &snap.others[0]);
    assert!(line.ends_with(" at 2:4"), "{line}");
    bob.edit(Edit::Insert(3, "!".into())).await.unwrap();
    let start = Instant::now();
    while alice.snapshot().text != "one!\ntwo" {
        assert!(start.elapsed() < T, "bob's edit did not reach alice");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for(&alice, &["bob ("]).await;
    let snap = alice.snapshot();
    let line = describe_presence(&snap.text.to_string(), &snap.others[0]);
    assert!(
        line.starts_with("bob (") && line.ends_with(" at 1:5"),
        "{line}"
    );

    // Alice leaves: Bob's list empties.
    alice.stop().await;
    wait_for(&bob, &[]).await;
    server.shutdown().await.unwrap();
}
