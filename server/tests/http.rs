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
        "dsync_batch_seconds_bucket",
        "dsync_bytes_in_total",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
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
