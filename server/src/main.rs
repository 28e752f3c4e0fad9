//! `dsync-server`: serve documents over TCP (one JSON object per line) from a SQLite file.

/// `println!` that ignores a closed stdout (`| head`) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use dsync_engine::{Config, Limits, MergeStrategy};
use dsync_server::{start, ServerConfig};

/// dsync collaboration server (Differential Synchronization over TCP, SQLite storage).
#[derive(Parser)]
#[command(name = "dsync-server", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// SQLite database file (WAL mode). It must exist unless --create is given.
    #[arg(long, default_value = "documents.db")]
    db: PathBuf,
    /// Create the database file if it is missing or empty. Without it the server refuses to
    /// start on a missing or empty file, so a lost database is noticed instead of silently
    /// replaced by an empty one.
    #[arg(long)]
    create: bool,
    /// Heartbeat in ms: a silent peer is pinged after this, dropped after 3 of them.
    #[arg(long, default_value_t = 30_000)]
    heartbeat_ms: u64,
    /// Largest frame (one JSON line) in bytes [default: what the document limit needs, about
    /// 16× it; a smaller value is refused, as some documents could never be opened].
    #[arg(long)]
    max_frame_bytes: Option<usize>,
    /// Largest document in bytes (the delta limit follows: 8× plus a little).
    #[arg(long, default_value_t = Limits::default().max_document_bytes)]
    max_document_bytes: usize,
    /// Most documents in memory at once (a document stays while a session is attached); one
    /// more is refused with `too_many_documents`.
    #[arg(long, default_value_t = Limits::default().max_documents)]
    max_documents: usize,
    /// Most documents one connection has open at once.
    #[arg(long, default_value_t = Limits::default().max_documents_per_peer)]
    max_documents_per_connection: usize,
    /// Most new sessions one connection may open per minute (each may take the place of a
    /// document's longest-idle detached session).
    #[arg(long, default_value_t = Limits::default().max_new_sessions_per_minute)]
    max_new_sessions_per_minute: usize,
    /// Bytes of full text (resets, new sessions' texts) one connection may earn per second,
    /// in bursts of up to two documents; past it, its requests get `slow_down` until repaid.
    /// Default: the document limit (one largest document a second).
    #[arg(long)]
    full_text_bytes_per_second: Option<usize>,
    /// Most clients (sessions) per document.
    #[arg(long, default_value_t = Limits::default().max_clients_per_document)]
    max_clients_per_document: usize,
    /// Most simultaneous connections (lowered at start, with a warning, to fit the open-file
    /// limit less 64).
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Most simultaneous connections from one IP address [default: a tenth of
    /// --max-connections, at least 1: one address cannot take every connection].
    #[arg(long)]
    max_connections_per_ip: Option<usize>,
    /// Most bytes read from peers and not yet handled, over all connections (partial frames
    /// and frames waiting for the engine); at the limit connections wait before reading more.
    /// At least the largest frame plus 128 KiB [default: 256 MiB, or two largest frames if
    /// that is more].
    #[arg(long)]
    max_inbound_bytes: Option<usize>,
    /// Most bytes queued to send to one connection; a connection whose replies would pass it
    /// is closed as too slow (one reply of any size is always allowed).
    #[arg(long, default_value_t = dsync_server::DEFAULT_MAX_OUTBOUND_BYTES)]
    max_outbound_bytes: usize,
    /// Milliseconds a new connection has for its first frame, and any frame has to finish
    /// once begun.
    #[arg(long, default_value_t = 30_000)]
    frame_timeout_ms: u64,
    /// Days a detached session of a document not in memory is kept unchanged before it is
    /// forgotten (its client, coming back, starts a new session and merges its unsent typing);
    /// 0 keeps them until a document's session limit evicts them.
    #[arg(long, default_value_t = 30)]
    session_retention_days: u64,
    /// Largest database file in bytes; a commit that would pass it fails, and the server stops
    /// (exit status 1) without acknowledging anything of that batch, as when the disk is full.
    #[arg(long)]
    max_db_bytes: Option<u64>,
    /// Merge strategy for every document.
    #[arg(long, value_enum, default_value_t = MergeArg::ThreeWay)]
    merge: MergeArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum MergeArg {
    ThreeWay,
    FuzzyPatch,
    /// Last writer wins: loses concurrent edits. For experiments only.
    Overwrite,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let limits = Limits {
        max_clients_per_document: cli.max_clients_per_document,
        max_peers: cli.max_connections,
        max_documents: cli.max_documents,
        max_documents_per_peer: cli.max_documents_per_connection,
        max_new_sessions_per_minute: cli.max_new_sessions_per_minute,
        full_text_bytes_per_second: cli
            .full_text_bytes_per_second
            .unwrap_or(cli.max_document_bytes),
        ..Limits::default().with_document_bytes(cli.max_document_bytes)
    };
    limits
        .validate()
        .context("the limits do not fit together")?;
    let max_frame_bytes = cli.max_frame_bytes.unwrap_or(limits.frame_bytes());
    if max_frame_bytes < limits.frame_bytes() {
        anyhow::bail!(
            "--max-frame-bytes {max_frame_bytes} is below {}, what a document of {} bytes may need on the wire (leave it out to use that)",
            limits.frame_bytes(),
            limits.max_document_bytes
        );
    }
    let engine = Config {
        heartbeat_ms: cli.heartbeat_ms.max(1),
        merge: match cli.merge {
            MergeArg::ThreeWay => MergeStrategy::ThreeWay,
            MergeArg::FuzzyPatch => MergeStrategy::FuzzyPatch,
            MergeArg::Overwrite => MergeStrategy::Overwrite,
        },
        limits,
        ..Config::default()
    };
    let cfg = ServerConfig {
        listen: cli.listen,
        db: cli.db,
        create: cli.create,
        engine,
        max_frame_bytes,
        max_connections: cli.max_connections,
        max_connections_per_ip: cli
            .max_connections_per_ip
            .unwrap_or((cli.max_connections / 10).max(1)),
        max_inbound_bytes: cli.max_inbound_bytes.unwrap_or_else(|| {
            dsync_server::DEFAULT_MAX_INBOUND_BYTES.max(max_frame_bytes.saturating_mul(2))
        }),
        max_outbound_bytes: cli.max_outbound_bytes,
        frame_timeout: std::time::Duration::from_millis(cli.frame_timeout_ms.max(1)),
        max_db_bytes: cli.max_db_bytes,
        session_retention: (cli.session_retention_days > 0).then(|| {
            std::time::Duration::from_secs(cli.session_retention_days.saturating_mul(86_400))
        }),
        ..ServerConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let running = start(cfg.clone()).await?;
        // Tests and scripts read this line to learn the port when --listen uses port 0.
        out!(
            "listening on {} (db {}, at most {} connections)",
            running.addr,
            cfg.db.display(),
            running.max_connections
        );
        // A failed commit ends the server by itself: the process exits 1 (a supervisor restarts
        // it; clients resend what was not acknowledged).
        if running.until(shutdown_signal()).await? {
            out!("stopped cleanly");
        }
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
