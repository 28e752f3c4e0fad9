//! The interactive mode: a prompt with line editing and history (rustyline) on its own
//! thread, and connection changes and remote changes printed above the prompt as they happen.
//!
//! The prompt thread hands each line over and waits until it has been carried out, so a
//! command's output always comes before the next prompt. Notices that arrive while the prompt
//! is up go through rustyline's external printer, which redraws the line being typed.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use dsync_client::{parse_command, Notice, Session, SessionConfig};
use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor, ExternalPrinter};

use crate::execute;

/// Most history entries kept (in memory and in the history file).
const HISTORY_ENTRIES: usize = 1_000;
/// A document longer than this is not printed on connecting (`show` prints it).
const SHOW_ON_CONNECT_CHARS: usize = 2_000;

enum Line {
    Text(String),
    End,
    Failed(String),
}

/// Where history is kept: `$DSYNC_HISTORY`, else `~/.dsync_history`, else nowhere.
fn history_file() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("DSYNC_HISTORY") {
        return Some(p.into());
    }
    std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".dsync_history"))
}

/// Print a line above the prompt when the prompt is up, else plainly.
struct Screen {
    printer: Option<Box<dyn ExternalPrinter + Send>>,
    /// The last connection failure shown: the same cause again is not repeated while the
    /// client keeps retrying.
    last_failure: Option<String>,
}

impl Screen {
    fn show(&mut self, line: String, prompt_up: bool) {
        if prompt_up {
            if let Some(p) = self.printer.as_mut() {
                if p.print(line.clone()).is_ok() {
                    return;
                }
            }
        }
        out!("{line}");
    }
}

/// Run the interactive client until `quit`, Ctrl-D or Ctrl-C.
pub async fn interactive(cfg: SessionConfig) -> anyhow::Result<ExitCode> {
    let (server, doc) = (cfg.server.clone(), cfg.doc.clone());
    let (server, doc) = (server.as_str(), doc.as_str());
    let mut session = Session::start(cfg, None);
    out!(
        "dsync-client {}: document {doc:?} on {server}. `help` lists commands; `quit` or Ctrl-D leaves.",
        env!("CARGO_PKG_VERSION")
    );
    let config = Config::builder()
        .max_history_size(HISTORY_ENTRIES)?
        .auto_add_history(true)
        .build();
    let mut editor = DefaultEditor::with_config(config)?;
    let history = history_file();
    if let Some(h) = &history {
        // A missing history file is the normal first run.
        let _ = editor.load_history(h);
    }
    let printer: Option<Box<dyn ExternalPrinter + Send>> = match editor.create_external_printer() {
        Ok(p) => Some(Box::new(p)),
        Err(_) => None,
    };
    let mut screen = Screen {
        printer,
        last_failure: None,
    };
    let mut first_connect = true;
    // Hold the first prompt until the first attempt to connect has an outcome (bounded), so
    // the prompt starts out saying where it stands.
    let online = Arc::new(AtomicBool::new(false));
    let first_outcome = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(n)) = tokio::time::timeout_at(first_outcome, session.next_notice()).await {
        let decided = matches!(n, Notice::Connected { .. } | Notice::ConnectFailed { .. });
        show_notice(&mut screen, &session, &online, &mut first_connect, n, false);
        if decided {
            break;
        }
    }
    let (line_tx, mut lines) = tokio::sync::mpsc::channel::<Line>(1);
    let (done_tx, done_rx) = std_mpsc::channel::<()>();
    let prompt_online = online.clone();
    let doc_name = doc.to_string();
    let prompt_thread = std::thread::spawn(move || {
        loop {
            let prompt = if prompt_online.load(Ordering::Relaxed) {
                format!("{doc_name}> ")
            } else {
                format!("{doc_name} (offline)> ")
            };
            let line = match editor.readline(&prompt) {
                Ok(l) => Line::Text(l),
                Err(ReadlineError::Eof | ReadlineError::Interrupted) => Line::End,
                Err(e) => Line::Failed(e.to_string()),
            };
            let last = !matches!(line, Line::Text(_));
            if line_tx.blocking_send(line).is_err() || last {
                break;
            }
            // Wait until the command ran, so its output comes before the next prompt.
            if done_rx.recv().is_err() {
                break;
            }
        }
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
    });
    loop {
        tokio::select! {
            line = lines.recv() => {
                let text = match line {
                    Some(Line::Text(t)) => t,
                    Some(Line::Failed(e)) => {
                        eprintln!("error: reading the terminal: {e}");
                        break;
                    }
                    Some(Line::End) | None => break,
                };
                let go_on = match parse_command(&text) {
                    Ok(Some(cmd)) => execute(&mut session, cmd).await.unwrap_or_else(|e| {
                        eprintln!("error: {e:#}");
                        true
                    }),
                    Ok(None) => true,
                    Err(e) => {
                        eprintln!("error: {e}");
                        true
                    }
                };
                for n in session.take_notices() {
                    show_notice(&mut screen, &session, &online, &mut first_connect, n, false);
                }
                if !go_on {
                    break;
                }
                if done_tx.send(()).is_err() {
                    break;
                }
            }
            notice = session.next_notice() => {
                let Some(n) = notice else { break };
                // The select body runs one branch at a time: here the prompt is up.
                show_notice(&mut screen, &session, &online, &mut first_connect, n, true);
            }
        }
    }
    drop(done_tx);
    // Give unsent typing a moment to reach the server before leaving.
    let unsent = session
        .wait_converged(Duration::from_secs(3))
        .await
        .is_err()
        && !session.snapshot().settled;
    if unsent {
        eprintln!("warning: leaving with edits the server has not acknowledged; they are lost");
    }
    session.stop().await;
    // The prompt thread ends at its next line or at once if it is waiting for us; do not wait
    // for a line that may never come.
    if prompt_thread.is_finished() {
        let _ = prompt_thread.join();
    }
    Ok(ExitCode::SUCCESS)
}

fn show_notice(
    screen: &mut Screen,
    session: &Session,
    online: &AtomicBool,
    first_connect: &mut bool,
    n: Notice,
    prompt_up: bool,
) {
    match &n {
        Notice::Connected { .. } => {
            online.store(true, Ordering::Relaxed);
            screen.last_failure = None;
            if std::mem::take(first_connect) {
                let text = String::from(&session.snapshot().text);
                let chars = text.chars().count();
                let lines = text.lines().count();
                let mut msg = format!("[connected] {chars} chars, {lines} lines");
                if chars == 0 {
                    msg.push_str(" (empty document)");
                } else if chars <= SHOW_ON_CONNECT_CHARS {
                    msg.push('\n');
                    msg.push_str(&text);
                } else {
                    msg.push_str("; `show` prints it");
                }
                screen.show(msg, prompt_up);
                return;
            }
        }
        Notice::ConnectFailed { cause, .. } => {
            online.store(false, Ordering::Relaxed);
            if screen.last_failure.as_ref() == Some(cause) {
                return;
            }
            screen.last_failure = Some(cause.clone());
        }
        Notice::Disconnected { .. } => {
            online.store(false, Ordering::Relaxed);
            screen.last_failure = None;
        }
        _ => {}
    }
    screen.show(format!("[{n}]"), prompt_up);
}
