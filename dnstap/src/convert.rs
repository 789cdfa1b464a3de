//! dnstap message → Observation: which message types are used and what their fields become.
//! Pure functions, so the server, the tests and the fuzz target all share one conversion.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dnsensor_core::{Observation, Segment, Transport};
use prost::Message as _;

use crate::{pb, proto};

/// What became of one dnstap payload.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A response the pipeline wants.
    Use(Observation),
    /// A message of a type we do not record (queries, client responses unless asked for, …), or
    /// a payload without a message at all.
    Ignored,
    /// A response-typed message without `response_message`.
    MissingResponse,
}

/// Decodes one data frame as a `Dnstap` protobuf and converts it. The frame's bytes are sliced,
/// not copied, into the observation.
///
/// The payload is read by the crate's own protobuf reader (`pb.rs`), which accepts exactly what
/// `proto::Dnstap::decode` accepts and gives the same outcome as [`observation_from_dnstap`]
/// on its result, without building the whole struct: only the fields an observation keeps become
/// `Bytes` slices, and only for messages that are used.
pub fn observation_from_frame(
    frame: Bytes,
    client_responses: bool,
) -> Result<Outcome, prost::DecodeError> {
    let Ok(fields) = pb::decode(&frame) else {
        // Rejected payloads take prost's path, so they get its error (and, were the two readers
        // ever to disagree, its verdict).
        return proto::Dnstap::decode(frame).map(|d| observation_from_dnstap(d, client_responses));
    };
    // A payload without a `message` field has no type either, and is ignored like one whose
    // type is not recorded.
    let message_type = fields.message_type.unwrap_or(DEFAULT_MESSAGE_TYPE);
    let Some(segment) = segment_of(message_type, client_responses) else {
        return Ok(Outcome::Ignored);
    };
    // `pb` only hands out ranges inside the frame; checked again because `Bytes::slice` panics.
    let slice = |r: &Option<std::ops::Range<usize>>| {
        r.clone()
            .filter(|r| r.start <= r.end && r.end <= frame.len())
            .map(|r| frame.slice(r))
    };
    let bytes = |r: &Option<std::ops::Range<usize>>| r.clone().and_then(|r| frame.get(r));
    Ok(outcome(
        segment,
        Parts {
            socket_protocol: fields.socket_protocol,
            query_address: bytes(&fields.query_address),
            response_address: bytes(&fields.response_address),
            query_port: fields.query_port,
            response_port: fields.response_port,
            query_time_sec: fields.query_time_sec,
            query_time_nsec: fields.query_time_nsec,
            response_time_sec: fields.response_time_sec,
            response_time_nsec: fields.response_time_nsec,
            query_message: slice(&fields.query_message),
            query_zone: slice(&fields.query_zone),
            response_message: slice(&fields.response_message),
        },
    ))
}

/// Converts a decoded dnstap payload. Resolver and forwarder responses are used; client responses
/// only when `client_responses` is set, and then without a bailiwick (the zone a stub asked is not
/// a zone cut we can vouch for).
pub fn observation_from_dnstap(dnstap: proto::Dnstap, client_responses: bool) -> Outcome {
    let Some(msg) = dnstap.message else {
        return Outcome::Ignored;
    };
    let Some(segment) = segment_of(msg.r#type, client_responses) else {
        return Outcome::Ignored;
    };
    outcome(
        segment,
        Parts {
            socket_protocol: msg.socket_protocol,
            query_address: msg.query_address.as_deref(),
            response_address: msg.response_address.as_deref(),
            query_port: msg.query_port,
            response_port: msg.response_port,
            query_time_sec: msg.query_time_sec,
            query_time_nsec: msg.query_time_nsec,
            response_time_sec: msg.response_time_sec,
            response_time_nsec: msg.response_time_nsec,
            query_message: msg.query_message,
            query_zone: msg.query_zone,
            response_message: msg.response_message,
        },
    )
}

/// What `Message.type` is when a message lacks it: prost's default for the field, the enum's
/// first value (AUTH_QUERY), which is not recorded.
const DEFAULT_MESSAGE_TYPE: i32 = 1;

/// The segment a message type is recorded as, or None if it is not recorded.
fn segment_of(message_type: i32, client_responses: bool) -> Option<Segment> {
    use proto::message::Type;
    match Type::try_from(message_type) {
        Ok(Type::ResolverResponse) => Some(Segment::Resolver),
        Ok(Type::ForwarderResponse) => Some(Segment::Forwarder),
        Ok(Type::ClientResponse) if client_responses => Some(Segment::Client),
        _ => None,
    }
}

/// The fields of a dnstap `Message` that an observation is made of.
struct Parts<'a> {
    socket_protocol: Option<i32>,
    query_address: Option<&'a [u8]>,
    response_address: Option<&'a [u8]>,
    query_port: Option<u32>,
    response_port: Option<u32>,
    query_time_sec: Option<u64>,
    query_time_nsec: Option<u32>,
    response_time_sec: Option<u64>,
    response_time_nsec: Option<u32>,
    query_message: Option<Bytes>,
    query_zone: Option<Bytes>,
    response_message: Option<Bytes>,
}

fn outcome(segment: Segment, msg: Parts<'_>) -> Outcome {
    let Some(response) = msg.response_message else {
        return Outcome::MissingResponse;
    };
    let time = timestamp(msg.response_time_sec, msg.response_time_nsec)
        .or_else(|| timestamp(msg.query_time_sec, msg.query_time_nsec))
        .unwrap_or_else(SystemTime::now);
    let bailiwick = match segment {
        Segment::Client => None,
        Segment::Resolver | Segment::Forwarder => msg.query_zone,
    };
    Outcome::Use(Observation {
        time,
        response,
        server: socket_addr(msg.response_address, msg.response_port),
        client: socket_addr(msg.query_address, msg.query_port),
        transport: transport(msg.socket_protocol),
        segment,
        bailiwick,
        query: msg.query_message,
    })
}

/// A dnstap time, or None when absent or beyond what `SystemTime` can hold (a hostile sender
/// must not be able to make the addition panic).
fn timestamp(sec: Option<u64>, nsec: Option<u32>) -> Option<SystemTime> {
    let since =
        Duration::from_secs(sec?).checked_add(Duration::from_nanos(nsec.unwrap_or(0).into()))?;
    UNIX_EPOCH.checked_add(since)
}

/// An address from its 4 or 16 raw octets. A missing or out-of-range port becomes 0: the address
/// is the part that matters downstream.
fn socket_addr(addr: Option<&[u8]>, port: Option<u32>) -> Option<SocketAddr> {
    let ip = match addr? {
        &[a, b, c, d] => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        octets => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(octets).ok()?)),
    };
    let port = port.and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
    Some(SocketAddr::new(ip, port))
}

fn transport(protocol: Option<i32>) -> Transport {
    use proto::SocketProtocol as P;
    match protocol.map(P::try_from) {
        Some(Ok(P::Udp)) => Transport::Udp,
        Some(Ok(P::Tcp)) => Transport::Tcp,
        Some(Ok(P::Dot)) => Transport::Dot,
        Some(Ok(P::Doh)) => Transport::Doh,
        Some(Ok(P::DnsCryptUdp)) => Transport::DnsCryptUdp,
        Some(Ok(P::DnsCryptTcp)) => Transport::DnsCryptTcp,
        Some(Ok(P::Doq)) => Transport::Doq,
        _ => Transport::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_times_fall_back_instead_of_panicking() {
        assert_eq!(timestamp(Some(u64::MAX), Some(u32::MAX)), None);
        assert_eq!(
            timestamp(Some(1), Some(2_000_000_000)),
            Some(UNIX_EPOCH + Duration::from_secs(3))
        );
    }

    #[test]
    fn a_message_without_a_type_has_prosts_default() {
        assert_eq!(proto::Message::default().r#type, DEFAULT_MESSAGE_TYPE);
    }

    #[test]
    fn addresses() {
        assert_eq!(
            socket_addr(Some(&[192, 0, 2, 1]), Some(53)),
            Some("192.0.2.1:53".parse().unwrap())
        );
        assert_eq!(socket_addr(Some(&[1, 2, 3]), Some(53)), None);
        assert_eq!(
            socket_addr(Some(&[0; 16]), Some(70_000)),
            Some("[::]:0".parse().unwrap())
        );
    }
}
