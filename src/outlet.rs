//! Where a recording mode's flushed records go: stdout, a file, or sealed batches in the spool
//! with an uploader draining it to the collector. Shared by every source mode.

use std::time::Duration;

use dnsensor_core::output::{FileSink, Sink, StdoutSink};
use dnsensor_delivery::keys::PublicKey;
use dnsensor_delivery::sink::SealingSink;
use dnsensor_delivery::spool::Spool;
use dnsensor_delivery::upload::{read_token_file, Uploader};

use crate::config::{Common, Delivery, Output};

/// How long in-flight uploads may run after the final window is sealed on shutdown.
const UPLOAD_GRACE: Duration = Duration::from_secs(10);

/// The sink the pipeline writes into, and the delivery machinery behind it when there is one.
pub struct Outlet {
    pub sink: Box<dyn Sink>,
    pub delivery: Option<RunningDelivery>,
}

/// The spool and its uploader, kept so shutdown can let uploads finish and report.
pub struct RunningDelivery {
    spool: Spool,
    uploader: Uploader,
}

/// Opens the configured output. Errors are one line naming the file or setting at fault.
pub fn open(common: &Common) -> Result<Outlet, String> {
    let sink: Box<dyn Sink> = match &common.output {
        Output::Stdout => Box::new(StdoutSink),
        Output::File(path) => {
            Box::new(FileSink::open(path).map_err(|e| format!("cannot open output {e}"))?)
        }
        Output::Collector => {
            let delivery = common
                .delivery
                .as_ref()
                .ok_or("internal error: collector output without delivery settings")?;
            let sensor_id = common.sensor_id.clone().unwrap_or_default();
            return open_delivery(delivery, sensor_id);
        }
    };
    Ok(Outlet {
        sink,
        delivery: None,
    })
}

fn open_delivery(delivery: &Delivery, sensor_id: String) -> Result<Outlet, String> {
    let public = PublicKey::read(&delivery.pubkey).map_err(|e| format!("collector-pubkey: {e}"))?;
    let token =
        read_token_file(&delivery.token_file).map_err(|e| format!("collector-token-file: {e}"))?;
    let spool = Spool::open(delivery.spool.clone()).map_err(|e| {
        format!(
            "spool: cannot open {}: {}",
            delivery.spool.dir.display(),
            dnsensor_core::describe_io_error(&e)
        )
    })?;
    let mut upload = delivery.upload.clone();
    upload.token = token;
    let uploader =
        Uploader::start(upload, spool.clone()).map_err(|e| format!("collector-url: {e}"))?;
    log::info!(
        "sealing batches into {} and uploading to {}",
        delivery.spool.dir.display(),
        delivery.upload.url
    );
    Ok(Outlet {
        sink: Box::new(
            SealingSink::new(public, sensor_id, spool.clone()).with_zstd_level(delivery.zstd_level),
        ),
        delivery: Some(RunningDelivery { spool, uploader }),
    })
}

impl RunningDelivery {
    /// The spool and the uploader's counters, for the metrics endpoint.
    pub fn metrics_sources(&self) -> (Spool, dnsensor_delivery::UploadStatsHandle) {
        (self.spool.clone(), self.uploader.stats_handle())
    }

    /// A handle that changes the upload settings while running (SIGHUP).
    pub fn upload_control(&self) -> dnsensor_delivery::UploadControl {
        self.uploader.control()
    }

    /// Lets in-flight uploads finish (within a bound) and describes what was delivered, for the
    /// exit summary. Batches still in the spool are sent after the next start.
    pub fn finish(self) -> String {
        let up = self.uploader.shutdown(UPLOAD_GRACE);
        let sp = self.spool.stats();
        format!(
            "batches_sealed={} spool_write_errors={} spool_dropped={} uploaded={} upload_retries={} rejected={} spool_files={}{}",
            sp.stored,
            sp.write_errors,
            sp.dropped_full,
            up.uploaded,
            up.retries,
            up.rejected,
            sp.files,
            if up.auth_stopped { " uploads_stopped=auth" } else { "" },
        )
    }
}
