//! The spool: a directory of sealed batches waiting for upload, oldest first.
//! Each batch is written atomically and durably, so a crash loses no sealed batch and leaves no torn one.
//!
//! A batch is stored as `<nanos:020>-<batch id>.batch`, where `nanos` is the store time in
//! nanoseconds since the epoch, made strictly increasing within a process; names therefore sort
//! oldest first. Writing goes to `<name>.tmp`, which is fsynced, renamed into place, and then the
//! directory is fsynced. Leftover `.tmp` files (from a crash mid-write) are removed on open.
//! Batches the collector refused for good go to the `rejected/` subdirectory, which the caps do
//! not count. Only sealed batches are ever written here: the spool never holds plaintext.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::batch::{BatchHeader, BatchId};

/// Suffix of a complete batch file.
pub const BATCH_SUFFIX: &str = ".batch";
/// Suffix of a batch still being written.
pub const TEMP_SUFFIX: &str = ".tmp";
/// Subdirectory for batches the collector refused permanently.
pub const REJECTED_DIR: &str = "rejected";

/// Where the spool lives and how much it may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    /// The spool directory; created (mode 0700) if missing. Must be set by the caller.
    pub dir: PathBuf,
    /// Cap on the total size of spooled batches, in bytes (default 1 GiB).
    pub max_bytes: u64,
    /// Cap on the number of spooled batches (default 10,000).
    pub max_files: usize,
}

impl Default for SpoolConfig {
    fn default() -> SpoolConfig {
        SpoolConfig {
            dir: PathBuf::new(),
            max_bytes: 1 << 30,
            max_files: 10_000,
        }
    }
}

/// Counters of a spool since it was opened (files and bytes are current values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Batches in the spool now (not counting `rejected/`).
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Batches stored since open.
    pub stored: u64,
    /// Records in the batches stored since open (from their headers).
    pub records_stored: u64,
    /// Oldest batches dropped to respect the caps.
    pub dropped_full: u64,
    /// Stores that failed (e.g. disk full); the batch was lost.
    pub write_errors: u64,
    /// Batches deleted after the collector accepted them.
    pub delivered: u64,
    /// Batches moved to `rejected/`.
    pub rejected: u64,
}

/// One spooled batch handed to the uploader by [`Spool::claim_oldest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpooledBatch {
    /// File name inside the spool directory.
    pub name: String,
    /// Full path of the file.
    pub path: PathBuf,
    /// The batch id from the file name.
    pub batch_id: BatchId,
    /// File size in bytes.
    pub size: u64,
}

#[derive(Debug)]
struct Entry {
    size: u64,
    in_flight: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Spooled batches by file name, hence oldest first.
    files: BTreeMap<String, Entry>,
    bytes: u64,
    last_nanos: u128,
    /// Bumped on every change a waiter may care about; see [`Spool::wait_for_change`].
    generation: u64,
    stats: SpoolStats,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    rejected: PathBuf,
    max_bytes: u64,
    max_files: usize,
    state: Mutex<State>,
    changed: Condvar,
}

/// A handle on the spool directory. Thread-safe and cheap to clone: all clones share one index.
#[derive(Clone, Debug)]
pub struct Spool {
    shared: Arc<Shared>,
}

/// Adds the path to an I/O error so that the message says where it happened.
fn with_path(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    b.mode(0o700);
    b.create(dir)
        .map_err(|e| with_path(dir, "cannot create spool directory", e))
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// Parses `<20 digits>-<32 hex>.batch`.
fn parse_name(name: &str) -> Option<BatchId> {
    let stem = name.strip_suffix(BATCH_SUFFIX)?;
    let (nanos, id) = stem.split_once('-')?;
    if nanos.len() != 20 || !nanos.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if id.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    id.parse().ok()
}

impl Spool {
    /// Opens (creating if needed) the spool directory, removes stale temporary files and indexes
    /// the batches already there, so that a restart picks them up again.
    pub fn open(config: SpoolConfig) -> io::Result<Spool> {
        if config.dir.as_os_str().is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "spool directory not set",
            ));
        }
        if config.max_files == 0 || config.max_bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "spool {}: caps must be positive (max_bytes {}, max_files {})",
                    config.dir.display(),
                    config.max_bytes,
                    config.max_files
                ),
            ));
        }
        let dir = config.dir;
        create_private_dir(&dir)?;
        let rejected = dir.join(REJECTED_DIR);
        create_private_dir(&rejected)?;
        let mut state = State::default();
        let entries = fs::read_dir(&dir).map_err(|e| with_path(&dir, "cannot read spool", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| with_path(&dir, "cannot read spool", e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                log::warn!(
                    "spool {}: ignoring non-UTF-8 file name {:?}",
                    dir.display(),
                    name
                );
                continue;
            };
            let path = entry.path();
            if name.ends_with(TEMP_SUFFIX) {
                // A temp file is a write that never completed; its batch was never stored.
                match fs::remove_file(&path) {
                    Ok(()) => log::info!("spool: removed incomplete {}", path.display()),
                    Err(e) => log::warn!("spool: cannot remove {}: {e}", path.display()),
                }
                continue;
            }
            if name == REJECTED_DIR {
                continue;
            }
            let meta = entry
                .metadata()
                .map_err(|e| with_path(&path, "cannot stat", e))?;
            if !meta.is_file() || parse_name(name).is_none() {
                log::warn!("spool: ignoring unexpected {}", path.display());
                continue;
            }
            state.bytes += meta.len();
            state.files.insert(
                name.to_owned(),
                Entry {
                    size: meta.len(),
                    in_flight: false,
                },
            );
        }
        if let Some(last) = state.files.keys().next_back() {
            state.last_nanos = last.get(..20).and_then(|n| n.parse().ok()).unwrap_or(0);
        }
        if !state.files.is_empty() {
            log::info!(
                "spool {}: {} batches ({} bytes) waiting from before",
                dir.display(),
                state.files.len(),
                state.bytes
            );
        }
        let spool = Spool {
            shared: Arc::new(Shared {
                dir,
                rejected,
                max_bytes: config.max_bytes,
                max_files: config.max_files,
                state: Mutex::new(state),
                changed: Condvar::new(),
            }),
        };
        // Batches from before may exceed lowered caps.
        spool.make_room(&mut spool.lock(), 0);
        Ok(spool)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the index consistent enough to go on:
        // every mutation is a few field updates.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The `rejected/` subdirectory.
    pub fn rejected_dir(&self) -> &Path {
        &self.shared.rejected
    }

    /// Drops oldest batches not being uploaded until one more batch of `incoming` bytes fits.
    fn make_room(&self, state: &mut State, incoming: u64) {
        let adding = usize::from(incoming > 0);
        while state.files.len() + adding > self.shared.max_files
            || state.bytes.saturating_add(incoming) > self.shared.max_bytes
        {
            let Some(name) = state
                .files
                .iter()
                .find(|(_, e)| !e.in_flight)
                .map(|(n, _)| n.clone())
            else {
                // Everything left is being uploaded; it leaves the spool soon anyway.
                break;
            };
            let size = state.files.remove(&name).map_or(0, |e| e.size);
            state.bytes -= size;
            state.stats.dropped_full += 1;
            let path = self.shared.dir.join(&name);
            match fs::remove_file(&path) {
                Ok(()) => log::warn!(
                    "spool {} full (caps {} files, {} bytes): dropped oldest batch {name} ({size} bytes); {} dropped so far",
                    self.shared.dir.display(),
                    self.shared.max_files,
                    self.shared.max_bytes,
                    state.stats.dropped_full
                ),
                Err(e) => log::error!(
                    "spool full: cannot drop oldest batch {}: {e}",
                    path.display()
                ),
            }
        }
    }

    /// Stores one sealed batch durably. When the spool is full, the oldest batches are dropped
    /// first (counted and logged). On a write error (e.g. a full disk) nothing is left behind,
    /// the error names the file, and `write_errors` is counted.
    pub fn store(&self, header: &BatchHeader, sealed: &[u8]) -> io::Result<()> {
        let size = sealed.len() as u64;
        let name = {
            let mut st = self.lock();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_nanos();
            let nanos = now.max(st.last_nanos + 1);
            st.last_nanos = nanos;
            self.make_room(&mut st, size);
            format!("{nanos:020}-{}{BATCH_SUFFIX}", header.batch_id)
        };
        let path = self.shared.dir.join(&name);
        let temp = self.shared.dir.join(format!("{name}{TEMP_SUFFIX}"));
        if let Err(e) = self.write_durably(&temp, &path, sealed) {
            let _ = fs::remove_file(&temp);
            let _ = fs::remove_file(&path);
            self.lock().stats.write_errors += 1;
            return Err(e);
        }
        let mut st = self.lock();
        st.files.insert(
            name,
            Entry {
                size,
                in_flight: false,
            },
        );
        st.bytes += size;
        st.stats.stored += 1;
        st.stats.records_stored += u64::from(header.records);
        st.generation += 1;
        drop(st);
        self.shared.changed.notify_all();
        Ok(())
    }

    fn write_durably(&self, temp: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut file = opts
            .open(temp)
            .map_err(|e| with_path(temp, "cannot create spool file", e))?;
        file.write_all(data)
            .and_then(|()| file.sync_all())
            .map_err(|e| with_path(temp, "cannot write spool file", e))?;
        drop(file);
        fs::rename(temp, path).map_err(|e| with_path(path, "cannot rename spool file to", e))?;
        sync_dir(&self.shared.dir)
            .map_err(|e| with_path(&self.shared.dir, "cannot sync spool directory", e))
    }

    /// Current counters.
    pub fn stats(&self) -> SpoolStats {
        let st = self.lock();
        SpoolStats {
            files: st.files.len() as u64,
            bytes: st.bytes,
            ..st.stats
        }
    }

    /// Names of the spooled batches, oldest first (including those being uploaded).
    pub fn pending(&self) -> Vec<String> {
        self.lock().files.keys().cloned().collect()
    }

    /// Takes the oldest batch that no one is uploading and marks it in flight; the caller must
    /// end with [`Spool::delivered`], [`Spool::reject`] or [`Spool::release`].
    pub fn claim_oldest(&self) -> Option<SpooledBatch> {
        let mut st = self.lock();
        let (name, entry) = st
            .files
            .iter_mut()
            .find(|(n, e)| !e.in_flight && parse_name(n).is_some())?;
        // Every indexed name was parsed on open or built by store, so this always succeeds.
        let batch_id = parse_name(name)?;
        entry.in_flight = true;
        Some(SpooledBatch {
            name: name.clone(),
            path: self.shared.dir.join(name),
            batch_id,
            size: entry.size,
        })
    }

    /// Gives a claimed batch back, to be retried later.
    pub fn release(&self, batch: &SpooledBatch) {
        let mut st = self.lock();
        if let Some(e) = st.files.get_mut(&batch.name) {
            e.in_flight = false;
        }
        st.generation += 1;
        drop(st);
        self.shared.changed.notify_all();
    }

    fn forget(&self, st: &mut State, batch: &SpooledBatch) {
        if let Some(e) = st.files.remove(&batch.name) {
            st.bytes -= e.size;
        }
    }

    /// Drops a claimed batch from the index without counting it, for a file that vanished
    /// (deleted by hand): it must not block the batches behind it.
    pub fn forget_missing(&self, batch: &SpooledBatch) {
        let mut st = self.lock();
        self.forget(&mut st, batch);
    }

    /// Deletes a batch the collector accepted.
    pub fn delivered(&self, batch: &SpooledBatch) -> io::Result<()> {
        let result =
            fs::remove_file(&batch.path).map_err(|e| with_path(&batch.path, "cannot delete", e));
        let mut st = self.lock();
        self.forget(&mut st, batch);
        st.stats.delivered += 1;
        result
    }

    /// Moves a batch the collector refused for good to `rejected/`; returns its new path.
    pub fn reject(&self, batch: &SpooledBatch) -> io::Result<PathBuf> {
        let target = self.shared.rejected.join(&batch.name);
        let result = fs::rename(&batch.path, &target)
            .map_err(|e| with_path(&target, "cannot move rejected batch to", e))
            .map(|()| {
                // Best effort: losing the move in a crash only means one more rejected upload.
                let _ = sync_dir(&self.shared.rejected);
                let _ = sync_dir(&self.shared.dir);
                target
            });
        let mut st = self.lock();
        if result.is_ok() {
            self.forget(&mut st, batch);
            st.stats.rejected += 1;
        } else if let Some(e) = st.files.get_mut(&batch.name) {
            e.in_flight = false;
        }
        result
    }

    /// A number that changes whenever a batch is stored or released or [`Spool::wake_all`] is
    /// called; pass it to [`Spool::wait_for_change`].
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Waits until the generation differs from `seen` or `timeout` passes. Taking the generation
    /// before checking one's own conditions means no wake-up can be missed.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) {
        let st = self.lock();
        let _unused = self
            .shared
            .changed
            .wait_timeout_while(st, timeout, |s| s.generation == seen)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }

    /// Wakes every waiter (used by the uploader to stop).
    pub fn wake_all(&self) {
        self.lock().generation += 1;
        self.shared.changed.notify_all();
    }
}
