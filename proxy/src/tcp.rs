//! TCP forwarding: each client connection may pipeline queries; each query is forwarded on its
//! own upstream connection and its answer written back as soon as it arrives, in any order.
//!
//! Connections are capped, and closed after an idle time and a total lifetime, so that slow or
//! abandoned clients cannot hold the proxy's resources.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use dnsensor_core::{Observation, Segment, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use crate::message::{self, Rcode};
use crate::upstream::Tried;
use crate::Shared;

/// Queries of one connection in flight at once; the next waits (TCP pushes back on the client).
const IN_FLIGHT_PER_CONNECTION: usize = 100;

/// Answers queued for one connection's writer.
const WRITE_QUEUE: usize = 128;

/// Serves one TCP listener until the runtime stops.
pub(crate) async fn serve(shared: Arc<Shared>, listener: std::net::TcpListener) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("proxy: TCP listener: {e}");
            return;
        }
    };
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, for instance: back off instead of spinning.
                log::warn!("proxy: TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = shared.tcp_connections.clone().try_acquire_owned() else {
            shared.stats.count(&shared.stats.tcp_rejected);
            drop(stream);
            continue;
        };
        shared.stats.count(&shared.stats.tcp_accepted);
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_connection(&shared, stream, client).await;
            drop(permit);
        });
    }
}

async fn serve_connection(shared: &Arc<Shared>, stream: TcpStream, client: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (answers, mut queued) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let write = tokio::spawn(async move {
        while let Some(frame) = queued.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION));
    let closes_at = Instant::now() + shared.tcp_lifetime;
    let allowed = shared.acl.allows(client.ip());
    loop {
        let idle_until = (Instant::now() + shared.tcp_idle_timeout).min(closes_at);
        let query = match tokio::time::timeout_at(idle_until.into(), read_frame(&mut reader)).await
        {
            Ok(Ok(Some(q))) => q,
            // Closed, broken, idle too long or past its lifetime.
            _ => break,
        };
        if message::id(&query).is_none() || message::is_response(&query) {
            shared.stats.count(&shared.stats.dropped);
            break;
        }
        if !allowed {
            shared.stats.count(&shared.stats.refused);
            let mut out = Vec::new();
            message::error_answer(&query, Rcode::Refused, &mut out);
            if answers.send(frame(&out)).await.is_err() {
                break;
            }
            continue;
        }
        shared.stats.count(&shared.stats.queries);
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let shared = shared.clone();
        let answers = answers.clone();
        tokio::spawn(async move {
            let answer = forward(&shared, query, client).await;
            let _ = answers.send(frame(&answer)).await;
            drop(permit);
        });
    }
    // The writer ends once every query task has sent its answer.
    drop(answers);
    let _ = write.await;
}

/// Reads one length-prefixed message; `None` at a clean end of stream.
async fn read_frame(reader: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    reader.read_exact(&mut msg).await?;
    Ok(Some(msg))
}

fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// Forwards one query over TCP, failing over down the upstream list until the query's deadline;
/// returns the answer with the client's ID, or SERVFAIL.
pub(crate) async fn forward(shared: &Shared, mut query: Vec<u8>, client: SocketAddr) -> Vec<u8> {
    let client_id = message::id(&query).expect("checked by the caller");
    let started = Instant::now();
    let deadline = started + shared.query_timeout;
    let mut tried: Tried = 0;
    while Instant::now() < deadline {
        let u = shared.upstreams.choose(tried);
        tried |= 1 << u;
        let addr = shared.upstreams.get(u).addr;
        let upstream_id: u16 = rand::random();
        message::set_id(&mut query, upstream_id);
        let try_deadline = (Instant::now() + shared.upstream_timeout).min(deadline);
        match tokio::time::timeout_at(try_deadline.into(), exchange(addr, &query)).await {
            Ok(Ok(mut answer)) => {
                if message::id(&answer) != Some(upstream_id)
                    || !message::is_response(&answer)
                    || !message::same_question(&query, &answer)
                {
                    shared.stats.count(&shared.stats.mismatched);
                    continue;
                }
                shared.upstreams.answered(u);
                shared.stats.count(&shared.stats.answered);
                shared.stats.tcp_latency.observe(started.elapsed());
                shared.handoff.offer(Observation {
                    time: SystemTime::now(),
                    response: Bytes::copy_from_slice(&answer),
                    server: Some(addr),
                    client: Some(client),
                    transport: Transport::Tcp,
                    segment: Segment::Forwarder,
                    bailiwick: None,
                    query: Some(Bytes::from(query)),
                });
                message::set_id(&mut answer, client_id);
                return answer;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                shared.upstreams.refused(u);
            }
            Ok(Err(e)) => log::debug!("proxy: TCP to upstream {addr}: {e}"),
            Err(_) => {
                shared.stats.count(&shared.stats.upstream_timeouts);
                shared.upstreams.timed_out(u);
            }
        }
        if tried.count_ones() as usize >= shared.upstreams.len() {
            // Every upstream failed once over TCP; wait a little rather than spin on refusals.
            tokio::time::sleep(
                Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
            tried = 0;
        }
    }
    let mut out = Vec::new();
    message::error_answer(&query, Rcode::ServFail, &mut out);
    message::set_id(&mut out, client_id);
    shared.stats.count(&shared.stats.servfail);
    out
}

/// One query on a new connection to the upstream.
async fn exchange(addr: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    stream.write_all(&frame(query)).await?;
    read_frame(&mut stream).await?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "upstream closed without an answer",
        )
    })
}
