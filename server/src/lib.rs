//! `dsync-server`: the collaboration server. A thin tokio TCP driver ([`driver`]) over the
//! sans-IO [`dsync_engine::ServerEngine`], with the SQLite [`store::Store`] that the simulator
//! reuses.

pub mod driver;
pub mod store;

pub use driver::{start, Running, ServerConfig, ServerError};
pub use store::{Store, StoreError};
