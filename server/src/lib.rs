//! `dsync-server`: the collaboration server. A thin tokio TCP driver ([`driver`]) over the
//! sans-IO [`dsync_engine::ServerEngine`], persisting to a [`dsync_store::SqliteStore`] file.

pub mod conn;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod tls;
pub mod web;
pub mod ws;

pub use driver::{
    start, Running, ServerConfig, ServerError, DEFAULT_MAX_INBOUND_BYTES,
    DEFAULT_MAX_OUTBOUND_BYTES, DEFAULT_SESSION_RETENTION,
};
