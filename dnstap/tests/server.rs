//! The dnstap server end to end over real sockets: handshakes, bad senders, client responses and
//! a full pipeline. Every test stops the server before checking counters, so they are exact.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use dnsensor_core::pipeline::Handoff;
use dnsensor_core::Segment;
use dnsensor_dnstap::fstrm::{control_bytes, encode_control, ControlType};
use dnsensor_dnstap::proto::message::Type;
use dnsensor_dnstap::{Listen, Options, DNSTAP_CONTENT_TYPE};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

#[tokio::test]
async fn bidirectional_over_unix() {
    let dir = tempfile::tempdir().unwrap();
    let listen = sock(dir.path());
    let Listen::Unix(path) = listen.clone() else {
        unreachable!()
    };
    let (handoff, rx) = Handoff::channel(1000);
    let server = Harness::start(options(listen), handoff.clone());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);

    const N: u32 = 50;
    let payloads: Vec<_> = (0..N)
        .map(|i| {
            let kind = if i % 2 == 0 {
                Type::ResolverResponse
            } else {
                Type::ForwarderResponse
            };
            dnstap_payload(i, kind)
        })
        .collect();
    let mut s = UnixStream::connect(&path).await.unwrap();
    send_bidirectional(&mut s, &payloads).await;

    let got: Vec<_> = rx.try_iter().collect();
    assert_eq!(got.len(), N as usize);
    for (i, obs) in (0..N).zip(&got) {
        let segment = if i % 2 == 0 {
            Segment::Resolver
        } else {
            Segment::Forwarder
        };
        assert_resolver_observation(obs, i, segment);
    }
    let stats = server.stats.clone();
    server.shutdown().await;
    assert!(!path.exists(), "socket file removed on shutdown");
    let s = stats.snapshot();
    assert_eq!(s.connections_accepted, 1);
    assert_eq!(s.connections_finished, 1);
    assert_eq!(s.connections_closed_error, 0);
    assert_eq!(s.frames, u64::from(N));
    assert_eq!(s.messages_decoded, u64::from(N));
    assert_eq!(s.messages_used, u64::from(N));
    assert_eq!(s.messages_ignored, 0);
    assert_eq!(s.decode_errors, 0);
    let handshake = control_bytes(
        ControlType::Ready,
        &[b"protobuf:other.Thing", DNSTAP_CONTENT_TYPE],
    );
    assert_eq!(
        s.bytes_read,
        (handshake.len() + stream_bytes(&payloads).len()) as u64
    );
    assert_eq!(handoff.shed(), 0);
}

#[tokio::test]
async fn unidirectional_over_tcp() {
    let (handoff, rx) = Handoff::channel(1000);
    let server = Harness::start(
        options(Listen::Tcp("127.0.0.1:0".parse().unwrap())),
        handoff,
    );
    let mut s = TcpStream::connect(server.tcp(0)).await.unwrap();
    let payloads: Vec<_> = (0..20)
        .map(|i| dnstap_payload(i, Type::ResolverResponse))
        .collect();
    s.write_all(&stream_bytes(&payloads)).await.unwrap();
    assert!(
        read_to_close(&mut s).await.is_empty(),
        "no replies when unidirectional"
    );
    let got: Vec<_> = rx.try_iter().collect();
    assert_eq!(got.len(), 20);
    for (i, obs) in (0..20).zip(&got) {
        assert_resolver_observation(obs, i, Segment::Resolver);
    }
    let stats = server.stats.clone();
    server.shutdown().await;
    let s = stats.snapshot();
    assert_eq!((s.connections_finished, s.connections_closed_error), (1, 0));
    assert_eq!(s.messages_used, 20);
}

#[tokio::test]
async fn wrong_content_type_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (handoff, rx) = Handoff::channel(1000);
    let server = Harness::start(
        Options {
            listen: vec![
                sock(dir.path()),
                Listen::Tcp("127.0.0.1:0".parse().unwrap()),
            ],
            ..Options::default()
        },
        handoff,
    );
    let path = dir.path().join("dnstap.sock");

    // READY that does not offer dnstap: no ACCEPT, just a close.
    let mut bad_ready = UnixStream::connect(&path).await.unwrap();
    bad_ready
        .write_all(&control_bytes(
            ControlType::Ready,
            &[b"protobuf:dnstap.Other"],
        ))
        .await
        .unwrap();
    // Unidirectional START with another type.
    let mut bad_start = TcpStream::connect(server.tcp(1)).await.unwrap();
    bad_start
        .write_all(&control_bytes(ControlType::Start, &[b"text/plain"]))
        .await
        .unwrap();
    // A good sender, connected meanwhile, on the same unix socket.
    let mut good = UnixStream::connect(&path).await.unwrap();

    assert!(read_to_close(&mut bad_ready).await.is_empty(), "no ACCEPT");
    assert!(read_to_close(&mut bad_start).await.is_empty());
    let payloads: Vec<_> = (0..5)
        .map(|i| dnstap_payload(i, Type::ResolverResponse))
        .collect();
    send_bidirectional(&mut good, &payloads).await;
    assert_eq!(rx.try_iter().count(), 5);

    let stats = server.stats.clone();
    server.shutdown().await;
    let s = stats.snapshot();
    assert_eq!(s.connections_accepted, 3);
    assert_eq!(s.connections_closed_error, 2);
    assert_eq!(s.protocol_errors, 2);
    assert_eq!(s.connections_finished, 1);
    assert_eq!(s.messages_used, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_senders_do_not_disturb_a_good_one() {
    let (handoff, rx) = Handoff::channel(10_000);
    let server = Harness::start(
        options(Listen::Tcp("127.0.0.1:0".parse().unwrap())),
        handoff,
    );
    let addr = server.tcp(0);
    let mut good = TcpStream::connect(addr).await.unwrap();
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    let mut truncated = TcpStream::connect(addr).await.unwrap();
    let mut oversized = TcpStream::connect(addr).await.unwrap();

    // The good sender starts, then the bad ones do their worst, then it finishes.
    let payloads: Vec<_> = (0..200)
        .map(|i| dnstap_payload(i, Type::ResolverResponse))
        .collect();
    let stream = stream_bytes(&payloads);
    let (first, rest) = stream.split_at(stream.len() / 2);
    good.write_all(first).await.unwrap();

    // An escape followed by a control length far past 512.
    garbage
        .write_all(b"\x00\x00\x00\x00\xde\xad\xbe\xef garbage garbage")
        .await
        .unwrap();
    // START, then a data frame announcing 100 bytes that brings 10 and hangs up.
    let mut t = BytesMut::new();
    encode_control(ControlType::Start, &[DNSTAP_CONTENT_TYPE], &mut t);
    t.extend_from_slice(&100u32.to_be_bytes());
    t.extend_from_slice(&[7u8; 10]);
    truncated.write_all(&t).await.unwrap();
    truncated.shutdown().await.unwrap();
    // START, then a 2 MiB frame header.
    let mut o = BytesMut::new();
    encode_control(ControlType::Start, &[DNSTAP_CONTENT_TYPE], &mut o);
    o.extend_from_slice(&(2u32 << 20).to_be_bytes());
    oversized.write_all(&o).await.unwrap();

    read_to_close(&mut garbage).await;
    read_to_close(&mut truncated).await;
    read_to_close(&mut oversized).await;

    good.write_all(rest).await.unwrap();
    assert!(read_to_close(&mut good).await.is_empty());
    let got: Vec<_> = rx.try_iter().collect();
    assert_eq!(got.len(), 200);
    for (i, obs) in (0..200).zip(&got) {
        assert_resolver_observation(obs, i, Segment::Resolver);
    }

    let stats = server.stats.clone();
    server.shutdown().await;
    let s = stats.snapshot();
    assert_eq!(s.connections_accepted, 4);
    assert_eq!(s.connections_closed_error, 3);
    assert_eq!(s.protocol_errors, 1);
    assert_eq!(s.frames_truncated, 1);
    assert_eq!(s.frames_oversized, 1);
    assert_eq!(s.connections_finished, 1);
    assert_eq!(s.frames, 200);
    assert_eq!(s.messages_used, 200);
}

#[tokio::test]
async fn decode_errors_and_ignored_types_are_counted_not_fatal() {
    let (handoff, rx) = Handoff::channel(100);
    let server = Harness::start(
        options(Listen::Tcp("127.0.0.1:0".parse().unwrap())),
        handoff,
    );
    let mut missing = dnsensor_dnstap::proto::Dnstap {
        r#type: 1,
        message: Some(dnsensor_dnstap::proto::Message {
            r#type: Type::ResolverResponse as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let missing_bytes = prost::Message::encode_to_vec(&missing);
    missing.message = None;
    let no_message = prost::Message::encode_to_vec(&missing);
    let payloads = vec![
        dnstap_payload(0, Type::ResolverQuery),
        vec![0xff, 0xff, 0xff],
        missing_bytes,
        no_message,
        dnstap_payload(1, Type::AuthResponse),
        dnstap_payload(2, Type::ResolverResponse),
    ];
    let mut s = TcpStream::connect(server.tcp(0)).await.unwrap();
    send_bidirectional(&mut s, &payloads).await;
    let got: Vec<_> = rx.try_iter().collect();
    assert_eq!(got.len(), 1);
    assert_resolver_observation(&got[0], 2, Segment::Resolver);
    let stats = server.stats.clone();
    server.shutdown().await;
    let s = stats.snapshot();
    assert_eq!(s.frames, 6);
    assert_eq!(s.decode_errors, 1);
    assert_eq!(s.messages_decoded, 5);
    assert_eq!(s.messages_ignored, 3);
    assert_eq!(s.responses_missing, 1);
    assert_eq!(s.messages_used, 1);
    assert_eq!(s.connections_closed_error, 0);
}

async fn client_response_run(client_responses: bool) -> (Vec<dnsensor_core::Observation>, u64) {
    let (handoff, rx) = Handoff::channel(100);
    let server = Harness::start(
        Options {
            client_responses,
            ..options(Listen::Tcp("127.0.0.1:0".parse().unwrap()))
        },
        handoff,
    );
    let payloads: Vec<_> = (0..3)
        .map(|i| dnstap_payload(i, Type::ClientResponse))
        .collect();
    let mut s = TcpStream::connect(server.tcp(0)).await.unwrap();
    send_bidirectional(&mut s, &payloads).await;
    let stats = server.stats.clone();
    server.shutdown().await;
    (rx.try_iter().collect(), stats.snapshot().messages_ignored)
}

#[tokio::test]
async fn client_responses_only_when_enabled() {
    let (got, ignored) = client_response_run(false).await;
    assert_eq!((got.len(), ignored), (0, 3));

    let (got, ignored) = client_response_run(true).await;
    assert_eq!((got.len(), ignored), (3, 0));
    for (i, obs) in (0..3).zip(&got) {
        assert_eq!(obs.segment, Segment::Client);
        assert_eq!(obs.bailiwick, None, "no bailiwick for client responses");
        assert_eq!(obs.client, Some(client_addr()));
        assert_eq!(obs.server, Some(server_addr(i)));
        assert_ne!(obs.server, obs.client);
        assert_eq!(obs.response.as_ref(), response_bytes(i).as_slice());
    }
}

#[tokio::test]
async fn full_pipeline_sheds_but_keeps_draining() {
    let dir = tempfile::tempdir().unwrap();
    let (handoff, rx) = Handoff::channel(1);
    let server = Harness::start(options(sock(dir.path())), handoff.clone());
    const N: u32 = 500;
    let payloads: Vec<_> = (0..N)
        .map(|i| dnstap_payload(i, Type::ResolverResponse))
        .collect();
    let mut s = UnixStream::connect(dir.path().join("dnstap.sock"))
        .await
        .unwrap();
    // FINISH arriving proves every frame was read despite nobody receiving.
    tokio::time::timeout(
        Duration::from_secs(20),
        send_bidirectional(&mut s, &payloads),
    )
    .await
    .expect("stream completes while the pipeline is full");
    assert_eq!(handoff.offered(), u64::from(N));
    assert_eq!(handoff.shed(), u64::from(N) - 1);
    let stats = server.stats.clone();
    server.shutdown().await;
    let s = stats.snapshot();
    assert_eq!(s.observations_shed, u64::from(N) - 1);
    assert_eq!(s.messages_used, u64::from(N));
    assert_eq!(rx.try_iter().count(), 1);
}

#[tokio::test]
async fn many_concurrent_senders() {
    let dir = tempfile::tempdir().unwrap();
    let (handoff, rx) = Handoff::channel(10_000);
    let server = Harness::start(options(sock(dir.path())), handoff);
    let path = dir.path().join("dnstap.sock");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let payloads: Vec<_> = (0..100)
                .map(|i| dnstap_payload(i, Type::ResolverResponse))
                .collect();
            let mut s = UnixStream::connect(&path).await.unwrap();
            send_bidirectional(&mut s, &payloads).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(rx.try_iter().count(), 1600);
    let stats = server.stats.clone();
    server.shutdown().await;
    assert_eq!(stats.snapshot().connections_finished, 16);
}

#[tokio::test]
async fn shutdown_ends_idle_connections_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let (handoff, _rx) = Handoff::channel(10);
    let server = Harness::start(options(sock(dir.path())), handoff);
    let path = dir.path().join("dnstap.sock");
    let mut s = UnixStream::connect(&path).await.unwrap();
    s.write_all(&control_bytes(ControlType::Start, &[DNSTAP_CONTENT_TYPE]))
        .await
        .unwrap();
    // A sender that is mid-stream and idle must not hold up shutdown.
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.shutdown().await;
    assert!(read_to_close(&mut s).await.is_empty());
    assert!(!path.exists());
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (handoff, rx) = Handoff::channel(1000);
    let server = Harness::start(
        Options {
            max_connections: 2,
            ..options(sock(dir.path()))
        },
        handoff,
    );
    let stats = server.stats.clone();
    let path = dir.path().join("dnstap.sock");
    let ready = control_bytes(ControlType::Ready, &[DNSTAP_CONTENT_TYPE]);
    let accept = control_bytes(ControlType::Accept, &[DNSTAP_CONTENT_TYPE]);
    // Two senders past the handshake hold both places.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(&ready).await.unwrap();
        expect_bytes(&mut s, &accept).await;
        held.push(s);
    }
    // A third is closed at once, without a reply.
    let mut third = UnixStream::connect(&path).await.unwrap();
    let _ = third.write_all(&ready).await;
    assert!(read_to_close(&mut third).await.is_empty());
    assert_eq!(stats.snapshot().connections_refused, 1);
    // The two held senders are still served to the end.
    for (n, s) in held.iter_mut().enumerate() {
        let payloads: Vec<_> = (0..5)
            .map(|i| dnstap_payload(n as u32 * 10 + i, Type::ResolverResponse))
            .collect();
        // START, the frames, STOP.
        s.write_all(&stream_bytes(&payloads)).await.unwrap();
        expect_bytes(s, &control_bytes(ControlType::Finish, &[])).await;
    }
    server.shutdown().await;
    let snap = stats.snapshot();
    assert_eq!(snap.connections_accepted, 2);
    assert_eq!(snap.connections_refused, 1);
    assert_eq!(snap.connections_finished, 2);
    assert_eq!(rx.try_iter().count(), 10);
}
