//! Repeated answers counted without a second walk: a small cache from a response's bytes (its ID
//! aside) to the RRset keys its first sighting produced in the current de-duplication table.
//!
//! Made for the proxy, which sees the same answer bytes again and again: a resolver answers a
//! popular name identically, TTLs included, many times within a second. A repeat then costs a
//! hash, a comparison and one table probe per RRset instead of a walk, a decompression, the
//! privacy check and a key built from scratch; the counts come out exactly the same.

use std::hash::BuildHasher;

use crate::dedup::{DedupTable, KeyRef};
use crate::rrset::{ExtractStats, Extractor};

/// Sets of remembered responses. A response may sit in any of the `WAYS` slots of the set its
/// hash picks; a new one replaces the set's least recently used. Sized for a few thousand
/// distinct answers a second that repeat: direct-mapped, 2 048 slots kept almost none of the
/// proxy benchmark's 7 000 (each shared its slot with others and was evicted before it came
/// back); 4 096 sets of 4 keep nearly all of them (docs/benchmarks.md).
const SETS: usize = 4096;
/// Slots per set.
const WAYS: usize = 4;

/// Longer responses are extracted every time: they are rarer, and a bound keeps the memo's
/// memory within `SETS * WAYS` times this (8 MiB).
const MAX_REMEMBERED_BYTES: usize = 512;

/// The DNS header's ID: the only bytes that differ between two copies of one answer.
const ID_BYTES: usize = 2;

/// Bytes of a DNS header; anything shorter is malformed and goes the usual way.
const HEADER_BYTES: usize = 12;

/// The memo of one pipeline worker, valid for one dedup table and one set of extraction rules.
pub struct ResponseMemo {
    /// Sets of `WAYS` slots, one after another.
    slots: Box<[Slot]>,
    // Random per memo: the responses are attacker-influenced.
    hasher: foldhash::fast::RandomState,
    /// Slots written under an older generation are empty. Starts at 1, so fresh slots are.
    generation: u64,
    /// Counts lookups; a slot's `used` is the count at its last hit or fill.
    clock: u64,
    /// Responses counted from a remembered first sighting.
    hits: u64,
}

#[derive(Default)]
struct Slot {
    generation: u64,
    /// The memo's clock when the slot was last filled or hit.
    used: u64,
    hash: u64,
    /// The response without its ID.
    body: Vec<u8>,
    /// Where each RRset key of the response lives in the table, in extraction order.
    keys: Vec<KeyRef>,
    /// What extraction counted for this response.
    stats: ExtractStats,
}

impl Default for ResponseMemo {
    fn default() -> Self {
        ResponseMemo::new()
    }
}

impl ResponseMemo {
    /// An empty memo.
    pub fn new() -> ResponseMemo {
        ResponseMemo::with_sets(SETS)
    }

    fn with_sets(sets: usize) -> ResponseMemo {
        ResponseMemo {
            slots: (0..sets * WAYS).map(|_| Slot::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            generation: 1,
            clock: 0,
            hits: 0,
        }
    }

    /// Forgets every response. Call it whenever the table is taken (its keys move out) or the
    /// extractor's rules change (a new privacy filter).
    pub fn clear(&mut self) {
        self.generation += 1;
    }

    /// Responses so far that were counted against a remembered first sighting.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Extracts `response` (no bailiwick) into `table`, counting into `totals`, as
    /// [`Extractor::extract`] with [`DedupTable::observe_from`] would; a response seen before,
    /// byte for byte apart from its ID, since the last [`ResponseMemo::clear`] is counted against
    /// the keys of its first sighting instead.
    pub fn record(
        &mut self,
        extractor: &mut Extractor,
        table: &mut DedupTable,
        totals: &mut ExtractStats,
        response: &[u8],
        time: u64,
        client: Option<u64>,
    ) {
        if response.len() < HEADER_BYTES || response.len() > MAX_REMEMBERED_BYTES {
            extractor.extract(response, None, totals, |key| {
                table.observe_from(key, time, client)
            });
            return;
        }
        let body = &response[ID_BYTES..];
        let hash = self.hasher.hash_one(body);
        self.clock += 1;
        let set_start = (hash as usize % (self.slots.len() / WAYS)) * WAYS;
        let set = &mut self.slots[set_start..set_start + WAYS];
        let generation = self.generation;
        let live = |s: &Slot| s.generation == generation;
        if let Some(slot) = set
            .iter_mut()
            .find(|s| live(s) && s.hash == hash && s.body == body)
        {
            slot.used = self.clock;
            self.hits += 1;
            for &key in &slot.keys {
                let counted = table.observe_again(key, time, client);
                debug_assert!(counted, "a remembered key outlived its table");
            }
            totals.add(&slot.stats);
            return;
        }
        // An empty slot if the set has one, else the one unused longest.
        let slot = set
            .iter_mut()
            .min_by_key(|s| if live(s) { s.used } else { 0 })
            .expect("a set has slots");
        slot.keys.clear();
        let mut stats = ExtractStats::default();
        extractor.extract(response, None, &mut stats, |key| {
            slot.keys.push(table.observe_keyed(key, time, client))
        });
        totals.add(&stats);
        slot.stats = stats;
        slot.body.clear();
        slot.body.extend_from_slice(body);
        slot.hash = hash;
        slot.generation = generation;
        slot.used = self.clock;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::{PrivacyConfig, PrivacyFilter};
    use crate::wire::test_builder::{Builder, AN};
    use proptest::prelude::*;

    /// A response for `name` A with one address per entry of `last`, in answer, with ID `id`.
    fn answer(id: u16, name: &str, ttl: u32, last: &[u8]) -> Vec<u8> {
        let mut b = Builder::response();
        b.ttl(ttl).question(name, 1);
        for &l in last {
            b.rr(AN, name, 1, 1, |b| {
                b.raw(&[192, 0, 2, l]);
            });
        }
        let mut m = b.finish();
        m[..2].copy_from_slice(&id.to_be_bytes());
        m
    }

    fn extractor() -> Extractor {
        let mut e = Extractor::new();
        e.set_privacy(PrivacyFilter::new(&PrivacyConfig::default()).expect("default filter"));
        e
    }

    fn table_contents(t: &DedupTable) -> Vec<(Vec<u8>, crate::dedup::Entry)> {
        let mut v: Vec<_> = t.iter().map(|(k, e)| (k.to_vec(), *e)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    proptest! {
        /// Any sequence of responses (repeats with other IDs, other TTLs, damaged copies, a
        /// table taken midway) leaves the same table and counters as plain extraction.
        #[test]
        fn same_table_and_counters_as_plain_extraction(
            picks in prop::collection::vec((0usize..6, any::<u16>(), 0u64..5, prop::option::of(0u64..3)), 1..200),
            take_at in 0usize..200,
            cut in 0usize..40,
        ) {
            let names = ["a.example.", "b.example.", "c.example."];
            let responses: Vec<Vec<u8>> = (0..6)
                .map(|i| {
                    let mut r = answer(0, names[i % 3], 300 + (i as u32 / 3), &[1, i as u8 + 2]);
                    if i == 5 {
                        // A damaged copy: the last record cut short.
                        r.truncate(r.len() - (cut % 6) - 1);
                    }
                    r
                })
                .collect();
            let (mut plain_x, mut memo_x) = (extractor(), extractor());
            let (mut plain_t, mut memo_t) = (DedupTable::with_client_counts(1000), DedupTable::with_client_counts(1000));
            let (mut plain_s, mut memo_s) = (ExtractStats::default(), ExtractStats::default());
            let mut memo = ResponseMemo::new();
            let mut plain_taken = Vec::new();
            let mut memo_taken = Vec::new();
            for (i, &(which, id, time, client)) in picks.iter().enumerate() {
                if i == take_at {
                    plain_taken.push(table_contents(&plain_t.take()));
                    memo_taken.push(table_contents(&memo_t.take()));
                    memo.clear();
                }
                let mut r = responses[which].clone();
                r[..2].copy_from_slice(&id.to_be_bytes());
                plain_x.extract(&r, None, &mut plain_s, |k| plain_t.observe_from(k, time, client));
                memo.record(&mut memo_x, &mut memo_t, &mut memo_s, &r, time, client);
            }
            prop_assert_eq!(plain_s, memo_s);
            prop_assert_eq!(table_contents(&plain_t), table_contents(&memo_t));
            prop_assert_eq!(plain_taken, memo_taken);
        }
    }

    #[test]
    fn thousands_of_answers_that_repeat_are_remembered() {
        // 3 000 distinct answers, then each again: a repeat finds its first sighting unless
        // more than four of the answers fell into one set (a few at most, by the hash).
        let mut x = extractor();
        let mut t = DedupTable::new(10_000);
        let mut s = ExtractStats::default();
        let mut memo = ResponseMemo::new();
        let names: Vec<String> = (0..3000).map(|i| format!("h{i}.example.")).collect();
        for round in 0..2u16 {
            for (i, name) in names.iter().enumerate() {
                let a = answer(round ^ i as u16, name, 300, &[(i % 250) as u8]);
                memo.record(&mut x, &mut t, &mut s, &a, 1, None);
            }
        }
        assert!(
            memo.hits() >= 2950,
            "only {} of 3000 repeats hit",
            memo.hits()
        );
        assert_eq!((s.messages, t.len()), (6000, 3000));
    }

    #[test]
    fn the_least_recently_used_answer_is_replaced() {
        // Answers that would all share one set: in a memo of one set of WAYS slots, the one
        // unused longest goes first, and one hit keeps an answer in.
        let mut x = extractor();
        let mut t = DedupTable::new(100);
        let mut s = ExtractStats::default();
        let mut memo = ResponseMemo::with_sets(1);
        let a = |i: u8| answer(u16::from(i), "a.example.", 60, &[i]);
        for i in 0..WAYS as u8 {
            memo.record(&mut x, &mut t, &mut s, &a(i), 1, None);
        }
        memo.record(&mut x, &mut t, &mut s, &a(0), 1, None); // hit: 0 is now the newest
        memo.record(&mut x, &mut t, &mut s, &a(9), 1, None); // replaces 1, the oldest
        assert_eq!(memo.hits(), 1);
        memo.record(&mut x, &mut t, &mut s, &a(0), 1, None);
        memo.record(&mut x, &mut t, &mut s, &a(2), 1, None);
        assert_eq!(memo.hits(), 3);
        memo.record(&mut x, &mut t, &mut s, &a(1), 1, None); // was replaced
        assert_eq!(memo.hits(), 3);
    }

    #[test]
    fn a_repeat_is_counted_without_extraction() {
        let mut x = extractor();
        let mut t = DedupTable::new(100);
        let mut s = ExtractStats::default();
        let mut memo = ResponseMemo::new();
        memo.record(
            &mut x,
            &mut t,
            &mut s,
            &answer(1, "a.example.", 60, &[1, 2]),
            10,
            None,
        );
        memo.record(
            &mut x,
            &mut t,
            &mut s,
            &answer(2, "a.example.", 60, &[1, 2]),
            20,
            None,
        );
        // Another TTL is another response: extracted again, same key.
        memo.record(
            &mut x,
            &mut t,
            &mut s,
            &answer(3, "a.example.", 59, &[1, 2]),
            30,
            None,
        );
        let contents = table_contents(&t);
        assert_eq!(contents.len(), 1);
        assert_eq!(
            contents[0].1,
            crate::dedup::Entry {
                count: 3,
                first: 10,
                last: 30,
                clients: 0
            }
        );
        assert_eq!((s.messages, s.records, s.rrsets), (3, 6, 3));
    }
}
