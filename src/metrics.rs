//! `--metrics ADDR:PORT`: every stage's counters as Prometheus text (0.0.4) at `GET /metrics`.
//! A collector reads the sources' own atomics at scrape time, on a `dnsensor-metrics` thread.
//!
//! Nothing on the data path changes for metrics: each scrape builds constant counters and gauges
//! (prometheus-client's `ConstCounter`/`ConstGauge`) from the live statistics the pipeline, the
//! sources and delivery already keep. The metric list is docs/metrics.md; keep the two in step.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use dnsensor_capture::CaptureCounters;
use dnsensor_collector::CollectorStats;
use dnsensor_core::pipeline::{Pipeline, PipelineStats};
use dnsensor_delivery::{Spool, UploadStatsHandle};
use dnsensor_dnstap::DnstapStats;
use dnsensor_proxy::ProxyStats;

/// The `Content-Type` of a scrape: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The metrics socket, bound at start-up (before privileges are dropped) and served later.
pub struct Listener {
    socket: std::net::TcpListener,
    addr: SocketAddr,
}

/// Binds `addr` for the metrics endpoint. The error is one line naming the address.
pub fn bind(addr: SocketAddr) -> Result<Listener, String> {
    let fail = |e: std::io::Error| {
        format!(
            "metrics: cannot listen on {addr}: {}",
            dnsensor_core::describe_io_error(&e)
        )
    };
    let socket = std::net::TcpListener::bind(addr).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    let addr = socket.local_addr().unwrap_or(addr);
    Ok(Listener { socket, addr })
}

/// [`bind`] when `--metrics` is given.
pub fn bind_optional(addr: Option<SocketAddr>) -> Result<Option<Listener>, String> {
    addr.map(bind).transpose()
}

/// What a mode has to report. Absent parts are left out of the scrape.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `dnstap`, `capture`, `proxy` or `collector`, for `dnsensor_build_info`.
    pub mode: &'static str,
    pub pipeline: Option<PipelineStats>,
    pub dnstap: Option<Arc<DnstapStats>>,
    pub capture: Option<Arc<CaptureCounters>>,
    pub proxy: Option<Arc<ProxyStats>>,
    pub spool: Option<Spool>,
    pub upload: Option<UploadStatsHandle>,
    pub collector: Option<Arc<CollectorStats>>,
}

impl Sources {
    /// The pipeline's counters, and delivery's when the output is `collector`; the mode adds
    /// its source's.
    pub fn new(
        mode: &'static str,
        pipeline: &Pipeline,
        delivery: Option<&crate::outlet::RunningDelivery>,
    ) -> Sources {
        let (spool, upload) = delivery.map(|d| d.metrics_sources()).unzip();
        Sources {
            mode,
            pipeline: Some(pipeline.stats()),
            spool,
            upload,
            ..Sources::default()
        }
    }
}

impl Listener {
    /// Serves `sources` from a thread of its own with a single-threaded runtime, so scrapes
    /// never run on a data-path thread. The thread lives until the process exits.
    pub fn serve(self, sources: Sources) {
        let addr = self.addr;
        let spawned = std::thread::Builder::new()
            .name("dnsensor-metrics".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let result = match runtime {
                    Ok(rt) => rt.block_on(serve(self.socket, sources)),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    log::error!("metrics: {addr}: {e}; metrics are no longer served");
                }
            });
        match spawned {
            Ok(_) => log::info!("metrics: serving http://{addr}/metrics"),
            Err(e) => log::error!("metrics: cannot start the metrics thread: {e}"),
        }
    }
}

/// Starts serving when a listener was bound.
pub fn serve_optional(listener: Option<Listener>, sources: Sources) {
    if let Some(l) = listener {
        l.serve(sources);
    }
}

/// How long one connection to the metrics port may stay open, busy or idle. Scrapers simply
/// reconnect; a client that connects and sends nothing cannot hold a socket for longer.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);

/// Connections to the metrics port served at once. One more is closed at once, so the port
/// cannot be used to exhaust the file descriptors the data path needs.
pub const MAX_CONNECTIONS: usize = 16;

async fn serve(socket: std::net::TcpListener, sources: Sources) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(socket)?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry(sources)));
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                log::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // Dropping the connection at the deadline closes its socket.
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(permit);
        });
    }
}

/// A registry holding one collector over `sources`.
pub fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(sources));
    registry
}

/// The scrape text of `registry`.
pub fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

async fn scrape(State(registry): State<Arc<Registry>>) -> Response {
    match render(&registry) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One counter family, one sample per value of its one label.
fn labelled_counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for &(label_value, v) in values {
        let labels = [(label, label_value)];
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Sources {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let enc = &mut enc;
        let mut m = enc.encode_descriptor(
            "dnsensor_build",
            "The running dnsensor: its version and mode.",
            None,
            MetricType::Info,
        )?;
        m.encode_info(&[("version", env!("CARGO_PKG_VERSION")), ("mode", self.mode)])?;
        if let Some(p) = &self.pipeline {
            pipeline(enc, p)?;
        }
        if let Some(d) = &self.dnstap {
            dnstap(enc, d)?;
        }
        if let Some(c) = &self.capture {
            capture(enc, c)?;
        }
        if let Some(p) = &self.proxy {
            proxy(enc, p)?;
        }
        if let Some(s) = &self.spool {
            spool(enc, s)?;
        }
        if let Some(u) = &self.upload {
            upload(enc, u)?;
        }
        if let Some(c) = &self.collector {
            collector(enc, c)?;
        }
        Ok(())
    }
}

fn pipeline(enc: &mut DescriptorEncoder, p: &PipelineStats) -> fmt::Result {
    let s = p.snapshot();
    let x = &s.extract;
    counter(
        enc,
        "dnsensor_pipeline_observations_offered",
        "Observations (responses) the source offered to the pipeline, shed or not.",
        s.offered,
    )?;
    counter(
        enc,
        "dnsensor_pipeline_observations_shed",
        "Observations shed because a worker's queue was full: lost before parsing.",
        s.shed,
    )?;
    counter(
        enc,
        "dnsensor_pipeline_messages",
        "DNS messages the workers parsed, malformed ones included.",
        x.messages,
    )?;
    counter(
        enc,
        "dnsensor_pipeline_malformed_messages",
        "Messages with any damage (bad header, not a response, a bad record, broken framing).",
        x.malformed,
    )?;
    counter(
        enc,
        "dnsensor_pipeline_records",
        "Good resource records seen, in or out of bailiwick (OPT, TSIG, TKEY and non-IN skipped).",
        x.records,
    )?;
    labelled_counters(
        enc,
        "dnsensor_pipeline_records_dropped",
        "Records not recorded, by reason: bad_record (its bytes were bad), skipped (OPT, TSIG, TKEY, non-IN), out_of_bailiwick, private_address and private_name (the privacy stage).",
        "reason",
        &[
            ("bad_record", x.bad_records),
            ("skipped", x.skipped),
            ("out_of_bailiwick", x.out_of_bailiwick),
            ("private_address", x.private_address),
            ("private_name", x.private_name),
        ],
    )?;
    counter(
        enc,
        "dnsensor_pipeline_rrsets",
        "RRsets extracted from messages, before de-duplication.",
        x.rrsets,
    )?;
    counter(
        enc,
        "dnsensor_pipeline_rrsets_flushed",
        "Records (de-duplicated RRsets) written to the output: COF lines or sealed records.",
        s.rrsets_flushed,
    )?;
    counter(
        enc,
        "dnsensor_pipeline_flushes",
        "Window flushes done, the final one at shutdown included.",
        s.flushes,
    )?;
    counter(
        enc,
        "dnsensor_pipeline_early_flushes",
        "Early flushes because a worker's table reached its share of --max-entries.",
        s.early_flushes,
    )?;
    counter(
        enc,
        "dnsensor_pipeline_write_errors",
        "Batches of records the output failed to write (their records are lost).",
        s.write_errors,
    )
}

fn dnstap(enc: &mut DescriptorEncoder, d: &DnstapStats) -> fmt::Result {
    let s = d.snapshot();
    for (name, help, value) in s.described() {
        counter(enc, &format!("dnsensor_dnstap_{name}"), help, value)?;
    }
    gauge(
        enc,
        "dnsensor_dnstap_connections_active",
        "Sender connections being served now.",
        s.connections_accepted.saturating_sub(s.connections_closed),
    )
}

fn capture(enc: &mut DescriptorEncoder, c: &CaptureCounters) -> fmt::Result {
    let s = c.snapshot();
    for (name, help, value) in s.sums_described() {
        counter(enc, &format!("dnsensor_capture_{name}"), help, value)?;
    }
    for (name, help, value) in s.maxima_described() {
        let name = format!("dnsensor_capture_{name}");
        // libpcap's drop counts are totals that only grow; the rest are high-water marks.
        if name.ends_with("_peak") {
            gauge(enc, &name, help, value)?;
        } else {
            counter(enc, &name, help, value)?;
        }
    }
    Ok(())
}

fn proxy(enc: &mut DescriptorEncoder, s: &ProxyStats) -> fmt::Result {
    let get = ProxyStats::get;
    let counters: [(&str, &str, u64); 9] = [
        (
            "queries",
            "Queries accepted for forwarding (allowed clients, well formed).",
            get(&s.queries),
        ),
        (
            "answered",
            "Upstream answers passed to their client.",
            get(&s.answered),
        ),
        (
            "refused",
            "Queries from clients outside --allow, answered REFUSED.",
            get(&s.refused),
        ),
        (
            "servfail",
            "Queries answered SERVFAIL because no upstream answered in time.",
            get(&s.servfail),
        ),
        (
            "dropped",
            "Datagrams dropped: shorter than a header, responses sent to the proxy, failed sends.",
            get(&s.dropped),
        ),
        (
            "upstream_timeouts",
            "Tries at an upstream that timed out (each is failed over or ends in SERVFAIL).",
            get(&s.upstream_timeouts),
        ),
        (
            "mismatched",
            "Upstream answers matching no waiting query (late, duplicated or forged).",
            get(&s.mismatched),
        ),
        (
            "tcp_accepted",
            "TCP client connections accepted.",
            get(&s.tcp_accepted),
        ),
        (
            "tcp_rejected",
            "TCP client connections closed at once because --max-tcp-connections was reached.",
            get(&s.tcp_rejected),
        ),
    ];
    for (name, help, value) in counters {
        counter(enc, &format!("dnsensor_proxy_{name}"), help, value)?;
    }
    let mut m = enc.encode_descriptor(
        "dnsensor_proxy_answer_latency_seconds",
        "Time from a client query's arrival to its upstream answer's send, for answered queries, by transport.",
        None,
        MetricType::Histogram,
    )?;
    for (transport, histogram) in [("udp", &s.udp_latency), ("tcp", &s.tcp_latency)] {
        let h = histogram.snapshot();
        let labels = [("transport", transport)];
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            h.sum_seconds,
            h.count,
            &h.buckets,
            None,
        )?;
    }
    Ok(())
}

fn spool(enc: &mut DescriptorEncoder, spool: &Spool) -> fmt::Result {
    let s = spool.stats();
    counter(
        enc,
        "dnsensor_spool_batches_stored",
        "Sealed batches stored in the spool (one per flush that wrote records).",
        s.stored,
    )?;
    counter(
        enc,
        "dnsensor_spool_records_stored",
        "Records in the sealed batches stored in the spool.",
        s.records_stored,
    )?;
    counter(
        enc,
        "dnsensor_spool_write_errors",
        "Batches that could not be stored (e.g. a full disk); their records are lost.",
        s.write_errors,
    )?;
    counter(
        enc,
        "dnsensor_spool_dropped",
        "Oldest batches deleted unsent to keep the spool within --spool-max-bytes and --spool-max-files.",
        s.dropped_full,
    )?;
    gauge(
        enc,
        "dnsensor_spool_files",
        "Batches in the spool now, waiting for upload or being uploaded.",
        s.files,
    )?;
    gauge(
        enc,
        "dnsensor_spool_bytes",
        "Bytes of the batches in the spool now.",
        s.bytes,
    )
}

fn collector(enc: &mut DescriptorEncoder, c: &CollectorStats) -> fmt::Result {
    let read = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    counter(
        enc,
        "dnsensor_collector_batches_stored",
        "Batches opened, verified and stored for the first time (answered 201).",
        read(&c.batches_stored),
    )?;
    counter(
        enc,
        "dnsensor_collector_batches_duplicate",
        "Batches already stored, answered 200 again and not counted twice (a sensor's retry).",
        read(&c.batches_duplicate),
    )?;
    counter(
        enc,
        "dnsensor_collector_records_stored",
        "Records of the batches stored for the first time.",
        read(&c.records_stored),
    )?;
    counter(
        enc,
        "dnsensor_collector_queries_answered",
        "Queries answered (200) on the rrset and rdata endpoints.",
        read(&c.queries_answered),
    )?;
    let refused = c.refused();
    let statuses: Vec<String> = refused.iter().map(|(s, _)| s.to_string()).collect();
    let values: Vec<(&str, u64)> = statuses
        .iter()
        .zip(refused)
        .map(|(s, (_, n))| (s.as_str(), n))
        .collect();
    labelled_counters(
        enc,
        "dnsensor_collector_requests_refused",
        "Requests refused, by HTTP status: 400 malformed, 401 bad or missing token, 413 too large, 422 not sealed to this collector's key, 500 a failure of the collector.",
        "status",
        &values,
    )
}

fn upload(enc: &mut DescriptorEncoder, u: &UploadStatsHandle) -> fmt::Result {
    let s = u.stats();
    labelled_counters(
        enc,
        "dnsensor_uploads",
        "Upload attempts by result: ok (the collector accepted the batch), failed (to be retried), rejected (refused for good; moved to rejected/).",
        "result",
        &[
            ("ok", s.uploaded),
            ("failed", s.retries),
            ("rejected", s.rejected),
        ],
    )?;
    gauge(
        enc,
        "dnsensor_uploads_stopped",
        "1 when the collector refused the token (401/403) and uploads stopped until a new token (reload) or a restart.",
        u64::from(s.auth_stopped),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use dnsensor_core::output::StdoutSink;
    use dnsensor_core::pipeline::PipelineConfig;
    use dnsensor_delivery::{SpoolConfig, Uploader, UploaderConfig};

    use super::*;

    /// Every source a scrape can have, with some counts in each.
    fn all_sources(spool_dir: &std::path::Path) -> (Sources, Uploader) {
        let pipeline = Pipeline::start(PipelineConfig::default(), Box::new(StdoutSink)).unwrap();
        let stats = pipeline.stats();
        // The handle still reads the final counters after shutdown.
        pipeline.shutdown();
        let dnstap = Arc::new(DnstapStats::default());
        dnstap.connections_accepted.store(3, Ordering::Relaxed);
        dnstap.connections_closed.store(1, Ordering::Relaxed);
        dnstap.frames.store(7, Ordering::Relaxed);
        let proxy = Arc::new(ProxyStats::default());
        proxy.answered.store(2, Ordering::Relaxed);
        proxy.udp_latency.observe(Duration::from_micros(40));
        proxy.udp_latency.observe(Duration::from_millis(3));
        let spool = Spool::open(SpoolConfig {
            dir: spool_dir.to_path_buf(),
            ..SpoolConfig::default()
        })
        .unwrap();
        let uploader = Uploader::start(
            UploaderConfig {
                url: "http://127.0.0.1:9".into(),
                token: "t".into(),
                concurrency: 1,
                ..UploaderConfig::default()
            },
            spool.clone(),
        )
        .unwrap();
        let sources = Sources {
            mode: "dnstap",
            pipeline: Some(stats),
            dnstap: Some(dnstap),
            capture: Some(Arc::new(CaptureCounters::default())),
            proxy: Some(proxy),
            spool: Some(spool),
            upload: Some(uploader.stats_handle()),
            collector: Some(Arc::new(CollectorStats::default())),
        };
        (sources, uploader)
    }

    #[test]
    fn exposition_text_format() {
        let dir = tempfile::tempdir().unwrap();
        let (sources, uploader) = all_sources(dir.path());
        let text = render(&registry(sources)).unwrap();
        uploader.shutdown(Duration::from_secs(1));
        let has = |line: &str| text.lines().any(|l| l == line);
        for want in [
            "# HELP dnsensor_build_info The running dnsensor: its version and mode.",
            "# TYPE dnsensor_build_info gauge",
            &format!(
                "dnsensor_build_info{{version=\"{}\",mode=\"dnstap\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            "# HELP dnsensor_dnstap_frames_total Data frames received.",
            "# TYPE dnsensor_dnstap_frames_total counter",
            "dnsensor_dnstap_frames_total 7",
            "# TYPE dnsensor_dnstap_connections_active gauge",
            "dnsensor_dnstap_connections_active 2",
            "dnsensor_pipeline_observations_offered_total 0",
            "dnsensor_pipeline_flushes_total 1",
            "dnsensor_pipeline_records_dropped_total{reason=\"out_of_bailiwick\"} 0",
            "dnsensor_pipeline_records_dropped_total{reason=\"private_address\"} 0",
            "dnsensor_capture_pcap_drops_total 0",
            "# TYPE dnsensor_capture_tcp_streams_peak gauge",
            "dnsensor_proxy_answered_total 2",
            "# TYPE dnsensor_proxy_answer_latency_seconds histogram",
            "dnsensor_proxy_answer_latency_seconds_bucket{transport=\"udp\",le=\"5e-05\"} 1",
            "dnsensor_proxy_answer_latency_seconds_bucket{transport=\"udp\",le=\"0.0025\"} 1",
            "dnsensor_proxy_answer_latency_seconds_bucket{transport=\"udp\",le=\"0.005\"} 2",
            "dnsensor_proxy_answer_latency_seconds_bucket{transport=\"udp\",le=\"+Inf\"} 2",
            "dnsensor_proxy_answer_latency_seconds_count{transport=\"udp\"} 2",
            "dnsensor_proxy_answer_latency_seconds_bucket{transport=\"tcp\",le=\"+Inf\"} 0",
            "dnsensor_proxy_answer_latency_seconds_count{transport=\"tcp\"} 0",
            "# TYPE dnsensor_spool_files gauge",
            "dnsensor_spool_files 0",
            "dnsensor_spool_batches_stored_total 0",
            "dnsensor_uploads_total{result=\"ok\"} 0",
            "dnsensor_uploads_total{result=\"failed\"} 0",
            "dnsensor_uploads_total{result=\"rejected\"} 0",
            "dnsensor_uploads_stopped 0",
            "# TYPE dnsensor_collector_batches_stored_total counter",
            "dnsensor_collector_batches_stored_total 0",
            "dnsensor_collector_requests_refused_total{status=\"401\"} 0",
            "dnsensor_collector_requests_refused_total{status=\"422\"} 0",
        ] {
            assert!(has(want), "missing {want:?} in:\n{text}");
        }
        // Every sample line is `name[{labels}] value` under a TYPE line of its family, and every
        // family is named once.
        let mut families = BTreeSet::new();
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(families.insert(name.to_string()), "{name} twice");
                family = name.to_string();
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (name, value) = line.rsplit_once(' ').unwrap();
            let name = name.split('{').next().unwrap();
            assert!(name.starts_with(&family), "{line} outside {family}");
            assert!(
                value.parse::<f64>().is_ok(),
                "{line}: value is not a number"
            );
        }
        assert!(families.len() > 60, "{families:?}");
    }

    /// docs/metrics.md names every family a scrape can hold.
    #[test]
    fn every_metric_is_documented() {
        let docs = include_str!("../docs/metrics.md");
        let dir = tempfile::tempdir().unwrap();
        let (sources, uploader) = all_sources(dir.path());
        let text = render(&registry(sources)).unwrap();
        uploader.shutdown(Duration::from_secs(1));
        let missing: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .filter(|name| !docs.contains(&format!("`{name}`")))
            .collect();
        assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
    }
}
