//! `dsync_client::Session` embedded in a small tokio program: a server on a loopback port
//! (the same `dsync-server` the binary runs, over a SQLite file in a temporary folder) and two
//! sessions editing one document.
//!
//! Run it with `cargo run -p dsync-client --example embed`; `cargo test` runs it too. To use a
//! server you started yourself, give `SessionConfig::new` its address ("localhost:7878").

use std::time::Duration;

use dsync_client::{Edit, Notice, Session, SessionConfig};

async fn run() -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let server = dsync_server::start(dsync_server::ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        db: dir.path().join("documents.db"),
        create: true,
        ..Default::default()
    })
    .await?;

    let writer = Session::start(SessionConfig::new(server.addr, "notes"), None);
    let mut reader = Session::start(SessionConfig::new(server.addr, "notes"), None);
    writer.wait_connected(Duration::from_secs(10)).await?;
    reader.wait_connected(Duration::from_secs(10)).await?;

    // Edits apply to the local text at once and reach the server on the next sync cycle.
    writer.edit(Edit::Append("Hello, ".into())).await?;
    writer.edit(Edit::Append("world".into())).await?;

    // The reader sees each remote change as a notice saying what changed and where.
    let synced = loop {
        match tokio::time::timeout(Duration::from_secs(10), reader.next_notice()).await? {
            Some(Notice::RemoteChange(change)) => {
                println!("reader: {change}");
                let snap = reader.snapshot();
                if snap.text == "Hello, world" {
                    break snap.text;
                }
            }
            Some(other) => println!("reader: {other}"),
            None => anyhow::bail!("the session stopped"),
        }
    };

    writer.stop().await;
    reader.stop().await;
    server.shutdown().await?;
    Ok(synced.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("final text: {:?}", run().await?);
    Ok(())
}

#[test]
fn a_tokio_program_syncs_two_sessions_through_a_real_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(run()).unwrap(), "Hello, world");
}
