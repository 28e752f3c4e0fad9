//! `dsync-node`: the engine, the wire codec and the store put together once.
//!
//! Every driver runs these nodes: the tokio server (`server/src/driver.rs`), the tokio client
//! session (`client/src/lib.rs`), the simulator (`sim/src/world/nodes.rs`), the engine's test
//! harness (`engine/tests/it/harness.rs`) and the benches (`benches/src/lib.rs`). What is left
//! in each driver is I/O glue: sockets and tasks, virtual time and the simulated network.
//!
//! - [`ServerNode`]: engine + [`dsync_store::Store`] + frame decoding + document loading + the
//!   batch rule (outputs are released only by a commit that returned `Ok`).
//! - [`ClientNode`]: engine + framing + reconnect backoff + quiet detection.
//!
//! Both are sans-IO: no clock, no socket, no thread; time comes in as
//! [`dsync_engine::Time`], bytes come in as slices, and what to write comes out as frames.

mod client;
#[cfg(feature = "server")]
mod server;

pub use client::{
    ClientNode, ClientNodeConfig, ClientNodeOutput, ClientNodeStats, Transmit, RECONNECT_MAX_MS,
    RECONNECT_MIN_MS,
};
#[cfg(feature = "server")]
pub use server::{CommitFailed, NodeStats, Output, Released, ServerNode};
