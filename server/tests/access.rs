//! Access control with the real server binary on loopback: `secret` and `token` make a
//! secret file and tokens; a server started with `--secret-file` serves a writer and a reader
//! and refuses a client without a token; a server refuses to start open on a non-loopback
//! address unless told `--open`, and says loudly when it is open.

use std::process::{Command, Stdio};
use std::time::Duration;

use dsync_client::{Edit, Notice, Session, SessionConfig};

#[allow(dead_code)] // the helpers other test files use
mod common;
use common::{drain_stderr, listening, spawn_server, T};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dsync-server"))
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn session(addr: std::net::SocketAddr, doc: &str, token: Option<String>) -> Session {
    let mut cfg = SessionConfig::new(addr, doc);
    cfg.engine.sync_interval_ms = 100;
    cfg.engine.retransmit_ms = 500;
    cfg.token = token;
    Session::start(cfg, None)
}

/// The first `unauthorized` or `read_only` error the session reports within `T`.
async fn refusal(s: &mut Session, code: &str) -> String {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match tokio::time::timeout_at(deadline, s.next_notice()).await {
            Ok(Some(Notice::ServerError { code: c, message })) if c == code => return message,
            Ok(Some(_)) => {}
            other => panic!("no {code} refusal: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_cli_open_documents_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let secret_s = secret.to_str().unwrap();
    let (ok, out, err) = run(&["secret", "--out", secret_s]);
    assert!(ok, "{out}{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the secret is readable by its owner only"
        );
    }
    // Never overwritten.
    let (ok, _, err) = run(&["secret", "--out", secret_s]);
    assert!(!ok && err.contains("never overwritten"), "{err}");
    let token = |doc: &str, write: bool| {
        let mut args = vec![
            "token",
            "--secret-file",
            secret_s,
            "--doc",
            doc,
            "--ttl",
            "7d",
        ];
        if write {
            args.push("--write");
        }
        let (ok, out, err) = run(&args);
        assert!(ok, "{err}");
        out.trim().to_string()
    };
    let (write, read, elsewhere) = (
        token("notes", true),
        token("notes", false),
        token("other", true),
    );
    assert!(write.starts_with("dsync1."), "{write}");
    let (ok, _, err) = run(&[
        "token",
        "--secret-file",
        secret_s,
        "--doc",
        "notes",
        "--ttl",
        "7x",
    ]);
    assert!(!ok && err.contains("unit"), "{err}");

    let mut server = spawn_server(
        &dir.path().join("db"),
        "127.0.0.1:0",
        &["--secret-file", secret_s],
        None,
    );
    let (addr, _) = listening(&mut server);
    let stderr = drain_stderr(&mut server);

    let writer = session(addr, "notes", Some(write.clone()));
    writer.wait_connected(T).await.unwrap();
    writer.edit(Edit::Append("written".into())).await.unwrap();
    let reader = session(addr, "notes", Some(read));
    reader.wait_connected(T).await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while reader.snapshot().text != "written" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reader never got the text"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The reader's edits are refused by its own engine, with a clear error.
    let e = reader.edit(Edit::Append("!".into())).await.unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");

    // No token, another document's token, a token of another secret: refused, nothing read.
    let mut stranger = session(addr, "notes", None);
    assert!(refusal(&mut stranger, "unauthorized")
        .await
        .contains("requires a token"));
    let mut wrong_doc = session(addr, "notes", Some(elsewhere));
    assert!(refusal(&mut wrong_doc, "unauthorized")
        .await
        .contains("for document"));
    let forged = format!("{}x", &write[..write.len() - 1]);
    let mut forger = session(addr, "notes", Some(forged));
    assert!(refusal(&mut forger, "unauthorized").await.len() > 10);
    for s in [&stranger, &wrong_doc, &forger] {
        assert_eq!(s.snapshot().text, "", "a refused client saw nothing");
        assert!(!s.snapshot().connected);
    }
    assert_eq!(writer.wait_converged(T).await.unwrap().text, "written");
    for s in [writer, reader, stranger, wrong_doc, forger] {
        s.stop().await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let log = stderr.join().unwrap();
    assert!(!log.contains("OPEN ACCESS"), "{log}");
}

#[test]
fn an_open_server_needs_loopback_or_says_so_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    // Not loopback, no access control chosen: refused, with the way out.
    let mut refused = spawn_server(&db, "0.0.0.0:0", &[], None);
    let err = drain_stderr(&mut refused);
    assert!(!refused.wait().unwrap().success());
    let err = err.join().unwrap();
    assert!(
        err.contains("--secret-file") && err.contains("--open"),
        "{err}"
    );
    // Loopback without a secret, and anywhere with --open: served, with a warning.
    for (listen, args) in [("127.0.0.1:0", &[][..]), ("0.0.0.0:0", &["--open"][..])] {
        let mut open = spawn_server(&db, listen, args, None);
        let _ = listening(&mut open);
        open.kill().unwrap();
        open.wait().unwrap();
        let mut log = String::new();
        std::io::Read::read_to_string(open.stderr.as_mut().unwrap(), &mut log).unwrap();
        assert!(log.contains("OPEN ACCESS"), "{listen}: {log}");
    }
    // --open and --secret-file together make no sense.
    let out = bin()
        .args(["--open", "--secret-file", "x"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_config_file_sets_the_flags_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dsync.toml");
    let from_file = dir.path().join("from-file.db");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ncreate = true\ndb = {:?}\n",
            from_file.to_str().unwrap()
        ),
    )
    .unwrap();
    let given = dir.path().join("given.db");
    let mut server = bin()
        .arg("--config")
        .arg(&config)
        .arg("--db")
        .arg(&given)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(server.stdout.take().unwrap());
    let (mut first, mut second) = (String::new(), String::new());
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    std::io::BufRead::read_line(&mut out, &mut second).unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(first.contains("given.db"), "the command line wins: {first}");
    assert!(
        second.starts_with("http on "),
        "the file's http_listen: {second}"
    );
    assert!(!from_file.exists());
    // A key that is no flag: refused, naming the file.
    std::fs::write(&config, "bogus = 1\n").unwrap();
    let out = bin().arg("--config").arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--bogus") && err.contains("dsync.toml"),
        "{err}"
    );
}

/// The shipped service configuration parses into the flags it names (not run: it points at
/// /etc and /var).
#[test]
fn the_shipped_config_file_names_only_real_flags() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/dsync.toml"))
            .unwrap();
    let help = run(&["--help"]).1;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
    {
        let key = line.split('=').next().unwrap().trim();
        assert!(
            help.contains(&format!("--{key}")),
            "{key} is not a flag of dsync-server"
        );
    }
}
