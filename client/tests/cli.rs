//! The `dsync-client` binary against a real server on loopback: scripts stream their commands,
//! failures say what failed and exit non-zero, the load mode never reports success it did not
//! see.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use dsync_client::{Session, SessionConfig};
use dsync_server::{start, Running, ServerConfig};

const T: Duration = Duration::from_secs(20);

async fn server() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        db: dir.path().join("documents.db"),
        create: true,
        ..ServerConfig::default()
    };
    let running = start(cfg).await.unwrap();
    (dir, running)
}

fn client(server: &str, doc: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dsync-client"));
    c.args(["--server", server, "--doc", doc]).args(args);
    c.env(
        "DSYNC_HISTORY",
        std::env::temp_dir().join("dsync-test-history"),
    );
    c
}

/// Start `cmd` with its three standard streams piped to the test.
fn spawn_piped(mut cmd: Command) -> std::process::Child {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A session of its own on `doc`, returned once it sees `text` (bounded by `T`).
async fn watch_until(addr: &str, doc: &str, text: &str) -> Session {
    let s = Session::start(SessionConfig::new(addr, doc), None);
    let mut state = s.watch();
    tokio::time::timeout(T, state.wait_for(|snap| snap.text == text))
        .await
        .unwrap_or_else(|_| panic!("{doc} never held {text:?}"))
        .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_from_stdin_acts_on_each_line_as_it_arrives() {
    let (_dir, srv) = server().await;
    let addr = srv.addr.to_string();
    let mut child = spawn_piped(client(&addr, "stream", &["script", "-"]));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"append streamed\n").unwrap();
    stdin.flush().unwrap();
    // With standard input still open, the edit reaches the server.
    let watcher = watch_until(&addr, "stream", "streamed").await;
    stdin.write_all(b"append !\n").unwrap();
    drop(stdin);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "streamed!\n");
    watcher.stop().await;
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_without_text_is_refused_and_changes_nothing() {
    let (_dir, srv) = server().await;
    let addr = srv.addr.to_string();
    let target = addr.clone();
    let run = move |input: &'static str| {
        let mut child = spawn_piped(client(&target, "keep", &["script", "-"]));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let ok = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run("append keep me\n")
    })
    .await
    .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let refused = tokio::task::spawn_blocking(move || run("replace\n"))
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("<stdin>:1: usage: replace TEXT"), "{err}");
    assert!(err.contains("`clear`"), "{err}");
    let check = Session::start(SessionConfig::new(&addr, "keep"), None);
    assert_eq!(check.wait_converged(T).await.unwrap().text, "keep me");
    check.stop().await;
    srv.shutdown().await.unwrap();
}

#[test]
fn load_with_nothing_listening_fails_and_says_so() {
    // Port 1 on loopback: nothing listens there.
    let out = client(
        "127.0.0.1:1",
        "load",
        &["load", "--clients", "5", "--duration", "1"],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("0/5 connected"), "{stdout}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
}

#[test]
fn a_script_with_no_server_names_the_cause() {
    let out = client("127.0.0.1:1", "x", &["script", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    // Each failed attempt is reported at once; the last line says why it gave up, once.
    assert!(
        stderr.starts_with("warning: cannot connect: Connection refused"),
        "{stderr}"
    );
    let last = stderr.lines().last().unwrap();
    assert_eq!(last.matches("Connection refused").count(), 1, "{last}");
    assert!(
        last.starts_with("error: connecting to 127.0.0.1:1:"),
        "{last}"
    );
}

/// The first line of standard output that contains `want`, waiting for it (bounded).
async fn expect(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &str) -> String {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(T, rx.recv()).await {
            Ok(Some(l)) => {
                if l.contains(want) {
                    return l;
                }
                seen.push(l);
            }
            _ => panic!("no line with {want:?}; saw {seen:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interactive_client_reports_remote_changes_compactly() {
    let (_dir, srv) = server().await;
    let addr = srv.addr.to_string();
    let mut child = spawn_piped(client(&addr, "live", &[]));
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    expect(&mut rx, "[connected] 0 chars").await;
    stdin.write_all(b"append hello world\n").unwrap();
    stdin.flush().unwrap();
    let other = watch_until(&addr, "live", "hello world").await;
    other
        .edit(dsync_client::Edit::Insert(6, "big ".into()))
        .await
        .unwrap();
    // What changed and where, not the whole text.
    let line = expect(&mut rx, "[remote: ").await;
    assert_eq!(line, "[remote: 1:7 +4 chars \"big \"]");
    stdin.write_all(b"show\nquit\n").unwrap();
    drop(stdin);
    expect(&mut rx, "hello big world").await;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    other.stop().await;
    srv.shutdown().await.unwrap();
}

/// Run the client binary to its end: (success, standard output, standard error).
async fn run_client(cmd: Command) -> (bool, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        cmd.output().unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_each_change_with_its_time_and_reads_any_kept_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        db: dir.path().join("documents.db"),
        create: true,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let addr = server.addr.to_string();
    let http = format!("http://{}", server.http_addr.unwrap());
    // Three edits, each stored before the next is made (so each is its own version).
    let s = Session::start(SessionConfig::new(&addr, "notes"), None);
    s.wait_connected(T).await.unwrap();
    for e in [
        dsync_client::Edit::Append("hello world".into()),
        dsync_client::Edit::Insert(5, ",".into()),
        dsync_client::Edit::Delete(7, 12),
    ] {
        s.edit(e).await.unwrap();
        s.wait_converged(T).await.unwrap();
    }
    assert_eq!(s.snapshot().text, "hello, ");

    // The document named after the command, as `dsync-client history DOC`.
    let (ok, out, err) = run_client(client(
        &addr,
        "elsewhere",
        &["history", "notes", "--http", &http],
    ))
    .await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("notes: versions 0..=3 kept; version 0 written 20"),
        "{out}"
    );
    // One line per change: version, RFC 3339 time, where and what.
    for (line, want) in lines[1..].iter().zip([
        "1:1 +11 chars \"hello world\"",
        "1:6 +1 char \",\"",
        "1:8 -5 chars \"world\"",
    ]) {
        let mut parts = line.splitn(3, ' ');
        let (v, at, what) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert!(v.starts_with('v'), "{line}");
        assert!(at.ends_with('Z') && at.len() == 20, "{line}");
        assert_eq!(what, want, "{line}");
    }
    // The text as of each version.
    for (v, want) in [
        (0, ""),
        (1, "hello world"),
        (2, "hello, world"),
        (3, "hello, "),
    ] {
        let (ok, out, err) = run_client(client(
            &addr,
            "notes",
            &["history", "--http", &http, "--version", &v.to_string()],
        ))
        .await;
        assert!(ok, "{err}");
        assert_eq!(out, format!("{want}\n"), "version {v}");
    }
    // A version not kept, and a document with none: a clear error, exit status 1.
    let (ok, _, err) = run_client(client(
        &addr,
        "notes",
        &["history", "--http", &http, "--version", "9"],
    ))
    .await;
    assert!(
        !ok && err.contains("404") && err.contains("no kept version 9"),
        "{err}"
    );
    let (ok, _, err) = run_client(client(&addr, "none", &["history", "--http", &http])).await;
    assert!(!ok && err.contains("no history of \"none\""), "{err}");
    s.stop().await;
    server.shutdown().await.unwrap();
}
