//! Link layers: from a captured frame to the IP packet inside it.
//! Ethernet (with 802.1Q / 802.1ad tags), Linux cooked SLL and SLL2, raw IP and BSD null/loopback.

use etherparse::{
    EtherType, Ethernet2HeaderSlice, LinuxSllHeaderSlice, LinuxSllProtocolType,
    SingleVlanHeaderSlice,
};

/// The link types the tap understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// DLT_EN10MB: Ethernet II, with any number (up to [`MAX_VLAN_TAGS`]) of VLAN tags.
    Ethernet,
    /// DLT_LINUX_SLL: Linux cooked capture v1 (`-i any` on older libpcap).
    LinuxSll,
    /// DLT_LINUX_SLL2: Linux cooked capture v2 (`-i any` on libpcap ≥ 1.10).
    LinuxSll2,
    /// DLT_RAW / LINKTYPE_RAW and LINKTYPE_IPV4 / LINKTYPE_IPV6: the frame is the IP packet.
    RawIp,
    /// DLT_NULL: a 4-byte address family in the *capturing host's* byte order.
    Null,
    /// DLT_LOOP: a 4-byte address family in network byte order (OpenBSD).
    Loop,
}

/// Most VLAN tags peeled off one Ethernet frame; more is not a real network.
pub const MAX_VLAN_TAGS: usize = 4;

impl LinkType {
    /// The link type for a libpcap DLT value, or None when the tap does not support it.
    ///
    /// DLT_RAW is 12 on most systems and 14 on some BSDs; libpcap hands out 101
    /// (LINKTYPE_RAW) unmapped in a few versions, so all three are accepted.
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        Some(match dlt {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            _ => return None,
        })
    }
}

/// Why a frame yielded no IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// The frame ends inside the link header.
    Short,
    /// The frame carries something other than IPv4 or IPv6 (ARP, LLDP, too many tags …).
    NotIp,
}

/// The IP packet inside `frame`.
pub fn ip_packet(link: LinkType, frame: &[u8]) -> Result<&[u8], LinkError> {
    match link {
        LinkType::RawIp => Ok(frame),
        LinkType::Ethernet => {
            let eth = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| LinkError::Short)?;
            let rest = frame.get(eth.slice().len()..).ok_or(LinkError::Short)?;
            after_ether_type(eth.ether_type(), rest)
        }
        LinkType::LinuxSll => {
            let sll = LinuxSllHeaderSlice::from_slice(frame).map_err(|_| LinkError::Short)?;
            let rest = frame.get(sll.slice().len()..).ok_or(LinkError::Short)?;
            match sll.protocol_type() {
                LinuxSllProtocolType::EtherType(t) => after_ether_type(t, rest),
                _ => Err(LinkError::NotIp),
            }
        }
        LinkType::LinuxSll2 => {
            // etherparse has no SLL2. Its 20-byte header: protocol (BE16), reserved (2),
            // interface index (4), ARPHRD type (2), packet type (1), address length (1),
            // address (8). Only the protocol matters here.
            let proto = frame.get(0..2).ok_or(LinkError::Short)?;
            let rest = frame.get(20..).ok_or(LinkError::Short)?;
            after_ether_type(EtherType(u16::from_be_bytes([proto[0], proto[1]])), rest)
        }
        LinkType::Null | LinkType::Loop => {
            let af: [u8; 4] = frame
                .get(0..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(LinkError::Short)?;
            let family = if link == LinkType::Loop {
                u32::from_be_bytes(af)
            } else {
                // The writer's byte order is unknown: families are small numbers, so the
                // order that gives one is the right one.
                let le = u32::from_le_bytes(af);
                if le <= 0xFFFF {
                    le
                } else {
                    u32::from_be_bytes(af)
                }
            };
            let rest = frame.get(4..).ok_or(LinkError::Short)?;
            match family {
                // AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD/OpenBSD), 28 (FreeBSD),
                // 30 (macOS) or 10 (Linux).
                2 => Ok(rest),
                10 | 24 | 28 | 30 => Ok(rest),
                _ => Err(LinkError::NotIp),
            }
        }
    }
}

/// Peels VLAN tags and returns the IP packet for an IPv4 or IPv6 ether type.
fn after_ether_type(mut ether_type: EtherType, mut rest: &[u8]) -> Result<&[u8], LinkError> {
    for _ in 0..=MAX_VLAN_TAGS {
        match ether_type {
            EtherType::IPV4 | EtherType::IPV6 => return Ok(rest),
            EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME => {
                let tag = SingleVlanHeaderSlice::from_slice(rest).map_err(|_| LinkError::Short)?;
                ether_type = tag.ether_type();
                rest = rest.get(tag.slice().len()..).ok_or(LinkError::Short)?;
            }
            _ => return Err(LinkError::NotIp),
        }
    }
    Err(LinkError::NotIp)
}

/// A hash of the unordered pair of IP addresses of `ip`, so that both directions of a flow and
/// every fragment of a datagram land on one shard. Non-IP gives 0.
pub fn flow_hash(ip: &[u8], hasher: &foldhash::fast::FixedState) -> u64 {
    use std::hash::BuildHasher;
    let (a, b) = match ip.first().map(|v| v >> 4) {
        Some(4) => (ip.get(12..16), ip.get(16..20)),
        Some(6) => (ip.get(8..24), ip.get(24..40)),
        _ => (None, None),
    };
    match (a, b) {
        (Some(a), Some(b)) => {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            hasher.hash_one((lo, hi))
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: [u8; 4] = [0x45, 0, 0, 20];

    fn with(prefix: &[u8]) -> Vec<u8> {
        let mut v = prefix.to_vec();
        v.extend_from_slice(&IP);
        v
    }

    #[test]
    fn ethernet_with_tags() {
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x88, 0xA8, 0, 10, 0x81, 0x00, 0, 20, 0x08, 0x00]);
        assert_eq!(ip_packet(LinkType::Ethernet, &with(&eth)), Ok(&IP[..]));
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        assert_eq!(
            ip_packet(LinkType::Ethernet, &with(&arp)),
            Err(LinkError::NotIp)
        );
        assert_eq!(
            ip_packet(LinkType::Ethernet, &eth[..15]),
            Err(LinkError::Short)
        );
        let mut many = vec![0u8; 12];
        for _ in 0..=MAX_VLAN_TAGS {
            many.extend_from_slice(&[0x81, 0x00, 0, 1]);
        }
        many.extend_from_slice(&[0x08, 0x00]);
        assert_eq!(
            ip_packet(LinkType::Ethernet, &with(&many)),
            Err(LinkError::NotIp)
        );
    }

    #[test]
    fn null_in_both_byte_orders_and_loop() {
        assert_eq!(ip_packet(LinkType::Null, &with(&[2, 0, 0, 0])), Ok(&IP[..]));
        assert_eq!(
            ip_packet(LinkType::Null, &with(&[0, 0, 0, 30])),
            Ok(&IP[..])
        );
        assert_eq!(
            ip_packet(LinkType::Loop, &with(&[0, 0, 0, 24])),
            Ok(&IP[..])
        );
        assert_eq!(
            ip_packet(LinkType::Loop, &with(&[2, 0, 0, 0])),
            Err(LinkError::NotIp)
        );
        assert_eq!(ip_packet(LinkType::Null, &[2, 0]), Err(LinkError::Short));
    }

    #[test]
    fn sll2_by_hand() {
        let mut h = vec![0x86, 0xDD];
        h.resize(20, 0);
        assert_eq!(ip_packet(LinkType::LinuxSll2, &with(&h)), Ok(&IP[..]));
        assert_eq!(
            ip_packet(LinkType::LinuxSll2, &h[..19]),
            Err(LinkError::Short)
        );
    }

    #[test]
    fn unknown_dlt_is_none() {
        assert_eq!(LinkType::from_dlt(105), None);
        assert_eq!(LinkType::from_dlt(276), Some(LinkType::LinuxSll2));
    }

    #[test]
    fn flow_hash_is_symmetric() {
        let h = foldhash::fast::FixedState::with_seed(1);
        let mut a = vec![0x45u8; 20];
        a[12..16].copy_from_slice(&[1, 2, 3, 4]);
        a[16..20].copy_from_slice(&[5, 6, 7, 8]);
        let mut b = a.clone();
        b[12..16].copy_from_slice(&[5, 6, 7, 8]);
        b[16..20].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(flow_hash(&a, &h), flow_hash(&b, &h));
        assert_ne!(flow_hash(&a, &h), 0);
    }
}
