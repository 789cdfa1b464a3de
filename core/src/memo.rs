//! Repeated answers counted without a second walk: a small cache from a response's bytes (its ID
//! aside) to the RRset keys its first sighting produced in the current de-duplication table.
//!
//! Made for the proxy, which sees the same answer bytes again and again: a resolver answers a
//! popular name identically, TTLs included, many times within a second. A repeat then costs a
//! hash and a comparison instead of a walk, a decompression, the privacy check and a key built
//! from scratch. Repeats without a client hash are also held back per remembered response and
//! added to the table in one go ([`ResponseMemo::settle`]), so a repeat touches no table entry;
//! the counts come out exactly the same.
//!
//! The worker meets each remembered answer again only after the proxy's own threads have had the
//! core, so its memory is cold. Lookups of a batch are therefore made in three passes (find the
//! set, fetch the slot, count), so that the cache misses of a batch overlap instead of coming
//! one after another (docs/benchmarks.md, "A memo that fetches ahead").

use std::hash::BuildHasher;

use crate::dedup::{DedupTable, Entry, KeyRef};
use crate::rrset::{ExtractStats, Extractor};

/// Sets of remembered responses. A response may sit in any of the `WAYS` slots of the set its
/// hash picks; a new one replaces the set's least recently used. Sized for a few thousand
/// distinct answers a second that repeat: direct-mapped, 2 048 slots kept almost none of the
/// proxy benchmark's 7 000 (each shared its slot with others and was evicted before it came
/// back); 4 096 sets of 4 keep nearly all of them (docs/benchmarks.md). A power of two.
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

/// Room for one remembered body (a response without its ID) in `ResponseMemo::bodies`.
const BODY_STRIDE: usize = MAX_REMEMBERED_BYTES;

/// A cache line, the unit in which memory is fetched ahead.
const LINE: usize = 64;

/// What a lookup reads first for one set, in one cache line: whether each slot holds a response
/// of the current generation, which, how long, and when it was last used.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct SetTags {
    /// The high half of each remembered response's hash (the low bits chose the set).
    tag: [u32; WAYS],
    /// The memo generation each slot was filled in; older ones are empty.
    generation: [u32; WAYS],
    /// The memo's clock (wrapping) when each slot was last filled or hit.
    used: [u32; WAYS],
    /// Each remembered body's length.
    len: [u16; WAYS],
}

impl SetTags {
    /// True if slot `way` may hold the body that hashed to `hash`: same tag and length, filled in
    /// `generation`. Only comparing the bodies tells for sure.
    fn may_hold(&self, way: usize, hash: u64, generation: u32, body_len: usize) -> bool {
        self.tag[way] == tag_of(hash)
            && self.generation[way] == generation
            && usize::from(self.len[way]) == body_len
    }
}

/// What a remembered response stands for; read only when it is met again.
#[derive(Debug, Default)]
struct Slot {
    /// What extraction counted for this response.
    stats: ExtractStats,
    /// Repeats without a client held back: counts and times still to add to each key.
    held: Entry,
    /// Where each RRset key of the response lives in the table, in extraction order.
    keys: Vec<KeyRef>,
}

impl Slot {
    /// Adds the repeats held back to this slot's keys in `table` if `live` (filled in the
    /// current generation, so its keys are in `table`), and starts holding anew.
    fn hand_over(&mut self, live: bool, table: &mut DedupTable) {
        if live && self.held.count > 0 {
            for &key in &self.keys {
                let counted = table.absorb_again(key, &self.held);
                debug_assert!(counted, "a remembered key outlived its table");
            }
        }
        self.held = Entry::default();
    }
}

/// A response's place in a memo, found by [`ResponseMemo::look_ahead`] before it is counted.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    hash: u64,
}

/// The memo of one pipeline worker, valid for one dedup table and one set of extraction rules.
pub struct ResponseMemo {
    /// One line per set.
    tags: Box<[SetTags]>,
    /// `WAYS` slots per set, one after another.
    slots: Box<[Slot]>,
    /// Each slot's body at `BODY_STRIDE` times its index: where a body lives is known without
    /// reading anything first, so it can be fetched ahead.
    bodies: Box<[u8]>,
    // Random per memo: the responses are attacker-influenced.
    hasher: foldhash::fast::RandomState,
    /// Slots written under another generation are empty. Starts at 1, so fresh slots are.
    generation: u32,
    /// Counts lookups, wrapping; a slot's `used` is the count at its last hit or fill.
    clock: u32,
    /// Responses counted from a remembered first sighting.
    hits: u64,
}

impl Default for ResponseMemo {
    fn default() -> Self {
        ResponseMemo::new()
    }
}

/// Asks the processor to start loading the cache line at `at`. Only a hint: it reads nothing the
/// program sees and never faults, whatever the address.
#[inline(always)]
fn fetch_line<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: PREFETCHT0 does not access memory architecturally; any address is allowed.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

impl ResponseMemo {
    /// An empty memo.
    pub fn new() -> ResponseMemo {
        ResponseMemo::with_sets(SETS)
    }

    fn with_sets(sets: usize) -> ResponseMemo {
        assert!(sets.is_power_of_two(), "a memo has a power of two sets");
        ResponseMemo {
            tags: vec![SetTags::default(); sets].into_boxed_slice(),
            slots: (0..sets * WAYS).map(|_| Slot::default()).collect(),
            // Zeroed memory is mapped on first touch, so the bound is not paid up front.
            bodies: vec![0; sets * WAYS * BODY_STRIDE].into_boxed_slice(),
            hasher: foldhash::fast::RandomState::default(),
            generation: 1,
            clock: 0,
            hits: 0,
        }
    }

    /// Adds the repeats held back to `table`, whose keys the memo remembers. Call it before the
    /// table's counts are read or the table is taken.
    pub fn settle(&mut self, table: &mut DedupTable) {
        let generation = self.generation;
        for (set, tags) in self.tags.iter().enumerate() {
            for way in 0..WAYS {
                let live = tags.generation[way] == generation;
                self.slots[set * WAYS + way].hand_over(live, table);
            }
        }
    }

    /// Forgets every response. Call it, after [`ResponseMemo::settle`], whenever the table is
    /// taken (its keys move out) or the extractor's rules change (a new privacy filter).
    pub fn clear(&mut self) {
        debug_assert!(
            self.slots.iter().all(|s| s.held.count == 0),
            "repeats held back were not settled"
        );
        if self.generation == u32::MAX {
            // Every old generation would come back in turn: empty the slots for real instead.
            self.tags.fill(SetTags::default());
            self.generation = 0;
        }
        self.generation += 1;
    }

    /// Responses so far that were counted against a remembered first sighting.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Hashes `response` and starts fetching its set, if the memo would remember it. The first of
    /// three passes over a batch: then [`ResponseMemo::fetch`], then [`ResponseMemo::record_at`].
    #[inline]
    pub fn look_ahead(&self, response: &[u8]) -> Option<Lookup> {
        if !rememberable(response) {
            return None;
        }
        let hash = self.hasher.hash_one(&response[ID_BYTES..]);
        fetch_line(&self.tags[self.set_of(hash)]);
        Some(Lookup { hash })
    }

    /// Starts fetching the slot and the body that `response` would be counted against, once its
    /// set has arrived: the second pass.
    #[inline]
    pub fn fetch(&self, response: &[u8], at: Lookup) {
        if !rememberable(response) {
            return;
        }
        let set = self.set_of(at.hash);
        let tags = &self.tags[set];
        let body_len = response.len() - ID_BYTES;
        for way in 0..WAYS {
            if tags.may_hold(way, at.hash, self.generation, body_len) {
                let index = set * WAYS + way;
                let slot: *const Slot = &self.slots[index];
                fetch_line(slot);
                fetch_line(slot.wrapping_byte_add(std::mem::size_of::<Slot>() - 1));
                // Bodies are not aligned to lines: every line from the first byte to the last.
                let body = self.bodies[index * BODY_STRIDE..].as_ptr();
                for offset in (0..body_len).step_by(LINE) {
                    fetch_line(body.wrapping_add(offset));
                }
                fetch_line(body.wrapping_add(body_len.saturating_sub(1)));
            }
        }
    }

    /// Extracts `response` (no bailiwick) into `table`, counting into `totals`, as
    /// [`Extractor::extract`] with [`DedupTable::observe_from`] would; a response seen before,
    /// byte for byte apart from its ID, since the last [`ResponseMemo::clear`] is counted against
    /// the keys of its first sighting instead. Counts without a client reach the table at the
    /// next [`ResponseMemo::settle`].
    pub fn record(
        &mut self,
        extractor: &mut Extractor,
        table: &mut DedupTable,
        totals: &mut ExtractStats,
        response: &[u8],
        time: u64,
        client: Option<u64>,
    ) {
        let at = self.look_ahead(response);
        self.record_at(extractor, table, totals, response, at, time, client);
    }

    /// [`ResponseMemo::record`] for a response whose [`ResponseMemo::look_ahead`] gave `at`.
    #[allow(clippy::too_many_arguments)]
    pub fn record_at(
        &mut self,
        extractor: &mut Extractor,
        table: &mut DedupTable,
        totals: &mut ExtractStats,
        response: &[u8],
        at: Option<Lookup>,
        time: u64,
        client: Option<u64>,
    ) {
        // A lookup made for another response is a caller's slip: never a panic, at worst a miss.
        let Some(Lookup { hash }) = at.filter(|_| rememberable(response)) else {
            extractor.extract(response, None, totals, |key| {
                table.observe_from(key, time, client)
            });
            return;
        };
        let body = &response[ID_BYTES..];
        self.clock = self.clock.wrapping_add(1);
        let set = self.set_of(hash);
        let generation = self.generation;
        let tags = &mut self.tags[set];
        let found = (0..WAYS).find(|&way| {
            tags.may_hold(way, hash, generation, body.len())
                && body_at(&self.bodies, set * WAYS + way, body.len()) == body
        });
        if let Some(way) = found {
            tags.used[way] = self.clock;
            self.hits += 1;
            let slot = &mut self.slots[set * WAYS + way];
            match client {
                // Counts and times add up, so many repeats go into the table as one.
                None => absorb(&mut slot.held, time),
                Some(_) => {
                    for &key in &slot.keys {
                        let counted = table.observe_again(key, time, client);
                        debug_assert!(counted, "a remembered key outlived its table");
                    }
                }
            }
            totals.add(&slot.stats);
            return;
        }
        // An empty slot if the set has one, else the one unused longest.
        let clock = self.clock;
        let way = (0..WAYS)
            .max_by_key(|&way| {
                if tags.generation[way] == generation {
                    clock.wrapping_sub(tags.used[way])
                } else {
                    u32::MAX
                }
            })
            .expect("a set has slots");
        let index = set * WAYS + way;
        let slot = &mut self.slots[index];
        // The keys of the response it held are still in the table: its repeats go in now.
        slot.hand_over(tags.generation[way] == generation, table);
        slot.keys.clear();
        let mut stats = ExtractStats::default();
        extractor.extract(response, None, &mut stats, |key| {
            slot.keys.push(table.observe_keyed(key, time, client))
        });
        totals.add(&stats);
        slot.stats = stats;
        self.bodies[index * BODY_STRIDE..][..body.len()].copy_from_slice(body);
        tags.tag[way] = tag_of(hash);
        tags.generation[way] = generation;
        tags.used[way] = clock;
        tags.len[way] = body.len() as u16;
    }

    fn set_of(&self, hash: u64) -> usize {
        hash as usize & (self.tags.len() - 1)
    }
}

/// True for a response the memo would remember: a header at least, and at most
/// `MAX_REMEMBERED_BYTES`.
fn rememberable(response: &[u8]) -> bool {
    (HEADER_BYTES..=MAX_REMEMBERED_BYTES).contains(&response.len())
}

/// The part of a hash that tells apart the responses of one set.
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// The body remembered in slot `index`, `len` bytes long.
fn body_at(bodies: &[u8], index: usize, len: usize) -> &[u8] {
    &bodies[index * BODY_STRIDE..][..len]
}

/// One more sighting at `time` in `held`.
fn absorb(held: &mut Entry, time: u64) {
    if held.count == 0 {
        *held = Entry::once(time);
    } else {
        held.count = held.count.saturating_add(1);
        held.first = held.first.min(time);
        held.last = held.last.max(time);
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

    /// A table entry without clients.
    fn sightings(count: u64, first: u64, last: u64) -> crate::dedup::Entry {
        crate::dedup::Entry {
            count,
            first,
            last,
            clients: 0,
        }
    }

    fn table_contents(t: &DedupTable) -> Vec<(Vec<u8>, crate::dedup::Entry)> {
        let mut v: Vec<_> = t.iter().map(|(k, e)| (k.to_vec(), *e)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    proptest! {
        /// Any sequence of responses (repeats with other IDs, other TTLs, damaged copies, a
        /// table taken midway), looked up in batches as the pipeline worker does, leaves the
        /// same table and counters as plain extraction: in a memo of one set, where answers
        /// evict each other, and in a full-sized one.
        #[test]
        fn same_table_and_counters_as_plain_extraction(
            picks in prop::collection::vec((0usize..6, any::<u16>(), 0u64..5, prop::option::of(0u64..3)), 1..200),
            take_at in 0usize..200,
            cut in 0usize..40,
            batch in 1usize..9,
            sets in prop::sample::select(vec![1usize, SETS]),
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
            let mut memo = ResponseMemo::with_sets(sets);
            let mut plain_taken = Vec::new();
            let mut memo_taken = Vec::new();
            let wire: Vec<Vec<u8>> = picks
                .iter()
                .map(|&(which, id, _, _)| {
                    let mut r = responses[which].clone();
                    r[..2].copy_from_slice(&id.to_be_bytes());
                    r
                })
                .collect();
            for (chunk, picked) in picks.chunks(batch).enumerate() {
                let first = chunk * batch;
                let lookups: Vec<_> = wire[first..first + picked.len()]
                    .iter()
                    .map(|r| memo.look_ahead(r))
                    .collect();
                for (r, at) in wire[first..].iter().zip(&lookups) {
                    if let Some(at) = at {
                        memo.fetch(r, *at);
                    }
                }
                for (j, &(_, _, time, client)) in picked.iter().enumerate() {
                    let i = first + j;
                    if i == take_at {
                        plain_taken.push(table_contents(&plain_t.take()));
                        memo.settle(&mut memo_t);
                        memo_taken.push(table_contents(&memo_t.take()));
                        memo.clear();
                    }
                    let r = &wire[i];
                    plain_x.extract(r, None, &mut plain_s, |k| plain_t.observe_from(k, time, client));
                    memo.record_at(&mut memo_x, &mut memo_t, &mut memo_s, r, lookups[j], time, client);
                }
            }
            memo.settle(&mut memo_t);
            prop_assert_eq!(plain_s, memo_s);
            prop_assert_eq!(table_contents(&plain_t), table_contents(&memo_t));
            prop_assert_eq!(plain_taken, memo_taken);
        }
    }

    /// A memo with what a worker passes to it: an extractor, a table and totals.
    struct Rig {
        memo: ResponseMemo,
        x: Extractor,
        t: DedupTable,
        s: ExtractStats,
    }

    impl Rig {
        fn new(memo: ResponseMemo, max_entries: usize) -> Rig {
            Rig {
                memo,
                x: extractor(),
                t: DedupTable::new(max_entries),
                s: ExtractStats::default(),
            }
        }

        /// Records `response` at `time`, without a client.
        fn record(&mut self, response: &[u8], time: u64) {
            let Rig { memo, x, t, s } = self;
            memo.record(x, t, s, response, time, None);
        }

        fn settle(&mut self) {
            self.memo.settle(&mut self.t);
        }
    }

    #[test]
    fn repeats_without_a_client_reach_the_table_when_settled() {
        let mut rig = Rig::new(ResponseMemo::new(), 100);
        for (id, time) in [(1, 10), (2, 30), (3, 20)] {
            rig.record(&answer(id, "a.example.", 60, &[1]), time);
        }
        assert_eq!(table_contents(&rig.t)[0].1, sightings(1, 10, 10));
        rig.settle();
        let thrice = sightings(3, 10, 30);
        assert_eq!(table_contents(&rig.t)[0].1, thrice);
        // Settled counts are not added twice.
        rig.settle();
        assert_eq!(table_contents(&rig.t)[0].1, thrice);
        assert_eq!((rig.memo.hits(), rig.s.messages), (2, 3));
    }

    #[test]
    fn an_evicted_answer_takes_its_held_repeats_to_the_table() {
        let mut rig = Rig::new(ResponseMemo::with_sets(1), 100);
        let a = |i: u8| answer(u16::from(i), "a.example.", 60, &[i]);
        rig.record(&a(0), 5);
        rig.record(&a(0), 7);
        // WAYS newer answers push a(0) out without a settle.
        for i in 1..=WAYS as u8 {
            rig.record(&a(i), 9);
        }
        let key_of_0 = table_contents(&rig.t)
            .into_iter()
            .find(|(_, e)| e.first == 5)
            .expect("a(0)'s key");
        assert_eq!((key_of_0.1.count, key_of_0.1.last), (2, 7));
        rig.record(&a(0), 11);
        assert_eq!(rig.memo.hits(), 1, "a(0) was replaced");
    }

    #[test]
    fn a_lookup_used_with_another_response_is_only_a_miss() {
        let Rig {
            mut memo,
            mut x,
            mut t,
            mut s,
        } = Rig::new(ResponseMemo::new(), 100);
        let a = answer(1, "a.example.", 60, &[1]);
        let at = memo.look_ahead(&a).expect("a short answer is remembered");
        for other in [
            &b""[..],
            &[0x80][..],
            &[0xab; 600][..],
            &answer(2, "b.example.", 60, &[2]),
        ] {
            memo.fetch(other, at);
            memo.record_at(&mut x, &mut t, &mut s, other, Some(at), 1, None);
        }
        assert_eq!(memo.look_ahead(&[0; 11]).map(|l| l.hash), None);
        assert_eq!((s.messages, s.malformed, s.rrsets), (4, 3, 1));
    }

    #[test]
    fn the_generation_wraps_to_empty_slots() {
        let mut rig = Rig::new(ResponseMemo::with_sets(1), 100);
        rig.memo.generation = u32::MAX;
        rig.record(&answer(1, "a.example.", 60, &[1]), 1);
        rig.settle();
        rig.memo.clear();
        assert_eq!(rig.memo.generation, 1);
        // Remembered under u32::MAX, which could otherwise come round again: gone.
        assert!(rig.memo.tags.iter().all(|set| set.generation == [0; WAYS]));
        rig.t = DedupTable::new(100);
        for id in [2, 3] {
            rig.record(&answer(id, "a.example.", 60, &[1]), u64::from(id));
        }
        rig.settle();
        assert_eq!(rig.memo.hits(), 1);
        assert_eq!(table_contents(&rig.t)[0].1.count, 2);
    }

    #[test]
    fn thousands_of_answers_that_repeat_are_remembered() {
        // 3 000 distinct answers, then each again: a repeat finds its first sighting unless
        // more than four of the answers fell into one set (a few at most, by the hash).
        let mut rig = Rig::new(ResponseMemo::new(), 10_000);
        let names: Vec<String> = (0..3000).map(|i| format!("h{i}.example.")).collect();
        for round in 0..2u16 {
            for (i, name) in names.iter().enumerate() {
                rig.record(&answer(round ^ i as u16, name, 300, &[(i % 250) as u8]), 1);
            }
        }
        let hits = rig.memo.hits();
        assert!(hits >= 2950, "only {hits} of 3000 repeats hit");
        assert_eq!((rig.s.messages, rig.t.len()), (6000, 3000));
    }

    #[test]
    fn the_least_recently_used_answer_is_replaced() {
        // Starting just before the clock wraps, so that the age is checked across the wrap.
        for clock in [0, u32::MAX - 2] {
            least_recently_used_is_replaced(clock);
        }
    }

    fn least_recently_used_is_replaced(clock: u32) {
        // Answers that would all share one set: in a memo of one set of WAYS slots, the one
        // unused longest goes first, and one hit keeps an answer in.
        let mut rig = Rig::new(ResponseMemo::with_sets(1), 100);
        rig.memo.clock = clock;
        let a = |i: u8| answer(u16::from(i), "a.example.", 60, &[i]);
        for i in 0..WAYS as u8 {
            rig.record(&a(i), 1);
        }
        rig.record(&a(0), 1); // hit: 0 is now the newest
        rig.record(&a(9), 1); // replaces 1, the oldest
        assert_eq!(rig.memo.hits(), 1);
        rig.record(&a(0), 1);
        rig.record(&a(2), 1);
        assert_eq!(rig.memo.hits(), 3);
        rig.record(&a(1), 1); // was replaced
        assert_eq!(rig.memo.hits(), 3);
    }

    #[test]
    fn a_repeat_is_counted_without_extraction() {
        let mut rig = Rig::new(ResponseMemo::new(), 100);
        rig.record(&answer(1, "a.example.", 60, &[1, 2]), 10);
        rig.record(&answer(2, "a.example.", 60, &[1, 2]), 20);
        // Another TTL is another response: extracted again, same key.
        rig.record(&answer(3, "a.example.", 59, &[1, 2]), 30);
        rig.settle();
        let contents = table_contents(&rig.t);
        assert_eq!(contents.len(), 1);
        assert_eq!(contents[0].1, sightings(3, 10, 30));
        assert_eq!((rig.s.messages, rig.s.records, rig.s.rrsets), (3, 6, 3));
    }
}
