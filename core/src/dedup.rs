//! The de-duplication window: one table per worker, counting each RRset key's sightings and its first and last time.
//! Tables are bounded by an entry cap; a full table is flushed early so memory stays flat whatever the input.

use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;

/// What the window knows about one RRset key. The default is no sighting at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// Sightings: responses that carried this exact RRset.
    pub count: u64,
    /// First sighting, Unix seconds.
    pub first: u64,
    /// Last sighting, Unix seconds.
    pub last: u64,
    /// Distinct keyed client hashes seen with this key; 0 unless the table counts clients.
    pub clients: u32,
}

impl Entry {
    /// One sighting at `time`.
    pub fn once(time: u64) -> Entry {
        Entry {
            count: 1,
            first: time,
            last: time,
            clients: 0,
        }
    }

    /// Adds the count and widens the times. `clients` is left alone: distinct counts do not add
    /// up, so the table recounts them from its client set.
    fn absorb(&mut self, other: &Entry) {
        // Saturating: counts come from untrusted traffic, and a window must never panic.
        self.count = self.count.saturating_add(other.count);
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }
}

/// The distinct (key, client hash) pairs of a table that counts clients, bounded like the table.
#[derive(Debug)]
struct ClientSet {
    /// (the key's arena offset, which is unique per key within a table; keyed client hash).
    pairs: hashbrown::HashSet<(usize, u64), foldhash::fast::RandomState>,
    max_pairs: usize,
    /// Pairs not counted because the set was full.
    saturated: u64,
}

impl ClientSet {
    fn new(max_entries: usize) -> ClientSet {
        ClientSet {
            pairs: hashbrown::HashSet::with_hasher(foldhash::fast::RandomState::default()),
            // A few clients per key on average before the set stops growing.
            max_pairs: max_entries.saturating_mul(8).max(1 << 16),
            saturated: 0,
        }
    }

    /// True if the pair is new (and now counted).
    fn insert(&mut self, key_start: usize, client: u64) -> bool {
        if self.pairs.len() >= self.max_pairs && !self.pairs.contains(&(key_start, client)) {
            self.saturated += 1;
            return false;
        }
        self.pairs.insert((key_start, client))
    }
}

/// A table of RRset keys to their [`Entry`]. Keys are the canonical bytes made by
/// [`crate::rrset::Extractor`]. They are copied into one growing byte arena the first time they
/// are seen in a window, so a new key costs no allocation of its own and a flush frees two
/// buffers instead of one per key.
#[derive(Debug)]
pub struct DedupTable {
    slots: HashTable<Slot>,
    keys: Vec<u8>,
    // Seeded at random per table: the keys are attacker-influenced, but the cap bounds the damage
    // and a random seed keeps collisions from being precomputed.
    hasher: foldhash::fast::RandomState,
    max_entries: usize,
    /// Present when the table counts distinct clients (`--client-counts`).
    clients: Option<ClientSet>,
}

/// Where a key lives in one [`DedupTable`]: enough to count it again without its bytes, for as
/// long as that table is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef {
    hash: u64,
    start: usize,
}

#[derive(Debug)]
struct Slot {
    start: usize,
    len: usize,
    entry: Entry,
}

impl Slot {
    fn key<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        arena.get(self.start..self.start + self.len).unwrap_or(&[])
    }
}

/// Bytes of arena reserved per presized slot: a typical A or NS set's key.
const TYPICAL_KEY_BYTES: usize = 48;

/// Slots a fresh table has room for before it first grows.
const INITIAL_SLOTS: usize = 4096;

impl DedupTable {
    /// An empty table that reports [`is_full`](Self::is_full) at `max_entries` keys (at least 1).
    pub fn new(max_entries: usize) -> DedupTable {
        DedupTable::sized(max_entries, INITIAL_SLOTS)
    }

    /// An empty table with room for `expected` keys (within the cap) before it grows.
    fn sized(max_entries: usize, expected: usize) -> DedupTable {
        // Not sized for the cap: a window with few distinct keys then keeps them in a few
        // hundred KiB that stay in cache, where a table sized for 64 Ki keys spread them over
        // 3 MiB and a probe was a cache miss (the proxy's pipeline worker, docs/benchmarks.md).
        let capacity = expected.max(INITIAL_SLOTS).min(max_entries.max(1));
        DedupTable {
            slots: HashTable::with_capacity(capacity),
            keys: Vec::with_capacity(capacity * TYPICAL_KEY_BYTES),
            hasher: foldhash::fast::RandomState::default(),
            max_entries: max_entries.max(1),
            clients: None,
        }
    }

    /// Like [`DedupTable::new`], for a table that also counts distinct clients per key.
    pub fn with_client_counts(max_entries: usize) -> DedupTable {
        DedupTable {
            clients: Some(ClientSet::new(max_entries)),
            ..DedupTable::new(max_entries)
        }
    }

    /// Counts one sighting of `key` at `time` (Unix seconds).
    pub fn observe(&mut self, key: &[u8], time: u64) {
        self.add(key, &Entry::once(time));
    }

    /// Counts one sighting of `key` at `time` by the client whose keyed hash is `client`. Without
    /// a client, or in a table that does not count clients, this is [`DedupTable::observe`].
    #[inline]
    pub fn observe_from(&mut self, key: &[u8], time: u64, client: Option<u64>) {
        self.observe_keyed(key, time, client);
    }

    /// [`DedupTable::observe_from`], returning where the key lives in this table so that a
    /// later sighting can be counted with [`DedupTable::observe_again`] without the key's bytes.
    #[inline]
    pub fn observe_keyed(&mut self, key: &[u8], time: u64, client: Option<u64>) -> KeyRef {
        let (hash, slot) = add_to(
            &mut self.slots,
            &mut self.keys,
            &self.hasher,
            key,
            &Entry::once(time),
        );
        count_client(self.clients.as_mut(), slot, client);
        KeyRef {
            hash,
            start: slot.start,
        }
    }

    /// Counts one more sighting, at `time` by `client`, of a key this table already holds.
    /// Returns false, counting nothing, when `at` is not one of this table's keys (a [`KeyRef`]
    /// from a table since taken).
    #[inline]
    pub fn observe_again(&mut self, at: KeyRef, time: u64, client: Option<u64>) -> bool {
        // Arena offsets are unique per key within a table, so they identify the key exactly.
        let Some(slot) = self.slots.find_mut(at.hash, |s| s.start == at.start) else {
            return false;
        };
        slot.entry.absorb(&Entry::once(time));
        count_client(self.clients.as_mut(), slot, client);
        true
    }

    /// Counts `sightings` (counts and times, no clients) against a key this table already
    /// holds: what many [`DedupTable::observe_again`] calls without a client would count.
    /// Returns false, counting nothing, when `at` is not one of this table's keys.
    pub fn absorb_again(&mut self, at: KeyRef, sightings: &Entry) -> bool {
        let Some(slot) = self.slots.find_mut(at.hash, |s| s.start == at.start) else {
            return false;
        };
        slot.entry.absorb(sightings);
        true
    }

    /// Pairs not counted because the table's client set was full.
    pub fn clients_saturated(&self) -> u64 {
        self.clients.as_ref().map_or(0, |c| c.saturated)
    }

    /// Adds `entry` to the key's entry, inserting the key if it is new.
    fn add(&mut self, key: &[u8], entry: &Entry) -> &mut Slot {
        add_to(&mut self.slots, &mut self.keys, &self.hasher, key, entry).1
    }

    /// True once the table holds its cap of keys and should be flushed.
    pub fn is_full(&self) -> bool {
        self.slots.len() >= self.max_entries
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no key has been seen.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Moves the contents out, leaving an empty table with the same cap, sized for as many keys
    /// as this one held: the next window is likely to see as many, and then never grows.
    pub fn take(&mut self) -> DedupTable {
        let mut fresh = DedupTable::sized(self.max_entries, self.len());
        if self.clients.is_some() {
            fresh.clients = Some(ClientSet::new(self.max_entries));
        }
        std::mem::replace(self, fresh)
    }

    /// Folds another table into this one: counts add up, times widen. The cap is not enforced
    /// here because merging happens at flush time, after which the table is written and dropped.
    pub fn merge(&mut self, other: DedupTable) {
        if self.slots.is_empty() && (self.clients.is_some() || other.clients.is_none()) {
            *self = DedupTable {
                max_entries: self.max_entries,
                ..other
            };
            return;
        }
        // The other table's clients, by its key offsets, to be recounted under ours.
        let mut theirs: hashbrown::HashMap<usize, Vec<u64>> = hashbrown::HashMap::new();
        if let Some(set) = &other.clients {
            for &(start, client) in &set.pairs {
                theirs.entry(start).or_default().push(client);
            }
        }
        for slot in other.slots.iter() {
            let (_, mine) = add_to(
                &mut self.slots,
                &mut self.keys,
                &self.hasher,
                slot.key(&other.keys),
                &slot.entry,
            );
            if let (Some(set), Some(clients)) = (self.clients.as_mut(), theirs.get(&slot.start)) {
                for &client in clients {
                    if set.insert(mine.start, client) {
                        mine.entry.clients = mine.entry.clients.saturating_add(1);
                    }
                }
            }
        }
        if let (Some(set), Some(their_set)) = (self.clients.as_mut(), other.clients.as_ref()) {
            set.saturated += their_set.saturated;
        }
    }

    /// Iterates over keys and entries in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.slots.iter().map(|s| (s.key(&self.keys), &s.entry))
    }
}

/// The hash of one key: its bytes alone, without the length prefix that `Hash for [u8]` adds.
/// A table hashes nothing but single whole keys, so the prefix separates nothing, and writing it
/// was an extra mixing step for every key.
fn hash_key(hasher: &foldhash::fast::RandomState, key: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    h.write(key);
    h.finish()
}

/// Adds `entry` to the entry of `key`, copying the key into the arena if it is new, and returns
/// the key's hash and its slot. A free function so callers can hold the slot while touching the
/// table's other fields.
fn add_to<'t>(
    slots: &'t mut HashTable<Slot>,
    keys: &mut Vec<u8>,
    hasher: &foldhash::fast::RandomState,
    key: &[u8],
    entry: &Entry,
) -> (u64, &'t mut Slot) {
    let hash = hash_key(hasher, key);
    let arena = &*keys;
    match slots.entry(
        hash,
        |s| s.key(arena) == key,
        |s| hash_key(hasher, s.key(arena)),
    ) {
        hashbrown::hash_table::Entry::Occupied(slot) => {
            let slot = slot.into_mut();
            slot.entry.absorb(entry);
            (hash, slot)
        }
        hashbrown::hash_table::Entry::Vacant(vacant) => {
            let start = keys.len();
            keys.extend_from_slice(key);
            let mut fresh = *entry;
            fresh.clients = 0;
            let slot = vacant
                .insert(Slot {
                    start,
                    len: key.len(),
                    entry: fresh,
                })
                .into_mut();
            (hash, slot)
        }
    }
}

/// Counts `client` for the slot's key if the table counts clients and the pair is new.
fn count_client(clients: Option<&mut ClientSet>, slot: &mut Slot, client: Option<u64>) {
    if let (Some(client), Some(set)) = (client, clients) {
        if set.insert(slot.start, client) {
            slot.entry.clients = slot.entry.clients.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_widens_times() {
        let mut t = DedupTable::new(10);
        t.observe(b"k1", 100);
        t.observe(b"k1", 90);
        t.observe(b"k1", 120);
        t.observe(b"k2", 50);
        assert_eq!(t.len(), 2);
        let e1 = t.iter().find(|(k, _)| *k == b"k1").unwrap().1;
        assert_eq!(
            *e1,
            Entry {
                count: 3,
                first: 90,
                last: 120,
                clients: 0,
            }
        );
    }

    #[test]
    fn cap_and_take() {
        let mut t = DedupTable::new(2);
        t.observe(b"a", 1);
        assert!(!t.is_full());
        t.observe(b"b", 1);
        assert!(t.is_full());
        let old = t.take();
        assert_eq!(old.len(), 2);
        assert!(t.is_empty());
        assert!(!t.is_full());
    }

    #[test]
    fn merge_sums_counts() {
        let mut a = DedupTable::new(10);
        a.observe(b"x", 10);
        a.observe(b"y", 10);
        let mut b = DedupTable::new(10);
        b.observe(b"x", 5);
        b.observe(b"x", 30);
        b.observe(b"z", 7);
        a.merge(b);
        assert_eq!(a.len(), 3);
        let x = a.iter().find(|(k, _)| *k == b"x").unwrap().1;
        assert_eq!(
            *x,
            Entry {
                count: 3,
                first: 5,
                last: 30,
                clients: 0,
            }
        );
    }

    #[test]
    fn distinct_clients_are_counted_per_key_and_recounted_on_merge() {
        let mut a = DedupTable::with_client_counts(10);
        a.observe_from(b"x", 1, Some(7));
        a.observe_from(b"x", 2, Some(7));
        a.observe_from(b"x", 3, Some(8));
        a.observe_from(b"x", 4, None);
        a.observe_from(b"y", 1, Some(7));
        let mut b = DedupTable::with_client_counts(10);
        b.observe_from(b"x", 5, Some(8));
        b.observe_from(b"x", 6, Some(9));
        b.observe_from(b"z", 6, Some(9));
        let get = |t: &DedupTable, k: &[u8]| *t.iter().find(|(key, _)| *key == k).unwrap().1;
        assert_eq!(get(&a, b"x").clients, 2);
        assert_eq!(get(&a, b"x").count, 4);
        a.merge(b);
        assert_eq!(get(&a, b"x").clients, 3, "7, 8 and 9; 8 seen by both");
        assert_eq!(get(&a, b"x").count, 6);
        assert_eq!(get(&a, b"y").clients, 1);
        assert_eq!(get(&a, b"z").clients, 1);
        // Merging into an empty table keeps the other's counts, and `take` keeps counting.
        let mut empty = DedupTable::with_client_counts(10);
        empty.merge(a.take());
        assert_eq!(get(&empty, b"x").clients, 3);
        a.observe_from(b"x", 9, Some(1));
        assert_eq!(get(&a, b"x").clients, 1);
        // A table that does not count clients writes 0.
        let mut plain = DedupTable::new(10);
        plain.observe_from(b"x", 1, Some(7));
        assert_eq!(get(&plain, b"x").clients, 0);
    }

    proptest::proptest! {
        /// The arena table agrees with a plain map, alone and after merging two halves.
        #[test]
        fn agrees_with_a_model(
            sightings in proptest::collection::vec(
                (proptest::collection::vec(0u8..4, 0..6), 0u64..1000),
                0..200,
            )
        ) {
            use std::collections::BTreeMap;
            let mut model: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
            let mut whole = DedupTable::new(1000);
            let (mut left, mut right) = (DedupTable::new(1000), DedupTable::new(1000));
            for (i, (key, time)) in sightings.iter().enumerate() {
                whole.observe(key, *time);
                if i % 2 == 0 { left.observe(key, *time) } else { right.observe(key, *time) }
                model
                    .entry(key.clone())
                    .and_modify(|e| e.absorb(&Entry::once(*time)))
                    .or_insert(Entry::once(*time));
            }
            left.merge(right);
            for table in [&whole, &left] {
                let got: BTreeMap<Vec<u8>, Entry> =
                    table.iter().map(|(k, e)| (k.to_vec(), *e)).collect();
                proptest::prop_assert_eq!(&got, &model);
                proptest::prop_assert_eq!(table.len(), model.len());
            }
        }
    }
}
