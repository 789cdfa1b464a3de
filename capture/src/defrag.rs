//! IPv4 and IPv6 fragment reassembly, bounded in memory and in time.
//! Large DNSSEC answers fragment; an attacker's endless fragments must only cost counted drops.

use std::net::IpAddr;

use hashbrown::HashMap;

use crate::stats::CaptureSummary;

/// Largest datagram payload an IP header can describe (without IPv6 jumbograms).
pub const MAX_DATAGRAM: usize = 65_535;
/// Most pieces one datagram may arrive in. A 64 KiB datagram at IPv6's minimum MTU of 1280 is
/// 52 fragments; more is an attack on the bookkeeping.
pub const MAX_PIECES: usize = 64;
/// Bytes charged per datagram on top of its buffer, for the table entry and its range list.
const ENTRY_OVERHEAD: usize = 128;

/// What identifies one datagram's fragments (RFC 791 / RFC 8200).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 protocol; 0 for IPv6, whose key does not include it.
    pub proto: u8,
    /// IPv4's 16-bit or IPv6's 32-bit identification.
    pub id: u32,
}

/// One fragment as the IP layer saw it.
#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    /// Offset of the data in the datagram's payload, in bytes.
    pub offset: usize,
    /// More fragments follow.
    pub more: bool,
    /// The transport protocol: IPv4's protocol field, or the IPv6 fragment header's next header
    /// (only meaningful on the first fragment).
    pub proto: u8,
    /// The fragment's data.
    pub data: &'a [u8],
}

struct Entry {
    first_seen_us: u64,
    buf: Vec<u8>,
    /// Received byte ranges, unordered; few enough that a scan is cheapest.
    ranges: Vec<(usize, usize)>,
    total: Option<usize>,
    proto: Option<u8>,
}

impl Entry {
    fn cost(&self) -> usize {
        self.buf.capacity() + ENTRY_OVERHEAD
    }

    fn complete(&self) -> bool {
        let Some(total) = self.total else {
            return false;
        };
        let covered: usize = self.ranges.iter().map(|(s, e)| e - s).sum();
        // Ranges never overlap (overlaps drop the datagram), so full coverage is a byte count.
        covered == total
    }
}

/// The reassembly table of one shard.
pub struct Defragmenter {
    table: HashMap<FragKey, Entry>,
    bytes: usize,
    max_bytes: usize,
    timeout_us: u64,
    last_sweep_us: u64,
    /// Counters since the last [`Defragmenter::take_stats`].
    pub(crate) stats: CaptureSummary,
}

impl Defragmenter {
    /// A table that holds at most `max_bytes` (buffers plus a fixed charge per datagram) and
    /// forgets a datagram `timeout_us` after its first fragment.
    pub fn new(max_bytes: usize, timeout_us: u64) -> Defragmenter {
        Defragmenter {
            table: HashMap::new(),
            bytes: 0,
            max_bytes,
            timeout_us,
            last_sweep_us: 0,
            stats: CaptureSummary::default(),
        }
    }

    /// Bytes held now.
    pub fn bytes_held(&self) -> usize {
        self.bytes
    }

    /// Datagrams in progress now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when nothing is in progress.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Adds a fragment seen at `now_us`. Returns the transport protocol and the whole payload
    /// when this fragment completes its datagram.
    pub fn add(&mut self, key: FragKey, frag: Fragment<'_>, now_us: u64) -> Option<(u8, Vec<u8>)> {
        self.stats.fragments += 1;
        self.sweep(now_us);
        let start = frag.offset;
        let end = start.saturating_add(frag.data.len());
        if end > MAX_DATAGRAM || (frag.data.is_empty() && frag.more) {
            self.stats.fragment_drops += 1;
            return None;
        }
        let mut created = false;
        let entry = self.table.entry(key).or_insert_with(|| {
            created = true;
            Entry {
                first_seen_us: now_us,
                buf: Vec::new(),
                ranges: Vec::new(),
                total: None,
                proto: None,
            }
        });
        if created {
            self.bytes += ENTRY_OVERHEAD;
        }
        let before = entry.cost();
        let mut bad = false;
        if !frag.more {
            match entry.total {
                Some(t) if t != end => bad = true,
                _ => entry.total = Some(end),
            }
        }
        if entry.total.is_some_and(|t| end > t) {
            bad = true;
        }
        if entry.ranges.contains(&(start, end)) {
            // An exact duplicate (a retransmission, or a capture on both sides of a bridge).
            self.stats.fragment_drops += 1;
            if bad {
                self.remove(&key);
            }
            return None;
        }
        if entry.ranges.iter().any(|&(s, e)| start < e && s < end)
            || entry.ranges.len() >= MAX_PIECES
        {
            bad = true;
        }
        if bad {
            self.stats.fragment_drops += 1;
            self.remove(&key);
            return None;
        }
        if start == 0 {
            entry.proto = Some(frag.proto);
        }
        if entry.buf.len() < end {
            // Exact reservation keeps the charged capacity equal to the highest offset seen.
            entry.buf.reserve_exact(end - entry.buf.len());
            entry.buf.resize(end, 0);
        }
        if let Some(dst) = entry.buf.get_mut(start..end) {
            dst.copy_from_slice(frag.data);
        }
        entry.ranges.push((start, end));
        let after = entry.cost();
        let done = entry.complete();
        self.bytes = self.bytes + after - before.min(after);
        if done {
            let entry = self.remove_entry(&key)?;
            self.stats.fragments_reassembled += 1;
            let Some(proto) = entry.proto else {
                self.stats.fragment_drops += 1;
                return None;
            };
            let mut buf = entry.buf;
            buf.truncate(entry.total.unwrap_or(0));
            return Some((proto, buf));
        }
        self.enforce_cap(&key);
        self.stats.fragment_bytes_peak = self.stats.fragment_bytes_peak.max(self.bytes as u64);
        None
    }

    fn remove_entry(&mut self, key: &FragKey) -> Option<Entry> {
        let entry = self.table.remove(key)?;
        self.bytes = self.bytes.saturating_sub(entry.cost());
        Some(entry)
    }

    fn remove(&mut self, key: &FragKey) {
        self.remove_entry(key);
    }

    /// Drops datagrams whose first fragment is older than the timeout. Runs at most once per
    /// second of packet time, so the scan is paid rarely.
    fn sweep(&mut self, now_us: u64) {
        if now_us.saturating_sub(self.last_sweep_us) < 1_000_000 {
            return;
        }
        self.last_sweep_us = now_us;
        let timeout = self.timeout_us;
        let mut freed = 0usize;
        let mut dropped = 0u64;
        self.table.retain(|_, e| {
            let keep = now_us.saturating_sub(e.first_seen_us) < timeout;
            if !keep {
                freed += e.cost();
                dropped += e.ranges.len() as u64;
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        self.stats.fragment_drops += dropped;
    }

    /// Evicts the oldest datagrams until the table fits its cap again; `current` goes last, so
    /// a datagram bigger than the whole cap is dropped rather than everything else.
    fn enforce_cap(&mut self, current: &FragKey) {
        while self.bytes > self.max_bytes {
            let victim = self
                .table
                .iter()
                .filter(|(k, _)| *k != current)
                .min_by_key(|(_, e)| e.first_seen_us)
                .map(|(k, _)| *k)
                .unwrap_or(*current);
            if let Some(e) = self.remove_entry(&victim) {
                self.stats.fragment_drops += e.ranges.len() as u64;
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: "192.0.2.1".parse().unwrap(),
            dst: "192.0.2.2".parse().unwrap(),
            proto: 17,
            id,
        }
    }

    fn frag(offset: usize, more: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            offset,
            more,
            proto: 17,
            data,
        }
    }

    #[test]
    fn reassembles_in_any_order() {
        let mut d = Defragmenter::new(1 << 20, 10_000_000);
        let data: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        assert!(d.add(key(1), frag(2400, false, &data[2400..]), 1).is_none());
        assert!(d.add(key(1), frag(0, true, &data[..1200]), 2).is_none());
        // A duplicate is ignored, not fatal.
        assert!(d.add(key(1), frag(0, true, &data[..1200]), 2).is_none());
        let (proto, out) = d
            .add(key(1), frag(1200, true, &data[1200..2400]), 3)
            .unwrap();
        assert_eq!(proto, 17);
        assert_eq!(out, data);
        assert_eq!(d.len(), 0);
        assert_eq!(d.bytes_held(), 0);
        assert_eq!(d.stats.fragments, 4);
        assert_eq!(d.stats.fragments_reassembled, 1);
        assert_eq!(d.stats.fragment_drops, 1);
    }

    #[test]
    fn overlaps_and_oversize_drop_the_datagram() {
        let mut d = Defragmenter::new(1 << 20, 10_000_000);
        assert!(d.add(key(1), frag(0, true, &[1; 16]), 1).is_none());
        assert!(d.add(key(1), frag(8, false, &[2; 16]), 1).is_none());
        assert_eq!(d.len(), 0);
        assert!(d.add(key(2), frag(65_528, true, &[1; 16]), 1).is_none());
        assert_eq!(d.len(), 0);
        assert_eq!(d.stats.fragment_drops, 2);
    }

    #[test]
    fn memory_cap_and_timeout_hold() {
        let cap = 256 * 1024;
        let mut d = Defragmenter::new(cap, 10_000_000);
        // Endless first fragments of distinct datagrams, each claiming a high offset.
        for id in 0..10_000u32 {
            d.add(key(id), frag(60_000, true, &[0; 8]), 1_000 + u64::from(id));
            assert!(d.bytes_held() <= cap, "{} > {cap}", d.bytes_held());
        }
        assert!(d.stats.fragment_bytes_peak <= cap as u64);
        assert!(d.stats.fragment_drops >= 9_990);
        // Packet time moves past the timeout: everything is forgotten.
        d.add(key(1_000_000), frag(0, true, &[0; 8]), 20_000_000);
        assert_eq!(d.len(), 1);
        assert_eq!(d.bytes_held(), 8 + ENTRY_OVERHEAD);
    }
}
