//! The de-duplication window: one table per worker, counting each RRset key's sightings and its first and last time.
//! Tables are bounded by an entry cap; a full table is flushed early so memory stays flat whatever the input.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// What the window knows about one RRset key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Sightings: responses that carried this exact RRset.
    pub count: u64,
    /// First sighting, Unix seconds.
    pub first: u64,
    /// Last sighting, Unix seconds.
    pub last: u64,
}

impl Entry {
    fn absorb(&mut self, other: &Entry) {
        // Saturating: counts come from untrusted traffic, and a window must never panic.
        self.count = self.count.saturating_add(other.count);
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
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

impl DedupTable {
    /// An empty table that reports [`is_full`](Self::is_full) at `max_entries` keys (at least 1).
    pub fn new(max_entries: usize) -> DedupTable {
        // Sized up front, because a table refills from empty after every flush and growing
        // it by rehashing showed in profiles; 64 Ki slots cost about 5.5 MiB with their arena.
        let capacity = max_entries.clamp(1, 1 << 16);
        DedupTable {
            slots: HashTable::with_capacity(capacity),
            keys: Vec::with_capacity(capacity * TYPICAL_KEY_BYTES),
            hasher: foldhash::fast::RandomState::default(),
            max_entries: max_entries.max(1),
        }
    }

    /// Counts one sighting of `key` at `time` (Unix seconds).
    pub fn observe(&mut self, key: &[u8], time: u64) {
        self.add(
            key,
            &Entry {
                count: 1,
                first: time,
                last: time,
            },
        );
    }

    /// Adds `entry` to the key's entry, inserting the key if it is new.
    fn add(&mut self, key: &[u8], entry: &Entry) {
        let DedupTable {
            slots,
            keys,
            hasher,
            ..
        } = self;
        let hash = hasher.hash_one(key);
        if let Some(slot) = slots.find_mut(hash, |s| s.key(keys) == key) {
            slot.entry.absorb(entry);
            return;
        }
        let start = keys.len();
        keys.extend_from_slice(key);
        let arena = &*keys;
        slots.insert_unique(
            hash,
            Slot {
                start,
                len: key.len(),
                entry: *entry,
            },
            |s| hasher.hash_one(s.key(arena)),
        );
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

    /// Moves the contents out, leaving an empty table with the same cap.
    pub fn take(&mut self) -> DedupTable {
        let fresh = DedupTable::new(self.max_entries);
        std::mem::replace(self, fresh)
    }

    /// Folds another table into this one: counts add up, times widen. The cap is not enforced
    /// here because merging happens at flush time, after which the table is written and dropped.
    pub fn merge(&mut self, other: DedupTable) {
        if self.slots.is_empty() {
            *self = DedupTable {
                max_entries: self.max_entries,
                ..other
            };
            return;
        }
        for slot in other.slots.iter() {
            self.add(slot.key(&other.keys), &slot.entry);
        }
    }

    /// Iterates over keys and entries in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.slots.iter().map(|s| (s.key(&self.keys), &s.entry))
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
                last: 120
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
                last: 30
            }
        );
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
                    .and_modify(|e| e.absorb(&Entry { count: 1, first: *time, last: *time }))
                    .or_insert(Entry { count: 1, first: *time, last: *time });
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
