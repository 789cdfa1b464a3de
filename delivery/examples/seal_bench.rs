//! Throughput of the delivery path on one thread: COF formatting → zstd → HPKE seal.
//! Run through `bench/seal.sh` (release mode); prints one table row per zstd level.
//!
//! It builds `--records` distinct RRset keys in the core's canonical key layout (a realistic
//! mix of A, AAAA, CNAME, NS, MX and TXT under many zones), then, timed, formats them with the
//! real `CofEncoder` in batches of `--batch` lines, compresses each batch and seals it, exactly
//! as the flusher and `SealingSink` do (minus the spool write, which is disk-bound).

use std::time::{Duration, Instant};

use dnsensor_core::cof::CofEncoder;
use dnsensor_core::dedup::Entry;
use dnsensor_core::rrset::KeyView;
use dnsensor_delivery::batch::{BatchHeader, BatchId, Sealer};
use dnsensor_delivery::keys;

fn wire_name(labels: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in labels {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
    out
}

/// A small deterministic generator (xorshift64*), so every run benchmarks the same data.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const WORDS: &[&str] = &[
    "www", "mail", "api", "cdn", "static", "img", "login", "auth", "m", "shop", "blog", "app",
    "edge", "ns1", "ns2", "smtp", "vpn", "git", "docs", "status",
];
const TLDS: &[&str] = &[
    "com", "net", "org", "de", "io", "nl", "fr", "co", "uk", "info",
];

/// Builds one canonical key: owner · type · class IN · bailiwick · rdatas (sorted).
fn make_key(i: u64, g: &mut Gen) -> Vec<u8> {
    let zone_n = g.next() % 50_000;
    let zone = format!("site{zone_n}");
    let tld = TLDS[(zone_n % TLDS.len() as u64) as usize];
    let host = format!("{}{}", WORDS[(g.next() % WORDS.len() as u64) as usize], i);
    let owner = wire_name(&[&host, &zone, tld]);
    let bailiwick = wire_name(&[&zone, tld]);
    let pick = g.next() % 100;
    let (rtype, mut rdatas): (u16, Vec<Vec<u8>>) = match pick {
        0..=54 => {
            let n = 1 + (g.next() % 3) as usize;
            (
                1,
                (0..n)
                    .map(|_| (g.next() as u32).to_be_bytes().to_vec())
                    .collect(),
            )
        }
        55..=74 => {
            let n = 1 + (g.next() % 2) as usize;
            (
                28,
                (0..n)
                    .map(|_| {
                        let mut a = vec![0x20, 0x01, 0x0d, 0xb8];
                        a.extend_from_slice(&g.next().to_be_bytes());
                        a.extend_from_slice(&(g.next() as u32).to_be_bytes());
                        a
                    })
                    .collect(),
            )
        }
        75..=86 => (
            5,
            vec![wire_name(&[
                &format!("edge{}", g.next() % 5000),
                "cdn",
                "example",
                "net",
            ])],
        ),
        87..=92 => (
            2,
            vec![
                wire_name(&["ns1", &zone, tld]),
                wire_name(&["ns2", &zone, tld]),
            ],
        ),
        93..=96 => {
            let mut r = 10u16.to_be_bytes().to_vec();
            r.extend_from_slice(&wire_name(&["mx", &zone, tld]));
            (15, vec![r])
        }
        _ => {
            let txt = format!("v=spf1 include:_spf.{zone}.{tld} ~all {}", g.next() % 1000);
            let mut r = vec![txt.len() as u8];
            r.extend_from_slice(txt.as_bytes());
            (16, vec![r])
        }
    };
    rdatas.sort();
    rdatas.dedup();
    let mut key = owner;
    key.extend_from_slice(&rtype.to_be_bytes());
    key.extend_from_slice(&1u16.to_be_bytes());
    key.push(1);
    key.extend_from_slice(&bailiwick);
    key.extend_from_slice(&(rdatas.len() as u16).to_be_bytes());
    for r in &rdatas {
        key.extend_from_slice(&(r.len() as u16).to_be_bytes());
        key.extend_from_slice(r);
    }
    key
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let records = arg("--records", 1_000_000);
    let batch = arg("--batch", 10_000);
    let rounds = arg("--rounds", 3);
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let keys: Vec<Vec<u8>> = (0..records as u64).map(|i| make_key(i, &mut g)).collect();
    let entries: Vec<Entry> = (0..records as u64)
        .map(|i| {
            let first = 1_764_201_600 + (g.next() % 300);
            Entry {
                count: 1 + g.next() % (1 + i % 50),
                first,
                last: first + g.next() % 60,
                clients: 0,
            }
        })
        .collect();
    let (_, pk) = keys::generate();
    println!(
        "{records} distinct RRsets, batches of {batch} lines, best of {rounds} rounds, one thread"
    );
    println!("| zstd level | records/s (format+zstd+seal) | format only | zstd+seal only | NDJSON bytes/record | sealed bytes/record | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for level in [1, 3, -1, -3] {
        let mut sealer = Sealer::new(pk.clone(), level).expect("zstd level");
        let mut enc = CofEncoder::new();
        let mut best: Option<(Duration, Duration, Duration)> = None;
        let (mut plain_bytes, mut sealed_bytes) = (0usize, 0usize);
        for _ in 0..rounds {
            let (mut t_fmt, mut t_seal) = (Duration::ZERO, Duration::ZERO);
            plain_bytes = 0;
            sealed_bytes = 0;
            let mut buf = Vec::with_capacity(batch * 200);
            let start = Instant::now();
            for (chunk_k, chunk_e) in keys.chunks(batch).zip(entries.chunks(batch)) {
                let t0 = Instant::now();
                buf.clear();
                for (k, e) in chunk_k.iter().zip(chunk_e) {
                    let view = KeyView::parse_built(k).expect("bench key parses");
                    enc.write_line(&mut buf, &view, e, None);
                }
                let t1 = Instant::now();
                let header = BatchHeader {
                    sensor_id: "bench-sensor".into(),
                    batch_id: BatchId::random(),
                    created: 1_764_201_900,
                    records: chunk_k.len() as u32,
                };
                let sealed = sealer.seal(&header, &buf).expect("seal");
                t_fmt += t1 - t0;
                t_seal += t1.elapsed();
                plain_bytes += buf.len();
                sealed_bytes += sealed.len();
                std::hint::black_box(&sealed);
            }
            let total = start.elapsed();
            if best.is_none_or(|b| total < b.0) {
                best = Some((total, t_fmt, t_seal));
            }
        }
        let Some((total, t_fmt, t_seal)) = best else {
            return;
        };
        let rate = |d: Duration| records as f64 / d.as_secs_f64();
        println!(
            "| {level} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} |",
            rate(total),
            rate(t_fmt),
            rate(t_seal),
            plain_bytes as f64 / records as f64,
            sealed_bytes as f64 / records as f64,
            plain_bytes as f64 / sealed_bytes as f64
        );
    }
}
