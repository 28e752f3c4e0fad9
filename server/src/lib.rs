//! `dsync-server`: the collaboration server. A thin tokio TCP driver ([`run`]) over the sans-IO
//! [`dsync_engine::ServerEngine`], with the SQLite [`store::Store`] that the simulator reuses.

pub mod store;

pub use store::{Store, StoreError};
