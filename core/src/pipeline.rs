//! The running pipeline: worker threads that extract and de-duplicate, and a flusher that writes COF.
//! Sources only ever hand over through [`Handoff`], which never blocks: when the workers are behind, load is shed and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crossbeam_channel::{select, Receiver, Sender};

use crate::cof::CofEncoder;
use crate::dedup::DedupTable;
use crate::memo::{Lookup, ResponseMemo};
use crate::output::Sink;
use crate::privacy::{ClientHasher, PrivacyFilter};
use crate::rrset::{ExtractStats, Extractor, KeyView};
use crate::{Observation, Segment};

use crate::handoff::{worker_queue, QueueReceiver};
pub use crate::handoff::{Batcher, Handoff, ObservationReceiver};

/// Observations per batch from a source to a worker: the channel and the worker's wake-up are
/// paid once per batch, not once per message.
const BATCH_MAX: usize = 128;

/// How the pipeline is sized and when it flushes.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Worker threads, each with its own queue and dedup table.
    pub workers: usize,
    /// Observations each worker's queue holds before the handoff sheds.
    pub queue_depth: usize,
    /// How often the dedup window is flushed.
    pub window: Duration,
    /// Distinct RRsets held across all workers before a worker flushes early.
    pub max_entries: usize,
    /// Written into every COF record as `sensor_id` when set.
    pub sensor_id: Option<String>,
    /// The privacy stage's record filter.
    pub privacy: PrivacyFilter,
    /// Count distinct clients per RRset with a keyed hash and write `clients` in every record.
    pub client_counts: bool,
    /// How the pipeline's threads are scheduled; each sets it for itself as it starts.
    pub priority: ThreadPriority,
}

/// How long one client-hash key lives. Keys change only at a window flush, so that every
/// worker's part of a window was counted under the same key.
const CLIENT_KEY_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            // One core is left to the sources' I/O thread and the flusher: on two cores one
            // worker beat two by 10 % in the dnstap benchmark (docs/benchmarks.md).
            workers: std::thread::available_parallelism()
                .map(|n| n.get().saturating_sub(1))
                .unwrap_or(1)
                .clamp(1, 4),
            queue_depth: 32_768,
            window: Duration::from_secs(60),
            // About 150 bytes a key with its entry: some 15 MiB at the cap, twice that while an
            // early flush is written. At 200 000 the dnstap benchmark's replay once peaked at
            // 74 MiB with a full queue; at 100 000 it peaked at 30-34 MiB, at the same speed
            // (docs/benchmarks.md, "Peak RSS at the defaults").
            max_entries: 100_000,
            sensor_id: None,
            privacy: PrivacyFilter::none(),
            client_counts: false,
            priority: ThreadPriority::Inherit,
        }
    }
}

/// How the pipeline's threads are scheduled against the other threads of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ThreadPriority {
    /// As the thread that starts the pipeline.
    #[default]
    Inherit,
    /// Linux's `SCHED_IDLE`: a pipeline thread runs only when no other thread wants its core,
    /// and gives the core up at once when one wakes. For the proxy, whose answers must never
    /// wait for recording. A high nice level is not enough: the scheduler may let a running
    /// nice thread finish its slice before a waking one gets the core (docs/benchmarks.md).
    Idle,
}

/// Counters of one worker. Only that worker writes them, so there is no contention.
#[derive(Debug, Default)]
struct WorkerStats {
    messages: AtomicU64,
    malformed: AtomicU64,
    records: AtomicU64,
    bad_records: AtomicU64,
    out_of_bailiwick: AtomicU64,
    skipped: AtomicU64,
    rrsets: AtomicU64,
    private_address: AtomicU64,
    private_name: AtomicU64,
}

impl WorkerStats {
    fn publish(&self, s: &ExtractStats) {
        self.messages.store(s.messages, Ordering::Relaxed);
        self.malformed.store(s.malformed, Ordering::Relaxed);
        self.records.store(s.records, Ordering::Relaxed);
        self.bad_records.store(s.bad_records, Ordering::Relaxed);
        self.out_of_bailiwick
            .store(s.out_of_bailiwick, Ordering::Relaxed);
        self.skipped.store(s.skipped, Ordering::Relaxed);
        self.rrsets.store(s.rrsets, Ordering::Relaxed);
        self.private_address
            .store(s.private_address, Ordering::Relaxed);
        self.private_name.store(s.private_name, Ordering::Relaxed);
    }
}

/// Counters of the flusher.
#[derive(Debug, Default)]
struct FlusherStats {
    rrsets_flushed: AtomicU64,
    flushes: AtomicU64,
    early_flushes: AtomicU64,
    write_errors: AtomicU64,
}

/// A point-in-time copy of the pipeline's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PipelineSnapshot {
    /// Observations offered by sources.
    pub offered: u64,
    /// Observations shed because a worker queue was full (or the pipeline had stopped).
    pub shed: u64,
    /// What extraction saw, summed over workers.
    pub extract: ExtractStats,
    /// COF records written.
    pub rrsets_flushed: u64,
    /// Window flushes done (including the final one).
    pub flushes: u64,
    /// Early flushes because a table reached its cap.
    pub early_flushes: u64,
    /// Batches the sink failed to write.
    pub write_errors: u64,
}

/// A handle on a running pipeline's live counters, for reading them from another thread (a
/// metrics endpoint) while the pipeline runs. Cheap to clone; it keeps no thread alive.
#[derive(Clone)]
pub struct PipelineStats {
    handoff: Handoff,
    workers: Vec<Arc<WorkerStats>>,
    flusher: Arc<FlusherStats>,
}

impl std::fmt::Debug for PipelineStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineStats")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl PipelineStats {
    /// The counters as they are now. Each is read once, one after the other, so a snapshot
    /// taken while traffic flows is only approximately consistent across fields.
    pub fn snapshot(&self) -> PipelineSnapshot {
        let mut extract = ExtractStats::default();
        for w in &self.workers {
            extract.add(&ExtractStats {
                messages: w.messages.load(Ordering::Relaxed),
                malformed: w.malformed.load(Ordering::Relaxed),
                records: w.records.load(Ordering::Relaxed),
                bad_records: w.bad_records.load(Ordering::Relaxed),
                out_of_bailiwick: w.out_of_bailiwick.load(Ordering::Relaxed),
                skipped: w.skipped.load(Ordering::Relaxed),
                rrsets: w.rrsets.load(Ordering::Relaxed),
                private_address: w.private_address.load(Ordering::Relaxed),
                private_name: w.private_name.load(Ordering::Relaxed),
            });
        }
        let f = &self.flusher;
        PipelineSnapshot {
            offered: self.handoff.offered(),
            shed: self.handoff.shed(),
            extract,
            rrsets_flushed: f.rrsets_flushed.load(Ordering::Relaxed),
            flushes: f.flushes.load(Ordering::Relaxed),
            early_flushes: f.early_flushes.load(Ordering::Relaxed),
            write_errors: f.write_errors.load(Ordering::Relaxed),
        }
    }
}

enum WorkerControl {
    /// Send the window's part; then, if given, count clients under a new key.
    Flush(Option<ClientHasher>),
    /// Extract what is queued under the old filter, then use this one, then say so.
    SetPrivacy(PrivacyFilter, Sender<()>),
    Stop,
}

/// Changes the privacy filter of a running pipeline (a reload). Cheap to clone.
#[derive(Clone)]
pub struct PrivacyControl {
    controls: Vec<Sender<WorkerControl>>,
}

impl PrivacyControl {
    /// Every worker extracts what it already holds in its queue under the old filter, then
    /// switches to `filter`. The open window is kept.
    ///
    /// Waits until every worker has switched, at most `wait`, and returns whether all did: so an
    /// observation handed in after a `true` return meets the new filter. (Without the wait, a
    /// worker could take such an observation before the switch: it picks among ready channels
    /// at random, and the switch first drains what is queued.)
    pub fn set(&self, filter: PrivacyFilter, wait: Duration) -> bool {
        let (done, switched) = crossbeam_channel::bounded(self.controls.len());
        let sent = self
            .controls
            .iter()
            .filter(|c| {
                c.send(WorkerControl::SetPrivacy(filter.clone(), done.clone()))
                    .is_ok()
            })
            .count();
        drop(done);
        let deadline = Instant::now() + wait;
        (0..sent).all(|_| switched.recv_deadline(deadline).is_ok())
    }
}

enum PartKind {
    /// The answer to a window flush.
    Window,
    /// A table that hit its cap between flushes.
    Early,
    /// The worker's last table before it exits.
    Final,
}

struct Part {
    table: DedupTable,
    kind: PartKind,
}

/// A running pipeline. Dropping it without [`Pipeline::shutdown`] loses the open window.
pub struct Pipeline {
    handoff: Handoff,
    controls: Vec<Sender<WorkerControl>>,
    workers: Vec<JoinHandle<()>>,
    flusher: Option<JoinHandle<()>>,
    stats: PipelineStats,
}

impl Pipeline {
    /// Starts the worker threads and the flusher, which writes every window into `sink`.
    pub fn start(config: PipelineConfig, sink: Box<dyn Sink>) -> std::io::Result<Pipeline> {
        let workers = config.workers.max(1);
        let per_worker_cap = (config.max_entries / workers).max(1);
        let client_hasher = if config.client_counts {
            Some(ClientHasher::generate().ok_or_else(|| {
                std::io::Error::other("cannot draw a random key for client counts")
            })?)
        } else {
            None
        };
        // Few parts are ever in flight; a small bound lets a slow sink push back on workers,
        // whose queues then fill and shed, instead of on the sources.
        let (part_tx, part_rx) = crossbeam_channel::bounded::<Part>(workers * 2);
        let mut senders = Vec::with_capacity(workers);
        let mut controls = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        let mut worker_stats = Vec::with_capacity(workers);
        for i in 0..workers {
            let (tx, rx) = worker_queue(config.queue_depth);
            let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<WorkerControl>();
            let stats = Arc::new(WorkerStats::default());
            let worker = Worker {
                input: rx,
                control: ctl_rx,
                parts: part_tx.clone(),
                stats: stats.clone(),
                table: if config.client_counts {
                    DedupTable::with_client_counts(per_worker_cap)
                } else {
                    DedupTable::new(per_worker_cap)
                },
                extractor: Extractor::with_privacy(config.privacy.clone()),
                totals: ExtractStats::default(),
                client_hasher: client_hasher.clone(),
                memo: None,
                lookups: Vec::new(),
            };
            let priority = config.priority;
            handles.push(
                std::thread::Builder::new()
                    .name(format!("dnsensor-worker-{i}"))
                    .spawn(move || {
                        set_own_priority(priority);
                        worker.run()
                    })?,
            );
            senders.push(tx);
            controls.push(ctl_tx);
            worker_stats.push(stats);
        }
        drop(part_tx);
        let flusher_stats = Arc::new(FlusherStats::default());
        let handoff = Handoff::new(senders, BATCH_MAX);
        let flusher = Flusher {
            parts: part_rx,
            controls: controls.clone(),
            sink,
            window: config.window,
            sensor_id: config.sensor_id,
            stats: flusher_stats.clone(),
            encoder: if config.client_counts {
                CofEncoder::with_clients()
            } else {
                CofEncoder::new()
            },
            buf: Vec::new(),
            client_counts: config.client_counts,
            client_key_since: Instant::now(),
            handoff: handoff.clone(),
            shed_logged: 0,
        };
        let priority = config.priority;
        let flusher = std::thread::Builder::new()
            .name("dnsensor-flusher".into())
            .spawn(move || {
                set_own_priority(priority);
                flusher.run()
            })?;
        Ok(Pipeline {
            stats: PipelineStats {
                handoff: handoff.clone(),
                workers: worker_stats,
                flusher: flusher_stats,
            },
            handoff,
            controls,
            workers: handles,
            flusher: Some(flusher),
        })
    }

    /// A handle that changes the privacy filter while the pipeline runs.
    pub fn privacy_control(&self) -> PrivacyControl {
        PrivacyControl {
            controls: self.controls.clone(),
        }
    }

    /// The handoff that sources offer observations to.
    pub fn handoff(&self) -> Handoff {
        self.handoff.clone()
    }

    /// The counters as they are now.
    pub fn snapshot(&self) -> PipelineSnapshot {
        self.stats.snapshot()
    }

    /// A handle that reads the same counters from another thread, also after shutdown.
    pub fn stats(&self) -> PipelineStats {
        self.stats.clone()
    }

    /// Processes what is queued, flushes the open window, stops every thread and returns the
    /// final counters. Sources should be stopped first; later offers are shed.
    pub fn shutdown(mut self) -> PipelineSnapshot {
        for c in &self.controls {
            let _ = c.send(WorkerControl::Stop);
        }
        for h in self.workers.drain(..) {
            if h.join().is_err() {
                log::error!("a pipeline worker panicked");
            }
        }
        if let Some(f) = self.flusher.take() {
            if f.join().is_err() {
                log::error!("the flusher panicked");
            }
        }
        self.snapshot()
    }
}

/// A worker's work for one observation: extract its RRsets into `table` and count them, with the
/// client's keyed hash when `client_hasher` is given. Public so that benchmark harnesses run
/// exactly this code.
#[inline]
pub fn record_observation(
    extractor: &mut Extractor,
    table: &mut DedupTable,
    totals: &mut ExtractStats,
    client_hasher: Option<&ClientHasher>,
    obs: &Observation,
) {
    let (time, client) = time_and_client(client_hasher, obs);
    extractor.extract(&obs.response, obs.bailiwick.as_deref(), totals, |key| {
        table.observe_from(key, time, client)
    });
}

/// An observation's Unix time, and its client's keyed hash when clients are counted.
#[inline]
fn time_and_client(client_hasher: Option<&ClientHasher>, obs: &Observation) -> (u64, Option<u64>) {
    let time = obs
        .time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // The address is hashed here and goes no further; only distinct counts leave.
    let client = match (client_hasher, obs.client) {
        (Some(hasher), Some(addr)) => Some(hasher.hash(addr.ip())),
        _ => None,
    };
    (time, client)
}

struct Worker {
    input: QueueReceiver,
    control: Receiver<WorkerControl>,
    parts: Sender<Part>,
    stats: Arc<WorkerStats>,
    table: DedupTable,
    extractor: Extractor,
    totals: ExtractStats,
    /// Present with `client_counts`: hashes client addresses before they reach the table.
    client_hasher: Option<ClientHasher>,
    /// Answers from a forwarder repeat byte for byte (a proxy's popular names): counted again
    /// without a second extraction. Cleared with every table sent and every new privacy filter;
    /// made at the first forwarder answer, so other sources never pay for its memory.
    memo: Option<ResponseMemo>,
    /// The memo lookups of the batch at hand, one per observation; kept to reuse its memory.
    lookups: Vec<Option<Lookup>>,
}

impl Worker {
    fn run(mut self) {
        loop {
            select! {
                recv(self.input.channel()) -> batch => match batch {
                    Ok(batch) => self.process(batch),
                    // Every handoff is gone: nothing more can arrive.
                    Err(_) => break,
                },
                recv(self.control) -> ctl => match ctl {
                    Ok(WorkerControl::Flush(new_key)) => {
                        self.send(PartKind::Window);
                        if new_key.is_some() {
                            self.client_hasher = new_key;
                        }
                    }
                    Ok(WorkerControl::SetPrivacy(filter, done)) => {
                        while let Ok(batch) = self.input.channel().try_recv() {
                            self.process(batch);
                        }
                        self.extractor.set_privacy(filter);
                        self.forget_responses();
                        let _ = done.send(());
                    }
                    Ok(WorkerControl::Stop) | Err(_) => {
                        while let Ok(batch) = self.input.channel().try_recv() {
                            self.process(batch);
                        }
                        break;
                    }
                },
            }
        }
        self.send(PartKind::Final);
    }

    fn process(&mut self, batch: Vec<Observation>) {
        self.input.taken(&batch);
        let remembered =
            |obs: &Observation| obs.segment == Segment::Forwarder && obs.bailiwick.is_none();
        // Answers a forwarder may repeat are looked up in the memo in passes, so that the cache
        // misses of the whole batch overlap (see crate::memo).
        self.lookups.clear();
        if batch.iter().any(remembered) {
            let memo = self.memo.get_or_insert_with(ResponseMemo::new);
            self.lookups.extend(batch.iter().map(|obs| {
                remembered(obs)
                    .then(|| memo.look_ahead(&obs.response))
                    .flatten()
            }));
            for (obs, at) in batch.iter().zip(&self.lookups) {
                if let Some(at) = at {
                    memo.fetch(&obs.response, *at);
                }
            }
        }
        for (i, obs) in batch.iter().enumerate() {
            match self.memo.as_mut().filter(|_| remembered(obs)) {
                Some(memo) => {
                    let (time, client) = time_and_client(self.client_hasher.as_ref(), obs);
                    memo.record_at(
                        &mut self.extractor,
                        &mut self.table,
                        &mut self.totals,
                        &obs.response,
                        self.lookups.get(i).copied().flatten(),
                        time,
                        client,
                    );
                }
                None => record_observation(
                    &mut self.extractor,
                    &mut self.table,
                    &mut self.totals,
                    self.client_hasher.as_ref(),
                    obs,
                ),
            }
            if self.table.is_full() {
                self.send(PartKind::Early);
            }
        }
        self.stats.publish(&self.totals);
    }

    /// Adds the memo's held-back repeats to the table, then forgets every response: the keys
    /// they point at are about to leave the table, or the rules that made them have changed.
    fn forget_responses(&mut self) {
        if let Some(memo) = self.memo.as_mut() {
            memo.settle(&mut self.table);
            memo.clear();
        }
    }

    fn send(&mut self, kind: PartKind) {
        // Before the table goes: the memo still holds counts for it.
        self.forget_responses();
        let table = self.table.take();
        // The flusher only goes away after every worker's final part, so this cannot fail
        // unless the flusher panicked; then the records are lost and that was logged.
        let _ = self.parts.send(Part { table, kind });
    }
}

/// Sets the calling thread's scheduling (Linux schedules each thread on its own). Each thread
/// does it itself as it starts: set from outside, by thread name, it missed threads that had not
/// named themselves yet.
fn set_own_priority(priority: ThreadPriority) {
    match priority {
        ThreadPriority::Inherit => {}
        ThreadPriority::Idle => {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: `param` is a valid sched_param for the call's duration; pid 0 is the
            // calling thread. Any thread may move itself to SCHED_IDLE without privileges.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
                log::warn!(
                    "cannot give thread {} idle priority: {}",
                    std::thread::current().name().unwrap_or("?"),
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

struct Flusher {
    parts: Receiver<Part>,
    controls: Vec<Sender<WorkerControl>>,
    sink: Box<dyn Sink>,
    window: Duration,
    sensor_id: Option<String>,
    stats: Arc<FlusherStats>,
    encoder: CofEncoder,
    buf: Vec<u8>,
    client_counts: bool,
    client_key_since: Instant,
    /// For the warning at each window that sheds: counted here, logged once per window.
    handoff: Handoff,
    shed_logged: u64,
}

/// Lines per sink write, so a huge window never becomes one huge buffer.
const LINES_PER_WRITE: usize = 10_000;

impl Flusher {
    /// One warning per window in which sources shed observations, so an operator sees the
    /// pipeline falling behind without a line per packet.
    fn warn_if_shed(&mut self) {
        let shed = self.handoff.shed();
        if shed > self.shed_logged {
            log::warn!(
                "pipeline behind: {} observations shed in the last window ({shed} in all); raise --queue-depth or --workers",
                shed - self.shed_logged
            );
            self.shed_logged = shed;
        }
    }

    fn run(mut self) {
        let ticker = crossbeam_channel::tick(self.window);
        let workers = self.controls.len();
        let mut pending = if self.client_counts {
            DedupTable::with_client_counts(usize::MAX)
        } else {
            DedupTable::new(usize::MAX)
        };
        let mut awaiting = 0usize;
        let mut finals = 0usize;
        loop {
            select! {
                recv(ticker) -> _ => {
                    self.warn_if_shed();
                    // A flush still being answered is not doubled up.
                    if awaiting == 0 && finals == 0 {
                        let new_key = self.next_client_key();
                        for c in &self.controls {
                            if c.send(WorkerControl::Flush(new_key.clone())).is_ok() {
                                awaiting += 1;
                            }
                        }
                    }
                },
                recv(self.parts) -> part => {
                    let Ok(part) = part else { break };
                    match part.kind {
                        PartKind::Early => {
                            self.stats.early_flushes.fetch_add(1, Ordering::Relaxed);
                            self.write(&part.table);
                        }
                        PartKind::Window => {
                            pending.merge(part.table);
                            awaiting = awaiting.saturating_sub(1);
                            if awaiting == 0 && finals == 0 {
                                self.write(&pending.take());
                                self.stats.flushes.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        PartKind::Final => {
                            pending.merge(part.table);
                            finals += 1;
                            if finals == workers {
                                break;
                            }
                        }
                    }
                },
            }
        }
        self.write(&pending.take());
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// A fresh client-hash key once the current one has lived its day, else None.
    fn next_client_key(&mut self) -> Option<ClientHasher> {
        if !self.client_counts || self.client_key_since.elapsed() < CLIENT_KEY_LIFETIME {
            return None;
        }
        let fresh = ClientHasher::generate();
        match &fresh {
            Some(_) => {
                self.client_key_since = Instant::now();
                log::info!("client-count key replaced");
            }
            None => log::error!("cannot draw a new client-count key; keeping the old one"),
        }
        fresh
    }

    fn write(&mut self, table: &DedupTable) {
        let mut lines = 0usize;
        self.buf.clear();
        for (key, entry) in table.iter() {
            let Some(view) = KeyView::parse_built(key) else {
                log::error!("internal error: an RRset key did not parse; record dropped");
                continue;
            };
            self.encoder
                .write_line(&mut self.buf, &view, entry, self.sensor_id.as_deref());
            lines += 1;
            if lines == LINES_PER_WRITE {
                self.emit(lines);
                lines = 0;
            }
        }
        if lines > 0 {
            self.emit(lines);
        }
    }

    fn emit(&mut self, lines: usize) {
        match self.sink.write_batch(&self.buf, lines) {
            Ok(()) => {
                self.stats
                    .rrsets_flushed
                    .fetch_add(lines as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                log::error!("cannot write {lines} records: {e}");
            }
        }
        self.buf.clear();
    }
}
