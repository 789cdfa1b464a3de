//! The codec against the reference implementation, libfstrm's `fstrm_replay` and `fstrm_capture`
//! (Debian package fstrm-bin). Each test prints a note and passes when its tool is not installed.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use dnsensor_core::pipeline::Handoff;
use dnsensor_core::Segment;
use dnsensor_dnstap::fstrm::{control_bytes, decode_frames, ControlFrame, ControlType, Frame};
use dnsensor_dnstap::proto::message::Type;
use dnsensor_dnstap::DNSTAP_CONTENT_TYPE;

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("skipping: {tool} is not installed (apt-get install fstrm-bin)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fstrm_replay_feeds_our_server() {
    if !have("fstrm_replay") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.fstrm");
    const N: u32 = 30;
    let payloads: Vec<_> = (0..N)
        .map(|i| dnstap_payload(i, Type::ResolverResponse))
        .collect();
    // A Frame Streams file is exactly a unidirectional stream: START, data, STOP.
    std::fs::write(&file, stream_bytes(&payloads)).unwrap();

    let (handoff, rx) = Handoff::channel(1000);
    let server = Harness::start(options(sock(dir.path())), handoff);
    let sock_path = dir.path().join("dnstap.sock");
    let status = tokio::task::spawn_blocking(move || {
        Command::new("fstrm_replay")
            .args(["-t", "protobuf:dnstap.Dnstap", "-u"])
            .arg(&sock_path)
            .arg("-r")
            .arg(&file)
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "fstrm_replay: {status}");

    let stats = server.stats.clone();
    // fstrm_replay may exit before our connection task has seen STOP; wait for it, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.snapshot().connections_finished == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.shutdown().await;
    let got: Vec<_> = rx.try_iter().collect();
    assert_eq!(got.len(), N as usize);
    for (i, obs) in (0..N).zip(&got) {
        assert_resolver_observation(obs, i, Segment::Resolver);
    }
    let s = stats.snapshot();
    assert_eq!(s.connections_finished, 1);
    assert_eq!(s.connections_closed_error, 0);
    assert_eq!(s.frames, u64::from(N));
}

/// Kills a child with SIGINT on drop, so a failing test does not leave it behind.
struct Child(std::process::Child);

impl Child {
    fn interrupt_and_wait(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        panic!("fstrm_capture did not exit on SIGINT");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn connect_when_ready(path: &Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("fstrm_capture socket: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn read_exact_timeout(s: &mut UnixStream, want: &[u8]) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, want);
}

#[test]
fn fstrm_capture_accepts_our_sender_and_we_read_its_file() {
    if !have("fstrm_capture") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("capture.sock");
    let file = dir.path().join("out.fstrm");
    let mut child = Child(
        Command::new("fstrm_capture")
            .args(["-t", "protobuf:dnstap.Dnstap", "-u"])
            .arg(&sock_path)
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut s = connect_when_ready(&sock_path);
    // Our encoder plays the bidirectional sender; libfstrm must answer ACCEPT and FINISH.
    s.write_all(&control_bytes(ControlType::Ready, &[DNSTAP_CONTENT_TYPE]))
        .unwrap();
    read_exact_timeout(
        &mut s,
        &control_bytes(ControlType::Accept, &[DNSTAP_CONTENT_TYPE]),
    );
    const N: u32 = 25;
    let payloads: Vec<_> = (0..N)
        .map(|i| dnstap_payload(i, Type::ForwarderResponse))
        .collect();
    s.write_all(&stream_bytes(&payloads)).unwrap();
    read_exact_timeout(&mut s, &control_bytes(ControlType::Finish, &[]));
    drop(s);
    child.interrupt_and_wait();

    // Our decoder reads libfstrm's file writer's output.
    let data = std::fs::read(&file).unwrap();
    let frames = decode_frames(&data, 1 << 20).unwrap();
    assert_eq!(frames.len(), N as usize + 2);
    assert_eq!(
        frames[0],
        Frame::Control(ControlFrame {
            kind: ControlType::Start,
            content_types: vec![bytes::Bytes::from_static(DNSTAP_CONTENT_TYPE)],
        })
    );
    assert_eq!(
        frames[N as usize + 1],
        Frame::Control(ControlFrame {
            kind: ControlType::Stop,
            content_types: vec![],
        })
    );
    for (i, f) in (0..N).zip(&frames[1..=N as usize]) {
        let Frame::Data(d) = f else {
            panic!("frame {i} is not data: {f:?}")
        };
        assert_eq!(d.as_ref(), payloads[i as usize].as_slice());
        let dnsensor_dnstap::Outcome::Use(obs) =
            dnsensor_dnstap::observation_from_frame(d.clone(), false).unwrap()
        else {
            panic!("frame {i} not used")
        };
        assert_resolver_observation(&obs, i, Segment::Forwarder);
    }
}
