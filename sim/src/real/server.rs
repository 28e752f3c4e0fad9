//! The `dsync-server` process of a real run: started on the run's database (the first time on
//! any free loopback port, then on the same one), killed with SIGKILL, and killed in `Drop`
//! whatever happens to the run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use dsync_engine::{Config, MergeStrategy};
use tokio::time::{Duration, Instant};

/// How long a server may take to say where it listens.
const START_WITHIN: Duration = Duration::from_secs(15);

pub struct ServerProc {
    bin: PathBuf,
    db: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
    port: Option<u16>,
    child: Option<Child>,
    starts: u32,
    /// CPU seconds and peak RSS (KiB) of the processes already gone.
    cpu_s: f64,
    peak_kib: u64,
}

impl ServerProc {
    pub fn new(bin: &Path, db: &Path, config: &Config, dir: &Path) -> ServerProc {
        let merge = match config.merge {
            MergeStrategy::ThreeWay => "three-way",
            MergeStrategy::FuzzyPatch => "fuzzy-patch",
            MergeStrategy::Overwrite => "overwrite",
        };
        ServerProc {
            bin: bin.to_path_buf(),
            db: db.to_path_buf(),
            dir: dir.to_path_buf(),
            args: vec![
                "--heartbeat-ms".into(),
                config.heartbeat_ms.to_string(),
                "--merge".into(),
                merge.into(),
            ],
            port: None,
            child: None,
            starts: 0,
            cpu_s: 0.0,
            peak_kib: 0,
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Start the server and wait until it listens; its address.
    pub async fn start(&mut self) -> anyhow::Result<SocketAddr> {
        anyhow::ensure!(self.child.is_none(), "the server is already running");
        self.starts += 1;
        let out = self.dir.join(format!("server-{}.out", self.starts));
        let err = self.dir.join(format!("server-{}.log", self.starts));
        let listen = format!("127.0.0.1:{}", self.port.unwrap_or(0));
        let child = Command::new(&self.bin)
            .args(["--listen", &listen, "--db"])
            .arg(&self.db)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).context("creating the server's output file")?)
            .stderr(std::fs::File::create(&err).context("creating the server's log file")?)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_WITHIN;
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(addr) = text
                .lines()
                .find_map(|l| l.split("listening on ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse::<SocketAddr>().ok())
            {
                self.port = Some(addr.port());
                return Ok(addr);
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let log = std::fs::read_to_string(&err).unwrap_or_default();
                anyhow::bail!("the server exited ({status}) before listening:\n{log}");
            }
            if Instant::now() >= deadline {
                self.kill();
                anyhow::bail!("the server did not listen within {START_WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `kill -9`; returns the CPU seconds and peak RSS (MiB) of every process so far.
    pub fn kill(&mut self) -> (f64, f64) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id();
            if let Some(cpu) = dsync_client::usage::cpu_seconds(pid) {
                self.cpu_s += cpu;
            }
            if let Some(kib) = dsync_client::usage::peak_rss_kib(pid) {
                self.peak_kib = self.peak_kib.max(kib);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        (self.cpu_s, self.peak_kib as f64 / 1024.0)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}
