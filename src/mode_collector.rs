//! `dnsensor collector`: the reference collector, wired from the command line and file.
//! Loads the key and token, binds, serves until SIGTERM or SIGINT, then lets requests finish.

use std::process::ExitCode;

use dnsensor_collector::{Collector, CollectorConfig, TlsFiles};
use dnsensor_delivery::keys::SecretKey;

use crate::cli::CollectorArgs;
use crate::config;
use crate::fail;
use crate::logging;

/// Bodies larger than this are refused with 413: a sensor's batch is far smaller.
const MAX_BODY_BYTES: usize = 64 << 20;

/// Runs the collector; start-up errors are one line on stderr with exit code 2 (configuration)
/// or 1 (a file, the database or the socket).
pub fn main(args: CollectorArgs) -> ExitCode {
    let file = match config::load_optional(args.config.as_deref()) {
        Ok(f) => f,
        Err(e) => return fail(2, e),
    };
    let settings = match config::collector(&args, &file) {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    logging::init(settings.log_level);
    let metrics = match crate::metrics::bind_optional(settings.metrics) {
        Ok(m) => m,
        Err(e) => return fail(1, e),
    };
    let key = match SecretKey::read(&settings.key) {
        Ok(k) => k,
        Err(e) => return fail(1, format!("key: {e}")),
    };
    let token = match dnsensor_collector::read_token_file(&settings.token_file) {
        Ok(t) => t,
        Err(e) => return fail(1, format!("token-file: {e}")),
    };
    let config = CollectorConfig {
        listen: settings.listen,
        key,
        db: settings.db.clone(),
        token,
        tls: settings
            .tls
            .clone()
            .map(|(cert, key)| TlsFiles { cert, key }),
        max_body_bytes: MAX_BODY_BYTES,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dnsensor-collector")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        let signals = crate::signals::StopSignals::install();
        let collector = Collector::bind(config).await?;
        crate::metrics::serve_optional(
            metrics,
            crate::metrics::Sources {
                mode: "collector",
                collector: Some(collector.stats()),
                ..Default::default()
            },
        );
        crate::service::ready("serving");
        collector
            .serve(crate::signals::wait_for_stop(signals, || {
                log::warn!("reload: the collector reads its configuration only at start; restart it to apply changes")
            }))
            .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, e),
    }
}
