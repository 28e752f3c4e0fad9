//! What the server's test files share: a server on a fresh file, a fast-cycling session.

use std::net::SocketAddr;
use std::time::Duration;

use dsync_client::{Session, SessionConfig};
use dsync_server::ServerConfig;

/// The tests' bound on every wait.
pub const T: Duration = Duration::from_secs(20);

/// A server on loopback (any port) over `db`, created if missing.
pub fn server_cfg(db: std::path::PathBuf) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        db,
        create: true,
        ..ServerConfig::default()
    }
}

/// A client session with fast cycles (short tests; the protocol is the same).
pub fn session(addr: SocketAddr, doc: &str) -> Session {
    let mut cfg = SessionConfig::new(addr, doc);
    cfg.engine.sync_interval_ms = 100;
    cfg.engine.retransmit_ms = 500;
    cfg.reconnect_min = Duration::from_millis(50);
    cfg.reconnect_max = Duration::from_millis(400);
    Session::start(cfg, None)
}
