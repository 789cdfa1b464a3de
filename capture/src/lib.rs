//! The libpcap tap: turns captured packets (live or from files) into Observations.
//! Link layers, IP fragments and DNS over TCP are reassembled here; every record decision stays in core.
//!
//! Threads: [`Capture::run`] reads packets on the calling thread (give it a thread of its own)
//! and does little else: it finds the IP addresses, picks a shard by a hash of the unordered
//! address pair and copies the frame into that shard's reused batch buffer. Each shard worker
//! owns a [`decode::Decoder`] (defragmentation, TCP reassembly, pairing) and hands responses to
//! the pipeline. See `docs/capture.md`.

#![warn(missing_docs)]

pub mod bailiwick;
mod capture;
pub mod decode;
pub mod defrag;
pub mod link;
pub mod pairing;
mod stats;
pub mod tcp;

use std::path::PathBuf;
use std::time::Duration;

pub use capture::Capture;
pub use stats::{CaptureCounters, CaptureSummary};

/// The default capture filter: DNS on port 53 over UDP and TCP, plus every IPv4 fragment
/// after the first (`ip[6:2] & 0x1fff != 0`: a non-zero fragment offset) and every IPv6
/// packet whose first next-header is a fragment header (`ip6[6] == 44`). Non-first fragments
/// carry no ports, so without these clauses large (DNSSEC) answers could never be rebuilt.
/// The price is that unrelated fragmented traffic is captured too; the decoder drops what
/// does not turn out to be DNS after reassembly.
pub const DEFAULT_BPF: &str =
    "udp port 53 or tcp port 53 or (ip[6:2] & 0x1fff != 0) or (ip6 and ip6[6] == 44)";

/// Caps that bound the tap's memory and the time it holds state. They are totals, divided
/// evenly between the shards.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes held in IP fragment reassembly.
    pub fragment_bytes: usize,
    /// A datagram's fragments are forgotten this long after its first one arrived.
    pub fragment_timeout: Duration,
    /// TCP stream directions held.
    pub tcp_streams: usize,
    /// Bytes buffered per TCP stream direction; at least a maximal message (65,537 with its
    /// length prefix) so that any message can be rebuilt.
    pub tcp_stream_bytes: usize,
    /// Bytes buffered over all TCP streams.
    pub tcp_total_bytes: usize,
    /// A TCP stream direction without segments for this long is forgotten.
    pub tcp_idle: Duration,
    /// Queries held waiting for their responses.
    pub pending_queries: usize,
    /// A query without a response for this long is forgotten.
    pub query_timeout: Duration,
    /// (server, zone) pairs held for the bailiwick.
    pub zone_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fragment_bytes: 64 << 20,
            fragment_timeout: Duration::from_secs(10),
            tcp_streams: 10_000,
            tcp_stream_bytes: 66 << 10,
            tcp_total_bytes: 64 << 20,
            tcp_idle: Duration::from_secs(60),
            pending_queries: 1_000_000,
            query_timeout: Duration::from_secs(10),
            zone_entries: 100_000,
        }
    }
}

/// How the tap behaves.
#[derive(Debug, Clone)]
pub struct TapConfig {
    /// Shard workers (decoding threads). Default: cores − 1, between 1 and 4.
    pub shards: usize,
    /// Record responses to RD=1 queries (the client segment), without a bailiwick.
    pub client_responses: bool,
    /// Use responses whose query was not seen (for taps that see one direction only).
    pub accept_unpaired: bool,
    /// Memory and time caps.
    pub limits: Limits,
    /// UDP/TCP ports that carry DNS; a packet must use one of them on either side. Empty means
    /// any port (then the BPF filter alone decides). Default: 53.
    pub ports: Vec<u16>,
    /// A BPF filter for capture files (live captures take theirs from [`Source::Live`]).
    /// None reads every packet.
    pub file_bpf: Option<String>,
    /// Batches of up to 256 packets queued per shard before a live capture sheds.
    pub queue_batches: usize,
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig {
            shards: std::thread::available_parallelism()
                .map(|n| n.get().saturating_sub(1))
                .unwrap_or(1)
                .clamp(1, 4),
            client_responses: false,
            accept_unpaired: false,
            limits: Limits::default(),
            ports: vec![53],
            file_bpf: None,
            queue_batches: 64,
        }
    }
}

/// Where packets come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A live capture.
    Live {
        /// Interface name (`any` for all, on Linux).
        interface: String,
        /// BPF filter; None uses [`DEFAULT_BPF`].
        bpf: Option<String>,
        /// Kernel capture buffer in bytes.
        buffer_bytes: usize,
        /// Bytes captured per packet.
        snaplen: i32,
    },
    /// pcap or pcapng files, read in order.
    Files(Vec<PathBuf>),
}

/// Why a capture could not be opened or read. Each is one line for an operator.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The interface cannot be captured on (missing, no permission, down …).
    #[error("cannot capture on interface {interface}: {message}")]
    Interface {
        /// The interface.
        interface: String,
        /// libpcap's explanation.
        message: String,
    },
    /// A capture file cannot be read or is not a capture.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// libpcap's explanation.
        message: String,
    },
    /// The BPF filter does not compile.
    #[error("bad BPF filter {filter:?}: {message}")]
    Filter {
        /// The filter expression.
        filter: String,
        /// libpcap's explanation.
        message: String,
    },
    /// The link type is not one the tap decodes.
    #[error("{source_name}: unsupported link type {name} (DLT {dlt}); supported: Ethernet, Linux SLL/SLL2, raw IP, BSD null/loopback")]
    LinkType {
        /// The interface or file.
        source_name: String,
        /// The DLT number.
        dlt: i32,
        /// libpcap's name for it.
        name: String,
    },
    /// No files were given.
    #[error("no capture files given")]
    NoFiles,
    /// Reading a live capture failed.
    #[error("capture on {interface} failed: {message}")]
    Read {
        /// The interface.
        interface: String,
        /// libpcap's explanation.
        message: String,
    },
    /// A worker thread could not be started, or died.
    #[error("capture threads: {0}")]
    Thread(String),
}
