//! The running pipeline: worker threads that extract and de-duplicate, and a flusher that writes COF.
//! Sources only ever call [`Handoff::offer`], which never blocks: when the workers are behind, load is shed and counted.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::Observation;

/// The sources' way into the pipeline. Cheap to clone; one per source task is fine.
#[derive(Clone)]
pub struct Handoff {
    inner: Arc<HandoffInner>,
}

struct HandoffInner {
    senders: Vec<Sender<Observation>>,
    offered: AtomicU64,
    shed: AtomicU64,
    hasher: foldhash::fast::FixedState,
}

impl Handoff {
    /// A handoff that spreads observations over `senders`, one per worker.
    pub(crate) fn new(senders: Vec<Sender<Observation>>) -> Handoff {
        assert!(!senders.is_empty(), "a pipeline has at least one worker");
        Handoff {
            inner: Arc::new(HandoffInner {
                senders,
                offered: AtomicU64::new(0),
                shed: AtomicU64::new(0),
                hasher: foldhash::fast::FixedState::with_seed(0x6473_6e73),
            }),
        }
    }

    /// A handoff into one bounded queue, for tests of sources: the receiver sees what the pipeline would.
    pub fn channel(capacity: usize) -> (Handoff, Receiver<Observation>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        (Handoff::new(vec![tx]), rx)
    }

    /// Offers an observation without waiting. Returns false, and counts it as shed, when the
    /// worker's queue is full or the pipeline has stopped.
    pub fn offer(&self, obs: Observation) -> bool {
        let inner = &*self.inner;
        inner.offered.fetch_add(1, Ordering::Relaxed);
        let shard = if inner.senders.len() == 1 {
            0
        } else {
            // The same question goes to the same worker, so its answers de-duplicate in one table.
            let h = inner.hasher.hash_one(question_bytes(&obs.response));
            (h % inner.senders.len() as u64) as usize
        };
        match inner.senders[shard].try_send(obs) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                inner.shed.fetch_add(1, Ordering::Relaxed);
                false
            }
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
}

/// The bytes of the first question name, lowercased only in effect: the shard choice needs to be
/// stable per name, not exact, so a raw slice up to the root label (bounded) is enough.
fn question_bytes(msg: &[u8]) -> &[u8] {
    let start = 12.min(msg.len());
    let rest = &msg[start..];
    let end = rest.iter().take(255).position(|&b| b == 0).unwrap_or(rest.len().min(255));
    &rest[..end]
}
