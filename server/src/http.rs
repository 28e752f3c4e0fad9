//! The operator's and applications' HTTP endpoints (`--http-listen`, axum):
//!
//! - `GET /healthz` — 200 `ok` when the engine thread answers within a second, else 503;
//! - `GET /metrics` — Prometheus text ([`crate::metrics`]);
//! - `GET /documents` — the stored documents' names, as JSON;
//! - `GET /documents/{doc}` — `{"doc", "version", "text"}`: the master as the engine holds it,
//!   or as the store last committed it;
//! - `PUT /documents/{doc}` — create it with the body as its text (201; 409 if it exists);
//! - `/`, `/web-config.json` and the page's files — the browser editor ([`crate::web`]).
//!
//! Under access control the document endpoints need `Authorization: Bearer <token>`: a token
//! for the document (any rights) to read it, a token for `*` to list. The engine thread answers
//! the queries between batches, so a reply is never ahead of what was committed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dsync_engine::Rights;
use dsync_engine::{Access, Secret};
use tokio::sync::oneshot;

use crate::conn::Event;
use crate::metrics::Metrics;

/// A question for the engine thread.
pub enum Query {
    /// Are you there?
    Health(oneshot::Sender<()>),
    /// The stored documents' names.
    List(oneshot::Sender<Result<Vec<String>, String>>),
    /// A document's version and text (`None`: no such document).
    Read(
        String,
        oneshot::Sender<Result<Option<(u64, String)>, String>>,
    ),
    /// Up to `limit` changes of a document after a version (`None`: no history kept).
    History(
        String,
        u64,
        usize,
        oneshot::Sender<Result<Option<HistoryPage>, String>>,
    ),
    /// A document's text as of a version (`None`: that version is not kept).
    TextAt(String, u64, oneshot::Sender<Result<Option<String>, String>>),
}

/// A page of a document's history, each change as a delta on the text before it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryPage {
    /// The document.
    pub doc: String,
    /// The oldest kept version (the history starts from its text).
    pub base_version: u64,
    /// When the base was committed (Unix ms).
    pub base_at_ms: u64,
    /// The newest kept version.
    pub latest: u64,
    /// The changes, oldest first.
    pub changes: Vec<HistoryEntry>,
}

/// One change of a document.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    /// The version it made.
    pub version: u64,
    /// When it was committed (Unix ms).
    pub at_ms: u64,
    /// The change as a diff-match-patch delta on the text of `version - 1` (docs/protocol.md,
    /// *Texts, deltas, checksums*: `=n` keep, `-n` delete, `+text` insert, UTF-16 counts).
    pub delta: String,
}

/// Most changes one history request returns.
pub const MAX_HISTORY_PAGE: usize = 1000;

#[derive(Clone)]
struct Ctx {
    events: std::sync::mpsc::Sender<Event>,
    metrics: Arc<Mutex<Metrics>>,
    secret: Option<Secret>,
}

/// The router, sending queries to the engine thread over `events`.
pub fn router(
    events: std::sync::mpsc::Sender<Event>,
    metrics: Arc<Mutex<Metrics>>,
    secret: Option<Secret>,
    web: crate::web::Web,
) -> Router {
    let ctx = Ctx {
        events,
        metrics,
        secret,
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus_text))
        .route("/documents", get(list))
        .route("/documents/{doc}", get(read).put(create))
        .route("/documents/{doc}/history", get(history))
        .with_state(ctx)
        .merge(crate::web::routes(web))
}

const ANSWER_WITHIN: Duration = Duration::from_secs(1);

async fn ask<T>(ctx: &Ctx, make: impl FnOnce(oneshot::Sender<T>) -> Query) -> Option<T> {
    send(ctx, |tx| Event::Query(make(tx))).await
}

/// Send the engine thread the event `make` builds around a reply channel; its reply, or
/// `None` when it did not come within [`ANSWER_WITHIN`].
async fn send<T>(ctx: &Ctx, make: impl FnOnce(oneshot::Sender<T>) -> Event) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    ctx.events.send(make(tx)).ok()?;
    tokio::time::timeout(ANSWER_WITHIN, rx).await.ok()?.ok()
}

async fn healthz(State(ctx): State<Ctx>) -> Response {
    match ask(&ctx, Query::Health).await {
        Some(()) => (StatusCode::OK, "ok\n").into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the engine thread did not answer within a second\n",
        )
            .into_response(),
    }
}

async fn prometheus_text(State(ctx): State<Ctx>) -> Response {
    let text = match ctx.metrics.lock() {
        Ok(m) => m.encode(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Under access control, a bearer token that covers `doc`.
fn authorize(ctx: &Ctx, headers: &HeaderMap, doc: &str) -> Result<(), String> {
    authorize_for(ctx, headers, doc, false)
}

/// As [`authorize`], and with write rights if `write`.
fn authorize_for(ctx: &Ctx, headers: &HeaderMap, doc: &str, write: bool) -> Result<(), String> {
    let Some(secret) = ctx.secret else {
        return Ok(());
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let access = Access::Tokens {
        secret,
        unix_ms_at_zero: wall,
    };
    match access.check(token, doc, 0) {
        Ok((_, Rights::Read)) if write => {
            Err("the token grants only reading; creating needs a write token\n".into())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{e}\n")),
    }
}

async fn list(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Err(why) = authorize(&ctx, &headers, "*") {
        return (StatusCode::UNAUTHORIZED, why).into_response();
    }
    match ask(&ctx, Query::List).await {
        Some(Ok(docs)) => Json(docs).into_response(),
        Some(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        None => unanswered(),
    }
}

/// `?version=V` of `GET /documents/{doc}`; `?after=V&limit=N` of its history.
#[derive(serde::Deserialize)]
struct Versions {
    version: Option<u64>,
    after: Option<u64>,
    limit: Option<usize>,
}

async fn read(
    State(ctx): State<Ctx>,
    Path(doc): Path<String>,
    axum::extract::Query(q): axum::extract::Query<Versions>,
    headers: HeaderMap,
) -> Response {
    if let Err(why) = authorize(&ctx, &headers, &doc) {
        return (StatusCode::UNAUTHORIZED, why).into_response();
    }
    let text = |version: u64, text: String| {
        Json(serde_json::json!({ "doc": doc, "version": version, "text": text })).into_response()
    };
    if let Some(version) = q.version {
        let answer = ask(&ctx, |tx| Query::TextAt(doc.clone(), version, tx)).await;
        let missing =
            || format!("{doc:?} has no kept version {version} (see /documents/{doc}/history)\n");
        return respond(answer, missing, |t| text(version, t));
    }
    let answer = ask(&ctx, |tx| Query::Read(doc.clone(), tx)).await;
    respond(
        answer,
        || format!("no document {doc:?}\n"),
        |(v, t)| text(v, t),
    )
}

/// An engine's answer as a response: found, `found(it)`; not found, 404 with `missing()`; a
/// store error, 500; no answer, 503.
fn respond<T>(
    answer: Option<Result<Option<T>, String>>,
    missing: impl FnOnce() -> String,
    found: impl FnOnce(T) -> Response,
) -> Response {
    match answer {
        Some(Ok(Some(v))) => found(v),
        Some(Ok(None)) => (StatusCode::NOT_FOUND, missing()).into_response(),
        Some(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        None => unanswered(),
    }
}

fn unanswered() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the engine did not answer\n",
    )
        .into_response()
}

/// `GET /documents/{doc}/history?after=V&limit=N`: the kept changes after version `V`
/// (default: from the base), at most `N` (default and most: [`MAX_HISTORY_PAGE`]).
async fn history(
    State(ctx): State<Ctx>,
    Path(doc): Path<String>,
    axum::extract::Query(q): axum::extract::Query<Versions>,
    headers: HeaderMap,
) -> Response {
    if let Err(why) = authorize(&ctx, &headers, &doc) {
        return (StatusCode::UNAUTHORIZED, why).into_response();
    }
    let limit = q
        .limit
        .unwrap_or(MAX_HISTORY_PAGE)
        .clamp(1, MAX_HISTORY_PAGE);
    let after = q.after.unwrap_or(0);
    let answer = ask(&ctx, |tx| Query::History(doc.clone(), after, limit, tx)).await;
    let missing = || format!("no history of {doc:?} (no such document, or none kept)\n");
    respond(answer, missing, |page| Json(page).into_response())
}

/// `PUT /documents/{doc}` with the initial text as the body: 201 when created, 409 when the
/// document exists (nothing changed). Needs a write token under access control.
async fn create(
    State(ctx): State<Ctx>,
    Path(doc): Path<String>,
    headers: HeaderMap,
    text: String,
) -> Response {
    if let Err(why) = authorize_for(&ctx, &headers, &doc, true) {
        return (StatusCode::UNAUTHORIZED, why).into_response();
    }
    match send(&ctx, |tx| Event::Create(doc.clone(), text, tx)).await {
        Some(Ok(true)) => (StatusCode::CREATED, format!("created {doc:?}\n")).into_response(),
        Some(Ok(false)) => {
            (StatusCode::CONFLICT, format!("{doc:?} exists already\n")).into_response()
        }
        Some(Err(e)) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        None => unanswered(),
    }
}

/// Most HTTPS connections served at once; at the limit the listener waits before accepting.
pub const MAX_HTTPS_CONNECTIONS: usize = 1024;
/// Time an HTTPS connection has for its TLS handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` over TLS (the protocol listeners' identity) until `quit`: each
/// connection's handshake on its own task, bounded in time, HTTP/1.1 after it.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    quit: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HTTPS_CONNECTIONS));
    tokio::pin!(quit);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let tcp = tokio::select! {
            () = &mut quit => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTPS connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
