//! Prints the batch-format test vector of `docs/batch-format.md` (all values in hex).
//! Run: `cargo run -p dnsensor-delivery --example test_vector`.

use chacha20::rand_core::{Rng, SeedableRng};
use chacha20::ChaCha20Rng;
use dnsensor_delivery::batch::{self, BatchHeader, BatchId};
use dnsensor_delivery::keys::SecretKey;

/// The inputs of the vector; `tests/batch.rs` uses the same values.
fn main() {
    let sk_bytes: Vec<u8> = (1..=32).collect();
    let sk = SecretKey::from_bytes(&sk_bytes).expect("32 bytes");
    let header = BatchHeader {
        sensor_id: "sensor-test-1".into(),
        batch_id: "00112233445566778899aabbccddeeff"
            .parse()
            .unwrap_or(BatchId([0; 16])),
        created: 1_764_201_600,
        records: 2,
    };
    let plaintext = concat!(
        r#"{"rrname":"www.example.com.","rrtype":"A","rdata":["192.0.2.1"],"bailiwick":"example.com.","time_first":1764201590,"time_last":1764201599,"count":3}"#,
        "\n",
        r#"{"rrname":"example.com.","rrtype":"MX","rdata":["10 mail.example.com."],"bailiwick":"example.com.","time_first":1764201591,"time_last":1764201591,"count":1}"#,
        "\n"
    );
    let seed = *b"dnsensor batch test vector seed!";
    let mut ikm = [0u8; 32];
    ChaCha20Rng::from_seed(seed).fill_bytes(&mut ikm);
    let mut rng = ChaCha20Rng::from_seed(seed);
    let sealed = batch::seal_with_rng(&sk.public_key(), &header, plaintext.as_bytes(), 3, &mut rng)
        .expect("seal");
    let compressed = zstd::bulk::compress(plaintext.as_bytes(), 3).expect("zstd");
    println!("secret key (file)   {}", hex(&sk_bytes));
    println!("secret key (clamped) {}", hex(&sk.to_bytes()));
    println!("public key          {}", hex(&sk.public_key().to_bytes()));
    println!("rng seed            {}", hex(&seed));
    println!("ikmE                {}", hex(&ikm));
    println!(
        "header              {}",
        hex(&header.encode().expect("header"))
    );
    println!("plaintext           {}", hex(plaintext.as_bytes()));
    println!("zstd level 3        {}", hex(&compressed));
    println!("sealed ({} bytes)   {}", sealed.len(), hex(&sealed));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
