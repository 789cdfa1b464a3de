//! What a source hands to the pipeline: one DNS response and the little metadata around it.
//! Sources do no record logic; everything about records happens downstream of this type.

use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::Bytes;

/// The transport a response travelled over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Dot,
    Doh,
    DnsCryptUdp,
    DnsCryptTcp,
    Doq,
    Unknown,
}

/// Which leg of resolution a response belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Resolver ↔ authoritative server: the recursive answers passive DNS is made of.
    Resolver,
    /// A resolver's or proxy's answer from an upstream forwarder.
    Forwarder,
    /// Stub ↔ resolver. Recorded only on request, and never with a bailiwick.
    Client,
}

/// One DNS response as a source saw it.
#[derive(Debug, Clone)]
pub struct Observation {
    /// When the response was seen.
    pub time: SystemTime,
    /// The response message in wire format.
    pub response: Bytes,
    /// The server that answered, when known.
    pub server: Option<SocketAddr>,
    /// The address that asked. Only the privacy stage may read it; nothing writes it anywhere.
    pub client: Option<SocketAddr>,
    pub transport: Transport,
    pub segment: Segment,
    /// The zone the question was sent to, as an uncompressed wire-format name, when known.
    pub bailiwick: Option<Bytes>,
    /// The query this response answers, when the source has it.
    pub query: Option<Bytes>,
}
