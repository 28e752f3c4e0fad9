//! `dsync-client history`: a document's history from the server's HTTP endpoints
//! (`GET /documents/{doc}/history`, `GET /documents/{doc}?version=V`), printed one change per
//! line with its time and what it did, or the text as of a version.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context};
use dsync_engine::Delta;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::Change;

/// Most bytes of one HTTP answer read (a page of history, a document's text).
pub const MAX_ANSWER_BYTES: usize = 256 << 20;
/// How long one request may take.
const WITHIN: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct Page {
    base_version: u64,
    base_at_ms: u64,
    latest: u64,
    changes: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    version: u64,
    at_ms: u64,
    delta: String,
}

#[derive(Deserialize)]
struct Text {
    text: String,
}

/// `GET base + path` with an optional bearer token: the body, or an error with the server's
/// answer.
async fn get(base: &str, path: &str, token: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    if !url.starts_with("http://") {
        bail!("--http takes an http:// address of the server's --http-listen, not {base:?}");
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = hyper::Request::get(&url);
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Empty::new()).context("building the request")?;
    let resp = tokio::time::timeout(WITHIN, client.request(req))
        .await
        .with_context(|| format!("{url}: no answer within {WITHIN:?}"))?
        .with_context(|| format!("{url}: cannot reach the server"))?;
    let status = resp.status();
    let body = tokio::time::timeout(
        WITHIN,
        Limited::new(resp.into_body(), MAX_ANSWER_BYTES).collect(),
    )
    .await
    .with_context(|| format!("{url}: the answer did not finish within {WITHIN:?}"))?
    .map_err(|e| anyhow::anyhow!("{url}: reading the answer: {e}"))?
    .to_bytes()
    .to_vec();
    if !status.is_success() {
        bail!(
            "{url}: {status}: {}",
            String::from_utf8_lossy(&body).trim_end()
        );
    }
    Ok(body)
}

/// A path segment with everything but letters and digits percent-encoded.
fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Unix milliseconds as an RFC 3339 UTC time, to the second.
pub fn time(at_ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at_ms)).to_string()
}

/// The text of `doc` as of `version`.
pub async fn text_at(
    base: &str,
    doc: &str,
    version: u64,
    token: Option<&str>,
) -> anyhow::Result<String> {
    let path = format!("/documents/{}?version={version}", segment(doc));
    let body = get(base, &path, token).await?;
    let t: Text = serde_json::from_slice(&body).context("the server's answer")?;
    Ok(t.text)
}

/// The history of `doc` after version `after`, at most `limit` changes, as printable lines:
/// a heading, then `v{version} {time} {line:column and what changed}` per change.
pub async fn lines(
    base: &str,
    doc: &str,
    after: u64,
    limit: usize,
    token: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let path = format!(
        "/documents/{}/history?after={after}&limit={limit}",
        segment(doc)
    );
    let page: Page =
        serde_json::from_slice(&get(base, &path, token).await?).context("the server's answer")?;
    let mut out = vec![format!(
        "{doc}: versions {}..={} kept; version {} written {}",
        page.base_version,
        page.latest,
        page.base_version,
        time(page.base_at_ms),
    )];
    let Some(first) = page.changes.first() else {
        return Ok(out);
    };
    let mut text = text_at(base, doc, first.version - 1, token).await?;
    for e in &page.changes {
        let delta = Delta::parse(&e.delta, MAX_ANSWER_BYTES)
            .with_context(|| format!("version {}: the delta", e.version))?;
        let next = delta
            .apply(&text)
            .with_context(|| format!("version {}: the delta does not fit", e.version))?;
        let what =
            Change::between(&text, &next).map_or("(no change)".to_string(), |c| c.to_string());
        out.push(format!("v{} {} {what}", e.version, time(e.at_ms)));
        text = next;
    }
    if let Some(last) = page.changes.last().filter(|l| l.version < page.latest) {
        out.push(format!(
            "… more after version {} (--after {})",
            last.version, last.version
        ));
    }
    Ok(out)
}
