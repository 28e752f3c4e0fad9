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
    /// Create a document with a text; `Ok(false)`: it exists already. Answered after the
    /// commit that wrote it.
    Create(String, String, oneshot::Sender<Result<bool, String>>),
}

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
        .with_state(ctx)
        .merge(crate::web::routes(web))
}

const ANSWER_WITHIN: Duration = Duration::from_secs(1);

async fn ask<T>(ctx: &Ctx, make: impl FnOnce(oneshot::Sender<T>) -> Query) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    ctx.events.send(Event::Query(make(tx))).ok()?;
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
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the engine did not answer\n",
        )
            .into_response(),
    }
}

async fn read(State(ctx): State<Ctx>, Path(doc): Path<String>, headers: HeaderMap) -> Response {
    if let Err(why) = authorize(&ctx, &headers, &doc) {
        return (StatusCode::UNAUTHORIZED, why).into_response();
    }
    match ask(&ctx, |tx| Query::Read(doc.clone(), tx)).await {
        Some(Ok(Some((version, text)))) => Json(serde_json::json!({
            "doc": doc,
            "version": version,
            "text": text,
        }))
        .into_response(),
        Some(Ok(None)) => (StatusCode::NOT_FOUND, format!("no document {doc:?}\n")).into_response(),
        Some(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the engine did not answer\n",
        )
            .into_response(),
    }
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
    match ask(&ctx, |tx| Query::Create(doc.clone(), text, tx)).await {
        Some(Ok(true)) => (StatusCode::CREATED, format!("created {doc:?}\n")).into_response(),
        Some(Ok(false)) => {
            (StatusCode::CONFLICT, format!("{doc:?} exists already\n")).into_response()
        }
        Some(Err(e)) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the engine did not answer\n",
        )
            .into_response(),
    }
}
