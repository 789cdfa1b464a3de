//! Logging: native journald (with structured fields) when stderr is the journal, plain stderr
//! lines otherwise; warnings and errors are rate-limited per call site so a flood cannot drown it.
//! The level comes from `--log-level`; `RUST_LOG` is not consulted so behaviour is explicit.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, Log, Metadata, Record};

/// Warnings and errors one call site may log per [`WINDOW`]; the rest are counted, and the count
/// is logged with the site's next message after the window.
const BURST: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);

/// Installs the logger; journal entries carry the subcommand as `DNSENSOR_MODE`. Safe to call
/// once per process.
pub fn init(level: log::LevelFilter) {
    let inner: Box<dyn Log> = match journal(mode_name()) {
        Some(journal) => journal,
        None => Box::new(
            env_logger::Builder::new()
                .filter_level(level)
                .format(|buf, record| {
                    writeln!(
                        buf,
                        "{} {:<5} {}",
                        buf.timestamp_seconds(),
                        record.level(),
                        record.args()
                    )
                })
                .target(env_logger::Target::Stderr)
                .build(),
        ),
    };
    if log::set_boxed_logger(Box::new(RateLimited::new(inner))).is_ok() {
        log::set_max_level(level);
    }
}

/// The journal logger, when stderr is connected to the journal.
fn journal(mode: String) -> Option<Box<dyn Log>> {
    if !systemd_journal_logger::connected_to_journal() {
        return None;
    }
    let journal = systemd_journal_logger::JournalLog::new()
        .ok()?
        .with_syslog_identifier("dnsensor".to_string())
        .with_extra_fields(vec![("DNSENSOR_MODE", mode)]);
    Some(Box::new(journal))
}

/// The subcommand, for the journal's `DNSENSOR_MODE` field.
fn mode_name() -> String {
    std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with('-'))
        .unwrap_or_default()
}

/// Passes every record to `inner`, except warnings and errors beyond [`BURST`] per call site
/// and [`WINDOW`].
struct RateLimited {
    inner: Box<dyn Log>,
    sites: Mutex<HashMap<(&'static str, u32), Site>>,
}

struct Site {
    since: Instant,
    logged: u32,
    suppressed: u64,
}

impl RateLimited {
    fn new(inner: Box<dyn Log>) -> RateLimited {
        RateLimited {
            inner,
            sites: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `record` may pass now, and how many from its site were held back before it.
    fn admit(&self, record: &Record, now: Instant) -> (bool, u64) {
        let key = (
            record.file_static().unwrap_or("?"),
            record.line().unwrap_or(0),
        );
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let site = sites.entry(key).or_insert(Site {
            since: now,
            logged: 0,
            suppressed: 0,
        });
        let mut reported = 0;
        if now.duration_since(site.since) >= WINDOW {
            reported = std::mem::take(&mut site.suppressed);
            site.since = now;
            site.logged = 0;
        }
        if site.logged < BURST {
            site.logged += 1;
            (true, reported)
        } else {
            site.suppressed += 1;
            (false, reported)
        }
    }
}

impl Log for RateLimited {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if record.level() > Level::Warn || !self.inner.enabled(record.metadata()) {
            self.inner.log(record);
            return;
        }
        let (pass, held_back) = self.admit(record, Instant::now());
        if held_back > 0 {
            self.inner.log(
                &Record::builder()
                    .level(Level::Warn)
                    .target(record.target())
                    .file_static(record.file_static())
                    .line(record.line())
                    .module_path_static(record.module_path_static())
                    .args(format_args!(
                        "{held_back} more like the next one were not logged in the last {} s",
                        WINDOW.as_secs()
                    ))
                    .build(),
            );
        }
        if pass {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Keeps the messages it is given.
    #[derive(Clone, Default)]
    struct Keep(Arc<Mutex<Vec<String>>>);

    impl Log for Keep {
        fn enabled(&self, _: &Metadata) -> bool {
            true
        }
        fn log(&self, record: &Record) {
            self.0.lock().unwrap().push(record.args().to_string());
        }
        fn flush(&self) {}
    }

    fn record_at(line: u32, level: Level, f: impl FnOnce(&Record)) {
        f(&Record::builder()
            .level(level)
            .file_static(Some("src/x.rs"))
            .line(Some(line))
            .args(format_args!("message from line {line}"))
            .build());
    }

    #[test]
    fn warnings_beyond_the_burst_are_counted_and_reported_later() {
        let kept = Keep::default();
        let limited = RateLimited::new(Box::new(kept.clone()));
        for _ in 0..12 {
            record_at(10, Level::Warn, |r| limited.log(r));
        }
        // Another call site and lower levels are not limited.
        record_at(20, Level::Error, |r| limited.log(r));
        for _ in 0..8 {
            record_at(30, Level::Info, |r| limited.log(r));
        }
        let got = kept.0.lock().unwrap().clone();
        assert_eq!(
            got.iter().filter(|m| *m == "message from line 10").count(),
            5
        );
        assert_eq!(
            got.iter().filter(|m| *m == "message from line 20").count(),
            1
        );
        assert_eq!(
            got.iter().filter(|m| *m == "message from line 30").count(),
            8
        );

        // After the window, the site's next message comes with the count held back.
        let later = Instant::now() + WINDOW;
        let r = Record::builder()
            .level(Level::Warn)
            .file_static(Some("src/x.rs"))
            .line(Some(10))
            .args(format_args!("again"))
            .build();
        assert_eq!(limited.admit(&r, later), (true, 7));
        assert_eq!(limited.admit(&r, later), (true, 0));
    }
}
