//! Tests of the sealed batch format: round trips, tampering, truncation, limits, the test vector.

use chacha20::rand_core::{Rng, SeedableRng};
use chacha20::ChaCha20Rng;
use dnsensor_delivery::batch::{
    self, open, read_header, seal, BatchError, BatchHeader, BatchId, FORMAT_VERSION,
};
use dnsensor_delivery::keys::{self, PublicKey, SecretKey};
use hpke::{Kem, Serializable};
use proptest::prelude::*;

const VECTOR_SECRET: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
const VECTOR_PUBLIC: &str = "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";
const VECTOR_SEED: &[u8; 32] = b"dnsensor batch test vector seed!";
const VECTOR_IKME: &str = "e731354abe465c1fd4a2fd61ddc05d4f9b32521cd6e9983e9c133a81b6c993e3";
const VECTOR_HEADER: &str = "444e5342010d73656e736f722d746573742d3100112233445566778899aabbccddeeff000000006927948000000002";
const VECTOR_SEALED: &str = "444e5342010d73656e736f722d746573742d3100112233445566778899aabbccddeeff000000006927948000000002c8a9bd60a6d7b46b52ec558ec1944203f6c700b80fc5daf208a170679d204431cdfb74fe9a26733a692fc1b9cb362e4b8fa3bbca3da5fc7cf44ebf0907eca9875d73fff0c7b5ac64591fa199f9290166c88268c273874d85b7c7d49b86cf1b38705bbfcced3187668338e4a6e2f52d49666e7e0eaac66f7986f3493dfc58d7b3820b9b9e66bc3164e473b1d0390bc8abb4c440b4a62c0ec7880a87d70a1b4dc59d066e3a7858c29a9d683ce5cc1866d7313925bfcc984bd625f3c91489b1174e6235bac785db0e5ebd98";
const VECTOR_PLAINTEXT: &str = concat!(
    r#"{"rrname":"www.example.com.","rrtype":"A","rdata":["192.0.2.1"],"bailiwick":"example.com.","time_first":1764201590,"time_last":1764201599,"count":3}"#,
    "\n",
    r#"{"rrname":"example.com.","rrtype":"MX","rdata":["10 mail.example.com."],"bailiwick":"example.com.","time_first":1764201591,"time_last":1764201591,"count":1}"#,
    "\n"
);

fn unhex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0);
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn vector_header() -> BatchHeader {
    BatchHeader {
        sensor_id: "sensor-test-1".into(),
        batch_id: "00112233445566778899aabbccddeeff".parse().unwrap(),
        created: 1_764_201_600,
        records: 2,
    }
}

fn header(records: u32) -> BatchHeader {
    BatchHeader {
        sensor_id: "ns1.example-sensor".into(),
        batch_id: BatchId::random(),
        created: 1_700_000_000,
        records,
    }
}

const PLAIN: &[u8] = b"{\"rrname\":\"secret-qname.example.\",\"rrtype\":\"A\",\"rdata\":[\"192.0.2.1\"],\"time_first\":1,\"time_last\":2,\"count\":3}\n";

#[test]
fn test_vector_opens_to_the_plaintext() {
    let sk = SecretKey::from_bytes(&unhex(VECTOR_SECRET)).unwrap();
    assert_eq!(hex(&sk.public_key().to_bytes()), VECTOR_PUBLIC);
    let sealed = unhex(VECTOR_SEALED);
    assert_eq!(read_header(&sealed).unwrap(), vector_header());
    let opened = open(&sk, &sealed, 1 << 20).unwrap();
    assert_eq!(opened.header, vector_header());
    assert_eq!(opened.ndjson, VECTOR_PLAINTEXT.as_bytes());
}

#[test]
fn test_vector_is_reproduced_byte_for_byte() {
    let sk = SecretKey::from_bytes(&unhex(VECTOR_SECRET)).unwrap();
    assert_eq!(hex(&vector_header().encode().unwrap()), VECTOR_HEADER);
    let mut rng = ChaCha20Rng::from_seed(*VECTOR_SEED);
    let sealed = batch::seal_with_rng(
        &sk.public_key(),
        &vector_header(),
        VECTOR_PLAINTEXT.as_bytes(),
        3,
        &mut rng,
    )
    .unwrap();
    assert_eq!(hex(&sealed), VECTOR_SEALED);
    // The encapsulated key is DeriveKeyPair(ikmE) with ikmE the RNG's first 32 bytes, as the
    // document says, so another implementation can reproduce it without this RNG.
    let mut ikm = [0u8; 32];
    ChaCha20Rng::from_seed(*VECTOR_SEED).fill_bytes(&mut ikm);
    assert_eq!(hex(&ikm), VECTOR_IKME);
    let (_, pk_e) = hpke::kem::X25519HkdfSha256::derive_keypair(&ikm);
    let h = VECTOR_HEADER.len() / 2;
    assert_eq!(&sealed[h..h + 32], &pk_e.to_bytes()[..]);
}

#[test]
fn round_trip_with_generated_keys() {
    let (sk, pk) = keys::generate();
    let h = header(1);
    let sealed = seal(&pk, &h, PLAIN).unwrap();
    assert_eq!(read_header(&sealed).unwrap(), h);
    let opened = open(&sk, &sealed, PLAIN.len()).unwrap();
    assert_eq!(opened.header, h);
    assert_eq!(opened.ndjson, PLAIN);
    // Two seals of the same input differ (fresh ephemeral key), and both open.
    let again = seal(&pk, &h, PLAIN).unwrap();
    assert_ne!(again, sealed);
    assert_eq!(open(&sk, &again, 1 << 20).unwrap().ndjson, PLAIN);
}

#[test]
fn empty_payload_round_trips() {
    let (sk, pk) = keys::generate();
    let sealed = seal(&pk, &header(0), b"").unwrap();
    assert_eq!(open(&sk, &sealed, 0).unwrap().ndjson, b"");
}

#[test]
fn payload_is_not_visible_in_the_sealed_bytes() {
    let (_, pk) = keys::generate();
    let sealed = seal(&pk, &header(1), PLAIN).unwrap();
    let needle = b"secret-qname";
    assert!(!sealed.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn wrong_key_is_open_error() {
    let (_, pk) = keys::generate();
    let (other, _) = keys::generate();
    let sealed = seal(&pk, &header(1), PLAIN).unwrap();
    assert_eq!(open(&other, &sealed, 1 << 20), Err(BatchError::Open));
}

#[test]
fn every_flipped_byte_is_detected() {
    let (sk, pk) = keys::generate();
    let sealed = seal(&pk, &header(1), PLAIN).unwrap();
    let header_len = header(1).encode().unwrap().len();
    for i in 0..sealed.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = sealed.clone();
            t[i] ^= bit;
            let err = open(&sk, &t, 1 << 20).unwrap_err();
            if i >= header_len {
                // Body changes: only authentication can notice.
                assert_eq!(err, BatchError::Open, "byte {i} bit {bit:#x}");
            } else {
                // Header changes: a parse error, or authentication fails (the header is AAD).
                assert!(
                    matches!(
                        err,
                        BatchError::Open
                            | BatchError::BadMagic
                            | BatchError::UnsupportedVersion(_)
                            | BatchError::BadHeader(_)
                            | BatchError::Truncated
                    ),
                    "byte {i}: {err:?}"
                );
            }
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let (sk, pk) = keys::generate();
    let sealed = seal(&pk, &header(1), PLAIN).unwrap();
    let header_len = header(1).encode().unwrap().len();
    for len in 0..sealed.len() {
        let cut = &sealed[..len];
        let err = open(&sk, cut, 1 << 20).unwrap_err();
        if len < header_len {
            assert_eq!(err, BatchError::Truncated, "len {len}");
            assert_eq!(read_header(cut), Err(BatchError::Truncated), "len {len}");
        } else if len < header_len + 32 + 16 {
            assert_eq!(err, BatchError::Truncated, "len {len}");
        } else {
            assert_eq!(err, BatchError::Open, "len {len}");
        }
    }
}

#[test]
fn header_errors_are_specific() {
    let (_, pk) = keys::generate();
    let sealed = seal(&pk, &header(1), PLAIN).unwrap();
    let mut t = sealed.clone();
    t[0] = b'X';
    assert_eq!(read_header(&t), Err(BatchError::BadMagic));
    assert_eq!(read_header(b"PK\x03"), Err(BatchError::BadMagic));
    let mut t = sealed.clone();
    t[4] = 2;
    assert_eq!(read_header(&t), Err(BatchError::UnsupportedVersion(2)));
    assert_eq!(sealed[4], FORMAT_VERSION);
    let mut t = sealed.clone();
    t[5] = 0;
    assert!(matches!(read_header(&t), Err(BatchError::BadHeader(_))));
    let mut t = sealed.clone();
    t[6] = 0xff; // not UTF-8
    assert!(matches!(read_header(&t), Err(BatchError::BadHeader(_))));
}

#[test]
fn invalid_sensor_ids_cannot_be_sealed() {
    let (_, pk) = keys::generate();
    for id in [String::new(), "a".repeat(256), "line\nbreak".into()] {
        let h = BatchHeader {
            sensor_id: id,
            ..header(1)
        };
        assert!(matches!(
            seal(&pk, &h, PLAIN),
            Err(BatchError::BadHeader(_))
        ));
    }
    let h = BatchHeader {
        sensor_id: "é".repeat(127),
        ..header(1)
    };
    assert!(seal(&pk, &h, PLAIN).is_ok());
}

#[test]
fn max_plaintext_is_enforced() {
    let (sk, pk) = keys::generate();
    let big: Vec<u8> = PLAIN.repeat(1000);
    let sealed = seal(&pk, &header(1000), &big).unwrap();
    assert_eq!(open(&sk, &sealed, big.len()).unwrap().ndjson, big);
    assert_eq!(
        open(&sk, &sealed, big.len() - 1),
        Err(BatchError::TooLarge {
            limit: big.len() - 1
        })
    );
    // A zstd bomb: 64 MiB of zeros compress to a few KiB; a 1 MiB limit stops it early.
    let zeros = vec![0u8; 64 << 20];
    let sealed = seal(&pk, &header(0), &zeros).unwrap();
    assert!(sealed.len() < 64 << 10, "{}", sealed.len());
    assert_eq!(
        open(&sk, &sealed, 1 << 20),
        Err(BatchError::TooLarge { limit: 1 << 20 })
    );
}

#[test]
fn bad_compression_is_decompress_error() {
    let (sk, pk) = keys::generate();
    let sealed = batch::seal_compressed(&pk, &header(1), b"definitely not zstd").unwrap();
    assert!(matches!(
        open(&sk, &sealed, 1 << 20),
        Err(BatchError::Decompress(_))
    ));
    // A valid zstd frame followed by junk is refused too.
    let mut z = zstd::bulk::compress(PLAIN, 1).unwrap();
    z.extend_from_slice(b"junk");
    let sealed = batch::seal_compressed(&pk, &header(1), &z).unwrap();
    assert!(matches!(
        open(&sk, &sealed, 1 << 20),
        Err(BatchError::Decompress(_))
    ));
    // And a properly compressed payload sealed this way opens.
    let z = zstd::bulk::compress(PLAIN, 19).unwrap();
    let sealed = batch::seal_compressed(&pk, &header(1), &z).unwrap();
    assert_eq!(open(&sk, &sealed, 1 << 20).unwrap().ndjson, PLAIN);
}

#[test]
fn oversized_zstd_window_is_refused() {
    let (sk, pk) = keys::generate();
    // A frame declaring a 32 MiB window (zstd's own default limit is 128 MiB) is refused, so
    // the decoder never allocates more than 8 MiB for the window.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.set_parameter(zstd::zstd_safe::CParameter::WindowLog(25))
        .unwrap();
    enc.set_parameter(zstd::zstd_safe::CParameter::EnableLongDistanceMatching(
        true,
    ))
    .unwrap();
    std::io::Write::write_all(&mut enc, &vec![b'a'; 1 << 20]).unwrap();
    let z = enc.finish().unwrap();
    let sealed = batch::seal_compressed(&pk, &header(1), &z).unwrap();
    assert!(matches!(
        open(&sk, &sealed, 1 << 30),
        Err(BatchError::Decompress(_))
    ));
}

#[test]
fn batch_id_text_form() {
    let id = BatchId([0xab; 16]);
    assert_eq!(id.to_string(), "ab".repeat(16));
    assert_eq!("AB".repeat(16).parse::<BatchId>().unwrap(), id);
    assert!("ab".repeat(15).parse::<BatchId>().is_err());
    assert!("zz".repeat(16).parse::<BatchId>().is_err());
    assert_ne!(BatchId::random(), BatchId::random());
}

#[test]
fn public_key_files_round_trip_into_sealing() {
    let dir = tempfile::tempdir().unwrap();
    let (k, p) = keys::write_keypair(dir.path()).unwrap();
    let sk = SecretKey::read(&k).unwrap();
    let pk = PublicKey::read(&p).unwrap();
    let sealed = seal(&pk, &header(1), PLAIN).unwrap();
    assert_eq!(open(&sk, &sealed, 1 << 20).unwrap().ndjson, PLAIN);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_round_trip(
        sensor in "[a-z0-9.-]{1,40}",
        id in any::<[u8; 16]>(),
        created in any::<u64>(),
        records in any::<u32>(),
        payload in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let (sk, pk) = keys::generate();
        let h = BatchHeader { sensor_id: sensor, batch_id: BatchId(id), created, records };
        let sealed = seal(&pk, &h, &payload).unwrap();
        prop_assert_eq!(read_header(&sealed).unwrap(), h.clone());
        let opened = open(&sk, &sealed, payload.len()).unwrap();
        prop_assert_eq!(opened.header, h);
        prop_assert_eq!(opened.ndjson, payload);
    }

    #[test]
    fn prop_arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (sk, _) = keys::generate();
        let _ = read_header(&data);
        prop_assert!(open(&sk, &data, 1 << 16).is_err());
    }

    #[test]
    fn prop_valid_header_garbage_body_fails_to_open(
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let (sk, _) = keys::generate();
        let mut data = header(1).encode().unwrap();
        data.extend_from_slice(&body);
        let err = open(&sk, &data, 1 << 16).unwrap_err();
        prop_assert!(matches!(err, BatchError::Open | BatchError::Truncated), "{:?}", err);
    }
}
