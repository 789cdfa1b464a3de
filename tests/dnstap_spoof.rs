//! Spoofing: dnstap frames crafted by hand (Frame Streams, protobuf and DNS wire bytes
//! written in the test) and sent straight to `dnsensor dnstap`. No DNS servers needed.

mod common;

use common::expect::summary_value;
use common::wire::{
    connect_unix, fstrm_send_bidirectional, fstrm_send_unidirectional, DnsMessage, Rr, TapMessage,
    FSTRM_ACCEPT, FSTRM_FINISH, TYPE_A,
};
use common::{key, merge, unix_now, Cof, Dnsensor, TestDir, DNSTAP_CONTENT_TYPE};

/// A RESOLVER_RESPONSE for zone d1.com.: `www.d1.com. A 192.0.2.1` in the answer, plus a
/// poisoning attempt `www.bank.com. A 203.0.113.66` in the additional section.
fn spoofed_frame() -> Vec<u8> {
    let mut msg = DnsMessage::response(0x1234, "www.d1.com.", TYPE_A);
    msg.answer
        .push(Rr::a("www.d1.com.", 3600, [192, 0, 2, 1]).owner_ptr(12));
    msg.additional
        .push(Rr::a("www.bank.com.", 3600, [203, 0, 113, 66]));
    TapMessage::resolver_response("d1.com.", msg.encode()).encode()
}

fn assert_spoof_output(run: &common::DnsensorRun, t0: u64, t1: u64) {
    let ctx = format!("output:\n{}\nstderr:\n{}", run.raw, run.stderr);
    assert!(
        run.status.success(),
        "dnsensor exit status {}; {ctx}",
        run.status
    );
    assert!(
        !run.raw.contains("bank.com"),
        "the out-of-bailiwick record was emitted; {ctx}"
    );
    assert!(
        !run.raw.contains("203.0.113.66"),
        "the out-of-bailiwick rdata was emitted; {ctx}"
    );
    // The dnstap addresses (192.0.2.200 is the resolver side) must not leak either.
    assert!(
        !run.raw.contains("192.0.2.200") && !run.raw.contains("192.0.2.53"),
        "addresses leaked; {ctx}"
    );
    let cofs: Vec<Cof> = run.lines.iter().map(Cof::from_value).collect();
    assert_eq!(cofs.len(), 1, "want exactly one line; {ctx}");
    let m = merge(&cofs);
    let k = key("www.d1.com.", "A", "d1.com.", &["192.0.2.1"]);
    let got = m.get(&k).unwrap_or_else(|| panic!("missing {k:?}; {ctx}"));
    assert_eq!(got.count, 1, "count; {ctx}");
    let c = &cofs[0];
    assert_eq!(c.sensor_id.as_deref(), Some("test"), "{ctx}");
    assert!(
        c.time_first <= c.time_last && c.time_first >= t0 && c.time_last <= t1,
        "times; {ctx}"
    );
    assert_eq!(
        summary_value(&run.stderr, "out_of_bailiwick"),
        Some(1),
        "summary out_of_bailiwick; {ctx}"
    );
}

#[test]
fn spoofed_additional_record_is_dropped_bidirectional() {
    let dir = TestDir::new("spoof-bi");
    let sensor = Dnsensor::start(dir.path());
    let t0 = unix_now();

    let mut s = connect_unix(&sensor.sock).expect("connect to dnsensor's socket");
    let (accept, finish) =
        fstrm_send_bidirectional(&mut s, DNSTAP_CONTENT_TYPE, &[spoofed_frame()]).unwrap_or_else(
            |e| {
                panic!(
                    "Frame Streams session failed: {e}\nstderr:\n{}",
                    sensor.stderr_text()
                )
            },
        );
    assert_eq!(accept.ctype, FSTRM_ACCEPT, "want ACCEPT, got {accept:?}");
    // Unbound closes the connection unless ACCEPT echoes exactly this content type.
    assert_eq!(
        accept.content_types,
        vec![DNSTAP_CONTENT_TYPE.to_string()],
        "ACCEPT content type"
    );
    assert_eq!(
        finish.ctype, FSTRM_FINISH,
        "want FINISH after STOP, got {finish:?}"
    );
    drop(s);

    let run = sensor.finish();
    assert_spoof_output(&run, t0, unix_now());
}

#[test]
fn spoofed_additional_record_is_dropped_unidirectional() {
    let dir = TestDir::new("spoof-uni");
    let sensor = Dnsensor::start(dir.path());
    let t0 = unix_now();

    let mut s = connect_unix(&sensor.sock).expect("connect to dnsensor's socket");
    fstrm_send_unidirectional(&mut s, DNSTAP_CONTENT_TYPE, &[spoofed_frame()]).expect("send");
    s.shutdown(std::net::Shutdown::Write).unwrap();
    // dnsensor closes its side once it has read STOP, so the frame is in before SIGTERM.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut rest);
    drop(s);

    let run = sensor.finish();
    assert_spoof_output(&run, t0, unix_now());
}

/// SIGTERM while a sender is still connected (mid-stream, no STOP yet): dnsensor must
/// still flush the open window and exit, as it does when a resolver keeps running.
#[test]
fn sigterm_with_connected_sender_flushes_and_exits() {
    use common::wire::{fstrm_control, fstrm_data, read_control, FSTRM_READY, FSTRM_START};
    use std::io::Write as _;

    let dir = TestDir::new("spoof-open");
    let sensor = Dnsensor::start(dir.path());
    let t0 = unix_now();

    let mut s = connect_unix(&sensor.sock).expect("connect to dnsensor's socket");
    s.write_all(&fstrm_control(FSTRM_READY, &[DNSTAP_CONTENT_TYPE]))
        .unwrap();
    let accept = read_control(&mut s).expect("read ACCEPT");
    assert_eq!(accept.ctype, FSTRM_ACCEPT);
    let mut out = fstrm_control(FSTRM_START, &[DNSTAP_CONTENT_TYPE]);
    out.extend_from_slice(&fstrm_data(&spoofed_frame()));
    s.write_all(&out).unwrap();
    s.flush().unwrap();
    // With --window 1 the record is written within a second or two of arriving; only then is
    // it certain that SIGTERM comes after the frame was read.
    let mut sensor = sensor;
    assert!(
        sensor.wait_for(std::time::Duration::from_secs(20), |lines| !lines
            .is_empty()),
        "no record within 20 s; stderr:\n{}",
        sensor.stderr_text()
    );

    // The connection stays open across SIGTERM.
    let run = sensor.finish();
    drop(s);
    assert_spoof_output(&run, t0, unix_now());
}
