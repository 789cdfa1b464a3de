//! The privacy stage: which records may never leave the host, and the keyed distinct-client count.
//! Filters run per record inside extraction, before anything reaches the dedup table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ring::hmac;
use ring::rand::SystemRandom;

use crate::rrset::canonical_at_or_below;

const TYPE_A: u16 = 1;
const TYPE_NS: u16 = 2;
const TYPE_CNAME: u16 = 5;
const TYPE_PTR: u16 = 12;
const TYPE_MX: u16 = 15;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_DNAME: u16 = 39;

/// Address ranges whose A/AAAA rdata is dropped by default: they address hosts inside a private
/// network (or nothing at all), so an answer holding one says something about a network, not
/// about the public DNS. Documentation ranges (RFC 5737, RFC 3849) are deliberately absent: they
/// identify no network, and the test worlds use them as stand-ins for public addresses.
pub const DEFAULT_PRIVATE_RANGES: &[&str] = &[
    "0.0.0.0/8",      // "this network", RFC 791
    "10.0.0.0/8",     // RFC 1918
    "100.64.0.0/10",  // shared address space (CGNAT), RFC 6598
    "127.0.0.0/8",    // loopback
    "169.254.0.0/16", // link-local
    "172.16.0.0/12",  // RFC 1918
    "192.0.0.0/24",   // IETF protocol assignments, RFC 6890
    "192.168.0.0/16", // RFC 1918
    "198.18.0.0/15",  // benchmarking, RFC 2544
    "224.0.0.0/4",    // multicast
    "240.0.0.0/4",    // reserved, and the limited broadcast address
    "::/128",         // unspecified
    "::1/128",        // loopback
    "::ffff:0:0/96",  // IPv4-mapped
    "64:ff9b:1::/48", // local-use NAT64, RFC 8215
    "100::/64",       // discard-only, RFC 6666
    "fc00::/7",       // unique local (ULA), RFC 4193
    "fe80::/10",      // link-local
    "fec0::/10",      // site-local (deprecated)
    "ff00::/8",       // multicast
];

/// Names under which nothing is recorded by default: suffixes reserved or widely used for
/// private networks. Reverse names of [`DEFAULT_PRIVATE_RANGES`] are dropped as well, by
/// parsing the name rather than by listing every reverse zone.
pub const DEFAULT_PRIVATE_SUFFIXES: &[&str] = &[
    "home.arpa.",
    "local.",
    "localhost.",
    "localdomain.",
    "internal.",
    "intranet.",
    "private.",
    "corp.",
    "home.",
    "lan.",
];

/// What the operator chose; turned into a [`PrivacyFilter`] by [`PrivacyFilter::new`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivacyConfig {
    /// Keep A/AAAA rdata in private ranges (off by default: they are dropped).
    pub keep_private_addresses: bool,
    /// Ranges to drop besides the defaults, as `ADDR/LEN`.
    pub drop_ranges: Vec<String>,
    /// Name suffixes to drop besides the defaults.
    pub drop_suffixes: Vec<String>,
}

/// Why a record was dropped by the privacy stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivacyDrop {
    /// An A or AAAA record whose address is in a private or special-purpose range.
    PrivateAddress,
    /// A record whose owner, or whose target name (CNAME, DNAME, NS, PTR, MX, SRV), is under a
    /// private suffix or is the reverse name of a private range.
    PrivateName,
}

/// A set of IPv4 and IPv6 prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Ranges {
    /// (network, prefix length, mask of the prefix length): the mask is kept rather than
    /// recomputed because every A and AAAA record is tested against every range.
    v4: Vec<(u32, u8, u32)>,
    v6: Vec<(u128, u8, u128)>,
}

fn mask4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl Ranges {
    fn add(&mut self, text: &str) -> Result<(), String> {
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a range: expected ADDR/LEN"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not a range: {addr:?} is not an IP address"))?;
        let len: u8 = len
            .parse()
            .map_err(|_| format!("{text:?} is not a range: bad prefix length {len:?}"))?;
        match addr {
            IpAddr::V4(a) if len <= 32 => {
                self.v4.push((u32::from(a) & mask4(len), len, mask4(len)))
            }
            IpAddr::V6(a) if len <= 128 => {
                self.v6.push((u128::from(a) & mask6(len), len, mask6(len)))
            }
            _ => return Err(format!("{text:?} is not a range: prefix length too long")),
        }
        Ok(())
    }

    /// True if the `len`-bit prefix `bits` lies inside one of the ranges (an address is a
    /// prefix of full length).
    fn covers_v4(&self, bits: u32, len: u8) -> bool {
        self.v4
            .iter()
            .any(|&(net, rlen, mask)| len >= rlen && bits & mask == net)
    }

    fn covers_v6(&self, bits: u128, len: u8) -> bool {
        self.v6
            .iter()
            .any(|&(net, rlen, mask)| len >= rlen && bits & mask == net)
    }
}

/// A necessary condition for a name to lie under one of a set of suffixes, decided with one
/// load, a multiply and a bit test instead of a suffix compare per listed name.
///
/// A name at or below a suffix ends with all of the suffix's bytes, so it ends with the same
/// last `len` bytes, where `len` is the shortest suffix's length (at most 8, so they fit a word).
/// Those tail words of the suffixes are hashed into a 64-bit set; a name whose tail word is not
/// in it is under none of them. A hit (true or a hash collision) still gets the exact check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TailFilter {
    /// Bytes compared, 0 to 8.
    len: usize,
    /// The low `len` bytes of a word.
    mask: u64,
    bits: u64,
}

impl TailFilter {
    fn new(suffixes: &[Vec<u8>]) -> TailFilter {
        let len = suffixes.iter().map(|s| s.len().min(8)).min().unwrap_or(0);
        let mut filter = TailFilter {
            len,
            mask: u64::MAX.checked_shr(64 - 8 * len as u32).unwrap_or(0),
            bits: 0,
        };
        for s in suffixes {
            if let Some(word) = filter.tail_word(s) {
                filter.bits |= Self::bit(word);
            }
        }
        filter
    }

    /// The last `len` bytes of `name` as a big-endian number, or None if it is shorter.
    #[inline]
    fn tail_word(&self, name: &[u8]) -> Option<u64> {
        if let Some(last8) = name.last_chunk::<8>() {
            // The usual case, names of 8 bytes or more: one load.
            return Some(u64::from_be_bytes(*last8) & self.mask);
        }
        let tail = name.get(name.len().checked_sub(self.len)?..)?;
        Some(tail.iter().fold(0u64, |w, &b| (w << 8) | u64::from(b)))
    }

    fn bit(word: u64) -> u64 {
        // Multiplicative hashing: the top 6 bits of the product depend on every byte.
        1 << (word.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
    }

    /// False only if `name` is under none of the suffixes the filter was built from.
    #[inline]
    fn may_match(&self, name: &[u8]) -> bool {
        if self.bits == 0 {
            return false;
        }
        // A name shorter than every suffix cannot end with one.
        match self.tail_word(name) {
            Some(word) => self.bits & Self::bit(word) != 0,
            None => false,
        }
    }
}

/// Decides per record whether it may be recorded. Built once, shared by every worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivacyFilter {
    drop_addresses: bool,
    ranges: Ranges,
    /// Lowercase uncompressed wire names.
    suffixes: Vec<Vec<u8>>,
    /// Pre-check for `suffixes`: it runs for every owner and target name, and most names are
    /// under none of the ten or so suffixes, so comparing against each of them is wasted work.
    tails: TailFilter,
}

impl PrivacyFilter {
    /// The filter for `config`: the defaults plus the operator's additions. A bad range or
    /// suffix is a one-line error naming it.
    pub fn new(config: &PrivacyConfig) -> Result<PrivacyFilter, String> {
        let mut ranges = Ranges::default();
        for r in DEFAULT_PRIVATE_RANGES
            .iter()
            .copied()
            .chain(config.drop_ranges.iter().map(String::as_str))
        {
            ranges.add(r)?;
        }
        let mut suffixes = Vec::new();
        for s in DEFAULT_PRIVATE_SUFFIXES
            .iter()
            .copied()
            .chain(config.drop_suffixes.iter().map(String::as_str))
        {
            suffixes.push(name_to_wire(s)?);
        }
        Ok(PrivacyFilter {
            drop_addresses: !config.keep_private_addresses,
            ranges,
            tails: TailFilter::new(&suffixes),
            suffixes,
        })
    }

    /// A filter that drops nothing; for tests of the record logic alone.
    pub fn none() -> PrivacyFilter {
        PrivacyFilter::default()
    }

    /// Whether one record may be recorded. `owner` is the lowercase uncompressed wire owner and
    /// `rdata` the canonical rdata (names uncompressed and lowercased), as extraction makes them.
    #[inline]
    pub fn check(&self, owner: &[u8], rtype: u16, rdata: &[u8]) -> Result<(), PrivacyDrop> {
        if self.private_name(owner) {
            return Err(PrivacyDrop::PrivateName);
        }
        match rtype {
            TYPE_A if self.drop_addresses => {
                if let Ok(octets) = <[u8; 4]>::try_from(rdata) {
                    if self.ranges.covers_v4(u32::from_be_bytes(octets), 32) {
                        return Err(PrivacyDrop::PrivateAddress);
                    }
                }
            }
            TYPE_AAAA if self.drop_addresses => {
                if let Ok(octets) = <[u8; 16]>::try_from(rdata) {
                    if self.ranges.covers_v6(u128::from_be_bytes(octets), 128) {
                        return Err(PrivacyDrop::PrivateAddress);
                    }
                }
            }
            // The target name sits after any fixed fields: none, MX preference, SRV fields.
            TYPE_CNAME | TYPE_DNAME | TYPE_NS | TYPE_PTR | TYPE_MX | TYPE_SRV => {
                let skip = match rtype {
                    TYPE_MX => 2,
                    TYPE_SRV => 6,
                    _ => 0,
                };
                if rdata.get(skip..).is_some_and(|n| self.private_name(n)) {
                    return Err(PrivacyDrop::PrivateName);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// True for a name under a private suffix, or the reverse name of (a part of) a private range.
    fn private_name(&self, name: &[u8]) -> bool {
        if self.tails.may_match(name)
            && self
                .suffixes
                .iter()
                .any(|s| name.len() >= s.len() && canonical_at_or_below(name, s))
        {
            return true;
        }
        // Only reverse names need parsing; every other name ends in a different last label.
        if !name.ends_with(b"\x04arpa\x00") {
            return false;
        }
        match reverse_prefix(name) {
            Some(ReversePrefix::V4(bits, len)) => len > 0 && self.ranges.covers_v4(bits, len),
            Some(ReversePrefix::V6(bits, len)) => len > 0 && self.ranges.covers_v6(bits, len),
            None => false,
        }
    }
}

/// The address prefix a reverse-mapping name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReversePrefix {
    V4(u32, u8),
    V6(u128, u8),
}

/// Parses `…in-addr.arpa.` and `…ip6.arpa.` names into the prefix they denote: the octets or
/// nibbles read from the right until the first label that is not one (RFC 2317 classless labels
/// such as `0/25` end the prefix there).
fn reverse_prefix(name: &[u8]) -> Option<ReversePrefix> {
    let mut labels: [&[u8]; 40] = [&[]; 40];
    let mut n = 0;
    let mut pos = 0;
    while let Some(&len) = name.get(pos) {
        if len == 0 {
            break;
        }
        let label = name.get(pos + 1..pos + 1 + usize::from(len))?;
        // Reverse names have at most 34 labels; anything longer is not one.
        *labels.get_mut(n)? = label;
        n += 1;
        pos += 1 + usize::from(len);
    }
    let labels = &labels[..n];
    match labels {
        [rest @ .., b"in-addr", b"arpa"] => {
            let mut bits = 0u32;
            let mut len = 0u8;
            for label in rest.iter().rev().take(4) {
                let text = std::str::from_utf8(label).ok()?;
                let Some(octet) = text
                    .parse::<u8>()
                    .ok()
                    .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
                else {
                    break;
                };
                bits |= u32::from(octet) << (24 - len);
                len += 8;
            }
            Some(ReversePrefix::V4(bits, len))
        }
        [rest @ .., b"ip6", b"arpa"] => {
            let mut bits = 0u128;
            let mut len = 0u8;
            for label in rest.iter().rev().take(32) {
                let nibble = match label {
                    [c] => match (*c as char).to_digit(16) {
                        Some(d) => d as u128,
                        None => break,
                    },
                    _ => break,
                };
                bits |= nibble << (124 - len);
                len += 4;
            }
            Some(ReversePrefix::V6(bits, len))
        }
        _ => None,
    }
}

/// A presentation name (`home.arpa.`, trailing dot optional) as a lowercase wire name.
fn name_to_wire(text: &str) -> Result<Vec<u8>, String> {
    let trimmed = text.strip_suffix('.').unwrap_or(text);
    let mut wire = Vec::with_capacity(trimmed.len() + 2);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|&l| (1..=63).contains(&l))
                .ok_or_else(|| format!("{text:?} is not a domain name: bad label {label:?}"))?;
            wire.push(len);
            wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    wire.push(0);
    if wire.len() > 255 {
        return Err(format!(
            "{text:?} is not a domain name: longer than 255 octets"
        ));
    }
    Ok(wire)
}

/// A keyed hash of client addresses, for counting distinct clients without keeping who they
/// were. The key is random, lives in memory only, and is replaced every 24 h by the pipeline.
#[derive(Clone)]
pub struct ClientHasher {
    key: Arc<hmac::Key>,
}

impl std::fmt::Debug for ClientHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientHasher(key hidden)")
    }
}

impl ClientHasher {
    /// A hasher with a fresh random key; None only if the system's random source fails.
    pub fn generate() -> Option<ClientHasher> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).ok()?;
        Some(ClientHasher { key: Arc::new(key) })
    }

    /// The first 64 bits of HMAC-SHA-256 over the address's octets. Only counts of distinct
    /// values ever leave the pipeline, never a value itself.
    pub fn hash(&self, client: IpAddr) -> u64 {
        let tag = match client {
            IpAddr::V4(a) => hmac::sign(&self.key, &Ipv4Addr::octets(&a)),
            IpAddr::V6(a) => hmac::sign(&self.key, &Ipv6Addr::octets(&a)),
        };
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_be_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> PrivacyFilter {
        PrivacyFilter::new(&PrivacyConfig::default()).unwrap()
    }

    fn w(name: &str) -> Vec<u8> {
        name_to_wire(name).unwrap()
    }

    fn a(ip: &str) -> Vec<u8> {
        match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    #[test]
    fn private_and_special_addresses_are_dropped() {
        let f = filter();
        let owner = w("www.example.com.");
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.53.1.3",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.1.2.3",
            "224.0.0.251",
            "255.255.255.255",
        ] {
            assert_eq!(
                f.check(&owner, TYPE_A, &a(ip)),
                Err(PrivacyDrop::PrivateAddress),
                "{ip}"
            );
        }
        for ip in [
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:8.8.8.8",
            "ff02::1",
            "::",
        ] {
            assert_eq!(
                f.check(&owner, TYPE_AAAA, &a(ip)),
                Err(PrivacyDrop::PrivateAddress),
                "{ip}"
            );
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.2.1",
            "198.51.100.7",
        ] {
            assert_eq!(f.check(&owner, TYPE_A, &a(ip)), Ok(()), "{ip}");
        }
        for ip in ["2001:db8::1", "2a00:1450::1"] {
            assert_eq!(f.check(&owner, TYPE_AAAA, &a(ip)), Ok(()), "{ip}");
        }
        // The range filter reads A/AAAA only; other types of the same length are not addresses.
        assert_eq!(f.check(&owner, 99, &a("10.0.0.1")), Ok(()));
    }

    #[test]
    fn keep_private_addresses_turns_the_range_filter_off_but_not_the_names() {
        let f = PrivacyFilter::new(&PrivacyConfig {
            keep_private_addresses: true,
            ..PrivacyConfig::default()
        })
        .unwrap();
        assert_eq!(f.check(&w("x.com."), TYPE_A, &a("10.0.0.1")), Ok(()));
        assert_eq!(
            f.check(&w("nas.home.arpa."), TYPE_A, &a("8.8.8.8")),
            Err(PrivacyDrop::PrivateName)
        );
    }

    #[test]
    fn names_under_private_suffixes_are_dropped_at_label_boundaries() {
        let f = PrivacyFilter::new(&PrivacyConfig {
            drop_suffixes: vec!["Corp.Example.NET".into()],
            ..PrivacyConfig::default()
        })
        .unwrap();
        let ip = a("8.8.8.8");
        for name in [
            "printer.home.arpa.",
            "home.arpa.",
            "mbp.local.",
            "db.internal.",
            "x.y.corp.example.net.",
            "corp.example.net.",
        ] {
            assert_eq!(
                f.check(&w(name), TYPE_A, &ip),
                Err(PrivacyDrop::PrivateName),
                "{name}"
            );
        }
        for name in [
            "homearpa.com.",
            "notlocal.",
            "local.example.com.",
            "xcorp.example.net.",
        ] {
            assert_eq!(f.check(&w(name), TYPE_A, &ip), Ok(()), "{name}");
        }
    }

    #[test]
    fn target_names_count_too() {
        let f = filter();
        let owner = w("www.example.com.");
        assert_eq!(
            f.check(&owner, TYPE_CNAME, &w("host.corp.")),
            Err(PrivacyDrop::PrivateName)
        );
        let mut mx = vec![0, 10];
        mx.extend(w("mail.lan."));
        assert_eq!(f.check(&owner, TYPE_MX, &mx), Err(PrivacyDrop::PrivateName));
        let mut srv = vec![0, 0, 0, 5, 0x13, 0xc4];
        srv.extend(w("sip.internal."));
        assert_eq!(
            f.check(&owner, TYPE_SRV, &srv),
            Err(PrivacyDrop::PrivateName)
        );
        assert_eq!(f.check(&owner, TYPE_CNAME, &w("cdn.example.net.")), Ok(()));
    }

    #[test]
    fn reverse_names_of_private_ranges_are_dropped() {
        let f = filter();
        let ptr = w("host.example.com.");
        for name in [
            "1.1.168.192.in-addr.arpa.",
            "168.192.in-addr.arpa.",
            "10.in-addr.arpa.",
            "5.20.172.in-addr.arpa.",
            "1.0.0.127.in-addr.arpa.",
            "65.100.in-addr.arpa.",
            "0/25.2.168.192.in-addr.arpa.",
            "d.f.ip6.arpa.",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
            "0.8.e.f.ip6.arpa.",
        ] {
            assert_eq!(
                f.check(&w(name), TYPE_PTR, &ptr),
                Err(PrivacyDrop::PrivateName),
                "{name}"
            );
        }
        for name in [
            "8.8.8.8.in-addr.arpa.",
            "172.in-addr.arpa.",
            "in-addr.arpa.",
            "2.0.192.in-addr.arpa.",
            "8.b.d.0.1.0.0.2.ip6.arpa.",
            "ip6.arpa.",
            "f.ip6.arpa.",
        ] {
            assert_eq!(f.check(&w(name), TYPE_PTR, &ptr), Ok(()), "{name}");
        }
    }

    /// A wire name from labels drawn over a small alphabet, so that suffixes do match often.
    fn name_from(labels: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in labels {
            out.push(l.len() as u8);
            out.extend_from_slice(l);
        }
        out.push(0);
        out
    }

    fn labels() -> impl proptest::strategy::Strategy<Value = Vec<Vec<u8>>> {
        use proptest::prelude::*;
        let label = proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(4u8)], 1..4);
        proptest::collection::vec(label, 0..5)
    }

    proptest::proptest! {
        /// The tail pre-check never hides a match: with it, names are judged exactly as by
        /// comparing against every suffix.
        #[test]
        fn tail_filter_agrees_with_the_full_suffix_scan(
            name in labels(),
            suffixes in proptest::collection::vec(labels(), 0..4),
            defaults in proptest::prelude::any::<bool>(),
        ) {
            let mut f = if defaults { filter() } else { PrivacyFilter::none() };
            f.suffixes.extend(suffixes.iter().map(|s| name_from(s)));
            f.tails = TailFilter::new(&f.suffixes);
            // The same filter with a pre-check that lets everything through: the full scan.
            let full = PrivacyFilter {
                tails: TailFilter { len: 0, mask: 0, bits: u64::MAX },
                ..f.clone()
            };
            let name = name_from(&name);
            proptest::prop_assert_eq!(f.private_name(&name), full.private_name(&name));
            // Bytes that are not a name at all are judged alike too.
            let mut raw = name.clone();
            raw.insert(0, 0xC0);
            proptest::prop_assert_eq!(f.private_name(&raw), full.private_name(&raw));
        }
    }

    #[test]
    fn bad_configuration_is_a_clear_error() {
        let err = |c: PrivacyConfig| PrivacyFilter::new(&c).unwrap_err();
        assert_eq!(
            err(PrivacyConfig {
                drop_ranges: vec!["10.0.0.0".into()],
                ..Default::default()
            }),
            "\"10.0.0.0\" is not a range: expected ADDR/LEN"
        );
        assert_eq!(
            err(PrivacyConfig {
                drop_ranges: vec!["10.0.0.0/33".into()],
                ..Default::default()
            }),
            "\"10.0.0.0/33\" is not a range: prefix length too long"
        );
        assert_eq!(
            err(PrivacyConfig {
                drop_suffixes: vec!["a..b".into()],
                ..Default::default()
            }),
            "\"a..b\" is not a domain name: bad label \"\""
        );
    }

    #[test]
    fn client_hashes_are_keyed() {
        let one = ClientHasher::generate().unwrap();
        let two = ClientHasher::generate().unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.hash(ip), one.hash(ip));
        assert_ne!(one.hash(ip), two.hash(ip));
        assert_ne!(one.hash(ip), one.hash("127.0.0.2".parse().unwrap()));
        assert_eq!(format!("{one:?}"), "ClientHasher(key hidden)");
    }
}
