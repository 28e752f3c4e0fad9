//! The HTTP endpoints on a real loopback server: health, Prometheus metrics that move with the
//! traffic, the documents' list and texts, and bearer tokens under access control.

use dsync_client::Edit;
use dsync_engine::{access::issue, Grant, Rights, Secret};
use dsync_server::{start, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[allow(dead_code)] // the helpers other test files use
mod common;
use common::{server_cfg, session, T};

/// `GET path` with an optional bearer token: (status, body).
async fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    request(addr, "GET", path, token, "").await
}

/// One HTTP/1.1 request: (status, body).
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A server with tokens signed with `secret`, its HTTP endpoints on loopback.
async fn with_tokens(dir: &std::path::Path, secret: Secret) -> dsync_server::Running {
    start(ServerConfig {
        secret: Some(secret),
        ..cfg(dir.join("db"))
    })
    .await
    .unwrap()
}

/// A token of subject `app` for `doc`.
fn token(secret: &Secret, doc: &str, rights: Rights) -> String {
    let grant = Grant {
        subject: "app".into(),
        doc: doc.into(),
        rights,
        expires_unix_s: u64::MAX / 2,
    };
    issue(secret, &grant).unwrap()
}

fn cfg(db: std::path::PathBuf) -> ServerConfig {
    ServerConfig {
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..server_cfg(db)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_documents_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(cfg(dir.path().join("db"))).await.unwrap();
    let http = server.http_addr.unwrap();
    assert_eq!(get(http, "/healthz", None).await, (200, "ok\n".into()));
    let s = session(server.addr, "notes");
    s.wait_connected(T).await.unwrap();
    s.edit(Edit::Append("hello".into())).await.unwrap();
    s.wait_converged(T).await.unwrap();

    let (status, metrics) = get(http, "/metrics", None).await;
    assert_eq!(status, 200);
    for line in [
        "dsync_connections 1",
        "dsync_documents_open 1",
        "dsync_events_total{event=\"edits_applied\"} 1",
        "dsync_commit_seconds_count",
        "dsync_request_seconds_bucket",
        "dsync_batch_seconds_bucket",
        "dsync_bytes_in_total",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert!(
        !metrics.contains("dsync_request_seconds_count 0\n"),
        "requests were timed: {metrics}"
    );
    assert_eq!(
        get(http, "/documents", None).await,
        (200, r#"["notes"]"#.into())
    );
    let (status, body) = get(http, "/documents/notes", None).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["text"].as_str(), v["version"].as_u64()),
        (Some("hello"), Some(1)),
        "{v}"
    );
    assert_eq!(get(http, "/documents/none", None).await.0, 404);
    // A document no session holds is read from the store.
    s.stop().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, body) = get(http, "/documents/notes", None).await;
    assert!(body.contains("\"hello\""), "{body}");
    let (_, metrics) = get(http, "/metrics", None).await;
    assert!(metrics.contains("dsync_connections 0"), "{metrics}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_endpoints_need_a_token_under_access_control() {
    let dir = tempfile::tempdir().unwrap();
    let secret = Secret([5; 32]);
    let server = with_tokens(dir.path(), secret).await;
    let http = server.http_addr.unwrap();
    let token = |doc: &str| token(&secret, doc, Rights::Read);
    let (status, body) = get(http, "/documents/notes", None).await;
    assert_eq!(status, 401);
    assert!(body.contains("requires a token"), "{body}");
    assert_eq!(
        get(http, "/documents/notes", Some(&token("notes"))).await.0,
        404
    );
    assert_eq!(get(http, "/documents/notes/history", None).await.0, 401);
    assert_eq!(get(http, "/documents/notes?version=0", None).await.0, 401);
    let (status, body) = get(http, "/documents", Some(&token("notes"))).await;
    assert_eq!(
        status, 401,
        "listing needs a token for every document: {body}"
    );
    assert_eq!(
        get(http, "/documents", Some(&token("*"))).await,
        (200, "[]".into())
    );
    // Health and metrics stay open (operators scrape them; they hold no text).
    assert_eq!(get(http, "/healthz", None).await.0, 200);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_created_over_http_opens_with_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let secret = Secret([6; 32]);
    let server = with_tokens(dir.path(), secret).await;
    let http = server.http_addr.unwrap();
    let (read, write) = (
        token(&secret, "agenda", Rights::Read),
        token(&secret, "agenda", Rights::Write),
    );
    let put = |t: Option<String>, body: &'static str| {
        let t = t.clone();
        async move { request(http, "PUT", "/documents/agenda", t.as_deref(), body).await }
    };
    let (status, body) = put(Some(read.clone()), "1. coffee").await;
    assert_eq!(status, 401, "a read token cannot create: {body}");
    assert_eq!(put(None, "1. coffee").await.0, 401);
    assert_eq!(put(Some(write.clone()), "1. coffee\n").await.0, 201);
    let (status, body) = put(Some(write.clone()), "other").await;
    assert_eq!(status, 409, "{body}");
    let (_, body) = get(http, "/documents/agenda", Some(&read)).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["text"].as_str(), v["version"].as_u64()),
        (Some("1. coffee\n"), Some(0)),
        "{v}"
    );
    // A client opens it with its text, and edits it.
    let mut cfg = dsync_client::SessionConfig::new(server.addr, "agenda");
    cfg.engine.sync_interval_ms = 100;
    cfg.token = Some(write);
    let s = dsync_client::Session::start(cfg, None);
    assert_eq!(s.wait_connected(T).await.unwrap().text, "1. coffee\n");
    s.edit(Edit::Append("2. code\n".into())).await.unwrap();
    assert_eq!(
        s.wait_converged(T).await.unwrap().text,
        "1. coffee\n2. code\n"
    );
    s.stop().await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_replays_to_the_document_after_concurrent_typing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(cfg(dir.path().join("db"))).await.unwrap();
    let http = server.http_addr.unwrap();
    let sessions: Vec<_> = (0..3).map(|_| session(server.addr, "notes")).collect();
    for s in &sessions {
        s.wait_connected(T).await.unwrap();
    }
    // A separator everyone has, so "the front" and "the end" mean something to a merge.
    sessions[0].edit(Edit::Append("|".into())).await.unwrap();
    for s in &sessions {
        s.wait_converged(T).await.unwrap();
    }
    // Three writers at once, each inserting at the front and appending at the end.
    let typing = sessions.iter().enumerate().map(|(i, s)| async move {
        for k in 0..15 {
            let e = if k % 2 == 0 {
                Edit::Insert(0, format!("{i}"))
            } else {
                Edit::Append(format!("<{i}{k}>"))
            };
            s.edit(e).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
    });
    futures_util::future::join_all(typing).await;
    for s in &sessions {
        s.wait_converged(T).await.unwrap();
    }
    let (_, body) = get(http, "/documents/notes", None).await;
    let now: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (text, version) = (
        now["text"].as_str().unwrap(),
        now["version"].as_u64().unwrap(),
    );

    let (status, body) = get(http, "/documents/notes/history", None).await;
    assert_eq!(status, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        h["base_version"], 0,
        "the history starts with the document: {h}"
    );
    assert_eq!(h["latest"].as_u64(), Some(version));
    let changes = h["changes"].as_array().unwrap();
    assert_eq!(changes.len() as u64, version, "one entry per version");
    // Replaying every delta from the base gives the document, and each step is that version.
    let mut replayed = String::new();
    for (i, c) in changes.iter().enumerate() {
        assert_eq!(c["version"].as_u64(), Some(i as u64 + 1));
        assert!(c["at_ms"].as_u64().unwrap() > 1_600_000_000_000);
        let delta = dsync_engine::Delta::parse(c["delta"].as_str().unwrap(), 1 << 20).unwrap();
        replayed = delta.apply(&replayed).unwrap();
        if i % 7 == 0 {
            let (_, body) = get(http, &format!("/documents/notes?version={}", i + 1), None).await;
            let at: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                at["text"].as_str(),
                Some(replayed.as_str()),
                "version {}",
                i + 1
            );
        }
    }
    assert_eq!(replayed, text);
    // Every writer's every keystroke is in it.
    for i in 0..3 {
        let (front, end) = text.split_once('|').unwrap();
        assert_eq!(front.matches(&format!("{i}")).count(), 8, "{text}");
        for k in (1..15).step_by(2) {
            assert!(end.contains(&format!("<{i}{k}>")), "{text}");
        }
    }
    // Pages.
    let (_, body) = get(http, "/documents/notes/history?after=3&limit=2", None).await;
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let versions: Vec<u64> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![4, 5]);
    assert_eq!(get(http, "/documents/none/history", None).await.0, 404);
    for s in sessions {
        s.stop().await;
    }
    server.shutdown().await.unwrap();
}
