//! One live capture on the loopback interface: DNS over UDP to a free port, seen through a BPF filter.
//! Needs the right to capture (root or CAP_NET_RAW); without it the test says so and passes.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dnsensor_capture::{Capture, CaptureError, Source, TapConfig};
use dnsensor_core::output::MemorySink;
use dnsensor_core::pipeline::Pipeline;

#[test]
fn live_capture_on_loopback_sees_a_pair() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let source = Source::Live {
        interface: "lo".into(),
        bpf: Some(format!("udp port {port}")),
        buffer_bytes: 1 << 20,
        snaplen: 65_535,
    };
    let cfg = TapConfig {
        shards: 1,
        ports: vec![port],
        ..TapConfig::default()
    };
    let capture = match Capture::open(source, cfg) {
        Ok(c) => c,
        Err(e @ CaptureError::Interface { .. }) => {
            eprintln!("skipping the live test: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let counters = capture.counters();
    let sink = MemorySink::default();
    let lines = sink.lines.clone();
    let pipeline = Pipeline::start(pipeline_config(), Box::new(sink)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handoff = pipeline.handoff();
    let stop2 = stop.clone();
    let runner = std::thread::spawn(move || capture.run(handoff, stop2, false));

    let q = query(0x4242, "www.d1.com", QUERY);
    let r = a_response(0x4242, "www.d1.com", RESP_AA, &[[192, 0, 2, 1]]);
    client.send_to(&q, server.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 512];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &q[..]);
    server.send_to(&r, from).unwrap();
    client.recv_from(&mut buf).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while counters.snapshot().observations < 1 {
        assert!(
            Instant::now() < deadline,
            "not seen within 10 s: {}",
            counters.snapshot()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let summary = runner.join().unwrap().unwrap();
    pipeline.shutdown();
    assert_eq!(
        (summary.packets, summary.queries, summary.responses_paired),
        (2, 1, 1),
        "{summary}"
    );
    let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got.len(), 1, "{text}");
    assert!(
        got[0].starts_with(
            r#"{"rrname":"www.d1.com.","rrtype":"A","rdata":["192.0.2.1"],"time_first":"#
        ),
        "{text}"
    );
    assert!(
        got[0].ends_with(r#","count":1,"sensor_id":"t1"}"#),
        "{text}"
    );
}
