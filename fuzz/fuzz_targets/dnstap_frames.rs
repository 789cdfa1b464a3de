//! Fuzz target for the Frame Streams decoder and the dnstap → Observation conversion.
//! Nothing may panic, feeding the bytes in pieces must give the same frames as feeding them whole, and client responses never carry a bailiwick.
#![no_main]

use dnsensor_core::Segment;
use dnsensor_dnstap::bytes::BytesMut;
use dnsensor_dnstap::fstrm::{decode_frames, Decoder, Frame};
use dnsensor_dnstap::{observation_from_frame, Outcome};
use libfuzzer_sys::fuzz_target;

/// Decodes `data` as a socket would deliver it, `step` bytes at a time.
fn decode_in_steps(data: &[u8], step: usize, max: usize) -> Option<Vec<Frame>> {
    let decoder = Decoder::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = decoder.decode(&mut buf).ok()? {
            frames.push(frame);
        }
    }
    buf.is_empty().then_some(frames)
}

fuzz_target!(|input: &[u8]| {
    // The first byte picks the read size and whether client responses are wanted; a small cap
    // lets the fuzzer reach the oversized-frame path cheaply.
    let Some((&knobs, data)) = input.split_first() else {
        return;
    };
    let step = usize::from(knobs & 0x3f) + 1;
    let client_responses = knobs & 0x40 != 0;
    let max = if knobs & 0x80 != 0 { 64 } else { 1 << 20 };

    let whole = decode_frames(data, max).ok();
    let stepped = decode_in_steps(data, step, max);
    assert_eq!(whole, stepped, "chunking changed the decoded frames");

    for frame in whole.into_iter().flatten() {
        let Frame::Data(payload) = frame else {
            continue;
        };
        assert!(!payload.is_empty() && payload.len() <= max);
        if let Ok(Outcome::Use(obs)) = observation_from_frame(payload, client_responses) {
            if obs.segment == Segment::Client {
                assert!(client_responses);
                assert!(obs.bailiwick.is_none());
            }
        }
    }
});
