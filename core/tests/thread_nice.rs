//! The pipeline's threads take the niceness its configuration asks for, each as it starts.
//! Alone in its test binary, so that no other test's pipeline threads are in the process.

use std::time::{Duration, Instant};

use dnsensor_core::output::MemorySink;
use dnsensor_core::pipeline::{Pipeline, PipelineConfig};

/// The niceness in a `/proc/.../stat` file: field 19, the 17th after the ") " that ends the
/// command name.
fn nice_in(stat_path: &std::path::Path) -> Option<i32> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(16)?.parse().ok()
}

/// (thread name, niceness) of every thread of this process.
fn thread_nices() -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if let Some(nice) = nice_in(&task.path().join("stat")) {
            out.push((comm.trim_end().to_owned(), nice));
        }
    }
    out.sort();
    out
}

#[test]
fn every_pipeline_thread_adds_the_configured_niceness_and_no_other_thread_does() {
    // The niceness the tests run at, 0 unless they were started under `nice`.
    let base = nice_in(std::path::Path::new("/proc/thread-self/stat")).unwrap();
    let lowered = (base + 7).min(19);
    let config = PipelineConfig {
        workers: 2,
        nice: 7,
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::start(config, Box::new(MemorySink::default())).unwrap();
    let want = [
        ("dnsensor-flushe", lowered),
        ("dnsensor-worker", lowered),
        ("dnsensor-worker", lowered),
    ];
    // The threads set their niceness as they start, so it may take a moment to show.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen;
    loop {
        seen = thread_nices();
        let pipeline_threads: Vec<(&str, i32)> = seen
            .iter()
            .filter(|(name, _)| name.starts_with("dnsensor-"))
            .map(|(name, nice)| (name.as_str(), *nice))
            .collect();
        if pipeline_threads == want || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    pipeline.shutdown();
    let pipeline_threads: Vec<(&str, i32)> = seen
        .iter()
        .filter(|(name, _)| name.starts_with("dnsensor-"))
        .map(|(name, nice)| (name.as_str(), *nice))
        .collect();
    assert_eq!(pipeline_threads, want, "threads: {seen:?}");
    // The caller's threads (this test's) keep theirs.
    assert!(
        seen.iter()
            .filter(|(name, _)| !name.starts_with("dnsensor-"))
            .all(|(_, nice)| *nice == base),
        "threads: {seen:?}"
    );
}
