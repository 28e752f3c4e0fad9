//! `dsync-client`: edit a shared document from a terminal, run a script of edits, or generate
//! load. See `--help`.

/// `println!` that ignores a closed stdout (`| head`) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dsync_client::{load, parse_command, Command, Session, SessionConfig, HELP};

/// dsync terminal client.
#[derive(Parser)]
#[command(name = "dsync-client", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Mode>,
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7878", global = true)]
    server: SocketAddr,
    /// Document name.
    #[arg(long, default_value = "welcome", global = true)]
    doc: String,
}

#[derive(Subcommand)]
enum Mode {
    /// Run commands from a file (or `-` for standard input), then print the final text.
    Script {
        /// The command file.
        file: PathBuf,
    },
    /// Start N clients typing into one document on a loopback server and report latencies.
    Load {
        /// Number of clients.
        #[arg(long, default_value_t = 100)]
        clients: usize,
        /// Seconds of typing.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Keystrokes per second per client.
        #[arg(long, default_value_t = 2.0)]
        rate: f64,
        /// Spread the clients over this many documents (`DOC-0`, `DOC-1`, …).
        #[arg(long, default_value_t = 1)]
        docs: usize,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
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
            None => interactive(cli.server, &cli.doc).await,
            Some(Mode::Script { file }) => script(cli.server, &cli.doc, &file).await,
            Some(Mode::Load { clients, duration, rate, docs }) => {
                let cfg = load::LoadConfig {
                    server: cli.server,
                    doc: cli.doc.clone(),
                    docs,
                    clients,
                    duration: Duration::from_secs(duration),
                    rate_per_s: rate,
                };
                let r = load::run(cfg).await?;
                out!(
                    "load     clients={} docs={docs} duration={}s rate={}/s per client",
                    r.clients, duration, rate
                );
                out!(
                    "result   round_trips={} rtt_p50={:.2}ms rtt_p99={:.2}ms edits_per_s={:.0} errors={} converged={}/{}",
                    r.round_trips,
                    r.p50.as_secs_f64() * 1e3,
                    r.p99.as_secs_f64() * 1e3,
                    r.edits_per_s,
                    r.errors,
                    r.converged,
                    r.clients
                );
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run one command; `Ok(false)` means quit.
async fn execute(session: &mut Session, cmd: Command) -> anyhow::Result<bool> {
    match cmd {
        Command::Show => out!("{}", session.snapshot().text),
        Command::Help => out!("{HELP}"),
        Command::Quit => return Ok(false),
        Command::Edit(e) => session.edit(e).await?,
        Command::Sleep(d) => tokio::time::sleep(d).await,
        Command::Wait(d) => {
            session.wait_converged(d).await?;
        }
    }
    for e in session.take_errors() {
        eprintln!("error: {e}");
    }
    Ok(true)
}

async fn script(server: SocketAddr, doc: &str, file: &std::path::Path) -> anyhow::Result<()> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let mut session = Session::start(SessionConfig::new(server, doc), None);
    // Positions in the script refer to the document as the server has it.
    session
        .wait_connected(Duration::from_secs(10))
        .await
        .with_context(|| format!("connecting to {server}"))?;
    for (n, line) in text.lines().enumerate() {
        let cmd = parse_command(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", file.display(), n + 1))?;
        if let Some(cmd) = cmd {
            if !execute(&mut session, cmd)
                .await
                .with_context(|| format!("{}:{}", file.display(), n + 1))?
            {
                break;
            }
        }
    }
    // Whatever the script did, leave only when it reached the server.
    let snap = session
        .wait_converged(Duration::from_secs(30))
        .await
        .context("final sync")?;
    out!("{}", snap.text);
    session.stop().await;
    Ok(())
}

async fn interactive(server: SocketAddr, doc: &str) -> anyhow::Result<()> {
    let mut session = Session::start(SessionConfig::new(server, doc), None);
    out!("dsync-client: document {doc:?} on {server}; `help` lists commands");
    if let Err(e) = session.wait_connected(Duration::from_secs(10)).await {
        eprintln!("warning: {e}; edits will sync once the server answers");
    }
    out!("{}", session.snapshot().text);
    // Standard input is read on its own thread so remote changes show while the user types.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) => {
                    if tx.blocking_send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    let mut state = session.watch();
    let mut shown = (false, 0u64);
    loop {
        tokio::select! {
            line = rx.recv() => {
                let Some(line) = line else { break };
                match parse_command(&line) {
                    Ok(Some(cmd)) => {
                        if !execute(&mut session, cmd).await.unwrap_or_else(|e| { eprintln!("error: {e:#}"); true }) {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => eprintln!("error: {e}"),
                }
            }
            changed = state.changed() => {
                if changed.is_err() { break; }
                let s = state.borrow_and_update().clone();
                if s.connected != shown.0 {
                    out!("{}", if s.connected { "[connected]" } else { "[disconnected; reconnecting…]" });
                }
                if s.remote_changes != shown.1 {
                    out!("[remote] {}", s.text);
                }
                shown = (s.connected, s.remote_changes);
            }
        }
    }
    // Give unsent typing a moment to reach the server before leaving.
    let _ = session.wait_converged(Duration::from_secs(3)).await;
    session.stop().await;
    Ok(())
}
