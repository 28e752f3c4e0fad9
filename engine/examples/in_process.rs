//! Two clients and a server in one process, no I/O: the smallest complete driver of the
//! engine. Each side is a state machine; this loop is the "network" that carries messages
//! between them and the "clock" that says what time it is.
//!
//! Run it with `cargo run -p dsync-engine --example in_process`; `cargo test` runs it too.
//!
//! A real driver does more than this one: it loads a document from its store when
//! `document_needed` names one, and it commits every `ServerOutput::Persist` record before
//! acting on any output after it, so nothing is acknowledged that a crash could lose. The
//! binaries, the simulator, the tests and the benches get all of that from `dsync-node`
//! (`ServerNode`, `ClientNode`), whose types allow no other order; this example shows the bare
//! engine underneath, for anyone writing a driver of their own.

use dsync_engine::{
    ClientEngine, ClientEvent, ClientOutput, Config, PeerId, ServerEngine, ServerOutput,
    StoredDocument, Time,
};

/// Two people type into "notes" at the same time; returns the text they both end with.
fn run() -> String {
    let cfg = Config::default();
    // Session keys from a fixed seed: fine in one process; a real server seeds from the OS.
    let mut server = ServerEngine::new(cfg, [7; 32]);
    let mut clients = [
        ClientEngine::new(cfg, "alice", "notes"),
        ClientEngine::new(cfg, "bob", "notes"),
    ];
    // Peer ids are the driver's names for connections; here client i is peer i + 1.
    let peer = |i: usize| PeerId(i as u64 + 1);
    let mut now = Time(0);
    for c in &mut clients {
        c.connect(now);
    }
    let mut typed = false;
    // Run for 5 simulated seconds: deliver every message, then jump to the next timer.
    while now.0 < 5_000 {
        deliver(&mut server, &mut clients, peer, now);
        if !typed && clients.iter().all(ClientEngine::is_connected) {
            // Concurrent edits: neither client has seen the other's.
            clients[0]
                .insert(0, "Hello from Alice. ")
                .expect("in range");
            clients[1].insert(0, "Bob was here.").expect("in range");
            typed = true;
        }
        let next = clients
            .iter()
            .filter_map(ClientEngine::poll_timeout)
            .chain(server.poll_timeout())
            .min()
            .unwrap_or(Time(now.0 + 100));
        now = Time(next.0.max(now.0 + 1));
        for c in &mut clients {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
        }
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
    }
    let (a, b) = (clients[0].text(), clients[1].text());
    assert_eq!(a, b, "both clients hold the same text");
    assert_eq!(server.master("notes"), Some(a), "and so does the server");
    a.to_string()
}

/// Carry messages both ways until nobody has anything to send.
fn deliver(
    server: &mut ServerEngine,
    clients: &mut [ClientEngine],
    peer: impl Fn(usize) -> PeerId,
    now: Time,
) {
    loop {
        let mut moved = false;
        for (i, c) in clients.iter_mut().enumerate() {
            while let Some(out) = c.poll_output() {
                match out {
                    ClientOutput::Send(msg) => {
                        // A new document starts empty; a real server loads it from its store.
                        if let Some(doc) = server
                            .document_needed(now, peer(i), &msg)
                            .map(str::to_string)
                        {
                            server
                                .load_document(&doc, StoredDocument::default())
                                .expect("within limits");
                        }
                        server.handle_message(now, peer(i), msg);
                        moved = true;
                    }
                    ClientOutput::Event(ClientEvent::RemoteChange) => {
                        println!(
                            "{}: remote change, text is now {:?}",
                            c.client_id(),
                            c.text()
                        );
                    }
                    ClientOutput::Event(_) => {}
                }
            }
        }
        while let Some(out) = server.poll_output() {
            match out {
                ServerOutput::Send { to, msg } => {
                    let i = (to.0 - 1) as usize;
                    clients[i].handle_message(now, msg);
                    moved = true;
                }
                // Nothing to commit in memory; a real server writes the record durably here.
                ServerOutput::Persist(_) | ServerOutput::Disconnect { .. } => {}
            }
        }
        if !moved {
            return;
        }
    }
}

fn main() {
    println!("final text: {:?}", run());
}

#[test]
fn two_clients_and_a_server_converge_keeping_both_edits() {
    let text = run();
    assert!(text.contains("Hello from Alice. "), "{text}");
    assert!(text.contains("Bob was here."), "{text}");
    assert_eq!(text.len(), "Hello from Alice. Bob was here.".len());
}
