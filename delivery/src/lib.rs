//! Delivery of flushed records: the sealed batch format, the durable on-disk spool and the uploader.
//! Nothing here knows DNS; it moves opaque COF NDJSON from the flusher to a collector.
//!
//! - [`keys`]: the collector's X25519 key pair and its files.
//! - [`batch`]: one flush → zstd → HPKE-sealed batch with a clear header (`docs/batch-format.md`).
//! - [`spool`]: the directory of sealed batches waiting for upload, written atomically and durably.
//! - [`sink`]: the [`dnsensor_core::output::Sink`] that seals each flush into the spool.
//! - [`upload`]: the HTTPS uploader that drains the spool to the collector.

#![warn(missing_docs)]

pub mod batch;
mod hex;
pub mod keys;
pub mod sink;
pub mod spool;
pub mod upload;

pub use batch::{BatchError, BatchHeader, BatchId, OpenedBatch};
pub use keys::{KeyError, PublicKey, SecretKey};
pub use sink::SealingSink;
pub use spool::{Spool, SpoolConfig, SpoolStats};
pub use upload::{
    UploadControl, UploadError, UploadStats, UploadStatsHandle, Uploader, UploaderConfig,
};
