//! WebSocket clients on a real loopback server: the same JSON messages, one per text message,
//! meet TCP clients on the same documents; oversized messages close only their own connection;
//! garbage gets `bad_message`; tokens apply as on TCP.

use std::time::Duration;

use dsync_client::Edit;
use dsync_engine::{Checksum, Secret};
use dsync_server::{start, ServerConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[allow(dead_code)] // the helpers other test files use
mod common;
use common::{server_cfg, session, T};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(addr: std::net::SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next JSON message (pings skipped), or `None` when the connection closed.
async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(T, ws.next())
            .await
            .expect("a message in time")
        {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

fn cfg(db: std::path::PathBuf) -> ServerConfig {
    ServerConfig {
        ws_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..server_cfg(db)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_tcp_clients_edit_one_document() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(cfg(dir.path().join("db"))).await.unwrap();
    let ws_addr = server.ws_addr.expect("a WebSocket address");
    let tcp = session(server.addr, "notes");
    tcp.wait_connected(T).await.unwrap();
    tcp.edit(Edit::Append("tcp".into())).await.unwrap();
    tcp.wait_converged(T).await.unwrap();

    let mut w = ws(ws_addr).await;
    send(
        &mut w,
        json!({"type": "connect", "protocol": 1, "doc": "notes", "client_id": "w", "seq": 1}),
    )
    .await;
    let ok = recv(&mut w).await.unwrap();
    assert_eq!(ok["type"], "connect_ok", "{ok}");
    assert_eq!(ok["text"], "tcp");
    // Append " ws" to the shadow "tcp" (3 UTF-16 units kept, then an insertion).
    let edit = json!({"version": 0, "delta": "=3\t+%20ws", "checksum": Checksum::of("tcp ws").0});
    send(&mut w, json!({"type": "client_sync", "doc": "notes", "seq": 2, "server_version": 0, "edits": [edit]})).await;
    let reply = recv(&mut w).await.unwrap();
    assert_eq!(
        (reply["type"].as_str(), reply["client_version"].as_u64()),
        (Some("server_sync"), Some(1)),
        "{reply}"
    );
    let deadline = tokio::time::Instant::now() + T;
    while tcp.snapshot().text != "tcp ws" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            tcp.snapshot().text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Garbage is refused with a reason; the connection and the session stay.
    w.send(Message::text("{not json")).await.unwrap();
    let err = recv(&mut w).await.unwrap();
    assert_eq!(err["code"], "bad_message", "{err}");
    send(
        &mut w,
        json!({"type": "client_sync", "doc": "notes", "seq": 3, "server_version": 0, "edits": []}),
    )
    .await;
    assert_eq!(recv(&mut w).await.unwrap()["type"], "server_sync");

    // A message over the frame limit closes that connection only.
    let mut big = ws(ws_addr).await;
    let huge = "x".repeat(dsync_net::DEFAULT_MAX_FRAME_BYTES + 1);
    let _ = big.send(Message::text(huge)).await;
    assert!(
        recv(&mut big).await.is_none(),
        "the oversized message's connection is closed"
    );
    tcp.edit(Edit::Append("!".into())).await.unwrap();
    assert_eq!(tcp.wait_converged(T).await.unwrap().text, "tcp ws!");
    tcp.stop().await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_need_tokens_when_the_server_does() {
    let dir = tempfile::tempdir().unwrap();
    let secret = Secret([9; 32]);
    let server = start(ServerConfig {
        secret: Some(secret),
        ..cfg(dir.path().join("db"))
    })
    .await
    .unwrap();
    let mut w = ws(server.ws_addr.unwrap()).await;
    send(
        &mut w,
        json!({"type": "connect", "protocol": 1, "doc": "notes", "client_id": "w", "seq": 1}),
    )
    .await;
    let err = recv(&mut w).await.unwrap();
    assert_eq!(
        (err["code"].as_str(), err["seq"].as_u64()),
        (Some("unauthorized"), Some(1)),
        "{err}"
    );
    let token = dsync_engine::access::issue(
        &secret,
        &dsync_engine::Grant {
            subject: "web".into(),
            doc: "notes".into(),
            rights: dsync_engine::Rights::Read,
            expires_unix_s: u64::MAX / 2,
        },
    )
    .unwrap();
    send(&mut w, json!({"type": "connect", "protocol": 1, "doc": "notes", "client_id": "w", "seq": 2, "token": token})).await;
    let ok = recv(&mut w).await.unwrap();
    assert_eq!(
        (ok["type"].as_str(), ok["read_only"].as_bool()),
        (Some("connect_ok"), Some(true)),
        "{ok}"
    );
    server.shutdown().await.unwrap();
}
