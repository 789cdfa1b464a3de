//! dnstap source: a Frame Streams server on unix and TCP sockets that turns dnstap messages into Observations.
//! Which message types are used, and what becomes the bailiwick, is decided here; record logic lives in core.
//!
//! Wiring: [`bind`] the sockets (before dropping privileges), take [`Server::stats`], then spawn
//! [`Server::run`] with the pipeline's [`Handoff`](dnsensor_core::pipeline::Handoff) and a
//! shutdown `watch` channel; send `true` to stop it.

#![warn(missing_docs)]

pub mod convert;
pub mod fstrm;
mod listen;
mod pb;
mod server;
pub mod stats;

/// The dnstap protobuf types, generated from `proto/dnstap.proto`; bytes fields are `Bytes`
/// slices of the frame they were decoded from.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/dnstap.rs"));
}

/// The `bytes` crate this API's buffers come from, so callers of [`fstrm::Decoder`] need not pin
/// a matching version themselves.
pub use bytes;
pub use convert::{observation_from_dnstap, observation_from_frame, Outcome};
pub use fstrm::{decode_frames, DNSTAP_CONTENT_TYPE};
pub use listen::{Listen, ListenParseError};
pub use server::{bind, Error, Options, Server, DEFAULT_MAX_CONNECTIONS};
pub use stats::{DnstapStats, StatsSnapshot};
