//! `dnsensor capture`: the libpcap tap (live on an interface, or capture files) feeding the pipeline.
//! Opens the capture first, then drops privileges, then opens outputs, so nothing else runs as root.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use dnsensor_capture::{Capture, CaptureSummary, Source, TapConfig};
use dnsensor_core::pipeline::{Pipeline, PipelineSnapshot};

use crate::cli::CaptureArgs;
use crate::config::{self, CaptureInput};
use crate::fail;
use crate::logging;
use crate::mode_dnstap::{log_privacy, pipeline_config};
use crate::outlet;
use crate::privileges;
use crate::reload::Reloader;

/// Runs the mode. Start-up errors are one line on stderr: exit code 2 for configuration, 1 when
/// the system refuses something (the interface, a file, a user).
pub fn main(args: CaptureArgs) -> ExitCode {
    let file = match config::load_optional(args.common.config.as_deref()) {
        Ok(f) => f,
        Err(e) => return fail(2, e),
    };
    let settings = match config::capture(&args, &file) {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    logging::init(settings.common.log_level);
    let metrics = match crate::metrics::bind_optional(settings.common.metrics) {
        Ok(m) => m,
        Err(e) => return fail(1, e),
    };
    let reading_files = matches!(settings.input, CaptureInput::Files(_));
    let source = match &settings.input {
        CaptureInput::Interface(name) => Source::Live {
            interface: name.clone(),
            bpf: settings.bpf.clone(),
            buffer_bytes: settings.buffer_bytes,
            snaplen: settings.snaplen,
        },
        CaptureInput::Files(files) => Source::Files(files.clone()),
    };
    let tap = TapConfig {
        // One parse shard: bailiwick learning needs referrals and the answers they lead to in
        // packet order, and different address pairs would land on different shards
        // (docs/design-notes.md). Extraction still runs on the pipeline's workers.
        shards: 1,
        client_responses: settings.client_responses,
        accept_unpaired: settings.accept_unpaired,
        ..TapConfig::default()
    };
    let capture = match Capture::open(source, tap) {
        Ok(c) => c,
        Err(e) => return fail(1, e),
    };
    if let Some(user) = &settings.user {
        if let Err(e) = privileges::drop_to(user) {
            return fail(1, e);
        }
    }
    let outlet = match outlet::open(&settings.common) {
        Ok(o) => o,
        Err(e) => return fail(1, e),
    };
    let pipeline = match Pipeline::start(pipeline_config(&settings.common), outlet.sink) {
        Ok(p) => p,
        Err(e) => return fail(1, format!("cannot start the pipeline: {e}")),
    };
    log_privacy(&settings.common);
    let mut sources = crate::metrics::Sources::new("capture", &pipeline, outlet.delivery.as_ref());
    sources.capture = Some(capture.counters());
    crate::metrics::serve_optional(metrics, sources);
    let stop = Arc::new(AtomicBool::new(false));
    let mut reloader = Reloader::new(
        &args.common,
        &settings.common,
        &file,
        |f| format!("{:?}", f.capture),
        pipeline.privacy_control(),
        outlet.delivery.as_ref().map(|d| d.upload_control()),
    );
    crate::signals::set_on_stop(stop.clone(), move || reloader.reload());
    let progress = reading_files && std::io::stderr().is_terminal();
    match &settings.input {
        CaptureInput::Interface(name) => log::info!("capture: started on {name}"),
        CaptureInput::Files(files) => log::info!("capture: started, {} file(s)", files.len()),
    }
    crate::service::ready("capturing");
    let result = capture.run(pipeline.handoff(), stop, progress);
    let snap = pipeline.shutdown();
    let mut line = match &result {
        Ok(summary) => summary_line(summary, &snap),
        Err(e) => {
            log::error!("capture: {e}");
            summary_line(&CaptureSummary::default(), &snap)
        }
    };
    if let Some(delivery) = outlet.delivery {
        line.push(' ');
        line.push_str(&delivery.finish());
    }
    log::info!("{line}");
    if result.is_err() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The exit line: the tap's counters, then the pipeline's, named as in dnstap mode.
fn summary_line(capture: &CaptureSummary, p: &PipelineSnapshot) -> String {
    format!(
        "summary: {capture} records={} rrsets_flushed={} shed={} malformed={} out_of_bailiwick={} private_dropped={}",
        p.extract.records_kept(),
        p.rrsets_flushed,
        p.shed,
        p.extract.malformed,
        p.extract.out_of_bailiwick,
        p.extract.private_dropped(),
    )
}
