//! What the server's test files share: a server on a fresh file, a fast-cycling session.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
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

/// The real server binary on `db` (created if missing) at `listen`, with more `args`, under an
/// open-file limit if given; standard output and error piped.
pub fn spawn_server(
    db: &std::path::Path,
    listen: &str,
    args: &[&str],
    ulimit: Option<u32>,
) -> std::process::Child {
    let bin = env!("CARGO_BIN_EXE_dsync-server");
    let mut cmd = match ulimit {
        // The shell's own limit, inherited by the server.
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(["--create", "--listen", listen, "--db"])
        .arg(db)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Read a child's standard error on a thread (a full pipe would block its logging); join for
/// the text once it exited.
pub fn drain_stderr(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    let mut pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    })
}

/// The address from the server's first line, and the line.
pub fn listening(child: &mut std::process::Child) -> (SocketAddr, String) {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (addr, line)
}
