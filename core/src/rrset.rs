//! RRset extraction: turns one response message into canonical RRset keys, checked against the bailiwick.
//! The key is compact bytes so the dedup table can hash and compare it without building structures.

use crate::privacy::{PrivacyDrop, PrivacyFilter};
use crate::wire::{self, Message, WireError};

/// RR type OPT (EDNS), never recorded.
pub const TYPE_OPT: u16 = 41;
/// RR type TKEY, never recorded.
pub const TYPE_TKEY: u16 = 249;
/// RR type TSIG, never recorded.
pub const TYPE_TSIG: u16 = 250;
/// RR type RRSIG, whose sets are split by the type they cover.
pub const TYPE_RRSIG: u16 = 46;
/// Class IN, the only class recorded.
pub const CLASS_IN: u16 = 1;

/// Counters for what extraction saw and threw away. Added up by the caller.
///
/// For one call: `records == out_of_bailiwick + private_address + private_name + (records that
/// went into emitted sets)`, and
/// `malformed <= messages`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExtractStats {
    /// Messages handed to [`Extractor::extract`], malformed ones included.
    pub messages: u64,
    /// Messages with any damage (a bad header, not a response, a bad record, broken framing).
    pub malformed: u64,
    /// Good resource records seen (after skipping OPT/TSIG/TKEY and non-IN classes), in or out of bailiwick.
    pub records: u64,
    /// Records dropped because their own bytes were bad (the rest of the message was kept).
    pub bad_records: u64,
    /// Records dropped because their owner is not at or below the bailiwick.
    pub out_of_bailiwick: u64,
    /// Records never recorded by rule: OPT, TSIG, TKEY and classes other than IN.
    pub skipped: u64,
    /// RRsets emitted.
    pub rrsets: u64,
    /// Records dropped by the privacy stage: A/AAAA in a private or special-purpose range.
    pub private_address: u64,
    /// Records dropped by the privacy stage: a private name as owner or target.
    pub private_name: u64,
}

impl ExtractStats {
    /// Records dropped by the privacy stage, whatever the reason.
    pub fn private_dropped(&self) -> u64 {
        self.private_address + self.private_name
    }

    /// Good records that passed the bailiwick check and the privacy stage.
    pub fn records_kept(&self) -> u64 {
        self.records
            .saturating_sub(self.out_of_bailiwick)
            .saturating_sub(self.private_dropped())
    }

    /// Adds another set of counters to this one.
    pub fn add(&mut self, other: &ExtractStats) {
        self.messages += other.messages;
        self.malformed += other.malformed;
        self.records += other.records;
        self.bad_records += other.bad_records;
        self.out_of_bailiwick += other.out_of_bailiwick;
        self.skipped += other.skipped;
        self.rrsets += other.rrsets;
        self.private_address += other.private_address;
        self.private_name += other.private_name;
    }
}

/// A parsed view of a canonical RRset key.
///
/// Layout (integers big-endian):
/// owner (uncompressed lowercase wire name) · type u16 · class u16 ·
/// bailiwick flag u8 (0 unknown, 1 known) [· bailiwick wire name] ·
/// rdata count u16 · count × (length u16 · canonical rdata), sorted bytewise, no duplicates.
///
/// The bailiwick name is lowercased too, so the same set seen under differently spelled zones
/// is one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyView<'a> {
    /// Owner name, uncompressed lowercase wire form.
    pub owner: &'a [u8],
    /// RR type.
    pub rtype: u16,
    /// RR class (always IN for keys made by [`Extractor`]).
    pub class: u16,
    /// The zone the records were checked against, uncompressed lowercase wire form, when known.
    pub bailiwick: Option<&'a [u8]>,
    /// Number of rdatas in the set (at least 1 for keys made by [`Extractor`]).
    pub rdata_count: u16,
    rdatas: &'a [u8],
}

/// The wire name at the start of `buf`, if it is a valid uncompressed name with no uppercase ASCII.
fn lowercase_name_prefix(buf: &[u8]) -> Option<&[u8]> {
    let len = wire::uncompressed_name_len(buf).ok()?;
    let name = buf.get(..len)?;
    // Length octets are at most 63, below b'A', so only label bytes can match.
    (!name.iter().any(u8::is_ascii_uppercase)).then_some(name)
}

/// Splits one `length u16 · bytes` item off the front of `buf`.
fn split_rdata(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = buf.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    (len <= rest.len()).then(|| rest.split_at(len))
}

impl<'a> KeyView<'a> {
    /// Parses a key made by [`Extractor`]; `None` if it is not one.
    ///
    /// Strict on purpose: names must be valid and lowercase, rdatas strictly increasing (sorted,
    /// no duplicates) and the key must end right after the last one, so a `Some` proves the
    /// extractor's invariants held for this key.
    pub fn parse(key: &'a [u8]) -> Option<KeyView<'a>> {
        Self::parse_checked(key, true)
    }

    /// Parses a key this process's [`Extractor`] built, checking structure and bounds but not
    /// again the invariants the extractor guarantees (lowercase names, sorted rdatas): the
    /// flusher reads every key once, and the repeated checks showed in its profile.
    pub fn parse_built(key: &'a [u8]) -> Option<KeyView<'a>> {
        Self::parse_checked(key, false)
    }

    fn parse_checked(key: &'a [u8], strict: bool) -> Option<KeyView<'a>> {
        let name_prefix = |buf: &'a [u8]| -> Option<&'a [u8]> {
            if strict {
                lowercase_name_prefix(buf)
            } else {
                buf.get(..wire::uncompressed_name_len(buf).ok()?)
            }
        };
        let owner = name_prefix(key)?;
        let rest = key.get(owner.len()..)?;
        let (fixed, rest) = rest.split_first_chunk::<5>()?;
        let [t0, t1, c0, c1, flag] = *fixed;
        let (bailiwick, rest) = match flag {
            0 => (None, rest),
            1 => {
                let zone = name_prefix(rest)?;
                (Some(zone), rest.get(zone.len()..)?)
            }
            _ => return None,
        };
        let (count, rdatas) = rest.split_first_chunk::<2>()?;
        let rdata_count = u16::from_be_bytes(*count);
        let mut cur = rdatas;
        let mut prev: Option<&[u8]> = None;
        for _ in 0..rdata_count {
            let (rdata, next) = split_rdata(cur)?;
            if strict && prev.is_some_and(|p| p >= rdata) {
                return None;
            }
            prev = Some(rdata);
            cur = next;
        }
        if !cur.is_empty() {
            return None;
        }
        Some(KeyView {
            owner,
            rtype: u16::from_be_bytes([t0, t1]),
            class: u16::from_be_bytes([c0, c1]),
            bailiwick,
            rdata_count,
            rdatas,
        })
    }

    /// The canonical rdata of each record in the set, in key order.
    pub fn rdatas(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut cur = self.rdatas;
        std::iter::from_fn(move || {
            let (rdata, next) = split_rdata(cur)?;
            cur = next;
            Some(rdata)
        })
    }
}

/// One good, in-bailiwick record of the current message; its bytes live in the arena.
#[derive(Debug, Clone, Copy)]
struct Entry {
    owner_start: usize,
    /// End of the owner and start of the rdata.
    rdata_start: usize,
    rdata_end: usize,
    rtype: u16,
    class: u16,
    /// The covered type for RRSIG, so that signatures over different types are separate sets.
    cover: u16,
}

impl Entry {
    fn owner<'b>(&self, arena: &'b [u8]) -> &'b [u8] {
        arena.get(self.owner_start..self.rdata_start).unwrap_or(&[])
    }

    fn rdata<'b>(&self, arena: &'b [u8]) -> &'b [u8] {
        arena.get(self.rdata_start..self.rdata_end).unwrap_or(&[])
    }

    fn group<'b>(&self, arena: &'b [u8]) -> (&'b [u8], u16, u16, u16) {
        (self.owner(arena), self.rtype, self.class, self.cover)
    }

    /// What orders two entries before their owners' bytes: type, covered type, class and the
    /// owner's length.
    fn sort_prefix(&self) -> (u16, u16, u16, usize) {
        (
            self.rtype,
            self.cover,
            self.class,
            self.rdata_start - self.owner_start,
        )
    }
}

/// Reusable extraction state: holds scratch buffers so a message costs no allocation once warm.
#[derive(Debug, Default)]
pub struct Extractor {
    /// Canonical owner and rdata of every kept record of the current message, back to back.
    arena: Vec<u8>,
    entries: Vec<Entry>,
    /// The key being built for `emit`.
    key: Vec<u8>,
    /// The current message's bailiwick, lowercased.
    zone: Vec<u8>,
    /// The privacy stage's per-record filter.
    privacy: PrivacyFilter,
}

impl Extractor {
    /// An extractor with empty scratch buffers; they grow to the largest message seen and stay.
    pub fn new() -> Self {
        Self::default()
    }

    /// An extractor that also drops what `privacy` forbids, counting each drop by reason.
    /// [`Extractor::new`] drops nothing on privacy grounds.
    pub fn with_privacy(privacy: PrivacyFilter) -> Self {
        Extractor {
            privacy,
            ..Self::default()
        }
    }

    /// Replaces the privacy filter (a reload); the scratch buffers stay.
    pub fn set_privacy(&mut self, privacy: PrivacyFilter) {
        self.privacy = privacy;
    }

    /// Walks `response` and calls `emit` once per RRset with its canonical key.
    /// `bailiwick` is an uncompressed wire name; records outside it are dropped and counted.
    ///
    /// Every call counts in `stats.messages`, and at most once in `stats.malformed`. A message that
    /// is not a response (QR=0) counts as malformed and is not walked: sources hand in only
    /// responses, so a query here is a source bug or forged traffic, and an operator should see it
    /// rather than have it vanish. A record with bad rdata is skipped alone; broken framing ends
    /// the walk but the records before it are still emitted. A bailiwick that is not a valid wire
    /// name drops every record as out of bailiwick, since nothing can be shown to be inside it.
    pub fn extract<F: FnMut(&[u8])>(
        &mut self,
        response: &[u8],
        bailiwick: Option<&[u8]>,
        stats: &mut ExtractStats,
        mut emit: F,
    ) {
        stats.messages += 1;
        let Extractor {
            arena,
            entries,
            key,
            zone,
            privacy,
        } = self;
        arena.clear();
        entries.clear();
        zone.clear();

        // Shorter than a header, or a query (QR=0): malformed, see above. A query is counted rather
        // than ignored because sources only hand in responses, so one here means something is off.
        let msg = match Message::parse(response) {
            Ok(m) if m.header().is_response() => m,
            _ => {
                stats.malformed += 1;
                return;
            }
        };
        let zone_ok = match bailiwick {
            None => true,
            Some(z) => match wire::uncompressed_name_len(z) {
                Ok(n) if n == z.len() => {
                    zone.extend(z.iter().map(u8::to_ascii_lowercase));
                    true
                }
                _ => false,
            },
        };

        let mut damaged = false;
        let mut records = msg.records();
        loop {
            let owner_start = arena.len();
            // The walk that checks each owner also writes it into the arena: owners were the
            // largest item of the worker's profile when they were walked twice.
            let Some(item) = records.next_with_owner(arena) else {
                break;
            };
            let Ok(rec) = item else {
                damaged = true;
                break;
            };
            if matches!(rec.rtype, TYPE_OPT | TYPE_TSIG | TYPE_TKEY) || rec.class != CLASS_IN {
                arena.truncate(owner_start);
                stats.skipped += 1;
                continue;
            }
            let rdata_start = arena.len();
            let canonical =
                canonical_rdata(msg.bytes(), rec.rtype, rec.rdata_offset, rec.rdata, arena);
            if canonical.is_err() {
                arena.truncate(owner_start);
                stats.bad_records += 1;
                damaged = true;
                continue;
            }
            stats.records += 1;
            if bailiwick.is_some() {
                let owner = arena.get(owner_start..rdata_start).unwrap_or(&[]);
                if !zone_ok || !canonical_at_or_below(owner, zone) {
                    arena.truncate(owner_start);
                    stats.out_of_bailiwick += 1;
                    continue;
                }
            }
            let verdict = privacy.check(
                arena.get(owner_start..rdata_start).unwrap_or(&[]),
                rec.rtype,
                arena.get(rdata_start..).unwrap_or(&[]),
            );
            if let Err(reason) = verdict {
                arena.truncate(owner_start);
                match reason {
                    PrivacyDrop::PrivateAddress => stats.private_address += 1,
                    PrivacyDrop::PrivateName => stats.private_name += 1,
                }
                continue;
            }
            let cover = match (rec.rtype, arena.get(rdata_start..)) {
                (TYPE_RRSIG, Some([a, b, ..])) => u16::from_be_bytes([*a, *b]),
                _ => 0,
            };
            entries.push(Entry {
                owner_start,
                rdata_start,
                rdata_end: arena.len(),
                rtype: rec.rtype,
                class: rec.class,
                cover,
            });
        }
        if damaged {
            stats.malformed += 1;
        }

        let arena = &*arena;
        // Groups only need to end up together, in any order, and each group's rdatas in byte
        // order (the key's canonical form). So the numbers go first: most pairs of records
        // differ in type or owner length and are ordered without reading the arena.
        entries.sort_unstable_by(|a, b| {
            a.sort_prefix()
                .cmp(&b.sort_prefix())
                .then_with(|| a.owner(arena).cmp(b.owner(arena)))
                .then_with(|| a.rdata(arena).cmp(b.rdata(arena)))
        });
        let zone = bailiwick.map(|_| zone.as_slice());
        for set in entries.chunk_by(|a, b| a.group(arena) == b.group(arena)) {
            if build_key(key, arena, set, zone) {
                emit(key);
                stats.rrsets += 1;
            }
        }
    }
}

/// Writes the key of one RRset (entries sorted by rdata) into `key`. False only if the set cannot
/// be expressed in the key format, which a message of at most 64 KiB cannot produce.
#[inline]
fn build_key(key: &mut Vec<u8>, arena: &[u8], set: &[Entry], zone: Option<&[u8]>) -> bool {
    let Some(first) = set.first() else {
        return false;
    };
    key.clear();
    key.extend_from_slice(first.owner(arena));
    key.extend_from_slice(&first.rtype.to_be_bytes());
    key.extend_from_slice(&first.class.to_be_bytes());
    match zone {
        Some(z) => {
            key.push(1);
            key.extend_from_slice(z);
        }
        None => key.push(0),
    }
    let count_at = key.len();
    key.extend_from_slice(&[0, 0]);
    let mut count: u16 = 0;
    let mut prev: Option<&[u8]> = None;
    for e in set {
        let rdata = e.rdata(arena);
        if prev == Some(rdata) {
            continue;
        }
        prev = Some(rdata);
        let (Ok(len), Some(next)) = (u16::try_from(rdata.len()), count.checked_add(1)) else {
            return false;
        };
        count = next;
        key.extend_from_slice(&len.to_be_bytes());
        key.extend_from_slice(rdata);
    }
    if let Some(slot) = key.get_mut(count_at..count_at + 2) {
        slot.copy_from_slice(&count.to_be_bytes());
    }
    true
}

/// Reads one rdata of a known layout field by field, appending its canonical form to `out`.
struct RdataReader<'m, 'o> {
    msg: &'m [u8],
    pos: usize,
    end: usize,
    out: &'o mut Vec<u8>,
}

impl RdataReader<'_, '_> {
    /// Copies `n` bytes verbatim.
    fn fixed(&mut self, n: usize) -> Result<(), WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::BadRdataLength)?;
        if end > self.end {
            return Err(WireError::BadRdataLength);
        }
        let bytes = wire::bytes_at(self.msg, self.pos, n)?;
        self.out.extend_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// A name that may be compressed: decompressed and lowercased.
    fn name(&mut self) -> Result<(), WireError> {
        self.pos = wire::append_rdata_name(self.msg, self.pos, self.end, true, self.out)?;
        Ok(())
    }

    /// A name the format never compresses (RRSIG signer, NSEC next name): copied, lowercased.
    fn plain_name(&mut self) -> Result<(), WireError> {
        let rest = self
            .msg
            .get(self.pos..self.end)
            .ok_or(WireError::Truncated)?;
        let len = wire::uncompressed_name_len(rest)?;
        let name = rest.get(..len).ok_or(WireError::Truncated)?;
        self.out.extend(name.iter().map(u8::to_ascii_lowercase));
        self.pos += len;
        Ok(())
    }

    /// A <character-string>: a length octet and that many bytes.
    fn char_string(&mut self) -> Result<(), WireError> {
        if self.pos >= self.end {
            return Err(WireError::BadRdataLength);
        }
        let len = *self.msg.get(self.pos).ok_or(WireError::Truncated)?;
        self.fixed(1 + usize::from(len))
    }

    /// Everything left, verbatim.
    fn rest(&mut self) -> Result<(), WireError> {
        let n = self.end.saturating_sub(self.pos);
        self.fixed(n)
    }

    /// The layout must have used the rdata exactly.
    fn done(&self) -> Result<(), WireError> {
        if self.pos == self.end {
            Ok(())
        } else {
            Err(WireError::BadRdataLength)
        }
    }
}

/// Appends the canonical form of one record's rdata (at `offset` in `msg`) to `out`.
///
/// Names in rdata are decompressed and lowercased for the RFC 3597 §4 types and those that RFC 3597
/// says receivers should also decompress (RFC 4034 §6.2 lists the same set for lowercasing), so the
/// same data compressed differently, or spelled in another case, gives the same key. Layouts are
/// checked; anything else is copied verbatim. On error `out` is left as it was.
fn canonical_rdata(
    msg: &[u8],
    rtype: u16,
    offset: usize,
    rdata: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let mark = out.len();
    let end = offset
        .checked_add(rdata.len())
        .ok_or(WireError::Truncated)?;
    let mut r = RdataReader {
        msg,
        pos: offset,
        end,
        out,
    };
    let res = (|| {
        match rtype {
            // A
            1 => r.fixed(4)?,
            // AAAA
            28 => r.fixed(16)?,
            // NS, MD, MF, CNAME, MB, MG, MR, PTR, DNAME
            2..=5 | 7..=9 | 12 | 39 => r.name()?,
            // SOA: mname, rname, serial, refresh, retry, expire, minimum
            6 => {
                r.name()?;
                r.name()?;
                r.fixed(20)?;
            }
            // MINFO, RP: two names
            14 | 17 => {
                r.name()?;
                r.name()?;
            }
            // MX, AFSDB, RT, KX: preference/subtype and a name
            15 | 18 | 21 | 36 => {
                r.fixed(2)?;
                r.name()?;
            }
            // PX: preference, MAP822, MAPX400
            26 => {
                r.fixed(2)?;
                r.name()?;
                r.name()?;
            }
            // SRV: priority, weight, port, target
            33 => {
                r.fixed(6)?;
                r.name()?;
            }
            // NAPTR: order, preference, flags, services, regexp, replacement
            35 => {
                r.fixed(4)?;
                r.char_string()?;
                r.char_string()?;
                r.char_string()?;
                r.name()?;
            }
            // SIG: 18 fixed bytes, signer (may be compressed by old servers), signature
            24 => {
                r.fixed(18)?;
                r.name()?;
                r.rest()?;
            }
            // NXT: next name, type bitmap
            30 => {
                r.name()?;
                r.rest()?;
            }
            // RRSIG: 18 fixed bytes, signer (never compressed), signature
            TYPE_RRSIG => {
                r.fixed(18)?;
                r.plain_name()?;
                r.rest()?;
            }
            // NSEC: next name (never compressed), type bitmaps
            47 => {
                r.plain_name()?;
                r.rest()?;
            }
            _ => r.rest()?,
        }
        r.done()?;
        // Decompression can grow rdata past what a length field holds; such a set has no key.
        if r.out.len() - mark > usize::from(u16::MAX) {
            return Err(WireError::BadRdataLength);
        }
        Ok(())
    })();
    if res.is_err() {
        r.out.truncate(mark);
    }
    res
}

/// Number of labels (root excluded) of an uncompressed wire name that fills `name` exactly.
fn label_count(name: &[u8]) -> Option<usize> {
    if wire::uncompressed_name_len(name).ok()? != name.len() {
        return None;
    }
    let mut pos = 0usize;
    let mut count = 0usize;
    loop {
        let len = usize::from(*name.get(pos)?);
        if len == 0 {
            return Some(count);
        }
        count += 1;
        pos += 1 + len;
    }
}

/// [`is_at_or_below`] for two names already validated and lowercased, as owners in the arena and
/// the lowercased bailiwick are: a byte suffix compare plus a label-boundary walk, no case folding.
pub(crate) fn canonical_at_or_below(owner: &[u8], zone: &[u8]) -> bool {
    let Some(start) = owner.len().checked_sub(zone.len()) else {
        return false;
    };
    if owner.get(start..) != Some(zone) {
        return false;
    }
    // The suffix must begin on a label boundary, so "notexample.com" is not below "example.com".
    let mut pos = 0usize;
    while pos < start {
        match owner.get(pos) {
            Some(&len) => pos += 1 + usize::from(len),
            None => return false,
        }
    }
    pos == start
}

/// True when wire name `name` equals `zone` or lies below it (ASCII case-insensitive).
///
/// Both must be valid uncompressed wire names that fill their slices exactly; anything else is
/// false, so a malformed name or zone never admits a record. The root zone (`\0`) holds every
/// valid name.
pub fn is_at_or_below(name: &[u8], zone: &[u8]) -> bool {
    let (Some(n), Some(z)) = (label_count(name), label_count(zone)) else {
        return false;
    };
    if n < z {
        return false;
    }
    // Compare from a label boundary, so "notexample.com" is not below "example.com".
    let mut pos = 0usize;
    for _ in 0..(n - z) {
        match name.get(pos) {
            Some(&len) => pos += 1 + usize::from(len),
            None => return false,
        }
    }
    // Length octets are below b'A', so a case-insensitive compare cannot confuse them with letters.
    name.get(pos..)
        .is_some_and(|tail| tail.eq_ignore_ascii_case(zone))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_builder::{wire, Builder, AN, AR, NS};
    use proptest::prelude::*;

    /// What one key says, decoded through [`KeyView`], for exact comparisons.
    #[derive(Debug, PartialEq, Eq)]
    struct Set {
        owner: Vec<u8>,
        rtype: u16,
        bailiwick: Option<Vec<u8>>,
        rdatas: Vec<Vec<u8>>,
    }

    fn set(owner: &str, rtype: u16, bailiwick: Option<&str>, rdatas: &[&[u8]]) -> Set {
        Set {
            owner: wire(owner),
            rtype,
            bailiwick: bailiwick.map(wire),
            rdatas: rdatas.iter().map(|r| r.to_vec()).collect(),
        }
    }

    fn decode(key: &[u8]) -> Set {
        let v = KeyView::parse(key).expect("emitted key parses");
        assert_eq!(KeyView::parse_built(key), Some(v));
        assert_eq!(v.class, CLASS_IN);
        let rdatas: Vec<Vec<u8>> = v.rdatas().map(<[u8]>::to_vec).collect();
        assert_eq!(rdatas.len(), usize::from(v.rdata_count));
        Set {
            owner: v.owner.to_vec(),
            rtype: v.rtype,
            bailiwick: v.bailiwick.map(<[u8]>::to_vec),
            rdatas,
        }
    }

    fn run(msg: &[u8], bailiwick: Option<&[u8]>) -> (Vec<Set>, ExtractStats) {
        let mut ex = Extractor::new();
        let mut stats = ExtractStats::default();
        let mut sets = Vec::new();
        ex.extract(msg, bailiwick, &mut stats, |k| sets.push(decode(k)));
        (sets, stats)
    }

    fn stats(
        records: u64,
        bad: u64,
        oob: u64,
        skipped: u64,
        rrsets: u64,
        malformed: u64,
    ) -> ExtractStats {
        ExtractStats {
            messages: 1,
            malformed,
            records,
            bad_records: bad,
            out_of_bailiwick: oob,
            skipped,
            rrsets,
            private_address: 0,
            private_name: 0,
        }
    }

    fn a(b: &mut Builder, section: usize, owner: &str, ip: [u8; 4]) {
        b.rr(section, owner, 1, 1, |b| {
            b.raw(&ip);
        });
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn common_types_give_exact_canonical_keys() {
        let mut b = Builder::response();
        b.question("www.example.com", 1);
        b.rr(AN, "alias.example.com", 5, 1, |b| {
            b.name("WWW.example.com");
        });
        a(&mut b, AN, "www.example.com", [192, 0, 2, 7]);
        a(&mut b, AN, "www.example.com", [192, 0, 2, 1]);
        b.rr(AN, "www.example.com", 28, 1, |b| {
            b.raw(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        });
        b.rr(AN, "example.com", 15, 1, |b| {
            b.u16(10).name("Mail.example.com");
        });
        b.rr(AN, "example.com", 16, 1, |b| {
            b.raw(b"\x05hello\x05world");
        });
        b.rr(AN, "_sip._tcp.example.com", 33, 1, |b| {
            b.u16(1).u16(2).u16(5060).name("sip.example.com");
        });
        b.rr(NS, "example.com", 6, 1, |b| {
            b.name("ns1.example.com").name("hostmaster.EXAMPLE.com");
            b.raw(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5]);
        });
        b.rr(NS, "example.com", 2, 1, |b| {
            b.name("ns1.example.com");
        });
        b.rr(NS, "example.com", 2, 1, |b| {
            b.name("NS2.example.com");
        });
        let msg = b.finish();
        // The rdata names really are compressed, so the test exercises decompression.
        let rdlens: Vec<usize> = Message::parse(&msg)
            .unwrap()
            .records()
            .map(|r| r.unwrap().rdata.len())
            .collect();
        assert_eq!(rdlens, [6, 4, 4, 16, 9, 12, 12, 47, 2, 6]);
        let (sets, st) = run(&msg, None);
        assert_eq!(st, stats(10, 0, 0, 0, 8, 0));
        let soa_rdata = cat(&[
            &wire("ns1.example.com"),
            &wire("hostmaster.example.com"),
            &[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5],
        ]);
        let aaaa: &[u8] = &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let mx = cat(&[&[0, 10], &wire("mail.example.com")]);
        let srv = cat(&[&[0, 1, 0, 2, 0x13, 0xc4], &wire("sip.example.com")]);
        // Keys come out sorted by owner wire bytes, then type.
        let expected = vec![
            set("_sip._tcp.example.com", 33, None, &[&srv]),
            set(
                "example.com",
                2,
                None,
                &[&wire("ns1.example.com"), &wire("ns2.example.com")],
            ),
            set("example.com", 6, None, &[&soa_rdata]),
            set("example.com", 15, None, &[&mx]),
            set("example.com", 16, None, &[b"\x05hello\x05world"]),
            set(
                "www.example.com",
                1,
                None,
                &[&[192, 0, 2, 1], &[192, 0, 2, 7]],
            ),
            set("www.example.com", 28, None, &[aaaa]),
            set("alias.example.com", 5, None, &[&wire("www.example.com")]),
        ];
        let mut got = sets;
        got.sort_by(|x, y| (&x.owner, x.rtype).cmp(&(&y.owner, y.rtype)));
        let mut want = expected;
        want.sort_by(|x, y| (&x.owner, x.rtype).cmp(&(&y.owner, y.rtype)));
        assert_eq!(got.len(), 8);
        assert_eq!(got, want);
    }

    #[test]
    fn key_layout_is_exact() {
        let mut b = Builder::response();
        a(&mut b, AN, "WWW.Example", [192, 0, 2, 7]);
        a(&mut b, AN, "www.example", [192, 0, 2, 1]);
        let msg = b.finish();
        let mut keys = Vec::new();
        let mut st = ExtractStats::default();
        Extractor::new().extract(&msg, None, &mut st, |k| keys.push(k.to_vec()));
        let want = cat(&[
            &wire("www.example"),
            &[0, 1, 0, 1, 0, 0, 2],
            &[0, 4, 192, 0, 2, 1],
            &[0, 4, 192, 0, 2, 7],
        ]);
        assert_eq!(keys, [want]);

        let mut keys = Vec::new();
        Extractor::new().extract(&msg, Some(&wire("EXAMPLE")), &mut st, |k| {
            keys.push(k.to_vec())
        });
        let want = cat(&[
            &wire("www.example"),
            &[0, 1, 0, 1, 1],
            &wire("example"),
            &[0, 2, 0, 4, 192, 0, 2, 1, 0, 4, 192, 0, 2, 7],
        ]);
        assert_eq!(keys, [want]);
    }

    #[test]
    fn mixed_case_owners_merge_and_duplicates_collapse() {
        let mut b = Builder::response();
        a(&mut b, AN, "WWW.example.com", [192, 0, 2, 1]);
        a(&mut b, AN, "www.EXAMPLE.com", [192, 0, 2, 1]);
        a(&mut b, NS, "www.example.COM", [192, 0, 2, 9]);
        a(&mut b, AR, "Www.Example.Com", [192, 0, 2, 1]);
        let (sets, st) = run(&b.finish(), None);
        assert_eq!(st, stats(4, 0, 0, 0, 1, 0));
        assert_eq!(
            sets,
            [set(
                "www.example.com",
                1,
                None,
                &[&[192, 0, 2, 1], &[192, 0, 2, 9]]
            )]
        );
    }

    fn rrsig(b: &mut Builder, owner: &str, covered: u16, signer: &str, sig: &[u8]) {
        b.rr(AN, owner, TYPE_RRSIG, 1, |b| {
            b.u16(covered).raw(&[8, 2, 0, 0, 1, 44]);
            b.raw(&[0x60, 0, 0, 0, 0x5f, 0, 0, 0, 0x12, 0x34]);
            b.plain_name(signer).raw(sig);
        });
    }

    #[test]
    fn rrsig_sets_split_by_covered_type() {
        let mut b = Builder::response();
        rrsig(&mut b, "example.com", 1, "Example.COM", b"sig-a");
        rrsig(&mut b, "example.com", 2, "example.com", b"sig-ns");
        rrsig(&mut b, "EXAMPLE.com", 1, "example.com", b"sig-a");
        rrsig(&mut b, "example.com", 1, "example.com", b"sig-a2");
        let (sets, st) = run(&b.finish(), None);
        assert_eq!(st, stats(4, 0, 0, 0, 2, 0));
        let head = |covered: u16| {
            cat(&[
                &covered.to_be_bytes(),
                &[8, 2, 0, 0, 1, 44, 0x60, 0, 0, 0, 0x5f, 0, 0, 0, 0x12, 0x34],
                &wire("example.com"),
            ])
        };
        let a1 = cat(&[&head(1), b"sig-a"]);
        let a2 = cat(&[&head(1), b"sig-a2"]);
        let ns = cat(&[&head(2), b"sig-ns"]);
        assert_eq!(
            sets,
            [
                set("example.com", TYPE_RRSIG, None, &[&a1, &a2]),
                set("example.com", TYPE_RRSIG, None, &[&ns]),
            ]
        );
    }

    #[test]
    fn rrsig_and_nsec_names_must_not_be_compressed() {
        let mut b = Builder::response();
        b.rr(AN, "example.com", TYPE_RRSIG, 1, |b| {
            b.u16(1)
                .raw(&[8, 2, 0, 0, 1, 44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            b.name("example.com").raw(b"sig");
        });
        b.rr(AN, "a.example.com", 47, 1, |b| {
            b.name("B.example.com").raw(&[0, 1, 0x40]);
        });
        b.rr(AN, "c.example.com", 47, 1, |b| {
            b.plain_name("D.Example.com").raw(&[0, 1, 0x40]);
        });
        let (sets, st) = run(&b.finish(), None);
        assert_eq!(st, stats(1, 2, 0, 0, 1, 1));
        let nsec = cat(&[&wire("d.example.com"), &[0, 1, 0x40]]);
        assert_eq!(sets, [set("c.example.com", 47, None, &[&nsec])]);
    }

    #[test]
    fn opt_tsig_tkey_and_other_classes_are_skipped() {
        let mut b = Builder::response();
        a(&mut b, AN, "example.com", [192, 0, 2, 1]);
        b.rr(AN, "version.bind", 16, 3, |b| {
            b.raw(b"\x051.2.3");
        });
        b.rr(AR, "key.example", TYPE_TKEY, 255, |b| {
            b.raw(&[0; 10]);
        });
        b.rr(AR, "", TYPE_OPT, 1232, |_| {});
        b.rr(AR, "key.example", TYPE_TSIG, 255, |b| {
            b.raw(&[1, 2, 3]);
        });
        // OPT in class IN (payload size 1) is still OPT.
        b.rr(AR, "", TYPE_OPT, 1, |_| {});
        let (sets, st) = run(&b.finish(), None);
        assert_eq!(st, stats(1, 0, 0, 5, 1, 0));
        assert_eq!(sets, [set("example.com", 1, None, &[&[192, 0, 2, 1]])]);
    }

    #[test]
    fn out_of_bailiwick_records_are_dropped_and_counted() {
        let mut b = Builder::response();
        a(&mut b, AN, "www.Example.com", [192, 0, 2, 1]);
        a(&mut b, AN, "evil.com", [192, 0, 2, 66]);
        a(&mut b, AN, "notexample.com", [192, 0, 2, 67]);
        b.rr(NS, "example.com", 2, 1, |b| {
            b.name("ns.evil.com");
        });
        a(&mut b, AR, "ns.evil.com", [192, 0, 2, 68]);
        a(&mut b, AR, "example.com.evil", [192, 0, 2, 69]);
        let msg = b.finish();
        let zone = wire("example.COM");
        let (sets, st) = run(&msg, Some(&zone));
        assert_eq!(st, stats(6, 0, 4, 0, 2, 0));
        assert_eq!(
            sets,
            // Emitted in key order: owner wire bytes first, and "\x03www" < "\x07example".
            [
                set(
                    "www.example.com",
                    1,
                    Some("example.com"),
                    &[&[192, 0, 2, 1]]
                ),
                set(
                    "example.com",
                    2,
                    Some("example.com"),
                    &[&wire("ns.evil.com")]
                ),
            ]
        );

        // The root zone holds everything.
        let (sets, st) = run(&msg, Some(&[0]));
        assert_eq!(st, stats(6, 0, 0, 0, 6, 0));
        assert!(sets.iter().all(|s| s.bailiwick == Some(vec![0])));

        // A malformed bailiwick admits nothing, and never panics.
        for bad in [
            &[][..],
            &[3, b'c', b'o'],
            &[1, b'a', 0, 0],
            &[0xC0, 12],
            &[0x41, 0],
        ] {
            let (sets, st) = run(&msg, Some(bad));
            assert_eq!(st, stats(6, 0, 6, 0, 0, 0), "bailiwick {bad:?}");
            assert!(sets.is_empty());
        }
    }

    #[test]
    fn a_bad_record_in_the_middle_keeps_the_others() {
        let mut b = Builder::response();
        b.question("example.com", 255);
        a(&mut b, AN, "example.com", [192, 0, 2, 1]);
        // A with 5 bytes.
        b.rr(AN, "example.com", 1, 1, |b| {
            b.raw(&[192, 0, 2, 2, 9]);
        });
        // MX whose name has a forward pointer (to the next record's owner).
        b.rr(AN, "example.com", 15, 1, |b| {
            let here = b.pos();
            b.u16(10).u16(0xC000 | (here + 4) as u16);
        });
        // SOA with 19 bytes of counters, SRV with no target, MX with a trailing byte.
        b.rr(NS, "example.com", 6, 1, |b| {
            b.name("ns.example.com").name("h.example.com").raw(&[0; 19]);
        });
        b.rr(NS, "example.com", 33, 1, |b| {
            b.raw(&[0, 0, 0, 0, 0, 53]);
        });
        b.rr(NS, "example.com", 15, 1, |b| {
            b.u16(5).name("mx.example.com").raw(&[0]);
        });
        // NAPTR whose regexp string runs past the rdata.
        b.rr(NS, "example.com", 35, 1, |b| {
            b.raw(&[0, 1, 0, 1, 1, b'u', 0, 9, b'!']);
        });
        b.rr(AR, "example.com", 28, 1, |b| {
            b.raw(&[0; 16]);
        });
        b.rr(AR, "example.com", 35, 1, |b| {
            b.raw(&[
                0, 1, 0, 2, 1, b'U', 7, b'E', b'2', b'U', b'+', b's', b'i', b'p', 0,
            ]);
            b.name("SIP.example.com");
        });
        let (sets, st) = run(&b.finish(), None);
        assert_eq!(st, stats(3, 6, 0, 0, 3, 1));
        let naptr = cat(&[
            &[
                0, 1, 0, 2, 1, b'U', 7, b'E', b'2', b'U', b'+', b's', b'i', b'p', 0,
            ],
            &wire("sip.example.com"),
        ]);
        assert_eq!(
            sets,
            [
                set("example.com", 1, None, &[&[192, 0, 2, 1]]),
                set("example.com", 28, None, &[&[0; 16]]),
                set("example.com", 35, None, &[&naptr]),
            ]
        );
    }

    #[test]
    fn framing_errors_keep_what_came_before() {
        let base = || {
            let mut b = Builder::response();
            a(&mut b, AN, "ok.example", [192, 0, 2, 1]);
            b
        };
        let kept = || vec![set("ok.example", 1, None, &[&[192, 0, 2, 1]])];

        // Truncated rdlength: the last record claims 4 bytes and has 3.
        let mut b = base();
        a(&mut b, AN, "cut.example", [192, 0, 2, 2]);
        let mut msg = b.finish();
        msg.pop();
        assert_eq!(run(&msg, None), (kept(), stats(1, 0, 0, 0, 1, 1)));

        // An owner with a forward pointer, a label type 0x40, a name over 255, a pointer loop.
        let loop_owner = |b: &mut Builder| {
            let here = b.pos() as u16;
            b.u16(0xC000 | here);
        };
        let long_owner = |b: &mut Builder| {
            for _ in 0..4 {
                b.raw(&[63]).raw(&[b'x'; 63]);
            }
            b.raw(&[0]);
        };
        type OwnerWriter = Box<dyn Fn(&mut Builder)>;
        let owners: [(&str, OwnerWriter); 4] = [
            (
                "forward",
                Box::new(|b: &mut Builder| {
                    let here = b.pos() as u16;
                    b.u16(0xC000 | (here + 2)).raw(&[0]);
                }),
            ),
            (
                "label type",
                Box::new(|b: &mut Builder| {
                    b.raw(&[0x41, 0]);
                }),
            ),
            ("too long", Box::new(long_owner)),
            ("loop", Box::new(loop_owner)),
        ];
        for (what, owner) in owners.iter() {
            let mut b = base();
            owner(&mut b);
            b.u16(1).u16(1).raw(&[0, 0, 0, 1, 0, 4, 192, 0, 2, 3]);
            let mut msg = b.finish();
            msg[7] = 2;
            // Trailing good-looking record after the break must not be reached either.
            assert_eq!(run(&msg, None), (kept(), stats(1, 0, 0, 0, 1, 1)), "{what}");
        }

        // Fewer records than announced.
        let mut msg = base().finish();
        msg[11] = 3;
        assert_eq!(run(&msg, None), (kept(), stats(1, 0, 0, 0, 1, 1)));

        // A broken question section loses everything, but still counts once.
        let mut b = Builder::response();
        b.raw(&[0x80, 0, 0, 1, 0, 1]);
        let mut msg = b.finish();
        msg[5] = 1;
        assert_eq!(run(&msg, None), (vec![], stats(0, 0, 0, 0, 0, 1)));
    }

    #[test]
    fn short_headers_and_queries_are_malformed() {
        for len in 0..12 {
            assert_eq!(
                run(&vec![0x80; len], None),
                (vec![], stats(0, 0, 0, 0, 0, 1))
            );
        }
        let mut b = Builder::with_flags(0x0100);
        a(&mut b, AN, "example.com", [192, 0, 2, 1]);
        assert_eq!(run(&b.finish(), None), (vec![], stats(0, 0, 0, 0, 0, 1)));
        // A bare response header is fine and empty.
        let msg = Builder::response().finish();
        assert_eq!(run(&msg, None), (vec![], stats(0, 0, 0, 0, 0, 0)));
    }

    #[test]
    fn scratch_buffers_do_not_grow_once_warm() {
        let mut b = Builder::response();
        for i in 0..20u8 {
            a(&mut b, AN, &format!("h{i}.example"), [192, 0, 2, i]);
        }
        let msg = b.finish();
        let mut ex = Extractor::new();
        let mut st = ExtractStats::default();
        ex.extract(&msg, Some(&wire("example")), &mut st, |_| {});
        let caps = |ex: &Extractor| {
            (
                ex.arena.capacity(),
                ex.entries.capacity(),
                ex.key.capacity(),
                ex.zone.capacity(),
            )
        };
        let warm = caps(&ex);
        for _ in 0..3 {
            ex.extract(&msg, Some(&wire("example")), &mut st, |_| {});
        }
        assert_eq!(caps(&ex), warm);
        assert_eq!(st.rrsets, 80);
    }

    #[test]
    fn canonical_fast_path_agrees_with_the_general_check() {
        let names = [
            ".",
            "com",
            "d1.com",
            "www.d1.com",
            "notd1.com",
            "d1.com.evil",
            "a.b.c.d1.com",
            "x.notd1.com",
            "1com",
            "om",
            "m",
            "d1",
            "w\\.d1.com",
        ];
        for n in names {
            for z in names {
                let (nw, zw) = (wire(n), wire(z));
                assert_eq!(
                    canonical_at_or_below(&nw, &zw),
                    is_at_or_below(&nw, &zw),
                    "{n} under {z}"
                );
            }
        }
    }

    #[test]
    fn at_or_below() {
        let y = |n: &str, z: &str| is_at_or_below(&wire(n), &wire(z));
        assert!(y("www.example.com", "example.com"));
        assert!(y("example.com", "example.com"));
        assert!(y("WWW.EXAMPLE.COM", "example.Com"));
        assert!(y("anything.at.all", ""));
        assert!(y("", ""));
        assert!(!y("example.com", "www.example.com"));
        assert!(!y("notexample.com", "example.com"));
        assert!(!y("example.com.evil", "example.com"));
        assert!(!y("com", "example.com"));
        // A dot inside a label is not a boundary.
        assert!(!is_at_or_below(b"\x0bexample.com\0", &wire("com")));
        // Malformed on either side: false.
        assert!(!is_at_or_below(&[], &[0]));
        assert!(!is_at_or_below(&[0], &[]));
        assert!(!is_at_or_below(&[0, 0], &[0]));
        assert!(!is_at_or_below(&[3, b'c', b'o'], &[0]));
        assert!(!is_at_or_below(&[0xC0, 0], &[0]));
        assert!(!is_at_or_below(&wire("a.com"), &[3, b'c', b'o', b'm']));
    }

    #[test]
    fn keyview_rejects_what_the_extractor_cannot_make() {
        let good = cat(&[&wire("a"), &[0, 1, 0, 1, 0, 0, 2, 0, 1, 1, 0, 1, 2]]);
        let v = KeyView::parse(&good).unwrap();
        assert_eq!(v.rdatas().collect::<Vec<_>>(), [&[1u8][..], &[2]]);
        for cut in 0..good.len() {
            assert_eq!(KeyView::parse(&good[..cut]), None, "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(KeyView::parse(&trailing), None);
        let unsorted = cat(&[&wire("a"), &[0, 1, 0, 1, 0, 0, 2, 0, 1, 2, 0, 1, 1]]);
        assert_eq!(KeyView::parse(&unsorted), None);
        let dup = cat(&[&wire("a"), &[0, 1, 0, 1, 0, 0, 2, 0, 1, 1, 0, 1, 1]]);
        assert_eq!(KeyView::parse(&dup), None);
        let flag = cat(&[&wire("a"), &[0, 1, 0, 1, 2, 0, 0]]);
        assert_eq!(KeyView::parse(&flag), None);
        let upper = cat(&[&wire("A"), &[0, 1, 0, 1, 0, 0, 0]]);
        assert_eq!(KeyView::parse(&upper), None);
        let zone = cat(&[&wire("a"), &[0, 1, 0, 1, 1], &wire("a"), &[0, 0]]);
        assert_eq!(
            KeyView::parse(&zone).unwrap().bailiwick,
            Some(&wire("a")[..])
        );
    }

    /// Parts of generated messages: owners come from a small pool so that sets form, in random case.
    const LABELS: [&str; 6] = ["a", "www", "mail", "example", "com", "x-1"];

    fn arb_name() -> impl Strategy<Value = String> {
        (prop::collection::vec(0..LABELS.len(), 1..4), any::<u32>()).prop_map(|(idx, case)| {
            let name: String = idx.iter().map(|&i| LABELS[i]).collect::<Vec<_>>().join(".");
            name.chars()
                .enumerate()
                .map(|(i, c)| {
                    if case >> (i % 32) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect()
        })
    }

    #[derive(Debug, Clone)]
    struct GenRecord {
        section: usize,
        owner: String,
        kind: u8,
        target: String,
        bytes: Vec<u8>,
    }

    fn arb_record() -> impl Strategy<Value = GenRecord> {
        (
            1usize..4,
            arb_name(),
            0u8..9,
            arb_name(),
            prop::collection::vec(any::<u8>(), 16),
        )
            .prop_map(|(section, owner, kind, target, bytes)| GenRecord {
                section,
                owner,
                kind,
                target,
                bytes,
            })
    }

    /// The type a generated record of `kind` has.
    fn kind_type(kind: u8) -> u16 {
        [1, 28, 2, 15, 16, 5, 6, 33, 12][usize::from(kind.min(8))]
    }

    /// Writes valid rdata for a generated record, with `t` as its name (compressed where possible).
    fn write_rdata(b: &mut Builder, kind: u8, t: &str, bytes: &[u8]) {
        match kind_type(kind) {
            1 => b.raw(&bytes[..4]),
            28 => b.raw(&bytes[..16]),
            15 => b.raw(&bytes[..2]).name(t),
            16 => {
                let n = usize::from(bytes[0] % 15);
                b.raw(&[n as u8]).raw(&bytes[1..1 + n])
            }
            6 => b
                .name(t)
                .name("hostmaster.Example.com")
                .raw(&bytes[..16])
                .raw(&bytes[..4]),
            33 => b.raw(&bytes[..6]).name(t),
            _ => b.name(t),
        };
    }

    /// Builds a valid response from generated records; returns it and each record's type.
    fn build(records: &[GenRecord]) -> (Vec<u8>, Vec<u16>) {
        let mut recs = records.to_vec();
        recs.sort_by_key(|r| r.section);
        let mut b = Builder::response();
        b.question("example.com", 1);
        let mut types = Vec::new();
        for r in &recs {
            let rtype = kind_type(r.kind);
            b.rr(r.section, &r.owner, rtype, 1, |b| {
                write_rdata(b, r.kind, &r.target, &r.bytes)
            });
            types.push(rtype);
        }
        (b.finish(), types)
    }

    fn check_keys(msg: &[u8], bailiwick: Option<&[u8]>) -> ExtractStats {
        let mut ex = Extractor::new();
        let mut st = ExtractStats::default();
        let mut n = 0u64;
        ex.extract(msg, bailiwick, &mut st, |k| {
            let v = KeyView::parse(k).expect("emitted key parses");
            assert!(v.rdata_count >= 1);
            assert_eq!(v.bailiwick.is_some(), bailiwick.is_some());
            if let Some(z) = bailiwick {
                assert!(is_at_or_below(v.owner, z));
            }
            n += 1;
        });
        assert_eq!(st.messages, 1);
        assert!(st.malformed <= 1);
        assert_eq!(st.rrsets, n);
        assert!(st.rrsets <= st.records - st.out_of_bailiwick);
        st
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            zone in prop::collection::vec(any::<u8>(), 0..20),
        ) {
            check_keys(&bytes, None);
            check_keys(&bytes, Some(&zone));
            check_keys(&bytes, Some(&[0]));
            // Forcing QR=1 and small counts gets past the header far more often.
            let mut resp = bytes.clone();
            if resp.len() >= 12 {
                resp[2] |= 0x80;
                for i in [4, 6, 8, 10] {
                    resp[i] = 0;
                    resp[i + 1] %= 8;
                }
            }
            check_keys(&resp, None);
            check_keys(&resp, Some(&wire("example.com")));
        }

        #[test]
        fn mutated_messages_never_panic(
            records in prop::collection::vec(arb_record(), 1..12),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let (mut msg, _) = build(&records);
            for (at, x) in flips {
                let i = at.index(msg.len());
                msg[i] ^= x;
            }
            if truncate {
                msg.truncate(cut.index(msg.len() + 1));
            }
            check_keys(&msg, None);
            check_keys(&msg, Some(&wire("com")));
            check_keys(&msg, Some(&[0]));
        }

        #[test]
        fn valid_messages_give_one_set_per_owner_and_type(
            records in prop::collection::vec(arb_record(), 0..16),
        ) {
            let (msg, types) = build(&records);
            let mut groups = std::collections::BTreeSet::new();
            // `build` sorts by section and returns types in that order.
            let mut sorted = records.clone();
            sorted.sort_by_key(|r| r.section);
            for (r, t) in sorted.iter().zip(types.iter()) {
                groups.insert((r.owner.to_ascii_lowercase(), *t));
            }
            let st = check_keys(&msg, None);
            prop_assert_eq!(st.malformed, 0);
            prop_assert_eq!(st.bad_records, 0);
            prop_assert_eq!(st.records, records.len() as u64);
            prop_assert_eq!(st.rrsets, groups.len() as u64);
            // Every owner in the pool ends in one of the pool's labels, so the root keeps all.
            let st = check_keys(&msg, Some(&[0]));
            prop_assert_eq!(st.rrsets, groups.len() as u64);
            prop_assert_eq!(st.out_of_bailiwick, 0);
        }
    }
}
