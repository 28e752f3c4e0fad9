//! The browser editor in a real headless Chromium, driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`), against the real server binary serving the built editor
//! (`web/build.sh` writes `web/dist`).
//!
//! Ignored by a plain `cargo test`, which a fresh clone without a browser must pass; `.ci/run`
//! installs Chromium, builds the editor and runs it with `--ignored`. Screenshots are kept in
//! `$DSYNC_ARTEFACTS` (default: the target folder's `tmp/browser`).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};

const WAIT: Duration = Duration::from_secs(30);

/// A port free now (bound and released), so a restarted server can take the same one.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dsync-server"))
}

/// Run the server binary's subcommand: its standard output.
fn run(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn web_root() -> PathBuf {
    std::env::var_os("DSYNC_WEB_DIST").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist"),
        PathBuf::from,
    )
}

fn artefacts() -> PathBuf {
    let dir = std::env::var_os("DSYNC_ARTEFACTS").map_or_else(
        || Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The server's ports and files, kept across a restart.
struct Server {
    dir: PathBuf,
    tcp: u16,
    ws: u16,
    http: u16,
    child: Option<Child>,
}

impl Server {
    fn start(&mut self) {
        let mut child = bin()
            .args(["--create", "--db"])
            .arg(self.dir.join("db"))
            .arg("--secret-file")
            .arg(self.dir.join("secret"))
            .args(["--listen", &format!("127.0.0.1:{}", self.tcp)])
            .args(["--ws-listen", &format!("127.0.0.1:{}", self.ws)])
            .args(["--http-listen", &format!("127.0.0.1:{}", self.http)])
            .arg("--web-root")
            .arg(web_root())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on"), "server said {line:?}");
        self.child = Some(child);
    }

    /// `kill -9`: nothing is flushed or said goodbye to.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn http(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// chromedriver on a free port, ended on drop.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Driver {
    let port = free_port();
    let child = Command::new(std::env::var("CHROMEDRIVER").unwrap_or("chromedriver".into()))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver) must be installed: .ci/run does it");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < WAIT, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver(child, port)
}

/// A headless Chromium of its own (own profile), through `driver`.
async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut caps = Capabilities::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1000,600",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a Chromium session")
}

async fn eval(page: &Client, js: &str) -> serde_json::Value {
    page.execute(js, vec![]).await.unwrap()
}

async fn state(page: &Client) -> String {
    eval(page, "return document.body.dataset.state || ''")
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn text(page: &Client) -> String {
    eval(page, "return document.getElementById('text').value")
        .await
        .as_str()
        .unwrap()
        .to_string()
}

/// Wait until `page` shows `want` as its connection state.
async fn wait_state(page: &Client, want: &str) {
    let start = Instant::now();
    loop {
        let s = state(page).await;
        if s == want {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "the page stayed {s:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The document as the server holds it (the HTTP endpoint, with a bearer token).
async fn server_text(at: SocketAddr, token: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(at).await.ok()?;
    let req = format!(
        "GET /documents/notes HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.ok()?;
    let body = raw.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(v["text"].as_str()?.to_string())
}

/// Wait until every page and the server hold one text with all of each writer's typing, in
/// the order typed, and nothing else: the text is checked, not only agreement.
async fn converged(
    pages: &[&Client],
    server: SocketAddr,
    token: &str,
    typed: &[(&str, &str)],
) -> String {
    let start = Instant::now();
    loop {
        let mut texts = Vec::new();
        for p in pages {
            texts.push(text(p).await);
        }
        let stored = server_text(server, token).await;
        let agree = texts.iter().all(|t| Some(t) == stored.as_ref());
        if agree {
            let t = &texts[0];
            let complete = typed.iter().all(|(alphabet, want)| {
                t.chars()
                    .filter(|c| alphabet.contains(*c))
                    .collect::<String>()
                    == *want
            });
            let only_typed = t.chars().all(|c| typed.iter().any(|(a, _)| a.contains(c)));
            if complete && only_typed {
                return t.clone();
            }
        }
        assert!(
            start.elapsed() < WAIT,
            "no convergence on the typed text: pages {texts:?}, server {stored:?}, typed {typed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until `page` lists exactly the others named in `want` (in the presence list beside
/// the text, and as carets over it).
async fn wait_presence(page: &Client, want: &[&str]) {
    let start = Instant::now();
    loop {
        let listed = eval(
            page,
            "return [...document.querySelectorAll('#peers li')].map(l => l.textContent)",
        )
        .await;
        let carets = eval(
            page,
            "return [...document.querySelectorAll('#mirror .caret')].map(c => c.dataset.name)",
        )
        .await;
        let names = |v: &serde_json::Value| {
            let mut n: Vec<String> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().split(' ').next().unwrap().to_string())
                .collect();
            n.sort();
            n
        };
        if names(&listed) == want && names(&carets) == want {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "presence shows {listed} and carets {carets}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until `page` lists `name` at line 1, `column`.
async fn wait_listed(page: &Client, name: &str, column: usize) {
    let start = Instant::now();
    let want = format!("line 1, column {column}");
    loop {
        let listed = eval(
            page,
            "return [...document.querySelectorAll('#peers li')].map(l => l.textContent)",
        )
        .await;
        let found = listed.as_array().unwrap().iter().any(|l| {
            let l = l.as_str().unwrap();
            l.starts_with(name) && l.ends_with(&want)
        });
        if found {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "{name} is not listed at {want}: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn type_into(page: &Client, keys: &str) {
    let area = page.find(Locator::Id("text")).await.unwrap();
    area.send_keys(keys).await.unwrap();
}

async fn screenshot(page: &Client, name: &str) {
    let png = page.screenshot().await.unwrap();
    let path = artefacts().join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, chromedriver and the built editor (web/build.sh): .ci/run runs it"]
async fn two_browsers_edit_together_through_a_shared_link_and_a_server_restart() {
    assert!(
        web_root().join("pkg/dsync_web_bg.wasm").is_file(),
        "the editor is not built: run `bash web/build.sh`"
    );
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    run(&["secret", "--out", secret.to_str().unwrap()]);
    let mut server = Server {
        dir: dir.path().to_path_buf(),
        tcp: free_port(),
        ws: free_port(),
        http: free_port(),
        child: None,
    };
    // The operator's links, as `dsync-server token --link` prints them.
    let base = format!("http://127.0.0.1:{}/", server.http);
    let link = |rights: &[&str]| {
        let mut args = vec!["token", "--secret-file", secret.to_str().unwrap()];
        args.extend(["--doc", "notes", "--ttl", "1h", "--link", &base]);
        args.extend(rights);
        run(&args).trim().to_string()
    };
    let (write_link, read_link) = (link(&["--write"]), link(&[]));
    assert!(
        write_link.starts_with(&format!("{base}?doc=notes#token=dsync1.")),
        "{write_link}"
    );
    let writer = write_link.split_once("#token=").unwrap().1.to_string();
    // The page's name for its user rides in the query, before the fragment.
    let named =
        |link: &str, name: &str| link.replacen("#token=", &format!("&name={name}#token="), 1);
    server.start();

    let driver = chromedriver();
    let (a, b, c) = (
        browser(&driver, &dir.path().join("a")).await,
        browser(&driver, &dir.path().join("b")).await,
        browser(&driver, &dir.path().join("c")).await,
    );
    a.goto(&named(&write_link, "alice")).await.unwrap();
    b.goto(&named(&write_link, "bob")).await.unwrap();
    c.goto(&named(&read_link, "carol")).await.unwrap();
    wait_state(&a, "connected").await;
    wait_state(&b, "connected").await;
    wait_state(&c, "read-only").await;

    // Two people typing at once, each in an alphabet of their own, so the final text shows
    // whose every keystroke arrived, and in order.
    const ALICE: &str = "abcdefghijklmnopqrstuvwxyz ";
    const BOB: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-";
    let (alice1, bob1) = ("the quick brown fox ", "JUMPS-OVER-13-LAZY-DOGS");
    tokio::join!(type_into(&a, alice1), type_into(&b, bob1));
    let pages = [&a, &b, &c];
    let both = converged(
        &pages,
        server.http(),
        &writer,
        &[(ALICE, alice1), (BOB, bob1)],
    )
    .await;
    eprintln!("together: {both:?}");
    // Each page shows the others' cursors (presence), the reader's included.
    wait_presence(&a, &["bob", "carol"]).await;
    wait_presence(&b, &["alice", "carol"]).await;
    wait_presence(&c, &["alice", "bob"]).await;
    // Where: each writer's caret after its own typing, in the merged text (a merge moves a
    // caret with the text around it, and the page says where it went).
    let end_of = |typed: &str| both.find(typed).unwrap() + typed.len() + 1;
    wait_listed(&b, "alice", end_of(alice1)).await;
    wait_listed(&a, "bob", end_of(bob1)).await;
    screenshot(&a, "alice.png").await;
    screenshot(&b, "bob.png").await;

    // The reader's page cannot change the text.
    let area = c.find(Locator::Id("text")).await.unwrap();
    let _ = area.send_keys("zzz").await; // refused by the browser or ignored: either is fine
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(text(&c).await, both, "a read-only page took typing");

    // kill -9 the server; alice types while it is down; it comes back on the same ports and
    // file, and nothing typed is lost.
    server.kill();
    wait_state(&a, "offline").await;
    let alice2 = " typed offline";
    type_into(&a, alice2).await;
    server.start();
    wait_state(&a, "connected").await;
    wait_state(&b, "connected").await;
    let alice_all = format!("{alice1}{alice2}");
    let after = converged(
        &pages,
        server.http(),
        &writer,
        &[(ALICE, &alice_all), (BOB, bob1)],
    )
    .await;
    eprintln!("after the restart: {after:?}");
    wait_presence(&b, &["alice", "carol"]).await;
    screenshot(&b, "bob-after-restart.png").await;
    for p in [a, b, c] {
        p.close().await.unwrap();
    }
}
