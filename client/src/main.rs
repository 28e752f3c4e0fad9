//! `dsync-client`: edit a shared document from a terminal, run a script of edits, or generate
//! load. See `--help`.

/// `println!` that ignores a closed stdout (`| head`) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod repl;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dsync_client::{
    hostile, load, parse_command, usage, Command, Notice, Session, SessionConfig, HELP,
};

/// dsync terminal client: an interactive editor prompt on a shared document (the default),
/// a script runner, or a load generator.
#[derive(Parser)]
#[command(name = "dsync-client", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Mode>,
    /// Server address, `host:port` (names such as `localhost:7878` are resolved).
    #[arg(long, default_value = "127.0.0.1:7878", global = true)]
    server: String,
    /// Document name.
    #[arg(long, default_value = "welcome", global = true)]
    doc: String,
    /// Write diagnostic logs (level from RUST_LOG, default `info`) to this file. Without it the
    /// interactive mode logs nothing, so the prompt stays clean; the other modes log warnings
    /// to standard error.
    #[arg(long, value_name = "FILE", global = true)]
    log: Option<PathBuf>,
    /// Token for a server that requires one (`dsync-server token`). Prefer the environment
    /// variable: a command line is visible to other users of the machine.
    #[arg(long, env = "DSYNC_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Speak TLS to the server and verify its certificate against the web's public roots.
    #[arg(long, global = true)]
    tls: bool,
    /// Speak TLS and trust the certificates in this PEM file (a private authority, or the
    /// server's own self-signed certificate) instead of the public roots.
    #[arg(long, value_name = "FILE", global = true)]
    tls_ca: Option<PathBuf>,
    /// Your name in the other clients' presence lists (where each one last edited, shown by
    /// `show` and in the browser editor) [default: $USER, else the client id].
    #[arg(long, global = true)]
    name: Option<String>,
}

impl Cli {
    /// The session settings the flags ask for.
    fn session(&self) -> anyhow::Result<SessionConfig> {
        let tls = if self.tls || self.tls_ca.is_some() {
            Some(dsync_client::tls_config(self.tls_ca.as_deref())?)
        } else {
            None
        };
        let cfg = SessionConfig::new(&self.server, &self.doc);
        let name = self
            .name
            .clone()
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| cfg.client_id.clone());
        Ok(SessionConfig {
            token: self.token.clone(),
            tls,
            presence: Some(name),
            ..cfg
        })
    }
}

#[derive(Subcommand)]
enum Mode {
    /// Run commands from a file (or `-` for standard input, read as it arrives), then wait
    /// until in sync and print the final text.
    Script {
        /// The command file, or `-`.
        file: PathBuf,
    },
    /// Print the document's history from the server's HTTP endpoints (its --http-listen):
    /// one line per kept change with its time and what it did, or with --version the text as
    /// of that version. Uses --token.
    History {
        /// The document [default: --doc].
        doc: Option<String>,
        /// The server's HTTP address, e.g. `http://127.0.0.1:7880`.
        #[arg(long)]
        http: String,
        /// Print the text as of this version instead.
        #[arg(long)]
        version: Option<u64>,
        /// List the changes after this version.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Most changes listed.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Start N clients typing into one document on a loopback server and report latencies.
    /// Exits 1 unless every client connected, converged and saw no error.
    Load(LoadShape),
    /// Attack a loopback server as a hostile peer while one honest client types into its own
    /// document, and report the honest client's round trips (docs/protocol.md, "Bounded
    /// resources"). For measuring a server's defences; loopback only.
    Hostile {
        /// The attack.
        #[arg(value_enum)]
        attack: AttackArg,
        /// Seconds the honest client types and the attack runs.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Size of the flood's frames and of the slowloris' held frames.
        #[arg(long, default_value_t = 8 << 20)]
        frame_bytes: usize,
        /// Connections the slowloris opens.
        #[arg(long, default_value_t = 300)]
        connections: usize,
        /// The server's process id: its peak resident memory is reported (Linux).
        #[arg(long)]
        server_pid: Option<u32>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AttackArg {
    Flood,
    SlowReader,
    Slowloris,
    CrEdit,
    ResetStorm,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.log.as_deref(), cli.command.is_none()) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            None => repl::interactive(cli.session()?).await,
            Some(Mode::Script { ref file }) => script(cli.session()?, file).await,
            Some(Mode::Load(ref shape)) => load_mode(&cli, shape.clone()).await,
            Some(Mode::History {
                ref doc,
                ref http,
                version,
                after,
                limit,
            }) => {
                let token = cli.token.as_deref();
                let doc = doc.as_deref().unwrap_or(&cli.doc);
                match version {
                    Some(v) => {
                        let text = dsync_client::history::text_at(http, doc, v, token).await?;
                        out!("{text}");
                    }
                    None => {
                        let lines =
                            dsync_client::history::lines(http, doc, after, limit, token).await?;
                        for l in lines {
                            out!("{l}");
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Some(Mode::Hostile {
                attack,
                duration,
                frame_bytes,
                connections,
                server_pid,
            }) => {
                let attack = match attack {
                    AttackArg::Flood => hostile::Attack::Flood,
                    AttackArg::SlowReader => hostile::Attack::SlowReader,
                    AttackArg::Slowloris => hostile::Attack::Slowloris,
                    AttackArg::CrEdit => hostile::Attack::CrEdit,
                    AttackArg::ResetStorm => hostile::Attack::ResetStorm,
                };
                let cfg = hostile::HostileConfig {
                    server: cli.server.clone(),
                    attack,
                    duration: Duration::from_secs(duration),
                    frame_bytes,
                    connections,
                };
                hostile_mode(cfg, server_pid).await
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to `file` when given; else nowhere in interactive mode, standard error otherwise.
fn init_logging(file: Option<&Path>, interactive: bool) -> anyhow::Result<()> {
    let filter = |default: &str| {
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into())
    };
    match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the log file {}", path.display()))?;
            tracing_subscriber::fmt()
                .with_env_filter(filter("info"))
                .with_writer(std::sync::Mutex::new(f))
                .with_ansi(false)
                .init();
        }
        None if interactive => {}
        None => tracing_subscriber::fmt()
            .with_env_filter(filter("warn"))
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    Ok(())
}

/// What a load run is asked to do (the `load` flags).
#[derive(clap::Args, Clone)]
struct LoadShape {
    /// Number of clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Seconds of typing.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Keystrokes per second per client (0: idle clients that only keep in sync).
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Spread the clients over this many documents (`DOC-0`, `DOC-1`, …).
    #[arg(long, default_value_t = 1)]
    docs: usize,
    /// Before the clients start, set every document to a text of this many bytes (lines of
    /// prose; 0 leaves the documents as they are).
    #[arg(long, default_value_t = 0)]
    text_bytes: usize,
    /// How many of the clients type (the first ones); the others stay idle. Default: all.
    #[arg(long)]
    typists: Option<usize>,
}

async fn load_mode(cli: &Cli, shape: LoadShape) -> anyhow::Result<ExitCode> {
    let LoadShape {
        clients,
        duration,
        rate,
        docs,
        text_bytes,
        typists,
    } = shape;
    let cfg = load::LoadConfig {
        server: cli.server.clone(),
        doc: cli.doc.clone(),
        docs,
        clients,
        duration: Duration::from_secs(duration),
        rate_per_s: rate,
        text_bytes,
        typists,
    };
    let r = load::run(cfg).await?;
    out!(
        "load     clients={} typists={} docs={docs} text_bytes={text_bytes} duration={}s rate={}/s per typist",
        r.clients,
        typists.unwrap_or(r.clients).min(r.clients),
        duration,
        rate
    );
    out!(
        "result   {}/{} connected, {}/{} converged, round_trips={} ({:.0}/s) rtt_p50={:.2}ms rtt_p99={:.2}ms edits_per_s={:.0} errors={}",
        r.connected,
        r.clients,
        r.converged,
        r.clients,
        r.round_trips,
        r.round_trips_per_s,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.edits_per_s,
        r.errors,
    );
    if r.ok() {
        return Ok(ExitCode::SUCCESS);
    }
    let mut why = Vec::new();
    if r.connected < r.clients {
        why.push(format!(
            "{}/{} connected{}",
            r.connected,
            r.clients,
            r.connect_failure
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ));
    }
    if r.converged < r.clients {
        why.push(format!("{}/{} converged", r.converged, r.clients));
    }
    if r.errors > 0 {
        why.push(format!("{} errors or lost connections", r.errors));
    }
    eprintln!("error: load run failed: {}", why.join("; "));
    Ok(ExitCode::FAILURE)
}

async fn hostile_mode(cfg: hostile::HostileConfig, pid: Option<u32>) -> anyhow::Result<ExitCode> {
    let name = cfg.attack.name();
    let secs = cfg.duration.as_secs();
    let r = hostile::run(cfg).await?;
    let h = &r.honest;
    out!("hostile  attack={name} duration={secs}s");
    out!("attack   {}", r.attack);
    out!(
        "honest   connected={} converged={} round_trips={} rtt_p50={:.2}ms rtt_p99={:.2}ms errors={}{}",
        h.connected,
        h.converged,
        h.round_trips,
        h.p50.as_secs_f64() * 1e3,
        h.p99.as_secs_f64() * 1e3,
        h.errors,
        h.connect_failure
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default()
    );
    if let Some(pid) = pid {
        let unknown = || "unknown".to_string();
        out!(
            "server   pid={pid} peak_rss={} cpu={} disk_written={}",
            usage::peak_rss_kib(pid)
                .map_or_else(unknown, |k| format!("{:.1}MiB", k as f64 / 1024.0)),
            usage::cpu_seconds(pid).map_or_else(unknown, |s| format!("{s:.1}s")),
            usage::written_bytes(pid).map_or_else(unknown, |b| format!(
                "{:.1}MiB",
                b as f64 / (1 << 20) as f64
            )),
        );
    }
    Ok(if h.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How long a script waits for its document to open.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// Run one command; `Ok(false)` means quit.
async fn execute(session: &mut Session, cmd: Command) -> anyhow::Result<bool> {
    match cmd {
        Command::Show => {
            let snap = session.snapshot();
            out!("{}", snap.text);
            let text = snap.text.to_string();
            for p in &snap.others {
                out!("-- {}", dsync_client::describe_presence(&text, p));
            }
        }
        Command::Help => out!("{HELP}"),
        Command::Quit => return Ok(false),
        Command::Edit(e) => session.edit(e).await?,
        Command::Sleep(d) => tokio::time::sleep(d).await,
        Command::Wait(d) => {
            session.wait_converged(d).await?;
        }
    }
    Ok(true)
}

/// Scripts report what goes wrong on standard error; remote changes and connection changes
/// are not their output (the final text is).
fn report_script_notices(session: &mut Session) {
    for n in session.take_notices() {
        match n {
            Notice::ServerError { .. }
            | Notice::BadFrame(_)
            | Notice::Disconnected { .. }
            | Notice::LocalChangeDropped { .. } => {
                eprintln!("warning: {n}")
            }
            _ => {}
        }
    }
}

async fn script(cfg: SessionConfig, file: &Path) -> anyhow::Result<ExitCode> {
    let (server, doc) = (cfg.server.clone(), cfg.doc.clone());
    let name = if file.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        file.display().to_string()
    };
    // Lines are read on their own thread and handed over as they arrive, so `script -` acts
    // on each command at once (a pipe that stays open keeps the session going).
    let (tx, mut lines) = tokio::sync::mpsc::channel::<std::io::Result<String>>(64);
    let reader: Box<dyn BufRead + Send> = if file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("reading {name}"))?,
        ))
    };
    std::thread::spawn(move || {
        for line in reader.lines() {
            let stop = line.is_err();
            if tx.blocking_send(line).is_err() || stop {
                break;
            }
        }
    });
    let mut session = Session::start(cfg, None);
    // Positions in the script refer to the document as the server has it. Failed attempts are
    // reported as they happen.
    let mut state = session.watch();
    let give_up = tokio::time::Instant::now() + CONNECT_WITHIN;
    let mut cause = None;
    loop {
        tokio::select! {
            open = state.wait_for(|s| s.connected) => {
                if open.is_err() {
                    anyhow::bail!("the session stopped");
                }
                break;
            }
            n = session.next_notice() => {
                if let Some(Notice::ConnectFailed { cause: c, .. }) = &n {
                    cause = Some(c.clone());
                }
                if let Some(Notice::ServerError { code, message }) = &n {
                    if code == "unauthorized" {
                        session.stop().await;
                        anyhow::bail!("{server} refused to open {doc:?}: {message}");
                    }
                }
                if let Some(n @ (Notice::ConnectFailed { .. } | Notice::ServerError { .. })) = n {
                    eprintln!("warning: {n}");
                }
            }
            _ = tokio::time::sleep_until(give_up) => {
                session.stop().await;
                anyhow::bail!(
                    "connecting to {server}: {} (gave up after {} s)",
                    cause.unwrap_or_else(|| "no answer".into()),
                    CONNECT_WITHIN.as_secs()
                );
            }
        }
    }
    let mut n = 0usize;
    while let Some(line) = lines.recv().await {
        n += 1;
        let line = line.with_context(|| format!("reading {name}"))?;
        let cmd = parse_command(&line).map_err(|e| anyhow::anyhow!("{name}:{n}: {e}"))?;
        if let Some(cmd) = cmd {
            let go_on = execute(&mut session, cmd)
                .await
                .with_context(|| format!("{name}:{n}"))?;
            report_script_notices(&mut session);
            if !go_on {
                break;
            }
        }
    }
    // Whatever the script did, leave only when it reached the server.
    let snap = session
        .wait_converged(Duration::from_secs(30))
        .await
        .context("final sync")?;
    report_script_notices(&mut session);
    out!("{}", snap.text);
    session.stop().await;
    Ok(ExitCode::SUCCESS)
}
