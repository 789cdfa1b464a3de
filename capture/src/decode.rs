//! One shard's packet path: link layer, IP (with defragmentation), UDP or TCP (with reassembly),
//! then DNS messages into pairing, segment selection and bailiwick learning, out as Observations.
//!
//! Everything here is driven by packet timestamps, never the wall clock, so files replay exactly.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dnsensor_core::wire::{skip_name, Header, HEADER_LEN};
use dnsensor_core::{Observation, Segment, Transport};
use etherparse::{IpNumber, LaxIpSlice, TcpHeaderSlice, UdpHeaderSlice};

use crate::bailiwick::{Learner, ZoneTable};
use crate::defrag::{Defragmenter, FragKey, Fragment};
use crate::link::{ip_packet, LinkError, LinkType};
use crate::pairing::{PairKey, Pairer, PendingQuery};
use crate::stats::CaptureSummary;
use crate::tcp::{StreamKey, TcpLimits, TcpReassembler, TcpSegment};
use crate::TapConfig;

/// Pairing, segment choice and bailiwick: what happens to each DNS message.
struct Dns {
    pairer: Pairer,
    learner: Learner,
    zones: Arc<RwLock<ZoneTable>>,
    client_responses: bool,
    accept_unpaired: bool,
    stats: CaptureSummary,
}

/// The decoder of one shard. Not shared: each shard worker owns one.
pub struct Decoder {
    defrag: Defragmenter,
    tcp: TcpReassembler,
    dns: Dns,
    ports: Vec<u16>,
    stats: CaptureSummary,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Decoder {
    /// A decoder with `config`'s limits, divided by the shard count, learning into `zones`
    /// (shared by all shards, because a referral and the responses it explains usually travel
    /// on different flows).
    pub fn new(config: &TapConfig, zones: Arc<RwLock<ZoneTable>>) -> Decoder {
        let l = &config.limits;
        let shards = config.shards.max(1);
        Decoder {
            defrag: Defragmenter::new(
                (l.fragment_bytes / shards).max(1),
                micros(l.fragment_timeout),
            ),
            tcp: TcpReassembler::new(TcpLimits {
                max_streams: (l.tcp_streams / shards).max(1),
                max_stream_bytes: l.tcp_stream_bytes,
                max_total_bytes: (l.tcp_total_bytes / shards).max(l.tcp_stream_bytes),
                idle_us: micros(l.tcp_idle),
            }),
            dns: Dns {
                pairer: Pairer::new((l.pending_queries / shards).max(1), micros(l.query_timeout)),
                learner: Learner::default(),
                zones,
                client_responses: config.client_responses,
                accept_unpaired: config.accept_unpaired,
                stats: CaptureSummary::default(),
            },
            ports: config.ports.clone(),
            stats: CaptureSummary::default(),
        }
    }

    /// Bytes held now in fragment reassembly and in TCP reassembly.
    pub fn held_bytes(&self) -> (usize, usize) {
        (self.defrag.bytes_held(), self.tcp.bytes_held())
    }

    /// The counters gathered since the last call, reset.
    pub fn take_stats(&mut self) -> CaptureSummary {
        let mut s = std::mem::take(&mut self.stats);
        s.merge(&std::mem::take(&mut self.defrag.stats));
        s.merge(&std::mem::take(&mut self.tcp.stats));
        s.merge(&std::mem::take(&mut self.dns.pairer.stats));
        s.merge(&std::mem::take(&mut self.dns.stats));
        s
    }

    /// Decodes one captured frame seen at `ts_us` (microseconds since the epoch) and hands
    /// each response to use to `out`.
    pub fn packet(
        &mut self,
        link: LinkType,
        ts_us: u64,
        frame: &[u8],
        out: &mut dyn FnMut(Observation),
    ) {
        let ip = match ip_packet(link, frame) {
            Ok(ip) => ip,
            Err(LinkError::Short | LinkError::NotIp) => {
                self.stats.link_errors += 1;
                return;
            }
        };
        let Ok((slice, _ext_err)) = LaxIpSlice::from_slice(ip) else {
            self.stats.ip_errors += 1;
            return;
        };
        let payload = slice.payload();
        if payload.incomplete {
            self.stats.short_packets += 1;
            return;
        }
        let (src, dst) = (slice.source_addr(), slice.destination_addr());
        if !payload.fragmented {
            self.transport(payload.ip_number, src, dst, payload.payload, ts_us, out);
            return;
        }
        // A fragment: key and position from the IPv4 header or the IPv6 fragment header.
        let frag = match &slice {
            LaxIpSlice::Ipv4(v4) => {
                let h = v4.header();
                Some((
                    u32::from(h.identification()),
                    usize::from(h.fragments_offset().value()) * 8,
                    h.more_fragments(),
                    h.protocol().0,
                    h.protocol().0,
                ))
            }
            LaxIpSlice::Ipv6(v6) => v6.extensions().clone().into_iter().find_map(|e| match e {
                etherparse::Ipv6ExtensionSlice::Fragment(f) => Some((
                    f.identification(),
                    usize::from(f.fragment_offset().value()) * 8,
                    f.more_fragments(),
                    0,
                    f.next_header().0,
                )),
                _ => None,
            }),
        };
        let Some((id, offset, more, key_proto, proto)) = frag else {
            self.stats.ip_errors += 1;
            return;
        };
        let key = FragKey {
            src,
            dst,
            proto: key_proto,
            id,
        };
        let fragment = Fragment {
            offset,
            more,
            proto,
            data: payload.payload,
        };
        if let Some((proto, datagram)) = self.defrag.add(key, fragment, ts_us) {
            self.transport(IpNumber(proto), src, dst, &datagram, ts_us, out);
        }
    }

    fn transport(
        &mut self,
        proto: IpNumber,
        src: IpAddr,
        dst: IpAddr,
        data: &[u8],
        ts_us: u64,
        out: &mut dyn FnMut(Observation),
    ) {
        match proto {
            IpNumber::UDP => {
                let Ok(udp) = UdpHeaderSlice::from_slice(data) else {
                    self.stats.transport_errors += 1;
                    return;
                };
                let (sp, dp) = (udp.source_port(), udp.destination_port());
                if !self.dns_port(sp, dp) {
                    self.stats.not_dns += 1;
                    return;
                }
                // The UDP length bounds the payload (Ethernet pads short frames).
                let len = usize::from(udp.length());
                let Some(msg) = (if len >= 8 { data.get(8..len) } else { None }) else {
                    self.stats.short_packets += 1;
                    return;
                };
                let (s, d) = (SocketAddr::new(src, sp), SocketAddr::new(dst, dp));
                self.dns.message(Transport::Udp, s, d, msg, ts_us, out);
            }
            IpNumber::TCP => {
                let Ok(tcp) = TcpHeaderSlice::from_slice(data) else {
                    self.stats.transport_errors += 1;
                    return;
                };
                let (sp, dp) = (tcp.source_port(), tcp.destination_port());
                if !self.dns_port(sp, dp) {
                    self.stats.not_dns += 1;
                    return;
                }
                let payload = data.get(tcp.slice().len()..).unwrap_or(&[]);
                let (s, d) = (SocketAddr::new(src, sp), SocketAddr::new(dst, dp));
                let seg = TcpSegment {
                    seq: tcp.sequence_number(),
                    syn: tcp.syn(),
                    fin: tcp.fin(),
                    rst: tcp.rst(),
                    payload,
                };
                let dns = &mut self.dns;
                self.tcp
                    .segment(StreamKey { src: s, dst: d }, seg, ts_us, |msg| {
                        dns.message(Transport::Tcp, s, d, msg, ts_us, out);
                    });
            }
            _ => self.stats.not_dns += 1,
        }
    }

    fn dns_port(&self, a: u16, b: u16) -> bool {
        self.ports.is_empty() || self.ports.contains(&a) || self.ports.contains(&b)
    }
}

/// Where the question section (name, type, class) of `msg` lies; an empty range without one.
fn question_range(msg: &[u8], h: &Header) -> Option<(usize, usize)> {
    if h.qdcount == 0 {
        return Some((HEADER_LEN, HEADER_LEN));
    }
    let end = skip_name(msg, HEADER_LEN).ok()?.checked_add(4)?;
    (end <= msg.len()).then_some((HEADER_LEN, end))
}

impl Dns {
    fn message(
        &mut self,
        transport: Transport,
        src: SocketAddr,
        dst: SocketAddr,
        msg: &[u8],
        ts_us: u64,
        out: &mut dyn FnMut(Observation),
    ) {
        let Ok(h) = Header::parse(msg) else {
            self.stats.dns_errors += 1;
            return;
        };
        self.stats.dns_messages += 1;
        if h.opcode() != 0 {
            self.stats.other_opcode += 1;
            return;
        }
        // Client traffic (RD=1; a response copies the bit from its query) is never recorded
        // unless asked for, so it is not paired either: no copy of the query, no table entry.
        // Half of a resolver's packets are client traffic, and this is most of their cost.
        if h.recursion_desired() && !self.client_responses {
            if h.is_response() {
                self.stats.client_skipped += 1;
            } else {
                self.stats.queries += 1;
            }
            return;
        }
        let Some(question) = question_range(msg, &h) else {
            self.stats.dns_errors += 1;
            return;
        };
        let tcp = transport == Transport::Tcp;
        if !h.is_response() {
            self.stats.queries += 1;
            self.pairer.query(
                PairKey {
                    client: src,
                    server: dst,
                    id: h.id,
                    tcp,
                },
                PendingQuery {
                    time_us: ts_us,
                    query: Bytes::copy_from_slice(msg),
                    question,
                    recursion_desired: h.recursion_desired(),
                },
            );
            return;
        }
        let key = PairKey {
            client: dst,
            server: src,
            id: h.id,
            tcp,
        };
        let q_bytes = msg.get(question.0..question.1).unwrap_or(&[]);
        let (rd, query) = match self.pairer.response(&key, q_bytes, ts_us) {
            Some(p) => {
                self.stats.responses_paired += 1;
                (p.recursion_desired, Some(p.query))
            }
            None if self.accept_unpaired => {
                // RD is copied from query to response (RFC 1035 §4.1.1), so it still tells
                // the segments apart.
                self.stats.unpaired_accepted += 1;
                (h.recursion_desired(), None)
            }
            None => {
                self.stats.unsolicited += 1;
                return;
            }
        };
        let (segment, bailiwick) = if rd {
            if !self.client_responses {
                self.stats.client_skipped += 1;
                return;
            }
            (Segment::Client, None)
        } else {
            let b = self
                .learner
                .learn_and_lookup(&self.zones, src.ip(), msg, &mut self.stats);
            (Segment::Resolver, b)
        };
        self.stats.observations += 1;
        self.stats.with_bailiwick += u64::from(bailiwick.is_some());
        out(Observation {
            time: UNIX_EPOCH
                .checked_add(Duration::from_micros(ts_us))
                .unwrap_or(SystemTime::UNIX_EPOCH),
            response: Bytes::copy_from_slice(msg),
            server: Some(src),
            client: Some(dst),
            transport,
            segment,
            bailiwick,
            query,
        });
    }
}
