//! The TOML configuration file and its merge with the command line into checked settings.
//! Every flag has a key of the same name; a flag wins over the file, the file over the default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use dnsensor_core::privacy::{PrivacyConfig, PrivacyFilter};

use crate::cli::{CaptureArgs, CollectorArgs, CommonArgs, DnstapArgs, ProxyArgs};

/// The file as written. Unknown keys are errors, so a typo never silently falls back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub output: Option<String>,
    pub window: Option<u64>,
    pub sensor_id: Option<String>,
    pub log_level: Option<String>,
    pub workers: Option<usize>,
    pub queue_depth: Option<usize>,
    pub max_entries: Option<usize>,
    pub keep_private_addresses: Option<bool>,
    pub drop_range: Option<Vec<String>>,
    pub drop_suffix: Option<Vec<String>>,
    pub client_counts: Option<bool>,
    pub collector_url: Option<String>,
    pub collector_pubkey: Option<PathBuf>,
    pub collector_token_file: Option<PathBuf>,
    pub collector_ca: Option<PathBuf>,
    pub spool: Option<PathBuf>,
    pub spool_max_bytes: Option<u64>,
    pub spool_max_files: Option<usize>,
    pub upload_concurrency: Option<usize>,
    pub upload_timeout: Option<u64>,
    pub zstd_level: Option<i32>,
    pub metrics: Option<String>,
    #[serde(default)]
    pub dnstap: DnstapSection,
    #[serde(default)]
    pub collector: CollectorSection,
    #[serde(default)]
    pub capture: CaptureSection,
    #[serde(default)]
    pub proxy: ProxySection,
}

/// The `[proxy]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProxySection {
    pub listen: Option<Vec<String>>,
    pub upstream: Option<Vec<String>>,
    pub allow: Option<Vec<String>>,
    pub upstream_timeout: Option<u64>,
    pub query_timeout: Option<u64>,
    pub health_interval: Option<u64>,
    pub max_tcp_connections: Option<usize>,
    pub tcp_idle_timeout: Option<u64>,
    pub tcp_lifetime: Option<u64>,
    pub threads: Option<usize>,
    pub user: Option<String>,
    pub busy_poll: Option<u64>,
}

/// The `[capture]` table, read by `dnsensor capture`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CaptureSection {
    pub interface: Option<String>,
    pub read: Option<Vec<PathBuf>>,
    pub bpf: Option<String>,
    pub buffer_bytes: Option<usize>,
    pub snaplen: Option<i32>,
    pub accept_unpaired: Option<bool>,
    pub client_responses: Option<bool>,
    pub user: Option<String>,
}

/// The `[collector]` table, read by `dnsensor collector`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CollectorSection {
    pub listen: Option<String>,
    pub key: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub log_level: Option<String>,
    pub metrics: Option<String>,
}

/// The `[dnstap]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DnstapSection {
    pub listen: Option<Vec<String>>,
    pub client_responses: Option<bool>,
    pub max_frame_bytes: Option<usize>,
    pub max_connections: Option<usize>,
}

/// A configuration problem, already phrased as the one line the operator sees.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Reads and parses a configuration file; errors name the file, the line and the key.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    parse_file(path, &read(path)?)
}

/// The text of the configuration file at `path`.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read config {}: {}",
            path.display(),
            dnsensor_core::describe_io_error(&e)
        ))
    })
}

/// [`parse`] with the file's name in front of the error.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    parse(text).map_err(|e| ConfigError(format!("config {}: {}", path.display(), e.0)))
}

/// [`load`] when a file is given, else the empty configuration (every key at its default).
pub fn load_optional(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    path.map(load).transpose().map(Option::unwrap_or_default)
}

/// Parses configuration text.
pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let start = e.span().map(|s| s.start.min(text.len()));
        let line = start.map(|s| text[..s].matches('\n').count() + 1);
        let key = start.and_then(|s| key_at(text, s)).map(|(_, k)| k);
        let msg = toml_message(&e, key.as_deref());
        match line {
            Some(l) => ConfigError(format!("line {l}: {msg}")),
            None => ConfigError(msg),
        }
    })
}

/// toml's message for one line, with the key it is about: toml's own spans several lines with a
/// source excerpt, and names the key only when it is unknown.
pub(crate) fn toml_message(e: &toml::de::Error, key: Option<&str>) -> String {
    let msg = e.message().lines().next().unwrap_or("invalid TOML");
    match key {
        Some(key) if !msg.starts_with("unknown field") => format!("{key}: {msg}"),
        _ => msg.to_owned(),
    }
}

/// Where flushed records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout,
    File(PathBuf),
    /// Sealed batches in the spool, uploaded to the collector.
    Collector,
}

impl std::str::FromStr for Output {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        if s == "stdout" {
            Ok(Output::Stdout)
        } else if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return err(
                    "output: `file:` needs a path, as in file:/var/lib/dnsensor/records.json",
                );
            }
            Ok(Output::File(PathBuf::from(path)))
        } else if s == "collector" {
            Ok(Output::Collector)
        } else {
            err(format!(
                "output: `{s}` is not one of stdout, file:PATH, collector"
            ))
        }
    }
}

/// Settings every recording mode shares, checked.
#[derive(Debug, Clone)]
pub struct Common {
    pub output: Output,
    pub window: Duration,
    pub sensor_id: Option<String>,
    pub log_level: log::LevelFilter,
    pub workers: usize,
    pub queue_depth: usize,
    pub max_entries: usize,
    pub privacy: PrivacyConfig,
    /// `privacy`, built.
    pub privacy_filter: PrivacyFilter,
    pub client_counts: bool,
    /// Present exactly when the output is `collector`.
    pub delivery: Option<Delivery>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
}

/// How sealed batches reach the collector (`--output collector`), checked.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub upload: dnsensor_delivery::upload::UploaderConfig,
    pub zstd_level: i32,
    pub pubkey: PathBuf,
    pub token_file: PathBuf,
    pub spool: dnsensor_delivery::spool::SpoolConfig,
}

/// Where `dnsensor capture` reads packets from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureInput {
    Interface(String),
    Files(Vec<PathBuf>),
}

/// Settings of `dnsensor capture`, checked.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub common: Common,
    pub input: CaptureInput,
    pub bpf: Option<String>,
    pub buffer_bytes: usize,
    pub snaplen: i32,
    pub accept_unpaired: bool,
    pub client_responses: bool,
    pub user: Option<String>,
}

/// Settings of `dnsensor collector`, checked.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    pub listen: std::net::SocketAddr,
    pub key: PathBuf,
    pub db: PathBuf,
    pub token_file: PathBuf,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub log_level: log::LevelFilter,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
}

/// Settings of `dnsensor dnstap`, checked.
#[derive(Debug, Clone)]
pub struct DnstapSettings {
    pub common: Common,
    pub listen: Vec<dnsensor_dnstap::Listen>,
    pub client_responses: bool,
    pub max_frame_bytes: usize,
    pub max_connections: usize,
}

fn parse_level(s: &str) -> Result<log::LevelFilter, ConfigError> {
    match s {
        "error" => Ok(log::LevelFilter::Error),
        "warn" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        _ => err(format!(
            "log-level: `{s}` is not one of error, warn, info, debug, trace"
        )),
    }
}

/// Merges flags over the file and checks every value.
pub fn common(args: &CommonArgs, file: &FileConfig) -> Result<Common, ConfigError> {
    let output = args
        .output
        .clone()
        .or_else(|| file.output.clone())
        .unwrap_or_else(|| "stdout".into())
        .parse()?;
    let window = args.window.or(file.window).unwrap_or(60);
    if !(1..=86_400).contains(&window) {
        return err(format!(
            "window: {window} is out of range 1..=86400 seconds"
        ));
    }
    let sensor_id = args.sensor_id.clone().or_else(|| file.sensor_id.clone());
    if let Some(id) = &sensor_id {
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return err(format!(
                "sensor-id: `{id}` must be 1 to 64 characters of letters, digits and - _ . :"
            ));
        }
    }
    let log_level = parse_level(
        args.log_level
            .as_deref()
            .or(file.log_level.as_deref())
            .unwrap_or("info"),
    )?;
    let defaults = dnsensor_core::pipeline::PipelineConfig::default();
    let workers = args.workers.or(file.workers).unwrap_or(defaults.workers);
    if !(1..=64).contains(&workers) {
        return err(format!("workers: {workers} is out of range 1..=64"));
    }
    let queue_depth = args
        .queue_depth
        .or(file.queue_depth)
        .unwrap_or(defaults.queue_depth);
    if !(1..=1 << 24).contains(&queue_depth) {
        return err(format!(
            "queue-depth: {queue_depth} is out of range 1..=16777216"
        ));
    }
    let max_entries = args
        .max_entries
        .or(file.max_entries)
        .unwrap_or(defaults.max_entries);
    if !(1..=100_000_000).contains(&max_entries) {
        return err(format!(
            "max-entries: {max_entries} is out of range 1..=100000000"
        ));
    }
    let privacy = PrivacyConfig {
        keep_private_addresses: args.keep_private_addresses
            || file.keep_private_addresses.unwrap_or(false),
        drop_ranges: flag_or_file(&args.drop_range, &file.drop_range),
        drop_suffixes: flag_or_file(&args.drop_suffix, &file.drop_suffix),
    };
    let privacy_filter = PrivacyFilter::new(&privacy).map_err(|e| {
        let key = if e.contains("not a range") {
            "drop-range"
        } else {
            "drop-suffix"
        };
        ConfigError(format!("{key}: {e}"))
    })?;
    let delivery = match output {
        Output::Collector => Some(delivery(args, file, sensor_id.is_some())?),
        _ => None,
    };
    let metrics = metrics_addr(args.metrics.as_deref().or(file.metrics.as_deref()))?;
    Ok(Common {
        output,
        window: Duration::from_secs(window),
        sensor_id,
        log_level,
        workers,
        queue_depth,
        max_entries,
        privacy,
        privacy_filter,
        client_counts: args.client_counts || file.client_counts.unwrap_or(false),
        delivery,
        metrics,
    })
}

/// The metrics address, when one is given.
fn metrics_addr(text: Option<&str>) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    text.map(|text| {
        text.trim().parse().map_err(|_| {
            ConfigError(format!(
                "metrics: `{text}` is not ADDR:PORT, as in 127.0.0.1:9153 or [::1]:9153"
            ))
        })
    })
    .transpose()
}

/// A repeatable flag's values when given, else the file's list.
fn flag_or_file(flag: &[String], file: &Option<Vec<String>>) -> Vec<String> {
    if flag.is_empty() {
        file.clone().unwrap_or_default()
    } else {
        flag.to_vec()
    }
}

/// The delivery settings that `--output collector` needs; each missing one is named.
fn delivery(
    args: &CommonArgs,
    file: &FileConfig,
    has_sensor_id: bool,
) -> Result<Delivery, ConfigError> {
    use dnsensor_delivery::spool::SpoolConfig;
    use dnsensor_delivery::upload::UploaderConfig;
    let need = |key: &str| {
        ConfigError(format!(
            "{key}: `--output collector` needs it (see dnsensor dnstap --help)"
        ))
    };
    if !has_sensor_id {
        return Err(need("sensor-id"));
    }
    let url = args
        .collector_url
        .clone()
        .or_else(|| file.collector_url.clone())
        .ok_or_else(|| need("collector-url"))?;
    let pubkey = args
        .collector_pubkey
        .clone()
        .or_else(|| file.collector_pubkey.clone())
        .ok_or_else(|| need("collector-pubkey"))?;
    let token_file = args
        .collector_token_file
        .clone()
        .or_else(|| file.collector_token_file.clone())
        .ok_or_else(|| need("collector-token-file"))?;
    let defaults = SpoolConfig::default();
    let spool = SpoolConfig {
        dir: args
            .spool
            .clone()
            .or_else(|| file.spool.clone())
            .unwrap_or_else(|| PathBuf::from("/var/lib/dnsensor/spool")),
        max_bytes: args
            .spool_max_bytes
            .or(file.spool_max_bytes)
            .unwrap_or(defaults.max_bytes),
        max_files: args
            .spool_max_files
            .or(file.spool_max_files)
            .unwrap_or(defaults.max_files),
    };
    if spool.max_bytes < 1 << 20 {
        return err(format!(
            "spool-max-bytes: {} is below the minimum of 1048576",
            spool.max_bytes
        ));
    }
    if spool.max_files < 1 {
        return err("spool-max-files: must be at least 1");
    }
    let upload_defaults = UploaderConfig::default();
    let concurrency = args
        .upload_concurrency
        .or(file.upload_concurrency)
        .unwrap_or(upload_defaults.concurrency);
    if !(1..=64).contains(&concurrency) {
        return err(format!(
            "upload-concurrency: {concurrency} is out of range 1..=64"
        ));
    }
    let timeout = args
        .upload_timeout
        .or(file.upload_timeout)
        .unwrap_or(upload_defaults.request_timeout.as_secs());
    if !(1..=3600).contains(&timeout) {
        return err(format!(
            "upload-timeout: {timeout} is out of range 1..=3600 seconds"
        ));
    }
    let upload = UploaderConfig {
        url,
        token: String::new(),
        request_timeout: Duration::from_secs(timeout),
        ca_file: args
            .collector_ca
            .clone()
            .or_else(|| file.collector_ca.clone()),
        concurrency,
        ..upload_defaults
    };
    // The token is read from its file when the mode starts; here only the rest is checked.
    UploaderConfig {
        token: "checked-at-start".into(),
        ..upload.clone()
    }
    .validate()
    .map_err(|e| ConfigError(format!("collector-url: {e}")))?;
    let zstd_level = args
        .zstd_level
        .or(file.zstd_level)
        .unwrap_or(dnsensor_delivery::batch::DEFAULT_ZSTD_LEVEL);
    if !(-7..=19).contains(&zstd_level) {
        return err(format!("zstd-level: {zstd_level} is out of range -7..=19"));
    }
    Ok(Delivery {
        upload,
        zstd_level,
        pubkey,
        token_file,
        spool,
    })
}

/// The settings of `dnsensor collector`.
pub fn collector(
    args: &CollectorArgs,
    file: &FileConfig,
) -> Result<CollectorSettings, ConfigError> {
    let c = &file.collector;
    let need = |key: &str| ConfigError(format!("{key}: required (see dnsensor collector --help)"));
    let listen_text = args
        .listen
        .clone()
        .or_else(|| c.listen.clone())
        .ok_or_else(|| need("listen"))?;
    let listen = listen_text.parse().map_err(|_| {
        ConfigError(format!(
            "listen: `{listen_text}` is not ADDR:PORT, as in 127.0.0.1:8053 or [::1]:8053"
        ))
    })?;
    let key = args
        .key
        .clone()
        .or_else(|| c.key.clone())
        .ok_or_else(|| need("key"))?;
    let db = args
        .db
        .clone()
        .or_else(|| c.db.clone())
        .ok_or_else(|| need("db"))?;
    let token_file = args
        .token_file
        .clone()
        .or_else(|| c.token_file.clone())
        .ok_or_else(|| need("token-file"))?;
    let tls = match (
        args.tls_cert.clone().or_else(|| c.tls_cert.clone()),
        args.tls_key.clone().or_else(|| c.tls_key.clone()),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => return err("tls-key: --tls-cert needs --tls-key"),
        (None, Some(_)) => return err("tls-cert: --tls-key needs --tls-cert"),
    };
    let log_level = parse_level(
        args.log_level
            .as_deref()
            .or(c.log_level.as_deref())
            .or(file.log_level.as_deref())
            .unwrap_or("info"),
    )?;
    // Its own key: the shared `metrics` is the sensor's, which may run on the same host.
    let metrics = metrics_addr(args.metrics.as_deref().or(c.metrics.as_deref()))?;
    Ok(CollectorSettings {
        listen,
        key,
        db,
        token_file,
        tls,
        log_level,
        metrics,
    })
}

/// The settings of `dnsensor dnstap`.
pub fn dnstap(args: &DnstapArgs, file: &FileConfig) -> Result<DnstapSettings, ConfigError> {
    let common = common(&args.common, file)?;
    let listen_text: Vec<String> = if !args.listen.is_empty() {
        args.listen.clone()
    } else {
        file.dnstap.listen.clone().unwrap_or_default()
    };
    if listen_text.is_empty() {
        return err(
            "listen: give at least one socket, as in --listen unix:/run/dnsensor/dnstap.sock",
        );
    }
    let listen = listen_text
        .iter()
        .map(|l| {
            l.parse::<dnsensor_dnstap::Listen>()
                .map_err(|e| ConfigError(format!("listen: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let max_frame_bytes = args
        .max_frame_bytes
        .or(file.dnstap.max_frame_bytes)
        .unwrap_or(1 << 20);
    if !(512..=64 << 20).contains(&max_frame_bytes) {
        return err(format!(
            "max-frame-bytes: {max_frame_bytes} is out of range 512..=67108864"
        ));
    }
    let max_connections = args
        .max_connections
        .or(file.dnstap.max_connections)
        .unwrap_or(dnsensor_dnstap::DEFAULT_MAX_CONNECTIONS);
    if !(1..=65_536).contains(&max_connections) {
        return err(format!(
            "max-connections: {max_connections} is out of range 1..=65536"
        ));
    }
    Ok(DnstapSettings {
        common,
        listen,
        client_responses: args.client_responses || file.dnstap.client_responses.unwrap_or(false),
        max_frame_bytes,
        max_connections,
    })
}

/// The settings of `dnsensor capture`.
pub fn capture(args: &CaptureArgs, file: &FileConfig) -> Result<CaptureSettings, ConfigError> {
    let common = common(&args.common, file)?;
    let c = &file.capture;
    let interface = args.interface.clone().or_else(|| {
        if args.read.is_empty() {
            c.interface.clone()
        } else {
            None
        }
    });
    let files = if args.read.is_empty() && args.interface.is_none() {
        c.read.clone().unwrap_or_default()
    } else {
        args.read.clone()
    };
    let input =
        match (interface, files.is_empty()) {
            (Some(_), false) => {
                return err("interface: give either an interface or files to read, not both")
            }
            (Some(i), true) => CaptureInput::Interface(i),
            (None, false) => CaptureInput::Files(files),
            (None, true) => return err(
                "interface: give --interface NAME to capture live or --read FILE to read captures",
            ),
        };
    let buffer_bytes = args.buffer_bytes.or(c.buffer_bytes).unwrap_or(32 << 20);
    if !(1 << 16..=1 << 31).contains(&buffer_bytes) {
        return err(format!(
            "buffer-bytes: {buffer_bytes} is out of range 65536..=2147483648"
        ));
    }
    let snaplen = args.snaplen.or(c.snaplen).unwrap_or(65_535);
    if !(128..=262_144).contains(&snaplen) {
        return err(format!("snaplen: {snaplen} is out of range 128..=262144"));
    }
    let bpf = args.bpf.clone().or_else(|| c.bpf.clone());
    if bpf.as_deref().is_some_and(|b| b.trim().is_empty()) {
        return err("bpf: an empty filter would capture everything; leave it out for the default");
    }
    let user = args.user.clone().or_else(|| c.user.clone());
    if user.as_deref().is_some_and(str::is_empty) {
        return err("user: must not be empty");
    }
    Ok(CaptureSettings {
        common,
        input,
        bpf,
        buffer_bytes,
        snaplen,
        accept_unpaired: args.accept_unpaired || c.accept_unpaired.unwrap_or(false),
        client_responses: args.client_responses || c.client_responses.unwrap_or(false),
        user,
    })
}

/// `dnsensor proxy` settings.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub common: Common,
    pub options: dnsensor_proxy::Options,
    /// True when the upstreams came from /etc/resolv.conf.
    pub system_upstreams: bool,
    /// Runtime threads for forwarding.
    pub threads: usize,
    pub user: Option<String>,
}

/// `ADDR:PORT`, or a bare address meaning port 53; IPv6 with a port needs brackets.
fn parse_socket_addr(key: &str, s: &str) -> Result<std::net::SocketAddr, ConfigError> {
    let s = s.trim();
    if let Ok(a) = s.parse::<std::net::SocketAddr>() {
        return Ok(a);
    }
    s.parse::<std::net::IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| ConfigError(format!("{key}: `{s}` is not ADDR:PORT or an address")))
}

fn millis(
    key: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    if !range.contains(&value) {
        return err(format!(
            "{key}: {value} ms is out of range {}..={}",
            range.start(),
            range.end()
        ));
    }
    Ok(Duration::from_millis(value))
}

pub fn proxy(args: &ProxyArgs, file: &FileConfig) -> Result<ProxySettings, ConfigError> {
    let common = common(&args.common, file)?;
    let p = &file.proxy;
    let mut listen_text = flag_or_file(&args.listen, &p.listen);
    if listen_text.is_empty() {
        listen_text = vec!["127.0.0.1:53".into(), "[::1]:53".into()];
    }
    let listen = listen_text
        .iter()
        .map(|l| parse_socket_addr("listen", l))
        .collect::<Result<Vec<_>, _>>()?;
    let upstream_text = flag_or_file(&args.upstream, &p.upstream);
    let system_upstreams = upstream_text.is_empty();
    let upstreams = if system_upstreams {
        let conf = std::fs::read("/etc/resolv.conf").map_err(|e| {
            ConfigError(format!(
                "upstream: none given and /etc/resolv.conf is unreadable: {}",
                dnsensor_core::describe_io_error(&e)
            ))
        })?;
        dnsensor_proxy::system_upstreams(&conf)
            .map_err(|e| ConfigError(format!("upstream: {e}")))?
    } else {
        upstream_text
            .iter()
            .map(|u| parse_socket_addr("upstream", u))
            .collect::<Result<Vec<_>, _>>()?
    };
    if upstreams.len() > dnsensor_proxy::MAX_UPSTREAMS {
        return err(format!(
            "upstream: at most {} upstreams, not {}",
            dnsensor_proxy::MAX_UPSTREAMS,
            upstreams.len()
        ));
    }
    let allow = flag_or_file(&args.allow, &p.allow)
        .iter()
        .map(|a| dnsensor_proxy::Acl::parse_net(a).map_err(|e| ConfigError(format!("allow: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let upstream_timeout = millis(
        "upstream-timeout",
        args.upstream_timeout.or(p.upstream_timeout).unwrap_or(1000),
        10..=60_000,
    )?;
    let query_timeout = millis(
        "query-timeout",
        args.query_timeout.or(p.query_timeout).unwrap_or(2000),
        10..=60_000,
    )?;
    let health_interval = millis(
        "health-interval",
        args.health_interval.or(p.health_interval).unwrap_or(1000),
        100..=3_600_000,
    )?;
    let max_tcp_connections = args
        .max_tcp_connections
        .or(p.max_tcp_connections)
        .unwrap_or(1024);
    if !(1..=65_536).contains(&max_tcp_connections) {
        return err(format!(
            "max-tcp-connections: {max_tcp_connections} is out of range 1..=65536"
        ));
    }
    let tcp_idle_timeout = args.tcp_idle_timeout.or(p.tcp_idle_timeout).unwrap_or(10);
    if !(1..=3600).contains(&tcp_idle_timeout) {
        return err(format!(
            "tcp-idle-timeout: {tcp_idle_timeout} s is out of range 1..=3600"
        ));
    }
    let tcp_lifetime = args.tcp_lifetime.or(p.tcp_lifetime).unwrap_or(120);
    if !(1..=86_400).contains(&tcp_lifetime) {
        return err(format!(
            "tcp-lifetime: {tcp_lifetime} s is out of range 1..=86400"
        ));
    }
    let threads = args.threads.or(p.threads).unwrap_or(1);
    if !(1..=64).contains(&threads) {
        return err(format!("threads: {threads} is out of range 1..=64"));
    }
    let user = args.user.clone().or_else(|| p.user.clone());
    if user.as_deref().is_some_and(str::is_empty) {
        return err("user: must not be empty");
    }
    let busy_poll = args.busy_poll.or(p.busy_poll).unwrap_or(0);
    if busy_poll > 10_000 {
        return err(format!(
            "busy-poll: {busy_poll} µs is out of range 0..=10000"
        ));
    }
    Ok(ProxySettings {
        common,
        options: dnsensor_proxy::Options {
            listen,
            upstreams,
            acl: dnsensor_proxy::Acl::new(allow),
            upstream_timeout,
            query_timeout,
            health_interval,
            max_tcp_connections,
            tcp_idle_timeout: Duration::from_secs(tcp_idle_timeout),
            tcp_lifetime: Duration::from_secs(tcp_lifetime),
            busy_poll: Duration::from_micros(busy_poll),
        },
        system_upstreams,
        threads,
        user,
    })
}

/// The table header (`None` at the top) and the key of the line of `text` holding `offset`.
pub(crate) fn key_at(text: &str, offset: usize) -> Option<(Option<String>, String)> {
    let before = text.get(..offset)?;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"').to_owned();
    let section = before[..start].lines().rev().find_map(header);
    Some((section, key))
}

/// The name in a `[table]` header line.
pub(crate) fn header(line: &str) -> Option<String> {
    let inner = line.trim().strip_prefix('[')?;
    Some(inner[..inner.find(']')?].trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = parse("window = 5\nsensor-id = \"a\"\nbogus = 1\n").unwrap_err();
        assert!(e.0.starts_with("line 3: unknown field `bogus`"), "{}", e.0);
        assert!(!e.0.contains('\n'));
    }

    #[test]
    fn bad_value_is_one_line() {
        let e = parse("window = \"soon\"\n").unwrap_err();
        assert_eq!(
            e.0,
            "line 1: window: invalid type: string \"soon\", expected u64"
        );
        let file = parse("window = 0\n").unwrap();
        let e = common(&CommonArgs::default(), &file).unwrap_err();
        assert_eq!(e.0, "window: 0 is out of range 1..=86400 seconds");
    }

    #[test]
    fn flag_overrides_file() {
        let file = parse("window = 30\noutput = \"file:/tmp/x\"\n").unwrap();
        let args = CommonArgs {
            window: Some(5),
            ..CommonArgs::default()
        };
        let c = common(&args, &file).unwrap();
        assert_eq!(c.window, Duration::from_secs(5));
        assert_eq!(c.output, Output::File("/tmp/x".into()));
    }

    #[test]
    fn output_forms() {
        assert_eq!("stdout".parse::<Output>().unwrap(), Output::Stdout);
        assert_eq!(
            "udp:1".parse::<Output>().unwrap_err().0,
            "output: `udp:1` is not one of stdout, file:PATH, collector"
        );
        assert_eq!("collector".parse::<Output>().unwrap(), Output::Collector);
    }

    #[test]
    fn collector_output_names_what_is_missing() {
        let file = parse("output = \"collector\"\nsensor-id = \"s1\"\n").unwrap();
        let e = common(&CommonArgs::default(), &file).unwrap_err();
        assert_eq!(
            e.0,
            "collector-url: `--output collector` needs it (see dnsensor dnstap --help)"
        );
        let file = parse(
            "output = \"collector\"\nsensor-id = \"s1\"\ncollector-url = \"http://192.0.2.1:8053\"\n\
             collector-pubkey = \"/k\"\ncollector-token-file = \"/t\"\n",
        )
        .unwrap();
        let e = common(&CommonArgs::default(), &file).unwrap_err();
        assert!(e.0.starts_with("collector-url: "), "{}", e.0);
    }

    #[test]
    fn metrics_address() {
        let file = parse("metrics = \"127.0.0.1:9153\"\n").unwrap();
        let c = common(&CommonArgs::default(), &file).unwrap();
        assert_eq!(c.metrics, Some("127.0.0.1:9153".parse().unwrap()));
        let args = CommonArgs {
            metrics: Some("[::1]:9100".into()),
            ..CommonArgs::default()
        };
        let c = common(&args, &file).unwrap();
        assert_eq!(c.metrics, Some("[::1]:9100".parse().unwrap()));
        let c = common(&CommonArgs::default(), &FileConfig::default()).unwrap();
        assert_eq!(c.metrics, None);
        let file = parse("metrics = \"localhost\"\n").unwrap();
        let e = common(&CommonArgs::default(), &file).unwrap_err();
        assert_eq!(
            e.0,
            "metrics: `localhost` is not ADDR:PORT, as in 127.0.0.1:9153 or [::1]:9153"
        );
    }

    #[test]
    fn privacy_keys_are_checked() {
        let file = parse("drop-range = [\"10.0.0.0/40\"]\n").unwrap();
        let e = common(&CommonArgs::default(), &file).unwrap_err();
        assert_eq!(
            e.0,
            "drop-range: \"10.0.0.0/40\" is not a range: prefix length too long"
        );
        let file = parse("drop-suffix = [\"corp.example.\"]\nclient-counts = true\n").unwrap();
        let c = common(&CommonArgs::default(), &file).unwrap();
        assert_eq!(c.privacy.drop_suffixes, vec!["corp.example.".to_string()]);
        assert!(c.client_counts);
    }
}
