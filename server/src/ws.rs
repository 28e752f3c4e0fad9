//! One WebSocket connection: the same JSON messages as the TCP lines, one per text message,
//! with the same limits — a message of at most the frame limit (the WebSocket reader refuses a
//! larger one and the connection closes), its bytes paid from the connection's and the server's
//! inbound budget until the engine has handled it, one message in the engine's queue at a
//! time, the outgoing queue bounded in bytes, and the same deadlines for a first message and
//! for silence.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use dsync_engine::PeerId;
use dsync_net::{decode_client, DecodeError};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{hand_over, Budget, ConnLimits, Event, TOO_SLOW};

/// Serve one WebSocket connection until it ends; returns why it ended (for the log).
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
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits.max_frame_bytes))
        .max_frame_size(Some(limits.max_frame_bytes));
    let handshake = tokio_tungstenite::accept_async_with_config(stream, Some(config));
    let ws = match tokio::time::timeout(limits.frame_timeout, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return format!("not a WebSocket handshake: {e}"),
        Err(_) => return format!("no WebSocket handshake within {:?}", limits.frame_timeout),
    };
    let (mut sink, mut source) = ws.split();
    let Some((mut rx, queued, close)) = crate::conn::open(peer, remote, &events, &limits) else {
        return "the server is stopping".into();
    };
    let mut writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            let n = line.len();
            // One message per text frame, without the line's newline.
            let text = line.strip_suffix('\n').unwrap_or(&line).to_string();
            if sink.send(Message::text(text)).await.is_err() {
                return;
            }
            queued.fetch_sub(n, Ordering::AcqRel);
        }
        let _ = sink.close().await;
    });
    let mut deadline = Instant::now() + limits.frame_timeout;
    let mut spoken = false;
    let why = loop {
        let next = tokio::select! {
            m = source.next() => m,
            () = tokio::time::sleep_until(deadline) => break if spoken {
                format!("silent for {:?}", limits.idle_timeout)
            } else {
                format!("no message within {:?} of connecting", limits.frame_timeout)
            },
            () = close.notified() => break TOO_SLOW.to_string(),
            _ = &mut writer => break "closed by the server".to_string(),
        };
        let bytes = match next {
            None => break "the peer closed it".to_string(),
            Some(Err(e)) => break format!("read failed: {e}"),
            Some(Ok(Message::Close(_))) => break "the peer closed it".to_string(),
            // Answered by the WebSocket layer itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
            Some(Ok(Message::Binary(b))) => b.to_vec(),
        };
        spoken = true;
        deadline = Instant::now() + limits.idle_timeout;
        let held = tokio::select! {
            h = budget.for_frame(bytes.len()) => match h {
                Some(h) => h,
                None => break "the server is stopping".to_string(),
            },
            () = close.notified() => break TOO_SLOW.to_string(),
        };
        let msg = match std::str::from_utf8(&bytes) {
            Ok(text) => decode_client(text.trim_end_matches(['\r', '\n']), limits.max_delta_bytes),
            Err(_) => Err(DecodeError::NotUtf8),
        };
        let handed = hand_over(
            peer,
            &events,
            &budget,
            &close,
            &mut writer,
            msg,
            bytes.len(),
            Some(held),
        );
        if let Err(why) = handed.await {
            break why;
        }
    };
    let _ = events.send(Event::Closed(peer));
    writer.abort();
    why
}
