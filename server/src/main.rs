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
use clap::{Parser, Subcommand, ValueEnum};
use dsync_engine::access::issue;
use dsync_engine::{Config, Grant, Limits, MergeStrategy, Rights, Secret};
use dsync_server::{start, ServerConfig};

/// dsync collaboration server (Differential Synchronization over TCP, SQLite storage).
///
/// Access control: with `--secret-file FILE` every client must present a token signed with
/// that secret (`dsync-server secret` makes one, `dsync-server token` issues tokens); with
/// `--open` anyone who can reach the server may read and write every document. Without either,
/// the server is open on a loopback address and refuses to start on any other.
#[derive(Parser)]
#[command(
    name = "dsync-server",
    version,
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Serve,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new signing secret (64 hex digits) to a new file only its owner may read.
    Secret {
        /// The file to create (an existing file is never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a token that grants one document (or `*`: every document) to a subject.
    Token {
        /// The server's secret (from `dsync-server secret`).
        #[arg(long)]
        secret_file: PathBuf,
        /// The document (`*`: every document).
        #[arg(long)]
        doc: String,
        /// Grant reading and writing (default: reading only).
        #[arg(long)]
        write: bool,
        /// How long the token is valid: seconds, or a number with s, m, h or d (`7d`).
        #[arg(long, default_value = "7d")]
        ttl: String,
        /// Who the token is for; sessions are bound to it [default: a new random name, so
        /// every token is its own identity].
        #[arg(long)]
        subject: Option<String>,
        /// Print a link to the browser editor instead of the bare token: this address of the
        /// server's --http-listen (`http://host:8080/`), with the document and the token (in
        /// the link's fragment, which browsers never send to a server).
        #[arg(long, value_name = "URL")]
        link: Option<String>,
    },
}

/// Serve documents (the command when none is given).
#[derive(clap::Args)]
struct Serve {
    /// Read settings from this TOML file first: its keys are these flags' names (`listen =
    /// "0.0.0.0:7878"`, `secret-file = "/etc/dsync/secret"`, `open = true`), and flags given on
    /// the command line override them.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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
    /// Days each document's history (its changes with their times, `GET
    /// /documents/{doc}/history`) is kept; older changes are folded into the history's base
    /// text. 0: no time limit (--history-max-changes still applies).
    #[arg(long, default_value_t = 30)]
    history_retention_days: u64,
    /// Most changes of history kept per document (past it the oldest are folded into the base,
    /// a thousand at a time); 0 keeps no history.
    #[arg(long, default_value_t = dsync_store::HistoryLimits::default().max_changes)]
    history_max_changes: u64,
    /// Largest database file in bytes; a commit that would pass it fails, and the server stops
    /// (exit status 1) without acknowledging anything of that batch, as when the disk is full.
    #[arg(long)]
    max_db_bytes: Option<u64>,
    /// Merge strategy for every document.
    #[arg(long, value_enum, default_value_t = MergeArg::ThreeWay)]
    merge: MergeArg,
    /// Require a token signed with this secret in every connect (`dsync-server secret`
    /// creates the file, `dsync-server token` issues tokens).
    #[arg(long, conflicts_with = "open")]
    secret_file: Option<PathBuf>,
    /// Let anyone who can reach the server read and write every document, on any address.
    #[arg(long)]
    open: bool,
    /// Also serve WebSocket clients on this address: the same JSON messages, one per text
    /// message, with the same limits and access control.
    #[arg(long)]
    ws_listen: Option<SocketAddr>,
    /// Serve the HTTP endpoints here: `/healthz`, `/metrics` (Prometheus), `/documents` and
    /// `/documents/{doc}` (JSON; under access control they need `Authorization: Bearer`).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Serve the browser editor built in this folder (`bash web/build.sh` writes `web/dist`)
    /// at `/` of --http-listen; the page talks to --ws-listen.
    #[arg(long)]
    web_root: Option<PathBuf>,
    /// Serve TCP, WebSocket and the HTTP endpoints over TLS with this PEM certificate chain
    /// (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
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
    let cli = match with_config_file(std::env::args_os().collect()) {
        Ok((args, config)) => match Cli::try_parse_from(args) {
            Ok(cli) => cli,
            Err(e) => {
                let shown = matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                );
                if let Some(path) = config.filter(|_| !shown) {
                    eprintln!(
                        "note: the settings of the config file {} are read as flags",
                        path.display()
                    );
                }
                e.exit()
            }
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Secret { out }) => write_secret(&out),
        Some(Command::Token {
            secret_file,
            doc,
            write,
            ttl,
            subject,
            link,
        }) => print_token(&secret_file, doc, write, &ttl, subject, link),
        None => run(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The command line with the settings of `--config FILE` put before the flags given (which then
/// override them: `args_override_self`). Each key is a flag's name (`_` taken as `-`); `true`
/// gives the bare flag, `false` leaves it out, a number or string its value.
#[allow(clippy::type_complexity)]
fn with_config_file(
    args: Vec<std::ffi::OsString>,
) -> anyhow::Result<(Vec<std::ffi::OsString>, Option<PathBuf>)> {
    let mut path = None;
    let mut iter = args.iter().skip(1);
    while let Some(a) = iter.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            path = iter.next().map(PathBuf::from);
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(PathBuf::from(p));
        }
    }
    let Some(path) = path else {
        return Ok((args, None));
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("the config file {}", path.display()))?;
    let mut from_file = Vec::new();
    for (key, value) in table {
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            toml::Value::Boolean(true) => from_file.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => from_file.extend([flag.into(), s.into()]),
            toml::Value::Integer(n) => from_file.extend([flag.into(), n.to_string().into()]),
            other => anyhow::bail!(
                "the config file {}: {key} = {other:?}: a setting is a string, a number or a boolean",
                path.display()
            ),
        }
    }
    let mut out = vec![args[0].clone()];
    out.extend(from_file);
    out.extend(args.into_iter().skip(1));
    Ok((out, Some(path)))
}

fn read_secret(path: &std::path::Path) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the secret file {}", path.display()))?;
    Secret::from_hex(&text).with_context(|| format!("the secret file {}", path.display()))
}

fn write_secret(out: &std::path::Path) -> anyhow::Result<()> {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use std::io::Write as _;
    let mut bytes = [0u8; 32];
    rand_chacha::ChaCha20Rng::try_from_os_rng()
        .context("no randomness for a secret")?
        .fill_bytes(&mut bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| {
        format!(
            "creating {} (an existing file is never overwritten)",
            out.display()
        )
    })?;
    writeln!(file, "{}", Secret(bytes).to_hex())?;
    file.sync_all()?;
    out!("wrote a new secret to {}", out.display());
    Ok(())
}

/// `30`, `30s`, `15m`, `12h`, `7d` → seconds.
fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("--ttl {s:?}: a number of seconds, or with s, m, h or d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("--ttl {s:?}: the unit is s, m, h or d"),
    };
    n.checked_mul(scale)
        .filter(|&t| t > 0)
        .with_context(|| format!("--ttl {s:?}: must be positive and fit"))
}

fn print_token(
    secret_file: &std::path::Path,
    doc: String,
    write: bool,
    ttl: &str,
    subject: Option<String>,
    link: Option<String>,
) -> anyhow::Result<()> {
    if link.is_some() && doc == "*" {
        anyhow::bail!("--link needs one document (--doc NAME), not `*`");
    }
    let secret = read_secret(secret_file)?;
    let ttl = parse_ttl(ttl)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let subject = subject.unwrap_or_else(|| {
        use rand_chacha::rand_core::{RngCore, SeedableRng};
        let mut b = [0u8; 6];
        if let Ok(mut r) = rand_chacha::ChaCha20Rng::try_from_os_rng() {
            r.fill_bytes(&mut b);
        }
        format!(
            "user-{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )
    });
    let grant = Grant {
        subject,
        doc,
        rights: if write { Rights::Write } else { Rights::Read },
        expires_unix_s: now.saturating_add(ttl),
    };
    let doc = grant.doc.clone();
    let token = issue(&secret, &grant).context("issuing the token")?;
    match link {
        Some(base) => {
            let doc =
                percent_encoding::utf8_percent_encode(&doc, percent_encoding::NON_ALPHANUMERIC);
            out!("{}/?doc={doc}#token={token}", base.trim_end_matches('/'));
        }
        None => out!("{token}"),
    }
    Ok(())
}

fn run(cli: Serve) -> anyhow::Result<()> {
    let exposed = [Some(cli.listen), cli.ws_listen, cli.http_listen]
        .into_iter()
        .flatten()
        .find(|a| !a.ip().is_loopback());
    let secret = match (&cli.secret_file, cli.open, exposed) {
        (Some(path), _, _) => Some(read_secret(path)?),
        (None, true, _) | (None, false, None) => None,
        (None, false, Some(at)) => anyhow::bail!(
            "listening on {at} (not a loopback address) without access control: give --secret-file FILE to require tokens, or --open to let anyone read and write every document"
        ),
    };
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => {
            Some(dsync_server::tls::server_config(cert, key).map_err(|e| anyhow::anyhow!(e))?)
        }
        _ => None,
    };
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
        secret,
        ws_listen: cli.ws_listen,
        http_listen: cli.http_listen,
        web_root: cli.web_root,
        history: dsync_store::HistoryLimits {
            retention_ms: (cli.history_retention_days > 0)
                .then(|| cli.history_retention_days.saturating_mul(86_400_000)),
            max_changes: cli.history_max_changes,
        },
        tls,
        ..ServerConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let running = start(cfg.clone()).await?;
        if cfg.secret.is_none() {
            tracing::warn!(
                "OPEN ACCESS: anyone who can reach {} may read and write every document (give --secret-file to require tokens)",
                running.addr
            );
        } else {
            tracing::info!("access control: every connect needs a token signed with the secret");
        }
        // Tests and scripts read this line to learn the port when --listen uses port 0.
        out!(
            "listening on {} (db {}, at most {} connections)",
            running.addr,
            cfg.db.display(),
            running.max_connections
        );
        if let Some(at) = running.ws_addr {
            out!("websocket on {at}");
        }
        if let Some(at) = running.http_addr {
            let scheme = if cfg.tls.is_some() { "https" } else { "http" };
            out!("{scheme} on {at} (/healthz, /metrics, /documents)");
            if !at.ip().is_loopback() && cfg.tls.is_none() {
                tracing::warn!(
                    "the HTTP endpoints on {at} are plain HTTP: bearer tokens and texts cross the network in the clear (put them behind a TLS proxy, or on loopback)"
                );
            }
        }
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
