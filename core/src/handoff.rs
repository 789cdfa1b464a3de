//! The sources' way into the pipeline: observations go to a worker's bounded queue without waiting.
//! A full queue sheds the observations and counts them, so a slow pipeline never stalls DNS.

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

impl QueueSender {
    /// Queues `batch` unless that would take the queue past its depth (an empty queue takes any
    /// one batch) or the worker is gone; then the batch comes back.
    fn try_send(&self, batch: Vec<Observation>) -> Result<(), Vec<Observation>> {
        let n = batch.len();
        let before = self.queued.fetch_add(n, Ordering::Relaxed);
        if before > 0 && before + n > self.depth {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            return Err(batch);
        }
        self.tx.send(batch).map_err(|e| {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            e.into_inner()
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
        self.send(shard, vec![obs]) == 0
    }

    /// A staging area for one source task.
    pub fn batcher(&self) -> Batcher {
        Batcher {
            pending: (0..self.inner.senders.len()).map(|_| Vec::new()).collect(),
            handoff: self.clone(),
        }
    }

    /// Observations offered so far, shed or not.
    pub fn offered(&self) -> u64 {
        self.inner.offered.load(Ordering::Relaxed)
    }

    /// Observations shed so far because the pipeline was behind or stopped.
    pub fn shed(&self) -> u64 {
        self.inner.shed.load(Ordering::Relaxed)
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

    /// Sends a batch; returns how many observations were shed.
    fn send(&self, shard: usize, batch: Vec<Observation>) -> u64 {
        let inner = &*self.inner;
        let n = batch.len() as u64;
        inner.offered.fetch_add(n, Ordering::Relaxed);
        match inner.senders[shard].try_send(batch) {
            Ok(()) => 0,
            Err(_) => {
                inner.shed.fetch_add(n, Ordering::Relaxed);
                n
            }
        }
    }
}

/// One source task's batches in the making, one per worker. Call [`Batcher::flush`] before the
/// task waits for more input, so nothing lingers; dropping it flushes too.
pub struct Batcher {
    handoff: Handoff,
    pending: Vec<Vec<Observation>>,
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
            return self.handoff.send(shard, batch);
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
                shed += self.handoff.send(shard, batch);
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

    #[test]
    fn depth_counts_observations_not_batches() {
        let (tx, rx) = worker_queue(10);
        assert!(tx.try_send(batch(3)).is_ok());
        assert!(tx.try_send(batch(3)).is_ok());
        assert!(tx.try_send(batch(4)).is_ok(), "exactly full");
        assert_eq!(tx.try_send(batch(1)).map_err(|b| b.len()), Err(1));
        let taken = rx.channel().try_recv().unwrap();
        rx.taken(&taken);
        assert_eq!(tx.try_send(batch(4)).map_err(|b| b.len()), Err(4));
        assert!(tx.try_send(batch(3)).is_ok(), "the room of the batch taken");
        assert_eq!(rx.channel().len(), 3);
    }

    #[test]
    fn an_empty_queue_takes_one_batch_larger_than_its_depth() {
        let (tx, rx) = worker_queue(2);
        assert!(tx.try_send(batch(5)).is_ok());
        assert!(tx.try_send(batch(1)).is_err());
        let taken = rx.channel().try_recv().unwrap();
        rx.taken(&taken);
        assert!(tx.try_send(batch(1)).is_ok());
    }

    #[test]
    fn a_gone_worker_returns_the_batch_and_frees_its_room() {
        let (tx, rx) = worker_queue(10);
        drop(rx);
        assert_eq!(tx.try_send(batch(2)).map_err(|b| b.len()), Err(2));
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
}
