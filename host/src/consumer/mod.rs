//! Consumer shards (Gazette's `consumer` package).

pub mod application;
pub mod checkpoint;

pub use application::{
    AppError, Application, PublishError, TxnContext, TxnPublisher, TxnStore, TxnStoreError,
};
pub use checkpoint::{Checkpoint, ProducerState, SourceCheckpoint};
