//! The browser editor's files, served on the HTTP listener (`--web-root DIR`, built by
//! `web/build.sh` into `web/dist`): `/` (the page), its script, style and the WebAssembly
//! client, and `/web-config.json`, which tells the page where the WebSocket listener is.
//!
//! Only the files the build makes are served, by fixed names: nothing else under the folder
//! can be asked for, so no request path reaches the file system.

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

/// The files of a built editor: (URL path, path under the web root, content type).
const FILES: [(&str, &str, &str); 5] = [
    ("/", "index.html", "text/html; charset=utf-8"),
    ("/app.js", "app.js", "text/javascript; charset=utf-8"),
    ("/style.css", "style.css", "text/css; charset=utf-8"),
    (
        "/pkg/dsync_web.js",
        "pkg/dsync_web.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "/pkg/dsync_web_bg.wasm",
        "pkg/dsync_web_bg.wasm",
        "application/wasm",
    ),
];

/// What the page needs to know, and where its files are.
#[derive(Debug, Clone)]
pub struct Web {
    /// The built editor (`web/dist`); `None`: `/` says how to build and serve it.
    pub root: Option<PathBuf>,
    /// The WebSocket listener's port (the page connects to its own host on it).
    pub ws_port: Option<u16>,
    /// The WebSocket listener speaks TLS (`wss`).
    pub ws_tls: bool,
}

/// Check that `root` holds a built editor: every file the page loads.
pub fn check_root(root: &Path) -> Result<(), String> {
    for (_, file, _) in FILES {
        let path = root.join(file);
        if !path.is_file() {
            return Err(format!(
                "--web-root {}: {} is missing (build the editor with `bash web/build.sh`, which writes web/dist)",
                root.display(),
                path.display()
            ));
        }
    }
    Ok(())
}

/// The editor's routes.
pub fn routes(web: Web) -> Router {
    let mut r = Router::new().route("/web-config.json", get(config));
    for (url, file, kind) in FILES {
        r = r.route(
            url,
            get(move |State(web): State<Web>| async move { serve(&web, file, kind).await }),
        );
    }
    r.with_state(web)
}

async fn config(State(web): State<Web>) -> Response {
    match web.ws_port {
        Some(port) => {
            Json(serde_json::json!({ "ws_port": port, "ws_tls": web.ws_tls })).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            "no WebSocket listener: start the server with --ws-listen\n",
        )
            .into_response(),
    }
}

async fn serve(web: &Web, file: &str, kind: &'static str) -> Response {
    let Some(root) = &web.root else {
        return (
            StatusCode::NOT_FOUND,
            "no browser editor is served here: build it with `bash web/build.sh`, then start the server with --web-root web/dist --ws-listen ADDR\n",
        )
            .into_response();
    };
    match tokio::fs::read(root.join(file)).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{file}: {e}\n")).into_response(),
    }
}
