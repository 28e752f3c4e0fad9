//! `dsync-sim`: a deterministic simulator for dsync. It replays a RON scenario ([`scenario`])
//! from a seed over the real engines and the real SQLite store ([`world`]), checks safety,
//! liveness and intent, sweeps many seeds with random fault profiles ([`swarm`]), shrinks a
//! failing run to a minimal seed-free scenario ([`shrink`]) and draws an HTML report
//! ([`html`]).
//!
//! Invariant: nothing here reads the wall clock or an unseeded random source; a scenario and a
//! seed always give the same trace, byte for byte. The one exception is [`real`], which runs a
//! scenario in wall-clock time against the real binaries (and records what happened as a
//! seed-free scenario the simulator replays).

pub mod fuzz;
pub mod html;
pub mod intent;
pub mod oracle;
pub mod real;
pub mod scenario;
pub mod shrink;
pub mod swarm;
pub mod world;

pub use scenario::{Scenario, ScenarioError};
pub use world::{run, run_with_store, CheckKind, Options, Report, Summary, TraceLevel, Verdict};
