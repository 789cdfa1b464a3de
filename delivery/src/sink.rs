//! The sealing sink: each flush becomes one sealed batch in the spool.
//! It sits behind `dnsensor_core::output::Sink`, on the flusher thread, so it never waits on the network.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use dnsensor_core::output::Sink;

use crate::batch::{BatchHeader, BatchId, Sealer, DEFAULT_ZSTD_LEVEL};
use crate::keys::PublicKey;
use crate::spool::Spool;

/// Seals every flushed batch to the collector's key and stores it in the spool.
#[derive(Debug)]
pub struct SealingSink {
    sealer: Option<Sealer>,
    zstd_level: i32,
    public: PublicKey,
    sensor_id: String,
    spool: Spool,
}

impl SealingSink {
    /// A sink sealing to `public`, labelling batches with `sensor_id` (1–255 bytes of UTF-8
    /// without control characters; otherwise every write fails with a clear error).
    pub fn new(public: PublicKey, sensor_id: String, spool: Spool) -> SealingSink {
        SealingSink {
            sealer: None,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            public,
            sensor_id,
            spool,
        }
    }

    /// The same sink compressing at `level` (zstd; negative levels are its fast modes).
    pub fn with_zstd_level(mut self, level: i32) -> SealingSink {
        self.zstd_level = level;
        self.sealer = None;
        self
    }

    /// The spool this sink writes to.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }
}

impl Sink for SealingSink {
    fn write_batch(&mut self, ndjson: &[u8], records: usize) -> io::Result<()> {
        let header = BatchHeader {
            sensor_id: self.sensor_id.clone(),
            batch_id: BatchId::random(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            records: u32::try_from(records).unwrap_or(u32::MAX),
        };
        // The zstd context is created on first use and kept, so that each flush reuses it.
        let sealer = match &mut self.sealer {
            Some(s) => s,
            slot => slot.insert(
                Sealer::new(self.public.clone(), self.zstd_level)
                    .map_err(|e| io::Error::other(format!("cannot seal batch: {e}")))?,
            ),
        };
        let sealed = sealer
            .seal(&header, ndjson)
            .map_err(|e| io::Error::other(format!("cannot seal batch: {e}")))?;
        self.spool.store(&header, &sealed)
    }
}
