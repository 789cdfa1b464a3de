//! Opening captures and running them: the capture loop, the shard workers and the batches between them.
//! The loop copies frames into reused per-shard buffers; live captures shed when a shard is behind, files wait.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use dnsensor_core::pipeline::{Batcher, Handoff};

use crate::bailiwick::ZoneTable;
use crate::decode::Decoder;
use crate::link::{flow_hash, ip_packet, LinkType};
use crate::stats::{CaptureCounters, CaptureSummary};
use crate::{CaptureError, Source, TapConfig, DEFAULT_BPF};

/// Packets per batch handed to a shard.
const BATCH_PACKETS: usize = 256;
/// Frame bytes per batch handed to a shard.
const BATCH_BYTES: usize = 256 * 1024;
/// A live capture hands partly filled batches over at least this often, so that quiet
/// traffic is not held back.
const LIVE_FLUSH: Duration = Duration::from_millis(50);
/// Read timeout of live captures: how often the loop looks at the stop flag when idle.
const LIVE_TIMEOUT_MS: i32 = 100;

/// Frames for one shard, copied into one buffer. Recycled between the loop and the worker.
struct PacketBatch {
    link: LinkType,
    data: Vec<u8>,
    /// (timestamp in µs, end offset in `data`).
    packets: Vec<(u64, usize)>,
}

impl PacketBatch {
    fn new() -> PacketBatch {
        PacketBatch {
            link: LinkType::RawIp,
            data: Vec::with_capacity(BATCH_BYTES + 2048),
            packets: Vec::with_capacity(BATCH_PACKETS),
        }
    }

    fn clear(&mut self) {
        self.data.clear();
        self.packets.clear();
    }

    fn is_full(&self) -> bool {
        self.packets.len() >= BATCH_PACKETS || self.data.len() >= BATCH_BYTES
    }
}

struct OfflineFile {
    path: PathBuf,
    cap: pcap::Capture<pcap::Offline>,
    link: LinkType,
    size: u64,
}

enum Inner {
    Live {
        interface: String,
        cap: pcap::Capture<pcap::Active>,
        link: LinkType,
    },
    Files(Vec<OfflineFile>),
}

/// An opened capture: every handle is held (so privileges can be dropped now), nothing runs yet.
pub struct Capture {
    inner: Inner,
    config: TapConfig,
    counters: Arc<CaptureCounters>,
}

fn pcap_message(e: &pcap::Error) -> String {
    match e {
        pcap::Error::PcapError(s) => s.clone(),
        other => other.to_string(),
    }
}

fn link_of(dlt: pcap::Linktype, source_name: &str) -> Result<LinkType, CaptureError> {
    LinkType::from_dlt(dlt.0).ok_or_else(|| CaptureError::LinkType {
        source_name: source_name.to_owned(),
        dlt: dlt.0,
        name: dlt.get_name().unwrap_or_else(|_| "unknown".into()),
    })
}

impl Capture {
    /// Opens the interface or every file, applies the filter and checks the link types.
    pub fn open(source: Source, config: TapConfig) -> Result<Capture, CaptureError> {
        let inner = match source {
            Source::Live {
                interface,
                bpf,
                buffer_bytes,
                snaplen,
            } => {
                let fail = |e: pcap::Error| CaptureError::Interface {
                    interface: interface.clone(),
                    message: pcap_message(&e),
                };
                let mut cap = pcap::Capture::from_device(interface.as_str())
                    .map_err(fail)?
                    .promisc(true)
                    // Not immediate mode: on Linux that switches libpcap to TPACKET_V2, whose
                    // ring has one fixed slot of snaplen bytes per packet, so the 32 MiB buffer
                    // held only ~500 packets and `lo` dropped from 25k packets/s on
                    // (docs/benchmarks.md). TPACKET_V3 packs packets into blocks and hands a
                    // block over at the latest after this timeout, which is all the latency a
                    // passive sensor needs. The handle is non-blocking and the loop waits in
                    // poll(2) with the same timeout, to see the stop flag.
                    .immediate_mode(false)
                    .timeout(LIVE_TIMEOUT_MS)
                    .buffer_size(i32::try_from(buffer_bytes).unwrap_or(i32::MAX))
                    .snaplen(snaplen)
                    .open()
                    .map_err(fail)?
                    .setnonblock()
                    .map_err(fail)?;
                let link = link_of(cap.get_datalink(), &interface)?;
                let filter = bpf.unwrap_or_else(|| DEFAULT_BPF.to_owned());
                cap.filter(&filter, true)
                    .map_err(|e| CaptureError::Filter {
                        filter: filter.clone(),
                        message: pcap_message(&e),
                    })?;
                Inner::Live {
                    interface,
                    cap,
                    link,
                }
            }
            Source::Files(paths) => {
                if paths.is_empty() {
                    return Err(CaptureError::NoFiles);
                }
                let mut files = Vec::with_capacity(paths.len());
                for path in paths {
                    let shown = path.display().to_string();
                    let file_err = |message: String| CaptureError::File {
                        path: shown.clone(),
                        message,
                    };
                    // libpcap says "unknown file format" for a file that is not a capture and
                    // repeats the path for open errors; the metadata check gives a plain line.
                    let size = std::fs::metadata(&path)
                        .map_err(|e| file_err(dnsensor_core::describe_io_error(&e)))?
                        .len();
                    let mut cap = pcap::Capture::from_file(&path).map_err(|e| {
                        let m = pcap_message(&e);
                        file_err(
                            m.strip_prefix(&format!("{shown}: "))
                                .unwrap_or(&m)
                                .to_owned(),
                        )
                    })?;
                    let link = link_of(cap.get_datalink(), &shown)?;
                    if let Some(filter) = &config.file_bpf {
                        cap.filter(filter, true).map_err(|e| CaptureError::Filter {
                            filter: filter.clone(),
                            message: pcap_message(&e),
                        })?;
                    }
                    files.push(OfflineFile {
                        path,
                        cap,
                        link,
                        size,
                    });
                }
                Inner::Files(files)
            }
        };
        Ok(Capture {
            inner,
            config,
            counters: Arc::new(CaptureCounters::default()),
        })
    }

    /// The live counters, for a summary or a metrics endpoint.
    pub fn counters(&self) -> Arc<CaptureCounters> {
        self.counters.clone()
    }

    /// Captures until every file is read, `stop` is set or the live capture ends, and returns
    /// the final counters. A damaged file is read up to the damage, logged, counted in
    /// `truncated_files`, and the next file follows. `progress` shows a progress bar of the
    /// files' bytes on stderr.
    pub fn run(
        self,
        handoff: Handoff,
        stop: Arc<AtomicBool>,
        progress: bool,
    ) -> Result<CaptureSummary, CaptureError> {
        let live = matches!(self.inner, Inner::Live { .. });
        let zones = Arc::new(RwLock::new(ZoneTable::new(self.config.limits.zone_entries)));
        let shards = self.config.shards.max(1);
        let mut txs = Vec::with_capacity(shards);
        let mut workers: Vec<JoinHandle<()>> = Vec::with_capacity(shards);
        for i in 0..shards {
            let (tx, rx) =
                crossbeam_channel::bounded::<PacketBatch>(self.config.queue_batches.max(1));
            let (free_tx, free_rx) =
                crossbeam_channel::bounded::<PacketBatch>(self.config.queue_batches.max(1) + 2);
            let mut worker = ShardWorker {
                input: rx,
                free: free_tx,
                decoder: Decoder::new(&self.config, zones.clone()),
                // A live capture sheds when the pipeline is behind; a file waits for it, since
                // reading more slowly loses nothing.
                batcher: if live {
                    handoff.batcher()
                } else {
                    handoff.waiting_batcher()
                },
                counters: self.counters.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("dnsensor-shard-{i}"))
                .spawn(move || worker.run());
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    drop(txs);
                    join_all(workers);
                    return Err(CaptureError::Thread(format!(
                        "cannot start a shard worker: {e}"
                    )));
                }
            }
            txs.push(ShardQueue {
                tx,
                free: free_rx,
                current: PacketBatch::new(),
            });
        }
        let mut dispatch = Dispatcher {
            shards: txs,
            hasher: foldhash::fast::FixedState::with_seed(0x7461_7073),
            live,
            local: CaptureSummary::default(),
            counters: self.counters.clone(),
        };
        let result = match self.inner {
            Inner::Live {
                interface,
                mut cap,
                link,
            } => live_loop(&interface, &mut cap, link, &mut dispatch, &stop),
            Inner::Files(files) => {
                files_loop(files, &mut dispatch, &stop, progress);
                Ok(())
            }
        };
        dispatch.flush_all();
        dispatch.publish();
        drop(dispatch);
        let died = join_all(workers);
        result?;
        if died {
            return Err(CaptureError::Thread("a shard worker panicked".into()));
        }
        Ok(self.counters.snapshot())
    }
}

/// Joins the workers; true when one of them panicked.
fn join_all(workers: Vec<JoinHandle<()>>) -> bool {
    let mut died = false;
    for w in workers {
        if w.join().is_err() {
            log::error!("a capture shard worker panicked");
            died = true;
        }
    }
    died
}

fn ts_micros(h: &pcap::PacketHeader) -> u64 {
    let secs = u64::try_from(h.ts.tv_sec).unwrap_or(0);
    let usec = u64::try_from(h.ts.tv_usec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(usec)
}

fn live_loop(
    interface: &str,
    cap: &mut pcap::Capture<pcap::Active>,
    link: LinkType,
    dispatch: &mut Dispatcher,
    stop: &AtomicBool,
) -> Result<(), CaptureError> {
    let mut last_flush = Instant::now();
    let mut last_stats = Instant::now();
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        match cap.next_packet() {
            Ok(p) => dispatch.push(link, ts_micros(p.header), p.data),
            // Non-blocking: nothing to read now.
            Err(pcap::Error::TimeoutExpired) => wait_readable(cap, LIVE_TIMEOUT_MS),
            Err(pcap::Error::NoMorePackets) => break Ok(()),
            Err(e) => {
                break Err(CaptureError::Read {
                    interface: interface.to_owned(),
                    message: pcap_message(&e),
                })
            }
        }
        if last_flush.elapsed() >= LIVE_FLUSH {
            dispatch.flush_all();
            dispatch.publish();
            last_flush = Instant::now();
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            read_pcap_stats(cap, dispatch);
            last_stats = Instant::now();
        }
    };
    read_pcap_stats(cap, dispatch);
    result
}

/// Waits until the capture has packets or `timeout_ms` has passed.
fn wait_readable(cap: &pcap::Capture<pcap::Active>, timeout_ms: i32) {
    use std::os::unix::io::AsRawFd;
    let mut fds = libc::pollfd {
        fd: cap.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, owned by this frame, for the duration of the call; the fd
    // belongs to `cap`, which outlives it. An error (EINTR) just returns to the loop.
    unsafe {
        libc::poll(&mut fds, 1, timeout_ms);
    }
}

fn read_pcap_stats(cap: &mut pcap::Capture<pcap::Active>, dispatch: &Dispatcher) {
    if let Ok(s) = cap.stats() {
        dispatch
            .counters
            .set_pcap(u64::from(s.dropped), u64::from(s.if_dropped));
    }
}

fn files_loop(
    files: Vec<OfflineFile>,
    dispatch: &mut Dispatcher,
    stop: &AtomicBool,
    progress: bool,
) {
    let total: u64 = files.iter().map(|f| f.size).sum();
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut done_before = 0u64;
    for mut file in files {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Approximate position: the file header, then each record's header and data.
        let mut pos = 24u64;
        let mut n = 0u64;
        let outcome = loop {
            if n & 1023 == 0 {
                if stop.load(Ordering::Relaxed) {
                    break Ok(());
                }
                if let Some(bar) = &bar {
                    bar.set_position(done_before + pos.min(file.size));
                }
            }
            match file.cap.next_packet() {
                Ok(p) => {
                    pos += 16 + u64::from(p.header.caplen);
                    n += 1;
                    dispatch.push(file.link, ts_micros(p.header), p.data);
                }
                Err(pcap::Error::NoMorePackets) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Frames of the next file may use another link type: batches never mix files.
        dispatch.flush_all();
        dispatch.local.files += 1;
        if let Err(e) = outcome {
            dispatch.local.truncated_files += 1;
            log::warn!(
                "{}: capture file damaged after {n} packets ({}); kept what came before, going on with the next file",
                file.path.display(),
                pcap_message(&e)
            );
        }
        dispatch.publish();
        done_before += file.size;
        if let Some(bar) = &bar {
            bar.set_position(done_before);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

struct ShardQueue {
    tx: Sender<PacketBatch>,
    free: Receiver<PacketBatch>,
    current: PacketBatch,
}

/// The capture thread's side: picks shards, fills batches, hands them over.
struct Dispatcher {
    shards: Vec<ShardQueue>,
    hasher: foldhash::fast::FixedState,
    live: bool,
    local: CaptureSummary,
    counters: Arc<CaptureCounters>,
}

impl Dispatcher {
    fn push(&mut self, link: LinkType, ts_us: u64, frame: &[u8]) {
        self.local.packets += 1;
        self.local.bytes += frame.len() as u64;
        let h = ip_packet(link, frame)
            .map(|ip| flow_hash(ip, &self.hasher))
            .unwrap_or(0);
        let shard = (h % self.shards.len() as u64) as usize;
        let Some(q) = self.shards.get_mut(shard) else {
            return;
        };
        if q.current.packets.is_empty() {
            q.current.link = link;
        }
        q.current.data.extend_from_slice(frame);
        q.current.packets.push((ts_us, q.current.data.len()));
        if q.current.is_full() {
            self.send(shard);
        }
    }

    fn send(&mut self, shard: usize) {
        let live = self.live;
        let Some(q) = self.shards.get_mut(shard) else {
            return;
        };
        if q.current.packets.is_empty() {
            return;
        }
        if live && q.tx.is_full() {
            // Never block a live capture: the kernel would drop instead, uncounted by us.
            self.local.shed += q.current.packets.len() as u64;
            q.current.clear();
            return;
        }
        let next = q.free.try_recv().unwrap_or_else(|_| PacketBatch::new());
        let full = std::mem::replace(&mut q.current, next);
        // Only this thread sends, so after the check above a live send finds room; a file
        // waits for the worker. An error means the worker is gone, which join reports.
        let _ = q.tx.send(full);
    }

    fn flush_all(&mut self) {
        for shard in 0..self.shards.len() {
            self.send(shard);
        }
    }

    fn publish(&mut self) {
        self.counters.add(&std::mem::take(&mut self.local));
    }
}

struct ShardWorker {
    input: Receiver<PacketBatch>,
    free: Sender<PacketBatch>,
    decoder: Decoder,
    /// Into the pipeline: shedding for a live capture, waiting for a file.
    batcher: Batcher,
    counters: Arc<CaptureCounters>,
}

impl ShardWorker {
    fn run(&mut self) {
        loop {
            let batch = match self.input.try_recv() {
                Ok(b) => b,
                Err(TryRecvError::Empty) => {
                    // Idle: nothing may linger in the pipeline batcher meanwhile.
                    let shed = self.batcher.flush();
                    self.publish(shed);
                    match self.input.recv() {
                        Ok(b) => b,
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            let mut shed = 0u64;
            let mut start = 0usize;
            for &(ts, end) in &batch.packets {
                let frame = batch.data.get(start..end).unwrap_or(&[]);
                start = end;
                self.decoder.packet(batch.link, ts, frame, &mut |obs| {
                    shed += self.batcher.push(obs);
                });
            }
            self.publish(shed);
            let mut batch = batch;
            batch.clear();
            let _ = self.free.try_send(batch);
        }
        let shed = self.batcher.flush();
        self.publish(shed);
    }

    fn publish(&mut self, shed: u64) {
        let mut s = self.decoder.take_stats();
        s.observations_shed += shed;
        self.counters.add(&s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatcher(live: bool, depth: usize) -> (Dispatcher, Receiver<PacketBatch>) {
        let (tx, rx) = crossbeam_channel::bounded(depth);
        let (_free_tx, free_rx) = crossbeam_channel::bounded(depth + 2);
        let d = Dispatcher {
            shards: vec![ShardQueue {
                tx,
                free: free_rx,
                current: PacketBatch::new(),
            }],
            hasher: foldhash::fast::FixedState::with_seed(1),
            live,
            local: CaptureSummary::default(),
            counters: Arc::new(CaptureCounters::default()),
        };
        (d, rx)
    }

    #[test]
    fn live_capture_sheds_instead_of_blocking() {
        let (mut d, rx) = dispatcher(true, 2);
        let frame = [0x45u8; 60];
        // Nobody consumes: two batches fit, the rest is shed, and push never blocks.
        for i in 0..(BATCH_PACKETS * 5) as u64 {
            d.push(LinkType::RawIp, i, &frame);
        }
        d.flush_all();
        assert_eq!(rx.len(), 2);
        assert_eq!(d.local.packets, (BATCH_PACKETS * 5) as u64);
        assert_eq!(d.local.shed, (BATCH_PACKETS * 3) as u64);
        let b = rx.recv().unwrap();
        assert_eq!(b.packets.len(), BATCH_PACKETS);
        assert_eq!(b.packets[1], (1, 120));
        assert_eq!(b.data.get(60..120), Some(&frame[..]));
    }

    #[test]
    fn batches_are_cut_by_bytes_too() {
        let (mut d, rx) = dispatcher(false, 64);
        let frame = vec![0x60u8; 9000];
        for i in 0..60u64 {
            d.push(LinkType::RawIp, i, &frame);
        }
        d.flush_all();
        let sizes: Vec<usize> = rx.try_iter().map(|b| b.packets.len()).collect();
        // 256 KiB / 9000 bytes: a batch is cut once it holds 30 frames.
        assert_eq!(sizes, vec![30, 30]);
        assert_eq!(d.local.shed, 0);
    }
}
