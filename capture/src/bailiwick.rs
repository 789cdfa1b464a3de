//! Bailiwick without dnstap: learns which server addresses serve which zones from referrals and
//! authoritative answers, and tells a response's zone (the longest known one holding its question).
//!
//! Nothing is seeded: the root servers are learned from priming responses like any other zone.
//! Rules, applied to paired resolver-segment responses (QUERY, NOERROR or NXDOMAIN) from server S
//! for question Q, where B is the zone S is already known to serve for Q (if any):
//! - referral (AA=0, no answers): an NS set in the authority section owned by Z, with Q at or
//!   below Z and Z strictly below B (when B is known), teaches that every glue address (A/AAAA in
//!   the additional section for one of the NS names) serves Z;
//! - authoritative answer (AA=1): an SOA in the authority section owned by Z, or an NS set in the
//!   answer section owned by Q itself (Z = Q, as in priming for `.`), with Q at or below Z and Z at
//!   or below B (when known), teaches that S serves Z; glue for an answer NS set serves Z too.
//!
//! The table is bounded: past its cap the oldest learned pair is forgotten (and counted).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::RwLock;

use bytes::Bytes;
use dnsensor_core::wire::{walk_name, Message, Section};
use hashbrown::HashMap;

use crate::stats::CaptureSummary;

const TYPE_A: u16 = 1;
const TYPE_NS: u16 = 2;
const TYPE_SOA: u16 = 6;
const TYPE_AAAA: u16 = 28;

/// True when the uncompressed, lowercase wire name `name` is `zone` or below it.
pub fn is_at_or_below(name: &[u8], zone: &[u8]) -> bool {
    let mut i = 0usize;
    loop {
        if name.get(i..) == Some(zone) {
            return true;
        }
        match name.get(i) {
            Some(&0) | None => return false,
            Some(&n) => i += 1 + usize::from(n),
        }
    }
}

/// Which zones each server address is known to serve.
#[derive(Debug, Default)]
pub struct ZoneTable {
    by_server: HashMap<IpAddr, Vec<Bytes>>,
    order: VecDeque<(IpAddr, Bytes)>,
    max: usize,
}

impl ZoneTable {
    /// An empty table of at most `max` (server, zone) pairs.
    pub fn new(max: usize) -> ZoneTable {
        ZoneTable {
            by_server: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
        }
    }

    /// (server, zone) pairs held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The longest zone that `server` is known to serve and that holds `qname` (lowercase,
    /// uncompressed wire form).
    pub fn lookup(&self, server: IpAddr, qname: &[u8]) -> Option<&Bytes> {
        self.by_server
            .get(&server)?
            .iter()
            .filter(|z| is_at_or_below(qname, z))
            .max_by_key(|z| z.len())
    }

    /// True when the pair is already known.
    pub fn contains(&self, server: IpAddr, zone: &[u8]) -> bool {
        self.by_server
            .get(&server)
            .is_some_and(|zs| zs.iter().any(|z| z.as_ref() == zone))
    }

    /// Records that `server` serves `zone`; returns true when this was new. Evictions are
    /// added to `stats`.
    pub fn insert(&mut self, server: IpAddr, zone: &[u8], stats: &mut CaptureSummary) -> bool {
        if self.contains(server, zone) {
            return false;
        }
        while self.order.len() >= self.max {
            let Some((s, z)) = self.order.pop_front() else {
                break;
            };
            if let Some(zs) = self.by_server.get_mut(&s) {
                zs.retain(|x| *x != z);
                if zs.is_empty() {
                    self.by_server.remove(&s);
                }
            }
            stats.zones_evicted += 1;
        }
        let zone = Bytes::copy_from_slice(zone);
        self.by_server.entry(server).or_default().push(zone.clone());
        self.order.push_back((server, zone));
        stats.zones_learned += 1;
        stats.zone_entries_peak = stats.zone_entries_peak.max(self.order.len() as u64);
        true
    }
}

/// Appends the name at `pos` in `msg` to `out`, lowercase and uncompressed.
fn read_name(msg: &[u8], pos: usize, out: &mut Vec<u8>) -> Option<usize> {
    let mark = out.len();
    let res = walk_name(msg, pos, |label| {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    });
    match res {
        Ok(end) => Some(end),
        Err(_) => {
            out.truncate(mark);
            None
        }
    }
}

/// The question name of `msg` (lowercase wire form) into `out`; false when there is none.
pub fn question_name(msg: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    match Message::parse(msg) {
        Ok(m) if m.header().qdcount == 1 => {
            read_name(msg, dnsensor_core::wire::HEADER_LEN, out).is_some()
        }
        _ => false,
    }
}

/// Learning state of one shard: scratch buffers reused across responses.
#[derive(Debug, Default)]
pub struct Learner {
    qname: Vec<u8>,
    name: Vec<u8>,
    /// NS targets and the zone whose NS set named them: (zone, target).
    targets: Vec<(Vec<u8>, Vec<u8>)>,
    /// (server, zone) pairs taught by the current response.
    learned: Vec<(IpAddr, Vec<u8>)>,
}

impl Learner {
    /// Learns from one response of `server` and returns the bailiwick to use for it.
    pub fn learn_and_lookup(
        &mut self,
        table: &RwLock<ZoneTable>,
        server: IpAddr,
        msg: &[u8],
        stats: &mut CaptureSummary,
    ) -> Option<Bytes> {
        if !question_name(msg, &mut self.qname) {
            return None;
        }
        let known = {
            let t = table.read().unwrap_or_else(|e| e.into_inner());
            t.lookup(server, &self.qname).cloned()
        };
        self.collect(server, msg, known.as_deref());
        if !self.learned.is_empty() {
            // Most authoritative answers repeat what is known: check under the shared lock
            // and take the exclusive one only for news.
            let t = table.read().unwrap_or_else(|e| e.into_inner());
            self.learned.retain(|(ip, zone)| !t.contains(*ip, zone));
        }
        if !self.learned.is_empty() {
            let mut t = table.write().unwrap_or_else(|e| e.into_inner());
            for (ip, zone) in &self.learned {
                t.insert(*ip, zone, stats);
            }
            return t.lookup(server, &self.qname).cloned();
        }
        known
    }

    /// Fills `self.learned` with what `msg` teaches under the module's rules.
    fn collect(&mut self, server: IpAddr, msg: &[u8], known: Option<&[u8]>) {
        self.learned.clear();
        self.targets.clear();
        let Ok(m) = Message::parse(msg) else {
            return;
        };
        let h = *m.header();
        if !h.is_response() || h.opcode() != 0 || !matches!(h.rcode(), 0 | 3) {
            return;
        }
        let aa = h.flags & 0x0400 != 0;
        let referral = !aa && h.ancount == 0;
        let qname = &self.qname;
        let below_known = |z: &[u8], strictly: bool| match known {
            None => true,
            Some(b) => is_at_or_below(z, b) && !(strictly && z == b),
        };
        for rec in m.records() {
            let Ok(rec) = rec else {
                break;
            };
            if rec.class != 1 {
                continue;
            }
            self.name.clear();
            if rec.owner.write_to(true, &mut self.name).is_err() {
                continue;
            }
            let owner = &self.name;
            match (rec.section, rec.rtype) {
                (Section::Authority, TYPE_SOA)
                    if aa && is_at_or_below(qname, owner) && below_known(owner, false) =>
                {
                    self.learned.push((server, owner.clone()));
                }
                (Section::Answer, TYPE_NS) if aa && owner == qname && below_known(owner, false) => {
                    if !self.learned.iter().any(|(s, z)| *s == server && z == owner) {
                        self.learned.push((server, owner.clone()));
                    }
                    let mut target = Vec::new();
                    if read_name(msg, rec.rdata_offset, &mut target).is_some() {
                        self.targets.push((owner.clone(), target));
                    }
                }
                (Section::Authority, TYPE_NS)
                    if referral && is_at_or_below(qname, owner) && below_known(owner, true) =>
                {
                    let mut target = Vec::new();
                    if read_name(msg, rec.rdata_offset, &mut target).is_some() {
                        self.targets.push((owner.clone(), target));
                    }
                }
                (Section::Additional, TYPE_A | TYPE_AAAA) => {
                    let ip = match rec.rdata {
                        &[a, b, c, d] if rec.rtype == TYPE_A => IpAddr::from([a, b, c, d]),
                        r if rec.rtype == TYPE_AAAA => match <[u8; 16]>::try_from(r) {
                            Ok(o) => IpAddr::from(o),
                            Err(_) => continue,
                        },
                        _ => continue,
                    };
                    for (zone, target) in &self.targets {
                        if target == owner
                            && !self.learned.iter().any(|(s, z)| *s == ip && z == zone)
                        {
                            self.learned.push((ip, zone.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn wire(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    /// A response builder: header flags, question, then (section, owner, type, rdata) records.
    fn response(flags: u16, qname: &str, qtype: u16, recs: &[(u8, &str, u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34];
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        for s in 0..3u8 {
            let n = recs.iter().filter(|r| r.0 == s).count() as u16;
            m.extend_from_slice(&n.to_be_bytes());
        }
        m.extend_from_slice(&wire(qname));
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        for s in 0..3u8 {
            for (_, owner, t, rdata) in recs.iter().filter(|r| r.0 == s) {
                m.extend_from_slice(&wire(owner));
                m.extend_from_slice(&t.to_be_bytes());
                m.extend_from_slice(&[0, 1, 0, 0, 0x0e, 0x10]);
                m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                m.extend_from_slice(rdata);
            }
        }
        m
    }

    fn soa(mname: &str) -> Vec<u8> {
        let mut r = wire(mname);
        r.extend(wire("hostmaster.invalid"));
        r.extend_from_slice(&[0; 20]);
        r
    }

    const AA: u16 = 0x8400;
    const REF: u16 = 0x8000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn learn(t: &RwLock<ZoneTable>, l: &mut Learner, server: &str, msg: &[u8]) -> Option<Vec<u8>> {
        let mut stats = CaptureSummary::default();
        l.learn_and_lookup(t, ip(server), msg, &mut stats)
            .map(|b| b.to_vec())
    }

    #[test]
    fn priming_then_referrals_then_answers() {
        let t = RwLock::new(ZoneTable::new(100));
        let mut l = Learner::default();
        // Priming: `. NS` from a root server, authoritative, with glue.
        let prime = response(
            AA,
            ".",
            2,
            &[
                (0, ".", 2, wire("a.root-servers.net")),
                (2, "a.root-servers.net", 1, vec![198, 41, 0, 4]),
            ],
        );
        assert_eq!(learn(&t, &mut l, "198.51.100.1", &prime), Some(wire(".")));
        assert_eq!(
            t.read()
                .unwrap()
                .lookup(ip("198.41.0.4"), &wire("com"))
                .unwrap()
                .as_ref(),
            &wire(".")[..]
        );
        // Root refers www.d1.com to com's servers.
        let to_com = response(
            REF,
            "www.d1.com",
            1,
            &[
                (1, "com", 2, wire("a.gtld-servers.net")),
                (2, "a.gtld-servers.net", 1, vec![192, 5, 6, 30]),
                (2, "unrelated.example", 1, vec![192, 0, 2, 99]),
            ],
        );
        assert_eq!(learn(&t, &mut l, "198.41.0.4", &to_com), Some(wire(".")));
        // com refers to d1.com's server X.
        let to_d1 = response(
            REF,
            "www.d1.com",
            1,
            &[
                (1, "d1.com", 2, wire("ns1.d1.com")),
                (
                    2,
                    "ns1.d1.com",
                    28,
                    vec![0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53],
                ),
            ],
        );
        assert_eq!(learn(&t, &mut l, "192.5.6.30", &to_d1), Some(wire("com")));
        let x = "2001:db8::53";
        let answer = response(
            AA,
            "www.d1.com",
            1,
            &[(0, "www.d1.com", 1, vec![192, 0, 2, 1])],
        );
        assert_eq!(learn(&t, &mut l, x, &answer), Some(wire("d1.com")));
        let table = t.read().unwrap();
        assert_eq!(table.len(), 4);
        assert!(table.lookup(ip("192.0.2.99"), &wire("x.com")).is_none());
    }

    #[test]
    fn soa_teaches_and_a_lower_server_cannot_claim_a_parent() {
        let t = RwLock::new(ZoneTable::new(100));
        let mut l = Learner::default();
        let nx = response(
            AA | 3,
            "nope.d1.com",
            1,
            &[(1, "d1.com", 6, soa("ns1.d1.com"))],
        );
        assert_eq!(learn(&t, &mut l, "192.0.2.53", &nx), Some(wire("d1.com")));
        // The same server now claims com. by SOA: not at or below what it is known for.
        let claim = response(AA, "www.d1.com", 1, &[(1, "com", 6, soa("evil.example"))]);
        assert_eq!(
            learn(&t, &mut l, "192.0.2.53", &claim),
            Some(wire("d1.com"))
        );
        // And it cannot refer d1.com to itself either (not strictly below).
        let self_ref = response(
            REF,
            "www.d1.com",
            1,
            &[
                (1, "d1.com", 2, wire("ns.evil")),
                (2, "ns.evil", 1, vec![192, 0, 2, 66]),
            ],
        );
        learn(&t, &mut l, "192.0.2.53", &self_ref);
        assert!(t
            .read()
            .unwrap()
            .lookup(ip("192.0.2.66"), &wire("www.d1.com"))
            .is_none());
        assert_eq!(t.read().unwrap().len(), 1);
    }

    #[test]
    fn spoofed_record_from_a_known_server_is_out_of_bailiwick() {
        let t = RwLock::new(ZoneTable::new(100));
        let mut l = Learner::default();
        let x = "192.0.2.53";
        // A referral from com's server teaches that X serves d1.com.
        let referral = response(
            REF,
            "www.d1.com",
            1,
            &[
                (1, "d1.com", 2, wire("ns1.d1.com")),
                (2, "ns1.d1.com", 1, vec![192, 0, 2, 53]),
            ],
        );
        assert_eq!(learn(&t, &mut l, "192.5.6.30", &referral), None);
        let spoof = response(
            AA,
            "www.d1.com",
            1,
            &[
                (0, "www.d1.com", 1, vec![192, 0, 2, 1]),
                (2, "www.bank.com", 1, vec![192, 0, 2, 66]),
            ],
        );
        let b = learn(&t, &mut l, x, &spoof);
        assert_eq!(b, Some(wire("d1.com")));
        // Core keeps www.d1.com and drops (and counts) www.bank.com.
        let mut ex = dnsensor_core::rrset::Extractor::new();
        let mut stats = dnsensor_core::rrset::ExtractStats::default();
        let mut owners = Vec::new();
        ex.extract(&spoof, b.as_deref(), &mut stats, |key| {
            owners.push(
                dnsensor_core::rrset::KeyView::parse(key)
                    .unwrap()
                    .owner
                    .to_vec(),
            );
        });
        assert_eq!(owners, vec![wire("www.d1.com")]);
        assert_eq!(stats.out_of_bailiwick, 1);
    }

    #[test]
    fn table_is_bounded() {
        let t = RwLock::new(ZoneTable::new(10));
        let mut stats = CaptureSummary::default();
        for i in 0..100u8 {
            t.write()
                .unwrap()
                .insert(IpAddr::from([192, 0, 2, i]), &wire("d1.com"), &mut stats);
        }
        assert_eq!(t.read().unwrap().len(), 10);
        assert_eq!(stats.zones_evicted, 90);
        assert_eq!(stats.zone_entries_peak, 10);
        assert!(t
            .read()
            .unwrap()
            .lookup(IpAddr::from([192, 0, 2, 99]), &wire("d1.com"))
            .is_some());
        assert!(t
            .read()
            .unwrap()
            .lookup(IpAddr::from([192, 0, 2, 0]), &wire("d1.com"))
            .is_none());
    }

    #[test]
    fn at_or_below() {
        assert!(is_at_or_below(&wire("www.d1.com"), &wire("d1.com")));
        assert!(is_at_or_below(&wire("d1.com"), &wire("d1.com")));
        assert!(is_at_or_below(&wire("d1.com"), &wire(".")));
        assert!(!is_at_or_below(&wire("xd1.com"), &wire("d1.com")));
        assert!(!is_at_or_below(&wire("com"), &wire("d1.com")));
    }
}
