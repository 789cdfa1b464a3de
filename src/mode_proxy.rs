//! `dnsensor proxy`: the inline forwarding proxy feeding the record pipeline.
//! Binds every listener while privileged, drops privileges, serves until SIGTERM, then summarises.

use std::process::ExitCode;

use dnsensor_core::pipeline::{Pipeline, PipelineConfig, PipelineSnapshot, ThreadPriority};
use dnsensor_proxy::ProxyStats;

use crate::cli::ProxyArgs;
use crate::config;
use crate::fail;
use crate::logging;
use crate::mode_dnstap::{log_privacy, pipeline_config};
use crate::outlet;
use crate::privileges;
use crate::reload::Reloader;

/// Runs the mode. Start-up errors are one line on stderr: exit code 2 for configuration, 1 when
/// the system refuses something (an address in use, a user).
pub fn main(args: ProxyArgs) -> ExitCode {
    let file = match config::load_optional(args.common.config.as_deref()) {
        Ok(f) => f,
        Err(e) => return fail(2, e),
    };
    let settings = match config::proxy(&args, &file) {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    logging::init(settings.common.log_level);
    if settings.system_upstreams {
        log::info!("proxy: upstreams from /etc/resolv.conf");
    }
    let bound = match dnsensor_proxy::bind(settings.options.clone()) {
        Ok(b) => b,
        Err(e) => return fail(1, e),
    };
    let metrics = match crate::metrics::bind_optional(settings.common.metrics) {
        Ok(m) => m,
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
    let runtime = match crate::signals::io_runtime("dnsensor-proxy", settings.threads) {
        Ok(r) => r,
        Err(e) => return fail(1, e),
    };
    // Recording must never slow answers down: on a busy core the forwarding threads always come
    // first, and the pipeline's queues (shedding, counted) absorb the difference.
    let config = PipelineConfig {
        priority: ThreadPriority::Idle,
        ..pipeline_config(&settings.common)
    };
    let pipeline = match Pipeline::start(config, outlet.sink) {
        Ok(p) => p,
        Err(e) => return fail(1, format!("cannot start the pipeline: {e}")),
    };
    log_privacy(&settings.common);
    let stats = bound.stats();
    let mut sources = crate::metrics::Sources::new("proxy", &pipeline, outlet.delivery.as_ref());
    sources.proxy = Some(stats.clone());
    crate::metrics::serve_optional(metrics, sources);
    let handoff = pipeline.handoff();
    let mut reloader = Reloader::new(
        &args.common,
        &settings.common,
        &file,
        |f| format!("{:?}", f.proxy),
        pipeline.privacy_control(),
        outlet.delivery.as_ref().map(|d| d.upload_control()),
    );
    let served = crate::signals::serve_until_stopped(
        &runtime,
        move || reloader.reload(),
        move |stop| bound.run(handoff, stop),
    );
    let code = match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    let snap = pipeline.shutdown();
    let mut line = summary(&stats, &snap);
    if let Some(delivery) = outlet.delivery {
        line.push(' ');
        line.push_str(&delivery.finish());
    }
    log::info!("{line}");
    code
}

/// The exit line: the proxy's counters, then the pipeline's, named as in the other modes.
fn summary(s: &ProxyStats, p: &PipelineSnapshot) -> String {
    let get = ProxyStats::get;
    format!(
        "summary: queries={} answered={} refused={} servfail={} dropped={} upstream_timeouts={} mismatched={} tcp_accepted={} tcp_rejected={} responses_used={} records={} rrsets_flushed={} shed={} malformed={} private_dropped={}",
        get(&s.queries),
        get(&s.answered),
        get(&s.refused),
        get(&s.servfail),
        get(&s.dropped),
        get(&s.upstream_timeouts),
        get(&s.mismatched),
        get(&s.tcp_accepted),
        get(&s.tcp_rejected),
        p.offered - p.shed,
        p.extract.records_kept(),
        p.rrsets_flushed,
        p.shed,
        p.extract.malformed,
        p.extract.private_dropped(),
    )
}
