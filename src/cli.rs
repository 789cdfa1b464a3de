//! The command line: one subcommand per mode, each flag mirrored by a key in the TOML file.
//! Values stay unvalidated strings and numbers here; `config` merges them with the file and checks them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Passive DNS sensor: records a resolver's recursive answers and ships them to a collector.
#[derive(Debug, Parser)]
#[command(name = "dnsensor", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The modes.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume dnstap (Frame Streams) from Unbound, BIND, Knot Resolver or PowerDNS Recursor.
    Dnstap(Box<DnstapArgs>),
    /// Tap a mirror port or read capture files with libpcap.
    Capture(Box<CaptureArgs>),
    /// Forward clients' queries to upstream resolvers, byte for byte, recording every answer.
    Proxy(Box<ProxyArgs>),
    /// Check a configuration file and report every problem with its key and line.
    CheckConfig(CheckConfigArgs),
    /// Write a new collector key pair: collector.key (mode 0600) and collector.pub.
    Keygen(KeygenArgs),
    /// Open sealed batches with the collector's key and print their COF lines.
    Inspect(InspectArgs),
    /// Run the reference collector: receive sealed batches, store them in SQLite, answer queries.
    Collector(CollectorArgs),
    /// Write the man page dnsensor.8 and the bash, zsh and fish completions (for packaging).
    #[command(hide = true)]
    GenerateDocs(GenerateDocsArgs),
}

/// Flags every recording mode shares. Each overrides the key of the same name in `--config`.
#[derive(Debug, Clone, Args, Default)]
pub struct CommonArgs {
    /// TOML configuration file; flags override its keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where records go: `stdout`, `file:PATH` (appended to), or `collector` (sealed, spooled and
    /// uploaded). Default: stdout.
    #[arg(long, value_name = "stdout|file:PATH|collector")]
    pub output: Option<String>,
    /// Seconds between flushes of the de-duplication window. Default: 60.
    #[arg(long, value_name = "SECS")]
    pub window: Option<u64>,
    /// Written into every record as `sensor_id`.
    #[arg(long, value_name = "ID")]
    pub sensor_id: Option<String>,
    /// error, warn, info, debug or trace. Default: info.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Pipeline worker threads. Default: the number of cores less one, from 1 to 4.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Observations queued per worker before load is shed. Default: 32768.
    #[arg(long, value_name = "N")]
    pub queue_depth: Option<usize>,
    /// Distinct RRsets held before a window is flushed early. Default: 100000.
    #[arg(long, value_name = "N")]
    pub max_entries: Option<usize>,
    /// Keep A/AAAA records in private and special-purpose ranges (dropped by default).
    #[arg(long)]
    pub keep_private_addresses: bool,
    /// Also drop A/AAAA records in this range (ADDR/LEN). Repeatable.
    #[arg(long, value_name = "ADDR/LEN")]
    pub drop_range: Vec<String>,
    /// Also drop every record at or below this name. Repeatable.
    #[arg(long, value_name = "NAME")]
    pub drop_suffix: Vec<String>,
    /// Count distinct clients per record with a keyed hash (HMAC-SHA-256, key in memory only,
    /// replaced every 24 h) and write the count as `clients`.
    #[arg(long)]
    pub client_counts: bool,
    /// The collector's base URL, for `--output collector`: https://HOST[:PORT], or http:// to a
    /// loopback address only.
    #[arg(long, value_name = "URL")]
    pub collector_url: Option<String>,
    /// The collector's public key file (collector.pub from `dnsensor keygen`).
    #[arg(long, value_name = "FILE")]
    pub collector_pubkey: Option<PathBuf>,
    /// File holding the bearer token for the collector.
    #[arg(long, value_name = "FILE")]
    pub collector_token_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust for the collector instead of the system roots.
    #[arg(long, value_name = "FILE")]
    pub collector_ca: Option<PathBuf>,
    /// Directory of sealed batches awaiting upload. Default: /var/lib/dnsensor/spool.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Bytes the spool may hold before the oldest batch is dropped. Default: 1073741824.
    #[arg(long, value_name = "BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// Batches the spool may hold before the oldest is dropped. Default: 10000.
    #[arg(long, value_name = "N")]
    pub spool_max_files: Option<usize>,
    /// Uploads in flight at once. Default: 2.
    #[arg(long, value_name = "N")]
    pub upload_concurrency: Option<usize>,
    /// Seconds an upload may take before it is abandoned and retried. Default: 30.
    #[arg(long, value_name = "SECS")]
    pub upload_timeout: Option<u64>,
    /// zstd level for sealed batches, -7 to 19; negative levels are faster and larger.
    /// Default: -3.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub zstd_level: Option<i32>,
    /// Serve Prometheus metrics over HTTP at http://ADDR:PORT/metrics (docs/metrics.md).
    /// Default: off.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
}

/// `dnsensor dnstap`.
#[derive(Debug, Args)]
pub struct DnstapArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Socket to accept dnstap senders on: `unix:PATH` or `tcp:ADDR:PORT`. Repeatable.
    #[arg(long, value_name = "unix:PATH|tcp:ADDR:PORT")]
    pub listen: Vec<String>,
    /// Also record client-segment responses (CLIENT_RESPONSE), without any client address or bailiwick.
    #[arg(long)]
    pub client_responses: bool,
    /// Largest data frame accepted, in bytes; a larger one closes that connection. Default: 1048576.
    #[arg(long, value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Senders served at once; one more is closed at once and counted. Default: 64.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
}

/// `dnsensor capture`.
#[derive(Debug, Args, Default)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Capture live on this interface (e.g. a mirror port, or `any`).
    #[arg(long, value_name = "NAME", conflicts_with = "read")]
    pub interface: Option<String>,
    /// Read these pcap or pcapng files instead of capturing live. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub read: Vec<PathBuf>,
    /// BPF filter. Default: DNS on port 53 plus IP fragments (see docs/capture.md).
    #[arg(long, value_name = "EXPR")]
    pub bpf: Option<String>,
    /// Kernel capture buffer in bytes. Default: 33554432.
    #[arg(long, value_name = "BYTES")]
    pub buffer_bytes: Option<usize>,
    /// Bytes captured per packet. Default: 65535.
    #[arg(long, value_name = "BYTES")]
    pub snaplen: Option<i32>,
    /// Record responses whose query was not seen (taps that see one direction only).
    #[arg(long)]
    pub accept_unpaired: bool,
    /// Also record client-segment answers (queries with RD=1), without any client address or bailiwick.
    #[arg(long)]
    pub client_responses: bool,
    /// After opening the capture, drop privileges to this user (and its group).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

/// `dnsensor proxy`.
#[derive(Debug, Args, Default)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to serve on, UDP and TCP, as ADDR:PORT (port 53 if left out). Repeatable.
    /// Default: 127.0.0.1:53 and [::1]:53.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<String>,
    /// Upstream resolver as ADDR:PORT (port 53 if left out). Repeatable; the order is the order
    /// of preference. Default: the name servers in /etc/resolv.conf.
    #[arg(long, value_name = "ADDR:PORT")]
    pub upstream: Vec<String>,
    /// Network allowed to query, as ADDR/LEN. Repeatable. Others get REFUSED.
    /// Default: 127.0.0.0/8 and ::1/128.
    #[arg(long, value_name = "ADDR/LEN")]
    pub allow: Vec<String>,
    /// Milliseconds one upstream has to answer before the next one is tried. Default: 1000.
    #[arg(long, value_name = "MS")]
    pub upstream_timeout: Option<u64>,
    /// Milliseconds a client query may take in all before the client gets SERVFAIL.
    /// Default: 2000.
    #[arg(long, value_name = "MS")]
    pub query_timeout: Option<u64>,
    /// Milliseconds between health checks of each upstream. Default: 1000.
    #[arg(long, value_name = "MS")]
    pub health_interval: Option<u64>,
    /// TCP client connections served at once; more are closed and counted. Default: 1024.
    #[arg(long, value_name = "N")]
    pub max_tcp_connections: Option<usize>,
    /// Seconds a TCP connection may stay without a new query. Default: 10.
    #[arg(long, value_name = "SECS")]
    pub tcp_idle_timeout: Option<u64>,
    /// Seconds a TCP connection may last in all. Default: 120.
    #[arg(long, value_name = "SECS")]
    pub tcp_lifetime: Option<u64>,
    /// Threads of the event loop that serves TCP, health checks and timeouts (UDP has a
    /// receive thread per listener and an answer thread per upstream). Default: 1.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// After binding the listeners, drop privileges to this user (and its group).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Microseconds each UDP forwarding thread keeps polling its sockets after a datagram
    /// instead of sleeping (0 to 10000). Lowers latency where waking a thread is slow (on
    /// virtual machines), at the price of up to a core per listener and upstream while traffic
    /// flows. Default: 0, off.
    #[arg(long, value_name = "MICROS")]
    pub busy_poll: Option<u64>,
}

/// `dnsensor keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write collector.key and collector.pub into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `dnsensor inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The collector's secret key (collector.key).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Sealed batch files.
    #[arg(required = true, value_name = "BATCH")]
    pub batches: Vec<PathBuf>,
}

/// `dnsensor collector`.
#[derive(Debug, Args, Default)]
pub struct CollectorArgs {
    /// TOML configuration file (its `[collector]` table); flags override its keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve on, as ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// The collector's secret key (collector.key).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// SQLite database file (created if missing).
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// File holding the bearer token that sensors and analysts must present.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key, serve HTTPS.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// error, warn, info, debug or trace. Default: info.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Serve Prometheus metrics over HTTP at http://ADDR:PORT/metrics (docs/metrics.md).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
}

/// `dnsensor generate-docs` (hidden): what the packages install, made from this definition.
#[derive(Debug, Args)]
pub struct GenerateDocsArgs {
    /// Directory to write dnsensor.8, dnsensor.bash, _dnsensor and dnsensor.fish into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `dnsensor check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The TOML file to check.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}
