//! Test helpers: dnstap payloads, a Frame Streams sender built on the crate's encoders, and a
//! server harness that shuts down cleanly so counters can be asserted exactly.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dnsensor_core::pipeline::Handoff;
use dnsensor_core::Observation;
use dnsensor_dnstap::fstrm::{encode_control, encode_data, ControlType};
use dnsensor_dnstap::proto::{self, message::Type};
use dnsensor_dnstap::{bind, DnstapStats, Listen, Options, DNSTAP_CONTENT_TYPE};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// The authoritative server of message `i`.
pub fn server_addr(i: u32) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, (i % 250) as u8 + 1], 53))
}

/// The client (resolver side) address of every message.
pub fn client_addr() -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 7], 40000))
}

/// `example.com.` in wire format.
pub const ZONE: &[u8] = b"\x07example\x03com\x00";

/// A recognisable stand-in for a DNS response: this crate does not parse DNS.
pub fn response_bytes(i: u32) -> Vec<u8> {
    let mut r = vec![0x12, 0x34, 0x81, 0x80];
    r.extend_from_slice(&i.to_be_bytes());
    r
}

/// Response time of message `i`.
pub fn time_of(i: u32) -> (u64, u32) {
    (1_700_000_000 + u64::from(i), 1000 * i)
}

/// An encoded `Dnstap` payload for message `i` of type `kind`.
pub fn dnstap_payload(i: u32, kind: Type) -> Vec<u8> {
    let (sec, nsec) = time_of(i);
    let server = server_addr(i);
    let client = client_addr();
    let ip = |a: SocketAddr| match a.ip() {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let msg = proto::Message {
        r#type: kind as i32,
        socket_family: Some(proto::SocketFamily::Inet as i32),
        socket_protocol: Some(proto::SocketProtocol::Udp as i32),
        query_address: Some(ip(client).into()),
        response_address: Some(ip(server).into()),
        query_port: Some(u32::from(client.port())),
        response_port: Some(u32::from(server.port())),
        query_time_sec: Some(sec - 1),
        query_time_nsec: Some(0),
        query_zone: Some(ZONE.to_vec().into()),
        response_time_sec: Some(sec),
        response_time_nsec: Some(nsec),
        response_message: Some(response_bytes(i).into()),
        ..Default::default()
    };
    proto::Dnstap {
        identity: Some(b"test-resolver".to_vec().into()),
        version: Some(b"1".to_vec().into()),
        r#type: proto::dnstap::Type::Message as i32,
        message: Some(msg),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Checks that `obs` is exactly what message `i` of a resolver-type stream must become.
pub fn assert_resolver_observation(obs: &Observation, i: u32, segment: dnsensor_core::Segment) {
    let (sec, nsec) = time_of(i);
    assert_eq!(
        obs.time,
        std::time::UNIX_EPOCH + Duration::new(sec, nsec),
        "time of {i}"
    );
    assert_eq!(obs.response.as_ref(), response_bytes(i).as_slice());
    assert_eq!(obs.server, Some(server_addr(i)));
    assert_eq!(obs.client, Some(client_addr()));
    assert_eq!(obs.segment, segment);
    assert_eq!(obs.transport, dnsensor_core::Transport::Udp);
    assert_eq!(obs.bailiwick.as_deref(), Some(ZONE));
    assert_eq!(obs.query, None);
}

/// A whole unidirectional stream body: START, data frames, STOP.
pub fn stream_bytes(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_control(ControlType::Start, &[DNSTAP_CONTENT_TYPE], &mut out);
    for p in payloads {
        encode_data(p, &mut out);
    }
    encode_control(ControlType::Stop, &[], &mut out);
    out.to_vec()
}

/// Reads exactly `want.len()` bytes and checks them.
pub async fn expect_bytes<S: AsyncRead + Unpin>(s: &mut S, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut got))
        .await
        .expect("reply in time")
        .expect("read reply");
    assert_eq!(got, want);
}

/// Waits until the server closes the connection (EOF or reset), returning what it sent first.
pub async fn read_to_close<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("server closes the connection in time");
    got
}

/// Plays a bidirectional sender: READY, expects ACCEPT, START, frames, STOP, expects FINISH.
pub async fn send_bidirectional<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    payloads: &[Vec<u8>],
) {
    s.write_all(&dnsensor_dnstap::fstrm::control_bytes(
        ControlType::Ready,
        &[b"protobuf:other.Thing", DNSTAP_CONTENT_TYPE],
    ))
    .await
    .unwrap();
    expect_bytes(
        s,
        &dnsensor_dnstap::fstrm::control_bytes(ControlType::Accept, &[DNSTAP_CONTENT_TYPE]),
    )
    .await;
    s.write_all(&stream_bytes(payloads)).await.unwrap();
    expect_bytes(
        s,
        &dnsensor_dnstap::fstrm::control_bytes(ControlType::Finish, &[]),
    )
    .await;
    assert!(read_to_close(s).await.is_empty(), "nothing after FINISH");
}

/// A running server and the means to stop it.
pub struct Harness {
    pub listening: Vec<Listen>,
    pub stats: Arc<DnstapStats>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), dnsensor_dnstap::Error>>,
}

impl Harness {
    /// Binds and starts a server with `options`, feeding `handoff`.
    pub fn start(options: Options, handoff: Handoff) -> Harness {
        let server = bind(options).expect("bind");
        let listening = server.listening();
        let stats = server.stats();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(server.run(handoff, stop_rx));
        Harness {
            listening,
            stats,
            stop,
            task,
        }
    }

    /// The TCP address of listener `n`.
    pub fn tcp(&self, n: usize) -> SocketAddr {
        match &self.listening[n] {
            Listen::Tcp(a) => *a,
            other => panic!("listener {n} is {other}"),
        }
    }

    /// Requests shutdown and waits (bounded) until every connection task has ended.
    pub async fn shutdown(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server run");
    }
}

/// Options for one listener.
pub fn options(listen: Listen) -> Options {
    Options {
        listen: vec![listen],
        ..Options::default()
    }
}

/// A unix socket path in `dir`.
pub fn sock(dir: &Path) -> Listen {
    Listen::Unix(dir.join("dnstap.sock"))
}
