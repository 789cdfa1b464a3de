//! Tests of the spool: durability layout, restart pick-up, caps, stale temps, no plaintext, errors.

use std::fs;
use std::path::Path;

use dnsensor_core::output::Sink;
use dnsensor_delivery::batch::{self, BatchHeader, BatchId};
use dnsensor_delivery::keys;
use dnsensor_delivery::sink::SealingSink;
use dnsensor_delivery::spool::{Spool, SpoolConfig};

fn config(dir: &Path, max_bytes: u64, max_files: usize) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_owned(),
        max_bytes,
        max_files,
    }
}

fn header() -> BatchHeader {
    BatchHeader {
        sensor_id: "s1".into(),
        batch_id: BatchId::random(),
        created: 1_700_000_000,
        records: 1,
    }
}

/// Stores a fake sealed batch of `size` bytes; the spool does not look inside.
fn store(spool: &Spool, size: usize) -> BatchHeader {
    let h = header();
    spool.store(&h, &vec![7u8; size]).unwrap();
    h
}

fn batch_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".batch"))
        .collect();
    v.sort();
    v
}

#[test]
fn store_writes_named_files_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 20, 100)).unwrap();
    let ids: Vec<BatchId> = (0..5).map(|_| store(&spool, 100).batch_id).collect();
    let files = batch_files(dir.path());
    assert_eq!(files.len(), 5);
    for (f, id) in files.iter().zip(&ids) {
        assert!(f.ends_with(&format!("-{id}.batch")), "{f} vs {id}");
        assert_eq!(f.len(), 20 + 1 + 32 + 6);
        assert_eq!(fs::metadata(dir.path().join(f)).unwrap().len(), 100);
    }
    assert_eq!(spool.pending(), files);
    let st = spool.stats();
    assert_eq!((st.files, st.bytes, st.stored), (5, 500, 5));
    assert!(dir.path().join("rejected").is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let sub = dir.path().join("spool-new");
        Spool::open(config(&sub, 1 << 20, 10)).unwrap();
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let f = dir.path().join(&files[0]);
        assert_eq!(fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn reopen_picks_up_batches_and_removes_stale_temps() {
    let dir = tempfile::tempdir().unwrap();
    let first = Spool::open(config(dir.path(), 1 << 20, 100)).unwrap();
    store(&first, 10);
    store(&first, 20);
    let before = first.pending();
    drop(first);
    let stale = dir
        .path()
        .join(format!("{}.tmp", before[0].replace("-", "-9")));
    fs::write(&stale, b"half a batch").unwrap();
    fs::write(dir.path().join("README"), b"not a batch").unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 20, 100)).unwrap();
    assert!(!stale.exists());
    assert!(
        dir.path().join("README").exists(),
        "unknown files are left alone"
    );
    assert_eq!(spool.pending(), before);
    let st = spool.stats();
    assert_eq!((st.files, st.bytes, st.stored), (2, 30, 0));
    // New batches sort after the old ones even if the clock went backwards a little.
    store(&spool, 5);
    let now = spool.pending();
    assert_eq!(&now[..2], &before[..]);
    assert_eq!(now.len(), 3);
    // The uploader gets the oldest first.
    let claimed = spool.claim_oldest().unwrap();
    assert_eq!(claimed.name, before[0]);
}

#[test]
fn file_cap_drops_oldest_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 20, 3)).unwrap();
    let hs: Vec<BatchHeader> = (0..5).map(|_| store(&spool, 10)).collect();
    let files = batch_files(dir.path());
    assert_eq!(files.len(), 3);
    for (f, h) in files.iter().zip(&hs[2..]) {
        assert!(f.contains(&h.batch_id.to_string()));
    }
    let st = spool.stats();
    assert_eq!(
        (st.files, st.bytes, st.stored, st.dropped_full),
        (3, 30, 5, 2)
    );
}

#[test]
fn byte_cap_drops_oldest_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 250, 100)).unwrap();
    let a = store(&spool, 100);
    let b = store(&spool, 100);
    assert_eq!(spool.stats().dropped_full, 0);
    let c = store(&spool, 100); // 300 > 250: a goes
    let files = batch_files(dir.path());
    assert_eq!(files.len(), 2);
    assert!(!files.iter().any(|f| f.contains(&a.batch_id.to_string())));
    assert!(files[0].contains(&b.batch_id.to_string()));
    assert!(files[1].contains(&c.batch_id.to_string()));
    let st = spool.stats();
    assert_eq!((st.files, st.bytes, st.dropped_full), (2, 200, 1));
    // A batch in flight is not dropped; the next oldest is.
    let claimed = spool.claim_oldest().unwrap();
    assert!(claimed.name.contains(&b.batch_id.to_string()));
    let d = store(&spool, 100);
    let files = batch_files(dir.path());
    assert_eq!(files.len(), 2);
    assert!(files[0].contains(&b.batch_id.to_string()));
    assert!(files[1].contains(&d.batch_id.to_string()));
    assert_eq!(spool.stats().dropped_full, 2);
}

#[test]
fn lowered_caps_apply_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 20, 100)).unwrap();
    for _ in 0..4 {
        store(&spool, 10);
    }
    let names = spool.pending();
    drop(spool);
    let spool = Spool::open(config(dir.path(), 1 << 20, 2)).unwrap();
    assert_eq!(spool.pending(), names[2..].to_vec());
    assert_eq!(spool.stats().dropped_full, 2);
}

#[test]
fn delivered_and_rejected_leave_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 20, 100)).unwrap();
    store(&spool, 10);
    store(&spool, 20);
    let a = spool.claim_oldest().unwrap();
    let b = spool.claim_oldest().unwrap();
    assert!(spool.claim_oldest().is_none(), "both are in flight");
    spool.delivered(&a).unwrap();
    let moved = spool.reject(&b).unwrap();
    assert_eq!(moved, dir.path().join("rejected").join(&b.name));
    assert!(moved.exists());
    assert!(batch_files(dir.path()).is_empty());
    let st = spool.stats();
    assert_eq!(
        (st.files, st.bytes, st.delivered, st.rejected),
        (0, 0, 1, 1)
    );
    // rejected/ is not counted after a restart either.
    drop(spool);
    let spool = Spool::open(config(dir.path(), 1 << 20, 100)).unwrap();
    assert_eq!(spool.stats().files, 0);
}

#[test]
fn released_batch_is_claimed_again() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 20, 100)).unwrap();
    store(&spool, 10);
    let a = spool.claim_oldest().unwrap();
    assert!(spool.claim_oldest().is_none());
    spool.release(&a);
    assert_eq!(spool.claim_oldest().unwrap(), a);
}

#[test]
fn write_error_is_reported_counted_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sdir = dir.path().join("spool");
    let spool = Spool::open(config(&sdir, 1 << 20, 100)).unwrap();
    store(&spool, 10);
    // Pull the directory away: the next store cannot create its file.
    fs::rename(&sdir, dir.path().join("moved")).unwrap();
    let err = spool.store(&header(), &[1u8; 10]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&sdir.display().to_string()), "{msg}");
    assert!(msg.contains(".batch.tmp"), "{msg}");
    let st = spool.stats();
    assert_eq!((st.write_errors, st.stored, st.files), (1, 1, 1));
    assert!(!sdir.exists());
}

#[test]
fn bad_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Spool::open(SpoolConfig::default()).is_err());
    assert!(Spool::open(config(dir.path(), 0, 10)).is_err());
    assert!(Spool::open(config(dir.path(), 10, 0)).is_err());
    let d = SpoolConfig::default();
    assert_eq!((d.max_bytes, d.max_files), (1 << 30, 10_000));
}

#[test]
fn sealing_sink_spools_sealed_batches_without_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 20, 100)).unwrap();
    let (sk, pk) = keys::generate();
    let mut sink = SealingSink::new(pk, "sensor-a".into(), spool.clone());
    let lines = b"{\"rrname\":\"very-secret-host.internal.example.\",\"rrtype\":\"A\",\"rdata\":[\"192.0.2.9\"],\"time_first\":1,\"time_last\":1,\"count\":1}\n\
{\"rrname\":\"other.internal.example.\",\"rrtype\":\"AAAA\",\"rdata\":[\"2001:db8::1\"],\"time_first\":1,\"time_last\":1,\"count\":1}\n";
    sink.write_batch(lines, 2).unwrap();
    sink.write_batch(lines, 2).unwrap();
    assert_eq!(spool.stats().stored, 2);
    let files = batch_files(dir.path());
    assert_eq!(files.len(), 2);
    // Nothing in the spool directory shows the plaintext.
    for entry in walk(dir.path()) {
        let data = fs::read(&entry).unwrap();
        for needle in [&b"very-secret-host"[..], b"internal.example", b"rrname"] {
            assert!(
                !data.windows(needle.len()).any(|w| w == needle),
                "{} contains plaintext",
                entry.display()
            );
        }
    }
    // And each file opens to exactly what was flushed, with the header the sink wrote.
    for f in &files {
        let data = fs::read(dir.path().join(f)).unwrap();
        let opened = batch::open(&sk, &data, 1 << 20).unwrap();
        assert_eq!(opened.ndjson, lines);
        assert_eq!(opened.header.sensor_id, "sensor-a");
        assert_eq!(opened.header.records, 2);
        assert!(f.contains(&opened.header.batch_id.to_string()));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(opened.header.created <= now && opened.header.created + 60 > now);
    }
}

#[test]
fn sealing_sink_reports_invalid_sensor_id() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(config(dir.path(), 1 << 20, 100)).unwrap();
    let (_, pk) = keys::generate();
    let mut sink = SealingSink::new(pk, String::new(), spool.clone());
    let err = sink.write_batch(b"x\n", 1).unwrap_err();
    assert!(err.to_string().contains("sensor id"), "{err}");
    assert_eq!(spool.stats().stored, 0);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A real full disk: the test mounts a 256 KiB tmpfs of its own (the tests run as root) and
/// fills it.
#[test]
fn full_disk_is_a_clear_counted_error() {
    let base = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(base.path())
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "cannot mount a tmpfs on {} (the tests run as root)",
        base.path().display()
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(base.path());
    let dir = base.path().join("spool");
    let spool = Spool::open(config(&dir, 1 << 30, 100_000)).unwrap();
    let mut stored = 0u64;
    let err = loop {
        match spool.store(&header(), &vec![1u8; 64 << 10]) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 10_000, "the file system never filled up");
    };
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );
    let st = spool.stats();
    assert_eq!((st.stored, st.write_errors, st.files), (stored, 1, stored));
    // No temp file is left behind, and what was stored is intact after a reopen.
    assert!(fs::read_dir(&dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
    drop(spool);
    let again = Spool::open(config(&dir, 1 << 30, 100_000)).unwrap();
    assert_eq!(again.stats().files, stored);
}
