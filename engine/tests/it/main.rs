//! The engine's integration tests: one binary, one module per area.

mod access;
mod dmp_fixtures;
mod edges;
mod harness;
mod hints;
mod malformed;
mod pitfalls;
mod presence;
mod props;
mod recovery;
mod unicode;
