//! The upstream resolvers in the operator's order, with a health flag each: queries go to the
//! first healthy one, fail over down the list, and health checks bring a recovered one back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::message;

/// Timeouts in a row after which an upstream is taken out of rotation until a check succeeds.
const TIMEOUTS_BEFORE_DOWN: u32 = 3;

/// At most this many upstreams, so that a query's tried set fits in a `u32`.
pub const MAX_UPSTREAMS: usize = 32;

/// One upstream resolver.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub addr: SocketAddr,
    healthy: AtomicBool,
    timeouts_in_row: AtomicU32,
}

/// The upstreams, in preference order.
#[derive(Debug)]
pub(crate) struct Upstreams {
    list: Vec<Upstream>,
}

/// A set of upstream indexes, as a bit mask.
pub(crate) type Tried = u32;

impl Upstreams {
    /// Upstreams in preference order; all start healthy, so the first query need not wait for
    /// a check. The caller has checked `1..=MAX_UPSTREAMS` addresses.
    pub fn new(addrs: &[SocketAddr]) -> Upstreams {
        assert!(!addrs.is_empty() && addrs.len() <= MAX_UPSTREAMS);
        Upstreams {
            list: addrs
                .iter()
                .map(|&addr| Upstream {
                    addr,
                    healthy: AtomicBool::new(true),
                    timeouts_in_row: AtomicU32::new(0),
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn get(&self, i: usize) -> &Upstream {
        &self.list[i]
    }

    /// The upstream for the next try: the first healthy one not tried yet; else the first not
    /// tried; else (every one tried) the first healthy one again, or the first.
    pub fn choose(&self, tried: Tried) -> usize {
        let untried = |i: &usize| tried & (1 << i) == 0;
        let healthy = |i: &usize| self.list[*i].healthy.load(Ordering::Relaxed);
        let all = 0..self.list.len();
        all.clone()
            .filter(untried)
            .find(healthy)
            .or_else(|| all.clone().find(untried))
            .or_else(|| all.clone().find(healthy))
            .unwrap_or(0)
    }

    /// An answer came back: the upstream is up.
    pub fn answered(&self, i: usize) {
        let u = &self.list[i];
        if u.timeouts_in_row.load(Ordering::Relaxed) != 0 {
            u.timeouts_in_row.store(0, Ordering::Relaxed);
        }
        self.set_health(i, true, "it answered");
    }

    /// A query timed out; enough of them in a row take the upstream out of rotation.
    pub fn timed_out(&self, i: usize) {
        let n = self.list[i].timeouts_in_row.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= TIMEOUTS_BEFORE_DOWN {
            self.set_health(i, false, "queries timed out");
        }
    }

    /// The upstream refused the connection (ICMP port unreachable on UDP, RST on TCP).
    pub fn refused(&self, i: usize) {
        self.set_health(i, false, "connection refused");
    }

    /// Records a health check result.
    pub fn checked(&self, i: usize, ok: bool) {
        if ok {
            self.answered(i);
        } else {
            self.set_health(i, false, "health check failed");
        }
    }

    #[cfg(test)]
    pub fn is_healthy(&self, i: usize) -> bool {
        self.list[i].healthy.load(Ordering::Relaxed)
    }

    fn set_health(&self, i: usize, healthy: bool, why: &str) {
        let u = &self.list[i];
        if u.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            if healthy {
                log::info!("proxy: upstream {} is up: {why}", u.addr);
            } else {
                log::warn!("proxy: upstream {} is down: {why}", u.addr);
            }
        }
    }
}

/// Checks every upstream every `interval` with a `. NS` query over UDP; any answer with the
/// right ID and question counts as up (an authoritative server may well refuse it).
pub async fn check_health(
    upstreams: std::sync::Arc<Upstreams>,
    interval: Duration,
    timeout: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for i in 0..upstreams.len() {
            let ok = probe(upstreams.get(i).addr, timeout).await;
            upstreams.checked(i, ok);
        }
    }
}

/// One health query. Each uses a fresh socket, so its port and ID are new every time.
async fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    let id: u16 = rand::random();
    let mut query = Vec::with_capacity(17);
    query.extend_from_slice(&id.to_be_bytes());
    // RD=1, one question: ". NS IN".
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1]);
    let attempt = async {
        let sock = UdpSocket::bind(crate::udp::unspecified(addr)).await?;
        sock.connect(addr).await?;
        sock.send(&query).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).await?;
            let resp = &buf[..n];
            if message::id(resp) == Some(id)
                && message::is_response(resp)
                && message::same_question(&query, resp)
            {
                return Ok::<bool, std::io::Error>(true);
            }
        }
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Upstreams {
        let addrs: Vec<SocketAddr> = ["127.0.0.1:53", "127.0.0.2:53", "127.0.0.3:53"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        Upstreams::new(&addrs)
    }

    #[test]
    fn order_is_honoured_and_failover_skips_tried_and_down() {
        let u = three();
        assert_eq!(u.choose(0), 0);
        assert_eq!(u.choose(0b001), 1);
        u.refused(1);
        assert_eq!(
            u.choose(0b001),
            2,
            "a down upstream comes after healthy untried ones"
        );
        assert_eq!(u.choose(0b101), 1, "then the down one, rather than nothing");
        assert_eq!(u.choose(0b111), 0, "all tried: the first healthy again");
        u.answered(1);
        assert_eq!(u.choose(0b001), 1);
    }

    #[test]
    fn timeouts_in_a_row_take_an_upstream_down() {
        let u = three();
        u.timed_out(0);
        u.timed_out(0);
        assert!(u.is_healthy(0));
        u.answered(0);
        u.timed_out(0);
        u.timed_out(0);
        assert!(u.is_healthy(0), "an answer resets the count");
        u.timed_out(0);
        assert!(!u.is_healthy(0));
        assert_eq!(u.choose(0), 1);
        u.checked(0, true);
        assert_eq!(u.choose(0), 0);
    }
}
