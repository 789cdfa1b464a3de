//! UDP forwarding: client queries go out with fresh random IDs, each batch on a random socket of
//! a rotating pool per upstream; answers come back byte for byte with only the client's ID restored.
//!
//! Each upstream socket is connected to its upstream, so the kernel drops datagrams from any other
//! address and reports ICMP port-unreachable as ECONNREFUSED, which fails its queries over at once.
//! Every socket has its own table of queries in flight, locked only by the answer thread, the
//! listener thread and the sweeper; nothing on the path waits for the pipeline. Each listener has
//! a thread blocked in its receive call, as dnsdist's do: measured cheaper per query than an event
//! loop (docs/benchmarks.md). Each upstream has one answer thread that waits on every socket of
//! its pool at once (epoll), so a pool of ports costs no extra threads, and renewing a port starts
//! none. Datagrams are taken and sent in batches (`mmsg`), one system call for all that wait.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use dnsensor_core::pipeline::{Batcher, Handoff};
use dnsensor_core::{Observation, Segment, Transport};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use crate::message::{self, Rcode};
use crate::mmsg::{self, RecvBatch, SendBatch};
use crate::upstream::Tried;
use crate::Shared;

/// Sockets per upstream. With a random one per query, a spoofer must guess the port among
/// these as well as the 16-bit ID.
const SOCKETS_PER_UPSTREAM: usize = 4;

/// How often one socket of each pool is replaced by a new one on a new kernel-chosen port,
/// so no source port lives longer than `SOCKETS_PER_UPSTREAM` of these.
const ROTATE_EVERY: Duration = Duration::from_secs(1);

/// How often queries in flight are checked for timeouts: the granularity of failover and of
/// the SERVFAIL deadline.
const SWEEP_EVERY: Duration = Duration::from_millis(25);

/// How long an answer thread waits for the next answer before it hands the observations it holds
/// to the pipeline; also how soon it sees a shutdown. In milliseconds, as epoll takes it.
const HANDOFF_DELAY_MS: u16 = 50;

/// Kernel receive buffer asked for on each upstream socket.
const UPSTREAM_RECV_BUFFER: usize = 1 << 20;

/// Queries and answers are copied into shared chunks of this size, one after another, so that
/// keeping one (a pending query, an observation's answer) costs no allocation of its own: a chunk
/// is freed, by whichever thread drops its last message, once every message in it is done with.
const COPY_CHUNK: usize = 64 * 1024;

/// Busy polling (`--busy-poll`): after a datagram, a forwarding thread asks its sockets again
/// without sleeping until the window has passed, so that the next datagram finds it awake.
///
/// Sleeping in the kernel costs a wake-up per datagram, and on virtual machines that halt an idle
/// vCPU that wake-up is most of a query's latency: at 10 000 q/s a 200 µs window halved the
/// proxy's average latency, at the price of its core (docs/benchmarks.md, "Busy polling").
/// Between two polls the thread yields, so the other threads on its core run, and it polls only
/// while the pipeline has nothing queued: recording that has work waiting gets the core.
struct BusyPoll {
    window: Duration,
    until: Instant,
}

impl BusyPoll {
    fn new(window: Duration) -> BusyPoll {
        BusyPoll {
            window,
            until: Instant::now(),
        }
    }

    /// Polls with `try_now` (`None`: nothing there yet) while the window lasts and the pipeline
    /// has nothing queued, yielding between polls. `None` once the thread should sleep instead.
    fn first<T>(&self, handoff: &Handoff, mut try_now: impl FnMut() -> Option<T>) -> Option<T> {
        while !self.window.is_zero() && handoff.backlog() == 0 && Instant::now() < self.until {
            if let Some(got) = try_now() {
                return Some(got);
            }
            std::thread::yield_now();
        }
        None
    }

    /// A datagram came: poll for another window.
    fn restart(&mut self) {
        if !self.window.is_zero() {
            self.until = Instant::now() + self.window;
        }
    }
}

/// A client query on its way to an upstream.
struct Pending {
    client: SocketAddr,
    listener: usize,
    client_id: u16,
    /// The client's query, in a shared chunk; its ID is the upstream ID of the current try.
    query: BytesMut,
    started: Instant,
    try_deadline: Instant,
    tried: Tried,
}

type PendingTable = hashbrown::HashMap<u16, Pending, foldhash::fast::RandomState>;

/// One socket towards one upstream.
struct UpSocket {
    /// Non-blocking: its upstream's answer thread learns from epoll when answers wait.
    sock: StdUdpSocket,
    upstream: usize,
    pending: Mutex<PendingTable>,
}

/// An upstream socket that may still carry queries; `retired` is when it left its pool.
struct Tracked {
    socket: Arc<UpSocket>,
    retired: Option<Instant>,
}

/// Every socket of one upstream that may still carry queries: its pool, and retired sockets
/// until their last query is settled. The upstream's answer thread waits on them with epoll;
/// the sweeper times out their queries.
struct UpstreamSockets {
    epoll: Epoll,
    /// The sockets registered with `epoll`. The answer thread keeps its own copy, taken again
    /// when `changed` is set, so that it locks nothing per answer.
    tracked: Mutex<Vec<Tracked>>,
    changed: AtomicBool,
}

impl UpstreamSockets {
    fn new() -> std::io::Result<UpstreamSockets> {
        Ok(UpstreamSockets {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            tracked: Mutex::new(Vec::new()),
            changed: AtomicBool::new(false),
        })
    }

    /// Waits for a new socket's answers; done before any query can go out on it.
    fn add(&self, socket: Arc<UpSocket>) -> std::io::Result<()> {
        let fd = socket.sock.as_raw_fd();
        let event = EpollEvent::new(EpollFlags::EPOLLIN, fd as u64);
        self.epoll.add(&socket.sock, event)?;
        self.tracked.lock().expect("tracked").push(Tracked {
            socket,
            retired: None,
        });
        self.changed.store(true, Ordering::Release);
        Ok(())
    }

    /// Marks a socket that has left its pool; it is kept until `settle` lets it go.
    fn retire(&self, socket: &Arc<UpSocket>, now: Instant) {
        let mut tracked = self.tracked.lock().expect("tracked");
        if let Some(t) = tracked.iter_mut().find(|t| Arc::ptr_eq(&t.socket, socket)) {
            t.retired = Some(now);
        }
    }

    /// Lets go of the retired sockets whose queries are all settled, or that retired more than
    /// `grace` ago, and returns the sockets that remain.
    fn settle(&self, now: Instant, grace: Duration) -> Vec<Arc<UpSocket>> {
        let mut tracked = self.tracked.lock().expect("tracked");
        let before = tracked.len();
        tracked.retain(|t| match t.retired {
            Some(at)
                if now >= at + grace || t.socket.pending.lock().expect("pending").is_empty() =>
            {
                let _ = self.epoll.delete(&t.socket.sock);
                false
            }
            _ => true,
        });
        if tracked.len() != before {
            self.changed.store(true, Ordering::Release);
        }
        tracked.iter().map(|t| t.socket.clone()).collect()
    }

    /// Takes a new copy of the sockets when they changed since the last one.
    fn refresh(&self, copy: &mut Vec<Arc<UpSocket>>) {
        if self.changed.swap(false, Ordering::Acquire) {
            let tracked = self.tracked.lock().expect("tracked");
            copy.clear();
            copy.extend(tracked.iter().map(|t| t.socket.clone()));
        }
    }
}

/// The UDP side of the proxy.
pub(crate) struct Udp {
    shared: Arc<Shared>,
    /// Blocking sockets: a thread per listener waits in `recv_from`, the way dnsdist's listener
    /// threads do, which costs fewer system calls and wake-ups per query than an event loop;
    /// answers are sent with MSG_DONTWAIT, so they never wait.
    listeners: Vec<Arc<StdUdpSocket>>,
    /// One pool of sockets per upstream, in upstream order.
    pools: Vec<Vec<RwLock<Arc<UpSocket>>>>,
    /// Every socket of each upstream that may still carry queries, in upstream order.
    upstream_sockets: Vec<UpstreamSockets>,
    /// The answer threads, joined at shutdown so that the observations they hold are handed over.
    answer_threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Tells the answer threads to end (each looks at least every `HANDOFF_DELAY_MS`).
    stop: AtomicBool,
}

/// The wildcard address of `addr`'s family, port 0: the kernel picks a random free port.
pub(crate) fn unspecified(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

impl Udp {
    /// Opens the upstream sockets and starts every task: a thread per listener, an answer thread
    /// per upstream, and the sweeper. Must run inside the runtime.
    pub(crate) fn start(
        shared: Arc<Shared>,
        listeners: Vec<StdUdpSocket>,
    ) -> std::io::Result<Arc<Udp>> {
        let listeners = listeners
            .into_iter()
            .map(|s| s.set_nonblocking(false).map(|()| Arc::new(s)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut pools = Vec::with_capacity(shared.upstreams.len());
        let mut fresh = Vec::new();
        for u in 0..shared.upstreams.len() {
            let mut pool = Vec::with_capacity(SOCKETS_PER_UPSTREAM);
            for _ in 0..SOCKETS_PER_UPSTREAM {
                let s = Arc::new(open_upstream_socket(&shared, u)?);
                fresh.push(s.clone());
                pool.push(RwLock::new(s));
            }
            pools.push(pool);
        }
        let upstream_sockets = (0..pools.len())
            .map(|_| UpstreamSockets::new())
            .collect::<std::io::Result<Vec<_>>>()?;
        let udp = Arc::new(Udp {
            shared,
            listeners,
            pools,
            upstream_sockets,
            answer_threads: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        for s in fresh {
            udp.upstream_sockets[s.upstream].add(s)?;
        }
        for u in 0..udp.pools.len() {
            let answers = udp.clone();
            let thread = std::thread::Builder::new()
                .name(format!("dnsensor-upstream-{u}"))
                .spawn(move || answers.receive_answers(u))?;
            udp.answer_threads.lock().expect("threads").push(thread);
        }
        for i in 0..udp.listeners.len() {
            let udp = udp.clone();
            std::thread::Builder::new()
                .name(format!("dnsensor-udp-{i}"))
                .spawn(move || udp.serve_listener(i))?;
        }
        let sweeper = udp.clone();
        tokio::spawn(async move { sweeper.maintain().await });
        Ok(udp)
    }

    /// Receives queries until the process ends, a batch per system call, and forwards each
    /// batch at once. Runs on its own thread.
    fn serve_listener(self: Arc<Self>, index: usize) {
        let fd = self.listeners[index].as_raw_fd();
        let mut queries = RecvBatch::new();
        let mut sends = SendBatch::new();
        let mut accepted = Vec::with_capacity(mmsg::BATCH);
        let mut chunk = BytesMut::with_capacity(COPY_CHUNK);
        let mut poll = BusyPoll::new(self.shared.busy_poll);
        loop {
            let received = poll
                .first(&self.shared.handoff, || match queries.try_recv(fd) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => None,
                    r => Some(r),
                })
                .unwrap_or_else(|| queries.recv(fd));
            match received {
                Ok(n) => {
                    poll.restart();
                    let now = Instant::now();
                    for i in 0..n {
                        let (query, client) = (queries.get(i), queries.sender(i));
                        if let Some(p) = self.accept_query(index, query, client, now, &mut chunk) {
                            accepted.push(p);
                        }
                    }
                    self.forward(&mut accepted, &mut sends, now);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Errors queued by the kernel for an earlier send_to (a client port gone):
                // nothing to do for the socket.
                Err(_) => self.shared.stats.count(&self.shared.stats.dropped),
            }
        }
    }

    /// Stops the answer threads and waits for them, so that the observations they hold reach
    /// the pipeline before it shuts down. The listener threads end with the process.
    pub(crate) fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *self.answer_threads.lock().expect("threads"));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Sends to a client without waiting: a full socket buffer drops the datagram.
    fn send_to_client(
        &self,
        listener: usize,
        msg: &[u8],
        client: SocketAddr,
    ) -> std::io::Result<usize> {
        socket2::SockRef::from(&*self.listeners[listener]).send_to_with_flags(
            msg,
            &client.into(),
            libc::MSG_DONTWAIT,
        )
    }

    /// Checks a client's query; returns it ready for forwarding, or answers or drops it here.
    fn accept_query(
        &self,
        listener: usize,
        query: &[u8],
        client: Option<SocketAddr>,
        now: Instant,
        chunk: &mut BytesMut,
    ) -> Option<Pending> {
        let stats = &self.shared.stats;
        let (Some(client_id), Some(client)) = (message::id(query), client) else {
            stats.count(&stats.dropped);
            return None;
        };
        // A response sent to the proxy is never answered: that would make it a reflector.
        if message::is_response(query) {
            stats.count(&stats.dropped);
            return None;
        }
        if !self.shared.acl.allows(client.ip()) {
            stats.count(&stats.refused);
            let mut out = Vec::with_capacity(query.len());
            message::error_answer(query, Rcode::Refused, &mut out);
            let _ = self.send_to_client(listener, &out, client);
            return None;
        }
        stats.count(&stats.queries);
        Some(Pending {
            client,
            listener,
            client_id,
            query: copy_into(chunk, query),
            started: now,
            try_deadline: now,
            tried: 0,
        })
    }

    /// Sends a batch of new queries to the first upstream in order, on one random socket of its
    /// pool, in one system call. A query the kernel refuses takes the one-by-one path of
    /// [`Udp::send_upstream`], which fails over.
    fn forward(&self, batch: &mut Vec<Pending>, sends: &mut SendBatch, now: Instant) {
        if batch.is_empty() {
            return;
        }
        let shared = &*self.shared;
        let u = shared.upstreams.choose(0);
        let socket = self.random_socket(u);
        let mut ids = [0u16; mmsg::BATCH];
        let mut failed: [Option<std::io::Error>; mmsg::BATCH] = Default::default();
        let mut any_failed = false;
        let mut pending = socket.pending.lock().expect("pending");
        let mut queued = 0;
        for mut p in batch.drain(..) {
            let Some(id) = free_id(&pending) else {
                // Tens of thousands in flight on one socket: the upstream is not answering.
                shared.stats.count(&shared.stats.dropped);
                continue;
            };
            message::set_id(&mut p.query, id);
            self.start_try(&mut p, u, now);
            pending.insert(id, p);
            ids[queued] = id;
            queued += 1;
        }
        let mut datagrams: [(&[u8], Option<SocketAddr>); mmsg::BATCH] = [(&[], None); mmsg::BATCH];
        for (d, id) in datagrams.iter_mut().zip(&ids[..queued]) {
            d.0 = &pending[id].query;
        }
        sends.send(socket.sock.as_raw_fd(), &datagrams[..queued], |i, e| {
            failed[i] = Some(e);
            any_failed = true;
        });
        if !any_failed {
            return;
        }
        let mut retry = Vec::new();
        for (id, e) in ids[..queued].iter().zip(failed) {
            let Some(e) = e else { continue };
            let Some(p) = pending.remove(id) else {
                continue;
            };
            if self.refused_or_dropped(u, &e) {
                retry.push(p);
            }
        }
        drop(pending);
        if !retry.is_empty() {
            shared.upstreams.refused(u);
        }
        for p in retry {
            self.send_upstream(p, now);
        }
    }

    /// Sends a query to the next upstream in order (failing over past refusing ones), or
    /// answers SERVFAIL once the query's deadline has passed or no upstream would take it.
    fn send_upstream(&self, mut p: Pending, now: Instant) {
        let shared = &*self.shared;
        let deadline = p.started + shared.query_timeout;
        for _ in 0..=shared.upstreams.len() {
            if now >= deadline {
                break;
            }
            let u = shared.upstreams.choose(p.tried);
            self.start_try(&mut p, u, now);
            let socket = self.random_socket(u);
            let mut pending = socket.pending.lock().expect("pending");
            let Some(id) = free_id(&pending) else {
                // Tens of thousands in flight on one socket: the upstream is not answering.
                drop(pending);
                shared.stats.count(&shared.stats.dropped);
                return;
            };
            message::set_id(&mut p.query, id);
            match socket2::SockRef::from(&socket.sock).send_with_flags(&p.query, libc::MSG_DONTWAIT)
            {
                Ok(_) => {
                    pending.insert(id, p);
                    return;
                }
                Err(e) => {
                    drop(pending);
                    if !self.refused_or_dropped(u, &e) {
                        return;
                    }
                    shared.upstreams.refused(u);
                }
            }
        }
        self.servfail(&p);
    }

    /// Marks `p` as trying upstream `u` from `now`, until the upstream timeout or the query's
    /// own deadline, whichever comes first.
    fn start_try(&self, p: &mut Pending, u: usize, now: Instant) {
        let shared = &*self.shared;
        p.tried |= 1 << u;
        p.try_deadline = (now + shared.upstream_timeout).min(p.started + shared.query_timeout);
    }

    /// A send to upstream `u` failed: true when the upstream refused (the query fails over);
    /// otherwise (a full send buffer) the query is dropped rather than waited for, and counted.
    fn refused_or_dropped(&self, u: usize, e: &std::io::Error) -> bool {
        if e.kind() == ErrorKind::ConnectionRefused {
            return true;
        }
        log::debug!(
            "proxy: send to upstream {}: {e}",
            self.shared.upstreams.get(u).addr
        );
        self.shared.stats.count(&self.shared.stats.dropped);
        false
    }

    /// A socket of upstream `u`'s pool, drawn at random, so that a spoofer must also guess the
    /// port.
    fn random_socket(&self, u: usize) -> Arc<UpSocket> {
        let pool = &self.pools[u];
        pool[rand::random_range(0..pool.len())]
            .read()
            .expect("pool")
            .clone()
    }

    fn servfail(&self, p: &Pending) {
        let mut out = Vec::with_capacity(p.query.len());
        message::error_answer(&p.query, Rcode::ServFail, &mut out);
        if out.is_empty() {
            return;
        }
        message::set_id(&mut out, p.client_id);
        self.shared.stats.count(&self.shared.stats.servfail);
        let _ = self.send_to_client(p.listener, &out, p.client);
    }

    /// Receives upstream `u`'s answers on every socket of its pool until shutdown, a batch per
    /// ready socket and system call. Runs on its own thread, like dnsdist's responder threads.
    fn receive_answers(self: Arc<Self>, u: usize) {
        let waits = &self.upstream_sockets[u];
        let mut sockets: Vec<Arc<UpSocket>> = Vec::new();
        let mut events = [EpollEvent::empty(); 8];
        let mut answers = RecvBatch::new();
        let mut sends = SendBatch::new();
        let mut batcher = self.shared.handoff.batcher();
        let mut chunk = BytesMut::with_capacity(COPY_CHUNK);
        let mut poll = BusyPoll::new(self.shared.busy_poll);
        while !self.stop.load(Ordering::Relaxed) {
            let waited = poll
                .first(&self.shared.handoff, || {
                    match waits.epoll.wait(&mut events, 0u16) {
                        Ok(0) => None,
                        r => Some(r),
                    }
                })
                .unwrap_or_else(|| waits.epoll.wait(&mut events, HANDOFF_DELAY_MS));
            let ready = match waited {
                Ok(ready) => ready,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("proxy: waiting for upstream answers: {e}");
                    std::thread::sleep(Duration::from_millis(u64::from(HANDOFF_DELAY_MS)));
                    continue;
                }
            };
            if ready == 0 {
                // A quiet moment. Observations waited for company until now (a batch per
                // answer would wake a pipeline worker per answer).
                batcher.flush();
                continue;
            }
            poll.restart();
            waits.refresh(&mut sockets);
            for event in &events[..ready] {
                // A socket removed since this copy was taken is still open (the copy holds
                // it), so its descriptor cannot name another socket yet.
                let fd = event.data() as RawFd;
                let Some(socket) = sockets.iter().find(|s| s.sock.as_raw_fd() == fd) else {
                    continue;
                };
                self.receive_from(socket, &mut answers, &mut sends, &mut batcher, &mut chunk);
            }
        }
        batcher.flush();
    }

    /// Takes the answers waiting on one upstream socket and forwards them.
    fn receive_from(
        &self,
        socket: &UpSocket,
        answers: &mut RecvBatch,
        sends: &mut SendBatch,
        batcher: &mut Batcher,
        chunk: &mut BytesMut,
    ) {
        match answers.recv(socket.sock.as_raw_fd()) {
            Ok(_) => self.on_answers(socket, answers, sends, batcher, chunk),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                self.shared.upstreams.refused(socket.upstream);
                self.fail_over_all(socket);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => log::debug!("proxy: upstream socket: {e}"),
        }
    }

    /// Matches a batch of upstream answers with their queries, sends each to its client with the
    /// client's ID (one system call per listener) and hands them to the pipeline.
    fn on_answers(
        &self,
        socket: &UpSocket,
        answers: &mut RecvBatch,
        sends: &mut SendBatch,
        batcher: &mut Batcher,
        chunk: &mut BytesMut,
    ) {
        let shared = &*self.shared;
        let stats = &shared.stats;
        let n = answers.len();
        let mut matched: [Option<Pending>; mmsg::BATCH] = Default::default();
        {
            let mut pending = socket.pending.lock().expect("pending");
            for (i, slot) in matched.iter_mut().enumerate().take(n) {
                let answer = answers.get(i);
                *slot = match message::id(answer) {
                    Some(id) if message::is_response(answer) => match pending.get(&id) {
                        Some(p) if message::same_question(&p.query, answer) => pending.remove(&id),
                        _ => None,
                    },
                    _ => None,
                };
            }
        }
        let mut count = 0;
        for (i, p) in matched.iter().enumerate().take(n) {
            match p {
                Some(p) => {
                    message::set_id(answers.get_mut(i), p.client_id);
                    count += 1;
                }
                // Late (after a timeout), duplicated or forged: the matching query is not waiting.
                None => stats.count(&stats.mismatched),
            }
        }
        if count == 0 {
            return;
        }
        shared.upstreams.answered(socket.upstream);
        // One send per listener the batch's clients came through; almost always just one.
        let mut sent = [false; mmsg::BATCH];
        let mut datagrams: [(&[u8], Option<SocketAddr>); mmsg::BATCH] = [(&[], None); mmsg::BATCH];
        let mut index = [0usize; mmsg::BATCH];
        for (listener, sock) in self.listeners.iter().enumerate() {
            let mut k = 0;
            for (i, p) in matched.iter().enumerate().take(n) {
                if let Some(p) = p.as_ref().filter(|p| p.listener == listener) {
                    sent[i] = true;
                    datagrams[k] = (answers.get(i), Some(p.client));
                    index[k] = i;
                    k += 1;
                }
            }
            if k > 0 {
                sends.send(sock.as_raw_fd(), &datagrams[..k], |j, _| {
                    sent[index[j]] = false
                });
            }
        }
        let now = Instant::now();
        let time = SystemTime::now();
        let server = Some(shared.upstreams.get(socket.upstream).addr);
        for (i, p) in matched.into_iter().enumerate().take(n) {
            let Some(p) = p else { continue };
            if sent[i] {
                stats.count(&stats.answered);
                stats.udp_latency.observe(now - p.started);
            } else {
                stats.count(&stats.dropped);
            }
            batcher.push(Observation {
                time,
                response: copy_into(chunk, answers.get(i)).freeze(),
                server,
                client: Some(p.client),
                transport: Transport::Udp,
                segment: Segment::Forwarder,
                bailiwick: None,
                query: Some(p.query.freeze()),
            });
        }
    }

    /// The upstream refused: every query waiting on this socket tries the next upstream now.
    fn fail_over_all(&self, socket: &UpSocket) {
        let waiting: Vec<Pending> = {
            let mut pending = socket.pending.lock().expect("pending");
            pending.drain().map(|(_, p)| p).collect()
        };
        let now = Instant::now();
        for p in waiting {
            self.send_upstream(p, now);
        }
    }

    /// The sweeper: times out queries (failing them over or answering SERVFAIL), rotates one
    /// socket per pool every `ROTATE_EVERY`, and closes retired sockets once they are idle.
    async fn maintain(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_rotation = Instant::now() + ROTATE_EVERY;
        let mut rotation = 0usize;
        loop {
            tick.tick().await;
            let now = Instant::now();
            self.sweep(now);
            if now >= next_rotation {
                next_rotation = now + ROTATE_EVERY;
                self.rotate(rotation % SOCKETS_PER_UPSTREAM, now);
                rotation += 1;
            }
        }
    }

    fn sweep(&self, now: Instant) {
        // A retired socket is kept until every query it carried has been answered or has
        // passed its deadline (and been failed over or answered SERVFAIL).
        let grace = self.shared.query_timeout + SWEEP_EVERY;
        let sockets = self
            .upstream_sockets
            .iter()
            .flat_map(|us| us.settle(now, grace));
        for socket in sockets {
            let expired: Vec<Pending> = {
                let mut pending = socket.pending.lock().expect("pending");
                if pending.is_empty() {
                    continue;
                }
                pending
                    .extract_if(|_, p| p.try_deadline <= now)
                    .map(|(_, p)| p)
                    .collect()
            };
            for p in expired {
                self.shared
                    .stats
                    .count(&self.shared.stats.upstream_timeouts);
                self.shared.upstreams.timed_out(socket.upstream);
                self.send_upstream(p, now);
            }
        }
    }

    /// Replaces socket `slot` of every pool with one on a new port.
    fn rotate(&self, slot: usize, now: Instant) {
        for (u, pool) in self.pools.iter().enumerate() {
            let fresh = match open_upstream_socket(&self.shared, u) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    log::warn!(
                        "proxy: cannot open a new upstream socket: {e}; keeping the old one"
                    );
                    continue;
                }
            };
            if let Err(e) = self.upstream_sockets[u].add(fresh.clone()) {
                log::warn!("proxy: cannot wait on a new upstream socket: {e}; keeping the old one");
                continue;
            }
            let old = std::mem::replace(&mut *pool[slot].write().expect("pool"), fresh);
            self.upstream_sockets[u].retire(&old, now);
        }
    }
}

/// `bytes` copied to the end of `chunk` and split off it; a new chunk is taken when it is full.
fn copy_into(chunk: &mut BytesMut, bytes: &[u8]) -> BytesMut {
    if chunk.capacity() < bytes.len() {
        *chunk = BytesMut::with_capacity(COPY_CHUNK.max(bytes.len()));
    }
    chunk.extend_from_slice(bytes);
    chunk.split()
}

/// A random ID not in use on this socket, if one turns up in a few draws.
fn free_id(pending: &PendingTable) -> Option<u16> {
    (0..16)
        .map(|_| rand::random::<u16>())
        .find(|id| !pending.contains_key(id))
}

/// A new socket connected to upstream `u`, on a port the kernel picks at random.
fn open_upstream_socket(shared: &Shared, u: usize) -> std::io::Result<UpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = shared.upstreams.get(u).addr;
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort, capped by net.core.rmem_max: a burst of answers must not overflow the
    // default buffer while the receive task is busy.
    let _ = sock.set_recv_buffer_size(UPSTREAM_RECV_BUFFER);
    sock.bind(&unspecified(addr).into())?;
    sock.connect(&addr.into())?;
    sock.set_nonblocking(true)?;
    Ok(UpSocket {
        sock: sock.into(),
        upstream: u,
        pending: Mutex::new(PendingTable::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_share_a_chunk_and_outlive_it() {
        let mut chunk = BytesMut::with_capacity(COPY_CHUNK);
        let a = copy_into(&mut chunk, b"query one");
        let b = copy_into(&mut chunk, b"two");
        // One after the other in one allocation.
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        // What no longer fits goes into a chunk of its own; the earlier copies stay as they were.
        let big = copy_into(&mut chunk, &[7; COPY_CHUNK]);
        let c = copy_into(&mut chunk, b"three");
        assert_ne!(b.as_ptr().wrapping_add(b.len()), big.as_ptr());
        assert_eq!(
            (&a[..], &b[..], &c[..]),
            (&b"query one"[..], &b"two"[..], &b"three"[..])
        );
        assert!(big.iter().all(|&x| x == 7) && big.len() == COPY_CHUNK);
        drop(chunk);
        let mut a = a;
        message::set_id(&mut a, 0x4142);
        assert_eq!(&a.freeze()[..], b"ABery one");
    }
}
