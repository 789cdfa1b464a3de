//! A latency histogram of fixed buckets of relaxed atomics: one `observe` per answered query,
//! read at scrape time by the metrics endpoint as `dnsensor_proxy_answer_latency_seconds`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (inclusive); one more bucket holds the rest.
/// From a cached answer on the same host (tens of µs) to the 2 s default query timeout.
pub const BOUNDS_MICROS: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

/// Counts of observations per bucket and their sum. Written by any thread, without locks.
#[derive(Debug, Default)]
pub struct Latency {
    /// Non-cumulative: `buckets[i]` counts durations in (BOUNDS[i-1], BOUNDS[i]]; the last one
    /// counts those above every bound.
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A point-in-time copy of a [`Latency`].
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    /// (upper bound in seconds, observations in that bucket alone), ending with +∞.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observed durations, in seconds.
    pub sum_seconds: f64,
    /// Observations in all (the sum of the buckets read).
    pub count: u64,
}

impl Latency {
    /// Counts one duration.
    pub fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_MICROS.partition_point(|&b| b < micros);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Reads every bucket once. The count is the sum of the buckets read, so it always equals
    /// the +∞ bucket of the cumulative form; the sum may be a few observations ahead.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        let mut count = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            let bound = BOUNDS_MICROS
                .get(i)
                .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
            buckets.push((bound, n));
        }
        LatencySnapshot {
            buckets,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        let l = Latency::default();
        l.observe(Duration::from_micros(10));
        l.observe(Duration::from_micros(50));
        l.observe(Duration::from_micros(51));
        l.observe(Duration::from_millis(1));
        l.observe(Duration::from_secs(60));
        let s = l.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.buckets.len(), BOUNDS_MICROS.len() + 1);
        assert_eq!(s.buckets[0], (0.00005, 2));
        assert_eq!(s.buckets[1], (0.0001, 1));
        assert_eq!(s.buckets[4], (0.001, 1));
        assert_eq!(s.buckets[BOUNDS_MICROS.len()], (f64::INFINITY, 1));
        let want = 60.0 + 0.001 + 0.000_051 + 0.000_05 + 0.000_01;
        assert!((s.sum_seconds - want).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
