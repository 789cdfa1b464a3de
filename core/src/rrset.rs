//! RRset extraction: turns one response message into canonical RRset keys, checked against the bailiwick.
//! The key is compact bytes so the dedup table can hash and compare it without building structures.

/// Counters for what extraction saw and threw away. Added up by the caller.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExtractStats {
    /// Messages walked.
    pub messages: u64,
    /// Messages with any damage (a bad header, a bad record, trailing truncation).
    pub malformed: u64,
    /// Good resource records seen (after skipping OPT/TSIG/TKEY and non-IN classes).
    pub records: u64,
    /// Records dropped because their own bytes were bad (the rest of the message was kept).
    pub bad_records: u64,
    /// Records dropped because their owner is not at or below the bailiwick.
    pub out_of_bailiwick: u64,
    /// Records never recorded by rule: OPT, TSIG, TKEY and classes other than IN.
    pub skipped: u64,
    /// RRsets emitted.
    pub rrsets: u64,
}

impl ExtractStats {
    /// Adds another set of counters to this one.
    pub fn add(&mut self, other: &ExtractStats) {
        self.messages += other.messages;
        self.malformed += other.malformed;
        self.records += other.records;
        self.bad_records += other.bad_records;
        self.out_of_bailiwick += other.out_of_bailiwick;
        self.skipped += other.skipped;
        self.rrsets += other.rrsets;
    }
}

/// A parsed view of a canonical RRset key.
///
/// Layout (integers big-endian):
/// owner (uncompressed lowercase wire name) · type u16 · class u16 ·
/// bailiwick flag u8 (0 unknown, 1 known) [· bailiwick wire name] ·
/// rdata count u16 · count × (length u16 · canonical rdata), sorted bytewise, no duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyView<'a> {
    pub owner: &'a [u8],
    pub rtype: u16,
    pub class: u16,
    pub bailiwick: Option<&'a [u8]>,
    pub rdata_count: u16,
    rdatas: &'a [u8],
}

impl<'a> KeyView<'a> {
    /// Parses a key made by [`Extractor`]; `None` if it is not one.
    pub fn parse(key: &'a [u8]) -> Option<KeyView<'a>> {
        todo!("H1")
    }

    /// The canonical rdata of each record in the set, in key order.
    pub fn rdatas(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let _ = self.rdatas;
        std::iter::empty()
    }
}

/// Reusable extraction state: holds scratch buffers so a message costs no allocation once warm.
#[derive(Debug, Default)]
pub struct Extractor {}

impl Extractor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Walks `response` and calls `emit` once per RRset with its canonical key.
    /// `bailiwick` is an uncompressed wire name; records outside it are dropped and counted.
    pub fn extract<F: FnMut(&[u8])>(
        &mut self,
        response: &[u8],
        bailiwick: Option<&[u8]>,
        stats: &mut ExtractStats,
        emit: F,
    ) {
        todo!("H1")
    }
}

/// True when wire name `name` equals `zone` or lies below it (ASCII case-insensitive).
pub fn is_at_or_below(name: &[u8], zone: &[u8]) -> bool {
    todo!("H1")
}
