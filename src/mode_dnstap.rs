//! `dnsensor dnstap`: the Frame Streams server feeding the record pipeline.
//! Binds every socket before starting, runs until SIGTERM or SIGINT, then flushes and summarises.

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use dnsensor_core::pipeline::{Pipeline, PipelineConfig, PipelineSnapshot, ThreadPriority};

use crate::cli::DnstapArgs;
use crate::config::{self, Common};
use crate::fail;
use crate::logging;
use crate::outlet;
use crate::reload::Reloader;

/// Runs the mode; errors before start-up are one line on stderr and exit code 2 (configuration)
/// or 1 (the system refused something, such as a socket path).
pub fn main(args: DnstapArgs) -> ExitCode {
    let file = match config::load_optional(args.common.config.as_deref()) {
        Ok(f) => f,
        Err(e) => return fail(2, e),
    };
    let settings = match config::dnstap(&args, &file) {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    logging::init(settings.common.log_level);
    let metrics = match crate::metrics::bind_optional(settings.common.metrics) {
        Ok(m) => m,
        Err(e) => return fail(1, e),
    };
    let outlet = match outlet::open(&settings.common) {
        Ok(o) => o,
        Err(e) => return fail(1, e),
    };
    let runtime = match crate::signals::io_runtime("dnsensor-io", 2) {
        Ok(r) => r,
        Err(e) => return fail(1, e),
    };
    let options = dnsensor_dnstap::Options {
        listen: settings.listen.clone(),
        client_responses: settings.client_responses,
        max_frame_bytes: settings.max_frame_bytes,
        max_connections: settings.max_connections,
    };
    let server = match dnsensor_dnstap::bind(options) {
        Ok(s) => s,
        Err(e) => return fail(1, e),
    };
    let pipeline = match Pipeline::start(pipeline_config(&settings.common), outlet.sink) {
        Ok(p) => p,
        Err(e) => return fail(1, format!("cannot start the pipeline: {e}")),
    };
    log_privacy(&settings.common);
    let stats = server.stats();
    let mut sources = crate::metrics::Sources::new("dnstap", &pipeline, outlet.delivery.as_ref());
    sources.dnstap = Some(stats.clone());
    crate::metrics::serve_optional(metrics, sources);
    let handoff = pipeline.handoff();
    let mut reloader = Reloader::new(
        &args.common,
        &settings.common,
        &file,
        |f| format!("{:?}", f.dnstap),
        pipeline.privacy_control(),
        outlet.delivery.as_ref().map(|d| d.upload_control()),
    );
    let served = crate::signals::serve_until_stopped(
        &runtime,
        move || reloader.reload(),
        move |stop| server.run(handoff, stop),
    );
    if let Err(e) = served {
        log::error!("dnstap: {e}");
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    let snap = pipeline.shutdown();
    let mut line = summary(&snap, &stats);
    if let Some(delivery) = outlet.delivery {
        line.push(' ');
        line.push_str(&delivery.finish());
    }
    log::info!("{line}");
    ExitCode::SUCCESS
}

/// One line at start-up saying what the privacy stage will drop, so an operator can check it
/// (and, at debug level, one with the pipeline's settings).
pub(crate) fn log_privacy(common: &Common) {
    log::debug!(
        "pipeline: {} worker(s), queue depth {}, window {} s, at most {} RRsets, output {:?}",
        common.workers,
        common.queue_depth,
        common.window.as_secs(),
        common.max_entries,
        common.output,
    );
    let p = &common.privacy;
    log::info!(
        "privacy: client addresses dropped; private addresses {}; {} extra range(s), {} extra suffix(es) (docs/privacy.md); client counts {}",
        if p.keep_private_addresses { "kept" } else { "dropped" },
        p.drop_ranges.len(),
        p.drop_suffixes.len(),
        if common.client_counts { "on" } else { "off" },
    );
}

pub(crate) fn pipeline_config(common: &Common) -> PipelineConfig {
    PipelineConfig {
        workers: common.workers,
        queue_depth: common.queue_depth,
        window: common.window,
        max_entries: common.max_entries,
        sensor_id: common.sensor_id.clone(),
        privacy: common.privacy_filter.clone(),
        client_counts: common.client_counts,
        priority: ThreadPriority::Inherit,
    }
}

/// The exit line. Records are those kept after the bailiwick check and the privacy stage.
fn summary(p: &PipelineSnapshot, d: &dnsensor_dnstap::DnstapStats) -> String {
    let decode_errors = d.decode_errors.load(Ordering::Relaxed);
    format!(
        "summary: messages={} responses_used={} records={} rrsets_flushed={} shed={} malformed={} out_of_bailiwick={} private_dropped={}",
        d.messages_decoded.load(Ordering::Relaxed),
        p.offered - p.shed,
        p.extract.records_kept(),
        p.rrsets_flushed,
        p.shed,
        p.extract.malformed + decode_errors,
        p.extract.out_of_bailiwick,
        p.extract.private_dropped(),
    )
}
