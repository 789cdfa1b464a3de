//! The de-duplication window: one table per worker, counting each RRset key's sightings and its first and last time.
//! Tables are bounded by an entry cap; a full table is flushed early so memory stays flat whatever the input.

use hashbrown::HashMap;

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
        self.count += other.count;
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }
}

/// A table of RRset keys to their [`Entry`]. Keys are the canonical bytes made by
/// [`crate::rrset::Extractor`]; a key is copied only the first time it is seen in a window.
#[derive(Debug)]
pub struct DedupTable {
    // Seeded at random per table: the keys are attacker-influenced, but the cap bounds the damage
    // and a random seed keeps collisions from being precomputed.
    map: HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
    max_entries: usize,
}

impl DedupTable {
    /// An empty table that reports [`is_full`](Self::is_full) at `max_entries` keys (at least 1).
    pub fn new(max_entries: usize) -> DedupTable {
        // Sized up front, because a table refills from empty after every flush and growing
        // it by rehashing showed in profiles; 64 Ki entries cost about 2.5 MiB.
        let capacity = max_entries.clamp(1, 1 << 16);
        DedupTable {
            map: HashMap::with_capacity_and_hasher(
                capacity,
                foldhash::fast::RandomState::default(),
            ),
            max_entries: max_entries.max(1),
        }
    }

    /// Counts one sighting of `key` at `time` (Unix seconds).
    pub fn observe(&mut self, key: &[u8], time: u64) {
        if let Some(entry) = self.map.get_mut(key) {
            entry.count += 1;
            entry.first = entry.first.min(time);
            entry.last = entry.last.max(time);
        } else {
            self.map.insert(
                key.into(),
                Entry {
                    count: 1,
                    first: time,
                    last: time,
                },
            );
        }
    }

    /// True once the table holds its cap of keys and should be flushed.
    pub fn is_full(&self) -> bool {
        self.map.len() >= self.max_entries
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no key has been seen.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Moves the contents out, leaving an empty table with the same cap.
    pub fn take(&mut self) -> DedupTable {
        let fresh = DedupTable::new(self.max_entries);
        std::mem::replace(self, fresh)
    }

    /// Folds another table into this one: counts add up, times widen. The cap is not enforced
    /// here because merging happens at flush time, after which the table is written and dropped.
    pub fn merge(&mut self, other: DedupTable) {
        if self.map.is_empty() {
            self.map = other.map;
            return;
        }
        for (key, entry) in other.map {
            self.map
                .entry(key)
                .and_modify(|e| e.absorb(&entry))
                .or_insert(entry);
        }
    }

    /// Iterates over keys and entries in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.map.iter().map(|(k, e)| (&**k, e))
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
}
