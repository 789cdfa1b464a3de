//! The sources' way into the pipeline: observations go to a worker's bounded queue without waiting.
//! A full queue sheds the observations and counts them, so a slow pipeline never stalls DNS; only
//! a source that loses nothing by waiting (a capture file) waits for room instead.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::Observation;

/// One worker's queue of batches, bounded by the observations it holds: a source sends a batch
/// per socket read, often far from full, so a bound counted in batches would hold fewer
/// observations than `--queue-depth` says (about half of them in the dnstap benchmark).
pub(crate) fn worker_queue(depth: usize) -> (QueueSender, QueueReceiver) {
    // Unbounded as a channel; `queued` is the bound.
    let (tx, rx) = crossbeam_channel::unbounded();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        QueueSender {
            tx,
            queued: queued.clone(),
            depth: depth.max(1),
        },
        QueueReceiver { rx, queued },
    )
}

/// The sources' end of a worker queue.
pub(crate) struct QueueSender {
    tx: Sender<Vec<Observation>>,
    queued: Arc<AtomicUsize>,
    depth: usize,
}

/// Why a queue did not take a batch.
enum Refused {
    /// The queue is at its depth; the batch comes back for another try.
    Full(Vec<Observation>),
    /// The worker is gone.
    Gone,
}

impl QueueSender {
    /// Queues `batch` unless that would take the queue past its depth (an empty queue takes any
    /// one batch) or the worker is gone.
    fn try_send(&self, batch: Vec<Observation>) -> Result<(), Refused> {
        let n = batch.len();
        // Reserve the room first, exactly: with an add-then-undo, several sources hitting a
        // nearly full queue at once would each see the others' undone adds and shed for nothing.
        let mut queued = self.queued.load(Ordering::Relaxed);
        loop {
            if queued > 0 && queued + n > self.depth {
                return Err(Refused::Full(batch));
            }
            match self.queued.compare_exchange_weak(
                queued,
                queued + n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => queued = now,
            }
        }
        self.tx.send(batch).map_err(|_| {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            Refused::Gone
        })
    }
}

/// The worker's end of a worker queue.
pub(crate) struct QueueReceiver {
    rx: Receiver<Vec<Observation>>,
    queued: Arc<AtomicUsize>,
}

impl QueueReceiver {
    /// The channel, for `select!`; every batch taken from it must be passed to
    /// [`QueueReceiver::taken`].
    pub(crate) fn channel(&self) -> &Receiver<Vec<Observation>> {
        &self.rx
    }

    /// Frees the room of a batch taken from the channel.
    pub(crate) fn taken(&self, batch: &[Observation]) {
        self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
    }
}

/// Shared by every source of a pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Handoff {
    inner: Arc<HandoffInner>,
}

struct HandoffInner {
    senders: Vec<QueueSender>,
    batch_max: usize,
    offered: AtomicU64,
    shed: AtomicU64,
    hasher: foldhash::fast::FixedState,
}

impl Handoff {
    /// A handoff over one queue per worker, sending batches of at most `batch_max`.
    pub(crate) fn new(senders: Vec<QueueSender>, batch_max: usize) -> Handoff {
        assert!(!senders.is_empty(), "a pipeline has at least one worker");
        Handoff {
            inner: Arc::new(HandoffInner {
                senders,
                batch_max: batch_max.max(1),
                offered: AtomicU64::new(0),
                shed: AtomicU64::new(0),
                hasher: foldhash::fast::FixedState::with_seed(0x6473_6e73),
            }),
        }
    }

    /// A handoff into one queue of `capacity` observations (batches of one), for tests of
    /// sources: the receiver sees exactly what a pipeline worker would.
    pub fn channel(capacity: usize) -> (Handoff, ObservationReceiver) {
        let (tx, rx) = worker_queue(capacity);
        (Handoff::new(vec![tx], 1), ObservationReceiver(rx))
    }

    /// Offers one observation without waiting. Returns false, and counts it as shed, when the
    /// worker's queue is full or the pipeline has stopped. A source with a steady stream should
    /// use a [`Batcher`] instead.
    pub fn offer(&self, obs: Observation) -> bool {
        let shard = self.shard(&obs);
        self.send(shard, vec![obs], false) == 0
    }

    /// A staging area for one source task. A full queue sheds.
    pub fn batcher(&self) -> Batcher {
        Batcher {
            pending: (0..self.inner.senders.len()).map(|_| Vec::new()).collect(),
            handoff: self.clone(),
            wait: false,
        }
    }

    /// A staging area for a source that loses nothing by waiting, such as a capture file read
    /// at the pipeline's pace: a full queue makes it wait for room instead of shedding. Only a
    /// stopped pipeline still sheds.
    pub fn waiting_batcher(&self) -> Batcher {
        let mut batcher = self.batcher();
        batcher.wait = true;
        batcher
    }

    /// Observations offered so far, shed or not.
    pub fn offered(&self) -> u64 {
        self.inner.offered.load(Ordering::Relaxed)
    }

    /// Observations shed so far because the pipeline was behind or stopped.
    pub fn shed(&self) -> u64 {
        self.inner.shed.load(Ordering::Relaxed)
    }

    /// Observations waiting in the workers' queues, not yet taken by a worker: zero once every
    /// worker has caught up. A source that busy-polls its sockets looks at this to leave the core
    /// to recording whenever recording has work waiting.
    pub fn backlog(&self) -> usize {
        self.inner
            .senders
            .iter()
            .map(|s| s.queued.load(Ordering::Relaxed))
            .sum()
    }

    fn shard(&self, obs: &Observation) -> usize {
        let inner = &*self.inner;
        if inner.senders.len() == 1 {
            return 0;
        }
        // The same question goes to the same worker, so its answers mostly meet in one table.
        let h = inner.hasher.hash_one(question_bytes(&obs.response));
        (h % inner.senders.len() as u64) as usize
    }

    /// Sends a batch, waiting for room if `wait`; returns how many observations were shed.
    fn send(&self, shard: usize, mut batch: Vec<Observation>, wait: bool) -> u64 {
        let inner = &*self.inner;
        let n = batch.len() as u64;
        inner.offered.fetch_add(n, Ordering::Relaxed);
        loop {
            match inner.senders[shard].try_send(batch) {
                Ok(()) => return 0,
                Err(Refused::Full(back)) if wait => {
                    batch = back;
                    std::thread::sleep(ROOM_POLL);
                }
                Err(_) => {
                    inner.shed.fetch_add(n, Ordering::Relaxed);
                    return n;
                }
            }
        }
    }
}

/// How long a source that may wait sleeps before it tries a full queue again: a few batches'
/// worth of a worker's time.
const ROOM_POLL: std::time::Duration = std::time::Duration::from_micros(200);

/// One source task's batches in the making, one per worker. Call [`Batcher::flush`] before the
/// task waits for more input, so nothing lingers; dropping it flushes too.
pub struct Batcher {
    handoff: Handoff,
    pending: Vec<Vec<Observation>>,
    /// Wait for room instead of shedding (see [`Handoff::waiting_batcher`]).
    wait: bool,
}

impl Batcher {
    /// Adds an observation; a full batch goes out at once. Returns how many observations that
    /// send shed (usually 0).
    pub fn push(&mut self, obs: Observation) -> u64 {
        let shard = self.handoff.shard(&obs);
        let batch_max = self.handoff.inner.batch_max;
        let pending = &mut self.pending[shard];
        if pending.capacity() == 0 {
            pending.reserve_exact(batch_max);
        }
        pending.push(obs);
        if pending.len() >= batch_max {
            let batch = std::mem::take(pending);
            return self.handoff.send(shard, batch, self.wait);
        }
        0
    }

    /// True when nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.pending.iter().all(Vec::is_empty)
    }

    /// Sends every non-empty batch. Returns how many observations were shed.
    pub fn flush(&mut self) -> u64 {
        let mut shed = 0;
        for shard in 0..self.pending.len() {
            if !self.pending[shard].is_empty() {
                let batch = std::mem::take(&mut self.pending[shard]);
                shed += self.handoff.send(shard, batch, self.wait);
            }
        }
        shed
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The receiving end of [`Handoff::channel`].
pub struct ObservationReceiver(QueueReceiver);

impl ObservationReceiver {
    /// Every observation queued now, in order, without waiting.
    pub fn try_iter(&self) -> impl Iterator<Item = Observation> + '_ {
        self.0.channel().try_iter().flat_map(|batch| {
            self.0.taken(&batch);
            batch
        })
    }
}

/// The bytes of the first question name. The shard choice needs to be stable per name, not
/// exact, so a raw slice up to the root label (bounded) is enough: no parsing, no case folding.
fn question_bytes(msg: &[u8]) -> &[u8] {
    let start = 12.min(msg.len());
    let rest = &msg[start..];
    let end = rest
        .iter()
        .take(255)
        .position(|&b| b == 0)
        .unwrap_or(rest.len().min(255));
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Segment, Transport};

    fn batch(n: usize) -> Vec<Observation> {
        let obs = Observation {
            time: std::time::UNIX_EPOCH,
            response: bytes::Bytes::from_static(&[0; 12]),
            server: None,
            client: None,
            transport: Transport::Udp,
            segment: Segment::Resolver,
            bailiwick: None,
            query: None,
        };
        vec![obs; n]
    }

    /// `Ok`, or how many observations a full queue handed back (`None`: the worker is gone).
    fn sent(r: Result<(), Refused>) -> Result<(), Option<usize>> {
        r.map_err(|e| match e {
            Refused::Full(b) => Some(b.len()),
            Refused::Gone => None,
        })
    }

    #[test]
    fn depth_counts_observations_not_batches() {
        let (tx, rx) = worker_queue(10);
        assert_eq!(sent(tx.try_send(batch(3))), Ok(()));
        assert_eq!(sent(tx.try_send(batch(3))), Ok(()));
        assert_eq!(sent(tx.try_send(batch(4))), Ok(()), "exactly full");
        assert_eq!(sent(tx.try_send(batch(1))), Err(Some(1)));
        let taken = rx.channel().try_recv().unwrap();
        rx.taken(&taken);
        assert_eq!(sent(tx.try_send(batch(4))), Err(Some(4)));
        assert_eq!(
            sent(tx.try_send(batch(3))),
            Ok(()),
            "the room of the batch taken"
        );
        assert_eq!(rx.channel().len(), 3);
    }

    #[test]
    fn an_empty_queue_takes_one_batch_larger_than_its_depth() {
        let (tx, rx) = worker_queue(2);
        assert_eq!(sent(tx.try_send(batch(5))), Ok(()));
        assert_eq!(sent(tx.try_send(batch(1))), Err(Some(1)));
        let taken = rx.channel().try_recv().unwrap();
        rx.taken(&taken);
        assert_eq!(sent(tx.try_send(batch(1))), Ok(()));
    }

    #[test]
    fn backlog_counts_what_no_worker_has_taken_yet() {
        let (tx, rx) = worker_queue(100);
        let handoff = Handoff::new(vec![tx], 128);
        assert_eq!(handoff.backlog(), 0);
        let mut batcher = handoff.batcher();
        for obs in batch(5) {
            batcher.push(obs);
        }
        assert_eq!(handoff.backlog(), 0, "staged in the batcher, not queued");
        batcher.flush();
        assert_eq!(handoff.backlog(), 5);
        let taken = rx.channel().try_recv().unwrap();
        rx.taken(&taken);
        assert_eq!(handoff.backlog(), 0);
    }

    #[test]
    fn a_gone_worker_refuses_and_frees_the_room() {
        let (tx, rx) = worker_queue(10);
        drop(rx);
        assert_eq!(sent(tx.try_send(batch(2))), Err(None));
        assert_eq!(tx.queued.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn handoff_sheds_by_observations_when_sources_batch() {
        // One worker with room for 300 observations; batches of up to 128, staged per "read".
        let (tx, rx) = worker_queue(300);
        let handoff = Handoff::new(vec![tx], 128);
        let mut batcher = handoff.batcher();
        for _ in 0..10 {
            // A read that decoded 37 messages: one partial batch each.
            for obs in batch(37) {
                batcher.push(obs);
            }
            batcher.flush();
        }
        // 8 batches (296 observations) fit, the 9th and 10th do not.
        assert_eq!(handoff.offered(), 370);
        assert_eq!(handoff.shed(), 74);
        assert_eq!(rx.channel().try_iter().map(|b| b.len()).sum::<usize>(), 296);
    }

    #[test]
    fn sources_racing_for_the_last_room_shed_only_what_does_not_fit() {
        // Nobody takes from the queue: exactly 100 batches of 10 fit, whatever the interleaving.
        let (tx, rx) = worker_queue(1000);
        let handoff = Handoff::new(vec![tx], 10);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let handoff = handoff.clone();
                scope.spawn(move || {
                    let mut batcher = handoff.batcher();
                    for obs in batch(1000) {
                        batcher.push(obs);
                    }
                });
            }
        });
        assert_eq!(handoff.offered(), 4000);
        assert_eq!(handoff.shed(), 3000);
        assert_eq!(rx.channel().len(), 100);
    }

    #[test]
    fn a_waiting_batcher_waits_for_room_instead_of_shedding() {
        let (tx, rx) = worker_queue(64);
        let handoff = Handoff::new(vec![tx], 16);
        let taker = std::thread::spawn(move || {
            let mut got = 0;
            while got < 5000 {
                match rx
                    .channel()
                    .recv_timeout(std::time::Duration::from_secs(10))
                {
                    Ok(b) => {
                        rx.taken(&b);
                        got += b.len();
                        // A slow worker, so that the queue is full most of the time.
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    }
                    Err(_) => break,
                }
            }
            got
        });
        let mut batcher = handoff.waiting_batcher();
        for obs in batch(5000) {
            assert_eq!(batcher.push(obs), 0);
        }
        assert_eq!(batcher.flush(), 0);
        assert_eq!(taker.join().unwrap(), 5000);
        assert_eq!(handoff.offered(), 5000);
        assert_eq!(handoff.shed(), 0);
    }

    #[test]
    fn a_waiting_batcher_sheds_once_the_worker_is_gone() {
        let (tx, rx) = worker_queue(4);
        let handoff = Handoff::new(vec![tx], 4);
        drop(rx);
        let mut batcher = handoff.waiting_batcher();
        let shed: u64 = batch(8).into_iter().map(|obs| batcher.push(obs)).sum();
        assert_eq!(shed, 8);
        assert_eq!(handoff.shed(), 8);
    }
}
