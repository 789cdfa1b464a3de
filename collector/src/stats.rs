//! The collector's counters: batches stored and seen again, records merged, queries answered,
//! and requests refused by status. Read by the metrics endpoint (`dnsensor collector --metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

/// The statuses a refusal can have, in the order [`CollectorStats::refused`] reports them.
pub const REFUSAL_STATUSES: [u16; 5] = [400, 401, 413, 422, 500];

/// Counters of a running collector; every field only grows.
#[derive(Debug, Default)]
pub struct CollectorStats {
    /// Batches stored for the first time (201).
    pub batches_stored: AtomicU64,
    /// Batches already stored and answered 200 again (a retry after a lost answer).
    pub batches_duplicate: AtomicU64,
    /// Records of the batches stored for the first time.
    pub records_stored: AtomicU64,
    /// Queries answered (200), over both query endpoints.
    pub queries_answered: AtomicU64,
    /// Refused requests, one counter per status of [`REFUSAL_STATUSES`].
    refused: [AtomicU64; REFUSAL_STATUSES.len()],
}

impl CollectorStats {
    /// Counts one refused request; any other status counts as a 500.
    pub(crate) fn refuse(&self, status: u16) {
        let i = REFUSAL_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(REFUSAL_STATUSES.len() - 1);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Refused requests per status, in the order of [`REFUSAL_STATUSES`].
    pub fn refused(&self) -> [(u16, u64); REFUSAL_STATUSES.len()] {
        std::array::from_fn(|i| (REFUSAL_STATUSES[i], self.refused[i].load(Ordering::Relaxed)))
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_status() {
        let s = CollectorStats::default();
        for status in [401, 401, 400, 413, 422, 500, 503] {
            s.refuse(status);
        }
        assert_eq!(
            s.refused(),
            [(400, 1), (401, 2), (413, 1), (422, 1), (500, 2)]
        );
    }
}
