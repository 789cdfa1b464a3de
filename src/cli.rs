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
    Dnstap(DnstapArgs),
    /// Check a configuration file and report every problem with its key and line.
    CheckConfig(CheckConfigArgs),
}

/// Flags every recording mode shares. Each overrides the key of the same name in `--config`.
#[derive(Debug, Args, Default)]
pub struct CommonArgs {
    /// TOML configuration file; flags override its keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where records go: `stdout` or `file:PATH` (appended to). Default: stdout.
    #[arg(long, value_name = "stdout|file:PATH")]
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
    /// Distinct RRsets held before a window is flushed early. Default: 200000.
    #[arg(long, value_name = "N")]
    pub max_entries: Option<usize>,
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

/// `dnsensor check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The TOML file to check.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}
