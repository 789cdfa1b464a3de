//! dnstap message → Observation: which message types are used and what their fields become.
//! Pure functions, so the server, the tests and the fuzz target all share one conversion.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dnsensor_core::{Observation, Segment, Transport};
use prost::Message as _;

use crate::proto;

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
pub fn observation_from_frame(
    frame: Bytes,
    client_responses: bool,
) -> Result<Outcome, prost::DecodeError> {
    let dnstap = proto::Dnstap::decode(frame)?;
    Ok(observation_from_dnstap(dnstap, client_responses))
}

/// Converts a decoded dnstap payload. Resolver and forwarder responses are used; client responses
/// only when `client_responses` is set, and then without a bailiwick (the zone a stub asked is not
/// a zone cut we can vouch for).
pub fn observation_from_dnstap(dnstap: proto::Dnstap, client_responses: bool) -> Outcome {
    use proto::message::Type;

    let Some(msg) = dnstap.message else {
        return Outcome::Ignored;
    };
    let segment = match Type::try_from(msg.r#type) {
        Ok(Type::ResolverResponse) => Segment::Resolver,
        Ok(Type::ForwarderResponse) => Segment::Forwarder,
        Ok(Type::ClientResponse) if client_responses => Segment::Client,
        _ => return Outcome::Ignored,
    };
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
        server: socket_addr(msg.response_address.as_deref(), msg.response_port),
        client: socket_addr(msg.query_address.as_deref(), msg.query_port),
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
