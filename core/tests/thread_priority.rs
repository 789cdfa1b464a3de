//! The pipeline's threads take the scheduling its configuration asks for, each as it starts.
//! Alone in its test binary, so that no other test's pipeline threads are in the process.

use std::path::Path;
use std::time::{Duration, Instant};

use dnsensor_core::output::MemorySink;
use dnsensor_core::pipeline::{Pipeline, PipelineConfig, ThreadPriority};

/// Linux's number for the `SCHED_IDLE` policy.
const SCHED_IDLE: u32 = 5;

/// The scheduling policy in a `/proc/.../stat` file: field 41, the 39th after the ") " that
/// ends the command name.
fn policy_in(stat_path: &Path) -> Option<u32> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(38)?.parse().ok()
}

/// (thread name, scheduling policy) of every thread of this process whose name starts with
/// `dnsensor-`, and the policies of the others.
fn thread_policies() -> (Vec<(String, u32)>, Vec<u32>) {
    let (mut ours, mut others) = (Vec::new(), Vec::new());
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Some(policy) = policy_in(&task.path().join("stat")) else {
            continue;
        };
        if comm.starts_with("dnsensor-") {
            ours.push((comm.trim_end().to_owned(), policy));
        } else {
            others.push(policy);
        }
    }
    ours.sort();
    (ours, others)
}

/// A pipeline with `workers` workers and the given priority, writing to memory.
fn start(workers: usize, priority: ThreadPriority) -> Pipeline {
    let config = PipelineConfig {
        workers,
        priority,
        ..PipelineConfig::default()
    };
    Pipeline::start(config, Box::new(MemorySink::default())).unwrap()
}

/// Waits (up to 10 s) until the pipeline's threads show `want`, and returns what they showed
/// last and the other threads' policies.
fn wait_for(want: &[(String, u32)]) -> (Vec<(String, u32)>, Vec<u32>) {
    // The threads name themselves and set their policy as they start: it may take a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = thread_policies();
        if seen.0 == want || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// One test, so that no other pipeline's threads are in the process at the same time.
#[test]
fn idle_priority_reaches_every_pipeline_thread_and_no_other_and_the_default_changes_nothing() {
    let base = policy_in(Path::new("/proc/thread-self/stat")).unwrap();
    assert_ne!(
        base, SCHED_IDLE,
        "the tests themselves run under SCHED_IDLE"
    );

    let pipeline = start(1, ThreadPriority::Inherit);
    let want = [
        ("dnsensor-flushe".to_owned(), base),
        ("dnsensor-worker".to_owned(), base),
    ];
    let (ours, _) = wait_for(&want);
    pipeline.shutdown();
    assert_eq!(ours, want, "by default");

    let pipeline = start(2, ThreadPriority::Idle);
    let want = [
        ("dnsensor-flushe".to_owned(), SCHED_IDLE),
        ("dnsensor-worker".to_owned(), SCHED_IDLE),
        ("dnsensor-worker".to_owned(), SCHED_IDLE),
    ];
    let (ours, others) = wait_for(&want);
    pipeline.shutdown();
    assert_eq!(ours, want, "with ThreadPriority::Idle");
    // The caller's threads (this test's) keep theirs.
    assert!(
        others.iter().all(|p| *p == base),
        "other threads: {others:?}"
    );
}
