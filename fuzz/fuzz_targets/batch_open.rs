//! Fuzz target: `batch::read_header` and `batch::open` on arbitrary bytes must never panic and
//! must respect the plaintext limit. The first byte picks how the rest is used, so that the
//! fuzzer reaches every stage: raw bytes (header parsing), a valid header before the bytes
//! (encapsulated key and AEAD), or the bytes sealed properly as the zstd payload (decompression).
#![no_main]

use std::sync::OnceLock;

use dnsensor_delivery::batch::{self, BatchError, BatchHeader, BatchId};
use dnsensor_delivery::keys::SecretKey;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 16;

fn key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_bytes(&[0x42; 32]).expect("32 bytes"))
}

fn header() -> BatchHeader {
    BatchHeader {
        sensor_id: "fuzz".into(),
        batch_id: BatchId([7; 16]),
        created: 1,
        records: 1,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        let _ = batch::read_header(data);
        assert!(batch::open(key(), data, LIMIT).is_err());
        return;
    };
    let input = match mode % 3 {
        0 => data.to_vec(),
        1 => {
            let mut v = header().encode().expect("valid header");
            v.extend_from_slice(rest);
            v
        }
        _ => batch::seal_compressed(&key().public_key(), &header(), rest).expect("seal"),
    };
    let parsed = batch::read_header(&input);
    match batch::open(key(), &input, LIMIT) {
        Ok(opened) => {
            assert!(opened.ndjson.len() <= LIMIT);
            assert_eq!(Ok(opened.header), parsed);
        }
        Err(BatchError::TooLarge { limit }) => assert_eq!(limit, LIMIT),
        Err(e) => assert!(
            mode % 3 != 2 || matches!(e, BatchError::Decompress(_)),
            "{e:?}"
        ),
    }
});
