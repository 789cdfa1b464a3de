//! The pipeline end to end inside the process: observations in, exact COF lines out.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use dnsensor_core::output::MemorySink;
use dnsensor_core::pipeline::{Pipeline, PipelineConfig, ThreadPriority};
use dnsensor_core::privacy::{PrivacyConfig, PrivacyFilter};
use dnsensor_core::{Observation, Segment, Transport};

fn name(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in s.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A response for `qname` A with the given addresses; owner names compressed to the question.
fn response(qname: &str, addrs: &[[u8; 4]], extra: Option<(&str, [u8; 4])>) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x84, 0x00, 0, 1];
    m.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&(extra.is_some() as u16).to_be_bytes());
    m.extend_from_slice(&name(qname));
    m.extend_from_slice(&[0, 1, 0, 1]);
    for a in addrs {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
        m.extend_from_slice(a);
    }
    if let Some((owner, a)) = extra {
        m.extend_from_slice(&name(owner));
        m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
        m.extend_from_slice(&a);
    }
    m
}

fn obs(msg: &[u8], secs: u64, bailiwick: Option<&str>) -> Observation {
    Observation {
        time: UNIX_EPOCH + Duration::from_secs(secs),
        response: Bytes::copy_from_slice(msg),
        server: Some("127.53.0.3:53".parse().unwrap()),
        client: Some("127.0.0.1:40000".parse().unwrap()),
        transport: Transport::Udp,
        segment: Segment::Resolver,
        bailiwick: bailiwick.map(|b| Bytes::from(name(b))),
        query: None,
    }
}

fn run(
    config: PipelineConfig,
    observations: Vec<Observation>,
) -> (Vec<String>, dnsensor_core::pipeline::PipelineSnapshot) {
    let sink = MemorySink::default();
    let lines = sink.lines.clone();
    let pipeline = Pipeline::start(config, Box::new(sink)).unwrap();
    let mut batcher = pipeline.handoff().batcher();
    let mut shed = 0;
    for o in observations {
        shed += batcher.push(o);
    }
    shed += batcher.flush();
    drop(batcher);
    // The queues are deep enough for these tests.
    assert_eq!(shed, 0);
    let snap = pipeline.shutdown();
    let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    (lines, snap)
}

fn config() -> PipelineConfig {
    PipelineConfig {
        workers: 2,
        queue_depth: 1024,
        window: Duration::from_secs(3600),
        max_entries: 1000,
        sensor_id: Some("t1".into()),
        privacy: PrivacyFilter::none(),
        client_counts: false,
        priority: ThreadPriority::Inherit,
    }
}

#[test]
fn dedups_and_writes_exact_cof_on_shutdown() {
    let www = response("www.d1.com", &[[192, 0, 2, 7], [192, 0, 2, 1]], None);
    let www_upper = response("WWW.D1.com", &[[192, 0, 2, 1], [192, 0, 2, 7]], None);
    let mail = response("mail.d1.com", &[[198, 51, 100, 25]], None);
    let observations = vec![
        obs(&www, 1_795_742_737, Some("d1.com")),
        obs(&www_upper, 1_795_742_797, Some("d1.com")),
        obs(&www, 1_795_742_740, Some("d1.com")),
        obs(&mail, 1_795_742_750, Some("d1.com")),
        // The same set seen from the parent zone is a different record.
        obs(&www, 1_795_742_760, Some("com")),
    ];
    let (lines, snap) = run(config(), observations);
    assert_eq!(
        lines,
        vec![
            r#"{"rrname":"mail.d1.com.","rrtype":"A","rdata":["198.51.100.25"],"bailiwick":"d1.com.","time_first":1795742750,"time_last":1795742750,"count":1,"sensor_id":"t1"}"#,
            r#"{"rrname":"www.d1.com.","rrtype":"A","rdata":["192.0.2.1","192.0.2.7"],"bailiwick":"com.","time_first":1795742760,"time_last":1795742760,"count":1,"sensor_id":"t1"}"#,
            r#"{"rrname":"www.d1.com.","rrtype":"A","rdata":["192.0.2.1","192.0.2.7"],"bailiwick":"d1.com.","time_first":1795742737,"time_last":1795742797,"count":3,"sensor_id":"t1"}"#,
        ]
    );
    assert_eq!(snap.offered, 5);
    assert_eq!(snap.shed, 0);
    assert_eq!(snap.extract.messages, 5);
    assert_eq!(snap.extract.records, 9);
    assert_eq!(snap.rrsets_flushed, 3);
}

#[test]
fn out_of_bailiwick_is_dropped_and_counted() {
    let spoof = response(
        "www.d1.com",
        &[[192, 0, 2, 1]],
        Some(("www.bank.com", [203, 0, 113, 66])),
    );
    let (lines, snap) = run(config(), vec![obs(&spoof, 1_795_742_737, Some("d1.com"))]);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with(r#"{"rrname":"www.d1.com.""#),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains("bank"));
    assert_eq!(snap.extract.out_of_bailiwick, 1);
}

#[test]
fn unknown_bailiwick_is_left_out_of_the_record() {
    let msg = response("www.d1.com", &[[192, 0, 2, 1]], None);
    let (lines, _) = run(config(), vec![obs(&msg, 100, None)]);
    assert_eq!(
        lines,
        vec![
            r#"{"rrname":"www.d1.com.","rrtype":"A","rdata":["192.0.2.1"],"time_first":100,"time_last":100,"count":1,"sensor_id":"t1"}"#
        ]
    );
}

#[test]
fn entry_cap_flushes_early_and_loses_nothing() {
    let mut observations = Vec::new();
    for i in 0..50u8 {
        let msg = response(&format!("h{i}.d1.com"), &[[192, 0, 2, i]], None);
        observations.push(obs(&msg, 1000 + u64::from(i), Some("d1.com")));
        observations.push(obs(&msg, 2000, Some("d1.com")));
    }
    let cfg = PipelineConfig {
        workers: 1,
        max_entries: 8,
        ..config()
    };
    let (lines, snap) = run(cfg, observations);
    // A key can straddle an early flush; summed counts per name are what must hold.
    let mut per_name = std::collections::BTreeMap::<String, u64>::new();
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        *per_name
            .entry(v["rrname"].as_str().unwrap().to_owned())
            .or_default() += v["count"].as_u64().unwrap();
    }
    assert_eq!(per_name.len(), 50);
    assert!(per_name.values().all(|&c| c == 2), "{per_name:?}");
    assert!(
        snap.early_flushes >= 50 / 8,
        "early flushes: {}",
        snap.early_flushes
    );
}

#[test]
fn window_flushes_while_running() {
    let sink = MemorySink::default();
    let lines = sink.lines.clone();
    let cfg = PipelineConfig {
        window: Duration::from_millis(200),
        ..config()
    };
    let pipeline = Pipeline::start(cfg, Box::new(sink)).unwrap();
    let msg = response("www.d1.com", &[[192, 0, 2, 1]], None);
    assert!(pipeline.handoff().offer(obs(&msg, 100, Some("d1.com"))));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lines.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no window flush within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let snap = pipeline.shutdown();
    assert!(snap.flushes >= 2, "a window flush and the final flush");
    assert_eq!(snap.rrsets_flushed, 1);
}

#[test]
fn a_full_queue_sheds_and_counts_without_waiting() {
    // One worker whose queue holds a single batch, and a sink that blocks the flusher: the
    // worker stalls on its first early flush, so later batches must be shed, not waited for.
    struct Stuck(std::sync::mpsc::Receiver<()>);
    impl dnsensor_core::output::Sink for Stuck {
        fn write_batch(&mut self, _: &[u8], _: usize) -> std::io::Result<()> {
            let _ = self.0.recv();
            Ok(())
        }
    }
    let (release, gate) = std::sync::mpsc::channel();
    let cfg = PipelineConfig {
        workers: 1,
        queue_depth: 1,
        max_entries: 1,
        ..config()
    };
    let pipeline = Pipeline::start(cfg, Box::new(Stuck(gate))).unwrap();
    let handoff = pipeline.handoff();
    let mut accepted = 0u64;
    for i in 0..2000u32 {
        let msg = response(&format!("h{i}.d1.com"), &[[192, 0, 2, 1]], None);
        if handoff.offer(obs(&msg, 1, None)) {
            accepted += 1;
        }
    }
    assert_eq!(handoff.offered(), 2000);
    assert_eq!(handoff.shed(), 2000 - accepted);
    assert!(handoff.shed() > 0, "nothing was shed");
    drop(release);
    let snap = pipeline.shutdown();
    assert_eq!(snap.shed + snap.extract.messages, 2000);
}

#[test]
fn offers_after_shutdown_are_shed() {
    let pipeline = Pipeline::start(config(), Box::new(MemorySink::default())).unwrap();
    let handoff = pipeline.handoff();
    let _ = pipeline.shutdown();
    let msg = response("www.d1.com", &[[192, 0, 2, 1]], None);
    assert!(!handoff.offer(obs(&msg, 1, None)));
    assert_eq!(handoff.shed(), 1);
}

#[test]
fn the_privacy_stage_drops_private_records_and_counts_each_reason() {
    let filter = PrivacyFilter::new(&PrivacyConfig::default()).unwrap();
    // One public and one RFC 1918 address in a set, plus loopback glue in the additional section.
    let mixed = response(
        "www.d1.com",
        &[[192, 0, 2, 1], [10, 1, 2, 3]],
        Some(("ns1.d1.com", [127, 53, 1, 3])),
    );
    let private_name = response("nas.home.arpa", &[[192, 0, 2, 9]], None);
    let reverse = response("5.1.168.192.in-addr.arpa", &[[192, 0, 2, 9]], None);
    let (lines, snap) = run(
        PipelineConfig {
            privacy: filter,
            ..config()
        },
        vec![
            obs(&mixed, 1_795_742_737, None),
            obs(&private_name, 1_795_742_737, None),
            obs(&reverse, 1_795_742_737, None),
        ],
    );
    assert_eq!(
        lines,
        vec![
            r#"{"rrname":"www.d1.com.","rrtype":"A","rdata":["192.0.2.1"],"time_first":1795742737,"time_last":1795742737,"count":1,"sensor_id":"t1"}"#
        ]
    );
    assert_eq!(snap.extract.private_address, 2);
    assert_eq!(snap.extract.private_name, 2);
    assert_eq!(snap.extract.records, 5);
}

#[test]
fn client_counts_are_distinct_addresses_across_workers() {
    let www = response("www.d1.com", &[[192, 0, 2, 1]], None);
    let mail = response("mail.d1.com", &[[192, 0, 2, 25]], None);
    let mut observations = Vec::new();
    // Five clients ask for www (two of them twice, from other ports); one asks for mail.
    for (i, host) in [1, 2, 3, 4, 5, 1, 2].iter().enumerate() {
        let mut o = obs(&www, 1_795_742_737 + i as u64, None);
        o.client = Some(format!("127.0.0.{host}:{}", 40000 + i).parse().unwrap());
        observations.push(o);
    }
    let mut o = obs(&mail, 1_795_742_737, None);
    o.client = Some("[::1]:5353".parse().unwrap());
    observations.push(o);
    let (lines, _) = run(
        PipelineConfig {
            client_counts: true,
            ..config()
        },
        observations,
    );
    assert_eq!(
        lines,
        vec![
            r#"{"rrname":"mail.d1.com.","rrtype":"A","rdata":["192.0.2.25"],"time_first":1795742737,"time_last":1795742737,"count":1,"clients":1,"sensor_id":"t1"}"#,
            r#"{"rrname":"www.d1.com.","rrtype":"A","rdata":["192.0.2.1"],"time_first":1795742737,"time_last":1795742743,"count":7,"clients":5,"sensor_id":"t1"}"#,
        ]
    );
    for line in &lines {
        assert!(!line.contains("127.0.0") && !line.contains("::1"), "{line}");
    }
}

#[test]
fn after_a_privacy_switch_returns_every_observation_meets_the_new_filter() {
    // Many rounds, since the race this guards against (a worker taking an observation handed
    // in after the switch, before switching) is a matter of timing.
    let sink = MemorySink::default();
    let lines = sink.lines.clone();
    let pipeline = Pipeline::start(config(), Box::new(sink)).unwrap();
    let control = pipeline.privacy_control();
    let handoff = pipeline.handoff();
    let open = PrivacyFilter::new(&PrivacyConfig::default()).unwrap();
    let closed = PrivacyFilter::new(&PrivacyConfig {
        drop_suffixes: vec!["d1.com.".into()],
        ..PrivacyConfig::default()
    })
    .unwrap();
    let rounds = 200u64;
    for round in 0..rounds {
        assert!(control.set(open.clone(), Duration::from_secs(10)));
        let kept = response(&format!("k{round}.d1.com"), &[[192, 0, 2, 1]], None);
        assert!(handoff.offer(obs(&kept, 1_795_742_737, None)));
        assert!(control.set(closed.clone(), Duration::from_secs(10)));
        let dropped = response(&format!("x{round}.d1.com"), &[[192, 0, 2, 1]], None);
        assert!(handoff.offer(obs(&dropped, 1_795_742_737, None)));
    }
    let snap = pipeline.shutdown();
    let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
    let leaked: Vec<&str> = text.lines().filter(|l| l.contains("\"x")).collect();
    assert!(
        leaked.is_empty(),
        "recorded under the old filter: {leaked:?}"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains("\"k")).count() as u64,
        rounds
    );
    assert_eq!(snap.extract.private_name, rounds);
}
