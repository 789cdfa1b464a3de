//! Property tests of the Frame Streams decoder and the dnstap conversion: arbitrary input never
//! panics, and feeding a stream in arbitrary pieces gives the same frames as feeding it whole.

use bytes::{Bytes, BytesMut};
use dnsensor_dnstap::fstrm::{
    decode_frames, encode_control, encode_data, ControlType, Decoder, Frame,
};
use dnsensor_dnstap::{observation_from_frame, DNSTAP_CONTENT_TYPE};
use proptest::prelude::*;

/// Feeds `data` to a decoder in pieces of the given sizes, like a socket would.
fn decode_chunked(data: &[u8], cuts: &[usize], max: usize) -> Result<Vec<Frame>, ()> {
    let decoder = Decoder::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = data;
    let mut cuts = cuts.iter().cycle();
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => return Err(()),
            }
        }
        if rest.is_empty() {
            return if buf.is_empty() { Ok(frames) } else { Err(()) };
        }
        let n = cuts.next().copied().unwrap_or(1).clamp(1, rest.len());
        assert!(decoder.missing(&buf) > 0);
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), max in 1usize..4096) {
        if let Ok(frames) = decode_frames(&data, max) {
            for f in frames {
                if let Frame::Data(d) = f {
                    let _ = observation_from_frame(d.clone(), false);
                    let _ = observation_from_frame(d, true);
                }
            }
        }
    }

    #[test]
    fn arbitrary_protobuf_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = observation_from_frame(Bytes::from(data), true);
    }

    #[test]
    fn chunking_does_not_change_the_frames(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20),
        cuts in proptest::collection::vec(1usize..64, 1..16),
    ) {
        let mut stream = BytesMut::new();
        encode_control(ControlType::Ready, &[DNSTAP_CONTENT_TYPE], &mut stream);
        encode_control(ControlType::Start, &[DNSTAP_CONTENT_TYPE], &mut stream);
        for p in &payloads {
            encode_data(p, &mut stream);
        }
        encode_control(ControlType::Stop, &[], &mut stream);
        let whole = decode_frames(&stream, 1 << 20).unwrap();
        prop_assert_eq!(whole.len(), payloads.len() + 3);
        let pieces = decode_chunked(&stream, &cuts, 1 << 20).unwrap();
        prop_assert_eq!(&pieces, &whole);
        for (f, p) in whole[2..].iter().zip(&payloads) {
            prop_assert_eq!(f, &Frame::Data(Bytes::from(p.clone())));
        }
    }

    #[test]
    fn arbitrary_bytes_chunked_agree_with_whole(
        data in proptest::collection::vec(any::<u8>(), 0..1024),
        cuts in proptest::collection::vec(1usize..64, 1..16),
    ) {
        let whole = decode_frames(&data, 512).ok();
        let pieces = decode_chunked(&data, &cuts, 512).ok();
        prop_assert_eq!(whole, pieces);
    }
}
