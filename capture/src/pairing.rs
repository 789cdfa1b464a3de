//! Query/response pairing: a response is used only when its query was seen (unless told otherwise).
//! The pending-query table is bounded in entries and in time, with counted expiries and evictions.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;
use hashbrown::HashMap;

use crate::stats::CaptureSummary;

/// What a response must share with its query, besides the question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairKey {
    /// The querier.
    pub client: SocketAddr,
    /// The server queried.
    pub server: SocketAddr,
    /// DNS message id.
    pub id: u16,
    /// Over TCP (ids are per connection there, but the ports already say that).
    pub tcp: bool,
}

/// Hashes the key as two words. The derived `Hash` fed `SocketAddr` to the hasher field by field
/// (variant, octets, port, and for IPv6 flow info and scope), which showed in the capture
/// benchmark's profile; equality still compares every field.
impl std::hash::Hash for PairKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        fn word(addr: &SocketAddr) -> u128 {
            let ip = match addr.ip() {
                std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)),
                std::net::IpAddr::V6(v6) => u128::from(v6),
            };
            ip ^ (u128::from(addr.port()) << 112)
        }
        let tag = (u128::from(self.id) << 96) ^ (u128::from(self.tcp) << 95);
        state.write_u128(word(&self.client) ^ tag);
        state.write_u128(word(&self.server));
    }
}

/// A query waiting for its response.
#[derive(Debug, Clone)]
pub struct PendingQuery {
    /// When it was seen, in microseconds of packet time.
    pub time_us: u64,
    /// The whole query message.
    pub query: Bytes,
    /// Where its question section (name, type, class) lies in `query`.
    pub question: (usize, usize),
    /// The query's RD bit.
    pub recursion_desired: bool,
}

impl PendingQuery {
    fn question_bytes(&self) -> &[u8] {
        self.query
            .get(self.question.0..self.question.1)
            .unwrap_or(&[])
    }
}

/// The pending-query table of one shard.
pub struct Pairer {
    pending: HashMap<PairKey, PendingQuery>,
    /// Insertion order, for expiry and eviction. It may hold keys already answered; those are
    /// skipped when they reach the front, and the queue is compacted when it grows too long.
    order: VecDeque<(u64, PairKey)>,
    max: usize,
    timeout_us: u64,
    /// Counters since the last take.
    pub(crate) stats: CaptureSummary,
}

impl Pairer {
    /// A table of at most `max` queries, each forgotten `timeout_us` after it was seen.
    pub fn new(max: usize, timeout_us: u64) -> Pairer {
        Pairer {
            pending: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
            timeout_us,
            stats: CaptureSummary::default(),
        }
    }

    /// Queries waiting now.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when no query is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Remembers a query. A repeated key (a retransmission) replaces the older query.
    pub fn query(&mut self, key: PairKey, q: PendingQuery) {
        let now = q.time_us;
        self.expire(now);
        if !self.pending.contains_key(&key) {
            while self.pending.len() >= self.max {
                let Some((t, k)) = self.order.pop_front() else {
                    break;
                };
                if self.pending.get(&k).is_some_and(|p| p.time_us == t) {
                    self.pending.remove(&k);
                    self.stats.queries_evicted += 1;
                }
            }
        }
        self.pending.insert(key, q);
        self.order.push_back((now, key));
        if self.order.len() > 2 * self.max + 1024 {
            let pending = &self.pending;
            self.order
                .retain(|(t, k)| pending.get(k).is_some_and(|p| p.time_us == *t));
        }
        self.stats.pending_queries_peak = self
            .stats
            .pending_queries_peak
            .max(self.pending.len() as u64);
    }

    /// The query that `question` (the response's question section) answers, removed from the
    /// table. A response whose question differs leaves the query waiting: a spoofer who
    /// guesses the id but asks about something else must not cancel the real answer.
    pub fn response(
        &mut self,
        key: &PairKey,
        question: &[u8],
        now_us: u64,
    ) -> Option<PendingQuery> {
        self.expire(now_us);
        let p = self.pending.get(key)?;
        if !p.question_bytes().eq_ignore_ascii_case(question) {
            return None;
        }
        self.pending.remove(key)
    }

    /// Forgets queries older than the timeout.
    fn expire(&mut self, now_us: u64) {
        while let Some(&(t, k)) = self.order.front() {
            if now_us.saturating_sub(t) < self.timeout_us {
                break;
            }
            self.order.pop_front();
            if self.pending.get(&k).is_some_and(|p| p.time_us == t) {
                self.pending.remove(&k);
                self.stats.queries_expired += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u16) -> PairKey {
        PairKey {
            client: "192.0.2.1:4000".parse().unwrap(),
            server: "192.0.2.53:53".parse().unwrap(),
            id,
            tcp: false,
        }
    }

    fn q(time_us: u64, question: &[u8]) -> PendingQuery {
        let mut m = vec![0u8; 12];
        m.extend_from_slice(question);
        PendingQuery {
            time_us,
            query: Bytes::from(m),
            question: (12, 12 + question.len()),
            recursion_desired: false,
        }
    }

    #[test]
    fn pairs_on_key_and_question_case_insensitively() {
        let mut p = Pairer::new(10, 1_000_000);
        p.query(key(1), q(0, b"\x01A\x00\x00\x01\x00\x01"));
        assert!(p
            .response(&key(2), b"\x01a\x00\x00\x01\x00\x01", 1)
            .is_none());
        assert!(p
            .response(&key(1), b"\x01b\x00\x00\x01\x00\x01", 1)
            .is_none());
        assert!(p
            .response(&key(1), b"\x01a\x00\x00\x01\x00\x01", 1)
            .is_some());
        assert!(p
            .response(&key(1), b"\x01a\x00\x00\x01\x00\x01", 1)
            .is_none());
        assert!(p.is_empty());
    }

    #[test]
    fn expiry_and_cap() {
        let mut p = Pairer::new(100, 1_000_000);
        for i in 0..1000u16 {
            p.query(key(i), q(u64::from(i), b"\x00\x00\x01\x00\x01"));
            assert!(p.len() <= 100);
        }
        assert_eq!(p.stats.queries_evicted, 900);
        assert_eq!(p.stats.pending_queries_peak, 100);
        assert!(p
            .response(&key(999), b"\x00\x00\x01\x00\x01", 5_000_000)
            .is_none());
        assert_eq!(p.stats.queries_expired, 100);
        assert!(p.order.len() <= 2 * 100 + 1024);
    }
}
