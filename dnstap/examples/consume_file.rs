//! Single-threaded replay of a Frame Streams capture through the dnstap consumer's per-message code.
//! For instruction counts under callgrind: the io side and the worker side are separate functions.
//!
//! ```sh
//! cargo run --release -p dnsensor-dnstap --example consume_file -- CAPTURE [--max N] [--flush]
//! valgrind --tool=callgrind target/release/examples/consume_file CAPTURE --max 50000
//! ```
//!
//! The io side is what the server's session does per read: copy the next bytes into the read
//! buffer (standing in for the socket read, which callgrind cannot see into anyway), split
//! frames off with the crate's `fstrm::Decoder`, decode each with
//! `convert::observation_from_frame` and stage it in a batch of 128 as the `Batcher` does. The
//! worker side is what `pipeline::Worker::process` does per batch: the Unix time of each
//! observation, `Extractor::extract` with the default privacy filter and
//! `DedupTable::observe_from` with the pipeline's default per-worker cap (100 000), the table
//! taken (and dropped, or with `--flush` written as COF) when it is full. No threads, channels or
//! sockets: their cost is not what this measures.

use dnsensor_core::cof::CofEncoder;
use dnsensor_core::dedup::DedupTable;
use dnsensor_core::pipeline::record_observation;
use dnsensor_core::privacy::{PrivacyConfig, PrivacyFilter};
use dnsensor_core::rrset::{ExtractStats, Extractor, KeyView};
use dnsensor_core::Observation;
use dnsensor_dnstap::bytes::BytesMut;
use dnsensor_dnstap::convert::{observation_from_frame, Outcome};
use dnsensor_dnstap::fstrm::{Decoder, Frame};

/// The server's read size (dnstap/src/server.rs `READ_CHUNK`).
const READ_CHUNK: usize = 64 * 1024;
/// The pipeline's batch size (core/src/pipeline.rs `BATCH_MAX`).
const BATCH_MAX: usize = 128;
/// The pipeline's default cap with one worker.
const MAX_ENTRIES: usize = 100_000;

struct Io<'a> {
    data: &'a [u8],
    pos: usize,
    buf: BytesMut,
    decoder: Decoder,
    frames: u64,
    used: u64,
    other: u64,
}

impl Io<'_> {
    /// Fills `batch` with up to BATCH_MAX observations; false at the end of the input.
    #[inline(never)]
    fn next_batch(&mut self, batch: &mut Vec<Observation>, max: u64) -> bool {
        loop {
            while self.frames < max {
                let Some(frame) = self.decoder.decode(&mut self.buf).expect("valid capture") else {
                    break;
                };
                if let Frame::Data(data) = frame {
                    self.frames += 1;
                    match observation_from_frame(data, false) {
                        Ok(Outcome::Use(obs)) => {
                            self.used += 1;
                            batch.push(obs);
                        }
                        _ => self.other += 1,
                    }
                    if batch.len() >= BATCH_MAX {
                        return true;
                    }
                }
            }
            if self.pos >= self.data.len() || self.frames >= max {
                return !batch.is_empty();
            }
            self.buf
                .reserve(self.decoder.missing(&self.buf).max(READ_CHUNK));
            let room = self.buf.capacity() - self.buf.len();
            let n = room.min(self.data.len() - self.pos);
            self.buf
                .extend_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
        }
    }
}

struct Work {
    extractor: Extractor,
    table: DedupTable,
    totals: ExtractStats,
    flush: bool,
    encoder: CofEncoder,
    out: Vec<u8>,
    lines: u64,
}

impl Work {
    /// One batch, as `Worker::process` handles it.
    #[inline(never)]
    fn process(&mut self, batch: Vec<Observation>) {
        for obs in &batch {
            record_observation(
                &mut self.extractor,
                &mut self.table,
                &mut self.totals,
                None,
                obs,
            );
            if self.table.is_full() {
                let full = self.table.take();
                self.write(full);
            }
        }
    }

    /// The flusher's formatting of a table, when asked for; otherwise the table is dropped.
    #[inline(never)]
    fn write(&mut self, table: DedupTable) {
        if !self.flush {
            return;
        }
        for (key, entry) in table.iter() {
            let view = KeyView::parse_built(key).expect("built key");
            self.encoder.write_line(&mut self.out, &view, entry, None);
            self.lines += 1;
            if self.out.len() > 1 << 20 {
                self.out.clear();
            }
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: consume_file CAPTURE [--max N] [--flush]");
    let mut max = u64::MAX;
    let mut flush = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--max" => max = args.next().and_then(|n| n.parse().ok()).expect("--max N"),
            "--flush" => flush = true,
            other => panic!("unknown argument {other}"),
        }
    }
    let data = std::fs::read(&path).expect("read capture");
    let mut io = Io {
        data: &data,
        pos: 0,
        buf: BytesMut::with_capacity(READ_CHUNK),
        decoder: Decoder::default(),
        frames: 0,
        used: 0,
        other: 0,
    };
    let mut work = Work {
        extractor: Extractor::with_privacy(
            PrivacyFilter::new(&PrivacyConfig::default()).expect("default privacy"),
        ),
        table: DedupTable::new(MAX_ENTRIES),
        totals: ExtractStats::default(),
        flush,
        encoder: CofEncoder::new(),
        out: Vec::new(),
        lines: 0,
    };
    loop {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        if !io.next_batch(&mut batch, max) {
            break;
        }
        work.process(batch);
    }
    let last = work.table.take();
    work.write(last);
    let t = &work.totals;
    println!(
        "frames={} used={} other={} messages={} malformed={} records={} bad_records={} \
         out_of_bailiwick={} skipped={} rrsets={} private_address={} private_name={} lines={}",
        io.frames,
        io.used,
        io.other,
        t.messages,
        t.malformed,
        t.records,
        t.bad_records,
        t.out_of_bailiwick,
        t.skipped,
        t.rrsets,
        t.private_address,
        t.private_name,
        work.lines,
    );
}
