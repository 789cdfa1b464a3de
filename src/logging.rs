//! Logging: native journald when stderr is the journal, plain stderr lines otherwise.
//! The level comes from `--log-level`; `RUST_LOG` is not consulted so behaviour is explicit.

use std::io::Write;

/// Installs the logger. Safe to call once per process.
pub fn init(level: log::LevelFilter) {
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(journal) = systemd_journal_logger::JournalLog::new() {
            if journal
                .with_syslog_identifier("dnsensor".to_string())
                .install()
                .is_ok()
            {
                log::set_max_level(level);
                return;
            }
        }
    }
    let _ = env_logger::Builder::new()
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
        .try_init();
}
