//! TLS on a real loopback server: a client that trusts the server's certificate converges; one
//! that verifies against the public roots (the default) refuses the self-signed server and says
//! why; a plaintext client gets nowhere; WebSocket works as `wss` over the same identity.

use std::sync::Arc;
use std::time::Duration;

use dsync_client::{Edit, Notice, Session, SessionConfig};
use dsync_server::{start, ServerConfig};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[allow(dead_code)] // the helpers other test files use
mod common;
use common::{server_cfg, T};

/// A self-signed certificate for `localhost`, written as PEM files; the server's TLS config.
fn identity(
    dir: &std::path::Path,
) -> (std::path::PathBuf, Arc<tokio_rustls::rustls::ServerConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (
        cert.clone(),
        dsync_server::tls::server_config(&cert, &key).unwrap(),
    )
}

fn session(port: u16, tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>) -> Session {
    let mut cfg = SessionConfig::new(format!("localhost:{port}"), "notes");
    cfg.engine.sync_interval_ms = 100;
    cfg.reconnect_min = Duration::from_millis(50);
    cfg.reconnect_max = Duration::from_millis(200);
    cfg.tls = tls;
    Session::start(cfg, None)
}

/// `GET /healthz` on `stream`: what came back before the connection ended (or 2 s passed).
async fn get_healthz<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let _ = stream.write_all(req.as_bytes()).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

async fn failure(s: &mut Session) -> String {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match tokio::time::timeout_at(deadline, s.next_notice()).await {
            Ok(Some(Notice::ConnectFailed { cause, .. } | Notice::Disconnected { cause, .. })) => {
                return cause
            }
            Ok(Some(_)) => {}
            other => panic!("no failure reported: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_verify_the_server_and_plaintext_gets_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, tls) = identity(dir.path());
    let server = start(ServerConfig {
        tls: Some(tls),
        ws_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..server_cfg(dir.path().join("db"))
    })
    .await
    .unwrap();
    let port = server.addr.port();

    let trusted = dsync_client::tls_config(Some(&cert)).unwrap();
    let a = session(port, Some(trusted.clone()));
    let b = session(port, Some(trusted.clone()));
    a.wait_connected(T).await.unwrap();
    b.wait_connected(T).await.unwrap();
    a.edit(Edit::Append("over tls".into())).await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while b.snapshot().text != "over tls" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            b.snapshot().text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The default: the public roots, which do not vouch for a self-signed server.
    let mut doubtful = session(port, Some(dsync_client::tls_config(None).unwrap()));
    let cause = failure(&mut doubtful).await;
    assert!(cause.contains("certificate"), "{cause}");
    assert_eq!(doubtful.snapshot().text, "");
    // Plaintext to a TLS server: never opens the document.
    let mut plain = session(port, None);
    let _ = failure(&mut plain).await;
    assert!(!plain.snapshot().connected);

    // wss: the same identity on the WebSocket listener.
    let ws_port = server.ws_addr.unwrap().port();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", ws_port))
        .await
        .unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(trusted.clone())
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://localhost:{ws_port}/"), tls)
        .await
        .unwrap();
    let connect = r#"{"type":"connect","protocol":1,"doc":"notes","client_id":"w","seq":1}"#;
    ws.send(Message::text(connect)).await.unwrap();
    let reply = loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => break t.to_string(),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert!(
        reply.contains("connect_ok") && reply.contains("over tls"),
        "{reply}"
    );

    // HTTPS: the HTTP endpoints over the same identity; plain HTTP gets no answer.
    let http_port = server.http_addr.unwrap().port();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", http_port))
        .await
        .unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut https = tokio_rustls::TlsConnector::from(trusted.clone())
        .connect(name, tcp)
        .await
        .unwrap();
    let body = get_healthz(&mut https).await;
    assert!(
        body.starts_with("HTTP/1.1 200") && body.ends_with("ok\n"),
        "{body:?}"
    );
    let mut plain_http = tokio::net::TcpStream::connect(("127.0.0.1", http_port))
        .await
        .unwrap();
    let body = get_healthz(&mut plain_http).await;
    assert!(!body.contains("200 OK"), "{body:?}");

    for s in [a, b, doubtful, plain] {
        s.stop().await;
    }
    server.shutdown().await.unwrap();
}
