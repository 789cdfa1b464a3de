//! dnsensor's inline forwarding proxy: answers clients with their upstream resolver's exact
//! response bytes (only the ID restored) and hands every upstream answer to the pipeline.
//!
//! The forwarding path is raw on purpose: hickory-server re-encodes every response and answers a
//! TCP connection's queries one at a time (measured in docs/proxy-hickory.md). hickory-resolver
//! supplies the default upstreams from the system configuration.
//!
//! Use [`bind`] while privileged (port 53), drop privileges, then [`Bound::run`] in a runtime.

mod acl;
pub mod latency;
pub mod message;
mod mmsg;
mod tcp;
mod udp;
mod upstream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dnsensor_core::pipeline::Handoff;
use tokio::sync::Semaphore;

pub use acl::Acl;
pub use upstream::MAX_UPSTREAMS;

/// Kernel receive buffer asked for on each UDP listener, to ride out bursts.
const LISTENER_RECV_BUFFER: usize = 4 << 20;

/// What the proxy listens on, forwards to and allows.
#[derive(Debug, Clone)]
pub struct Options {
    /// Addresses to serve on, UDP and TCP each.
    pub listen: Vec<SocketAddr>,
    /// Upstream resolvers in preference order (1 to [`MAX_UPSTREAMS`]).
    pub upstreams: Vec<SocketAddr>,
    /// Who may query.
    pub acl: Acl,
    /// How long one try at one upstream may take before the next upstream is tried.
    pub upstream_timeout: Duration,
    /// How long a client query may take in all; after it the client gets SERVFAIL.
    pub query_timeout: Duration,
    /// How often each upstream is health-checked.
    pub health_interval: Duration,
    /// TCP client connections served at once; more are closed at once and counted.
    pub max_tcp_connections: usize,
    /// A TCP connection with no new query for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// A TCP connection is closed after this long whatever it does.
    pub tcp_lifetime: Duration,
    /// How long a UDP forwarding thread keeps polling its sockets, without sleeping, after its
    /// last datagram; zero (the default) sleeps in the kernel at once. See `udp::BusyPoll`.
    pub busy_poll: Duration,
}

/// Counters of the proxy's own work, shared with the mode's summary line.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Queries accepted for forwarding (allowed clients, well formed).
    pub queries: AtomicU64,
    /// Upstream answers passed to their client.
    pub answered: AtomicU64,
    /// Queries from clients outside the ACL, answered REFUSED.
    pub refused: AtomicU64,
    /// Queries answered SERVFAIL because no upstream answered in time.
    pub servfail: AtomicU64,
    /// Datagrams dropped: shorter than a header, responses sent to the proxy, failed sends.
    pub dropped: AtomicU64,
    /// Tries at an upstream that timed out (each is failed over or ends in SERVFAIL).
    pub upstream_timeouts: AtomicU64,
    /// Upstream datagrams matching no query waiting (late, duplicated or forged).
    pub mismatched: AtomicU64,
    /// TCP connections accepted.
    pub tcp_accepted: AtomicU64,
    /// TCP connections closed at once because the cap was reached.
    pub tcp_rejected: AtomicU64,
    /// From a UDP query's arrival to its upstream answer's send, for answered queries.
    pub udp_latency: latency::Latency,
    /// From a TCP query's arrival to its upstream answer being ready to write back.
    pub tcp_latency: latency::Latency,
}

impl ProxyStats {
    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Errors of start-up.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("listen: cannot bind {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("proxy: {0}")]
    Io(#[from] std::io::Error),
}

/// The listening sockets, bound but not yet served.
pub struct Bound {
    options: Options,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    stats: Arc<ProxyStats>,
}

/// State every task of the proxy shares.
pub(crate) struct Shared {
    upstreams: Arc<upstream::Upstreams>,
    acl: Acl,
    stats: Arc<ProxyStats>,
    upstream_timeout: Duration,
    query_timeout: Duration,
    tcp_idle_timeout: Duration,
    tcp_lifetime: Duration,
    busy_poll: Duration,
    tcp_connections: Arc<Semaphore>,
    handoff: Handoff,
}

/// Binds UDP and TCP on every listen address. An upstream that is also a listen address would
/// make the proxy forward to itself, so that is refused here.
pub fn bind(options: Options) -> Result<Bound, ProxyError> {
    if options.upstreams.is_empty() || options.upstreams.len() > MAX_UPSTREAMS {
        return Err(ProxyError::Upstream(format!(
            "give 1 to {MAX_UPSTREAMS} upstreams, not {}",
            options.upstreams.len()
        )));
    }
    if let Some(u) = options
        .upstreams
        .iter()
        .find(|u| options.listen.contains(u))
    {
        return Err(ProxyError::Upstream(format!(
            "{u} is also a listen address; the proxy would forward to itself"
        )));
    }
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for &addr in &options.listen {
        udp.push(bind_udp(addr).map_err(|source| ProxyError::Bind {
            proto: "UDP",
            addr,
            source,
        })?);
        tcp.push(bind_tcp(addr).map_err(|source| ProxyError::Bind {
            proto: "TCP",
            addr,
            source,
        })?);
    }
    Ok(Bound {
        options,
        udp,
        tcp,
        stats: Arc::new(ProxyStats::default()),
    })
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // `[::]:53` and `0.0.0.0:53` can then be listed side by side.
        sock.set_only_v6(true)?;
    }
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = sock.set_recv_buffer_size(LISTENER_RECV_BUFFER);
    sock.bind(&addr.into())?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

impl Bound {
    /// The proxy's counters; they keep counting while it runs.
    pub fn stats(&self) -> Arc<ProxyStats> {
        self.stats.clone()
    }

    /// Serves until `stop` turns true. Observations go to `handoff` without ever waiting.
    pub async fn run(
        self,
        handoff: Handoff,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ProxyError> {
        let o = &self.options;
        let shared = Arc::new(Shared {
            upstreams: Arc::new(upstream::Upstreams::new(&o.upstreams)),
            acl: o.acl.clone(),
            stats: self.stats.clone(),
            upstream_timeout: o.upstream_timeout,
            query_timeout: o.query_timeout,
            tcp_idle_timeout: o.tcp_idle_timeout,
            tcp_lifetime: o.tcp_lifetime,
            busy_poll: o.busy_poll,
            tcp_connections: Arc::new(Semaphore::new(o.max_tcp_connections)),
            handoff,
        });
        let udp = udp::Udp::start(shared.clone(), self.udp)?;
        for listener in self.tcp {
            tokio::spawn(tcp::serve(shared.clone(), listener));
        }
        tokio::spawn(upstream::check_health(
            shared.upstreams.clone(),
            o.health_interval,
            o.upstream_timeout,
        ));
        log::info!(
            "proxy: ready: listening on {} (UDP and TCP); upstreams in order: {}; allowed: {}{}",
            join(&o.listen),
            join(&o.upstreams),
            join(o.acl.networks()),
            match o.busy_poll.as_micros() {
                0 => String::new(),
                us => format!("; UDP busy polling for {us} µs after each datagram"),
            },
        );
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        udp.shutdown();
        Ok(())
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The name servers of the system configuration (resolv.conf syntax), port 53, in its order.
pub fn system_upstreams(resolv_conf: &[u8]) -> Result<Vec<SocketAddr>, String> {
    let (config, _) = hickory_resolver::system_conf::parse_resolv_conf(resolv_conf)
        .map_err(|e| format!("cannot read the system's name servers: {e}"))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for ns in config.name_servers() {
        let addr = SocketAddr::new(ns.ip, 53);
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err("the system configuration lists no name servers; give --upstream".into());
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_upstreams_in_order_without_duplicates() {
        let conf = b"# comment\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nnameserver 192.0.2.53\nsearch example.\n";
        let got = system_upstreams(conf).unwrap();
        assert_eq!(
            got,
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
        assert!(system_upstreams(b"search example.\n").is_err());
    }
}
