//! Telling systemd how the service is doing (sd_notify): READY=1 once a mode serves, STOPPING=1
//! when it stops, and watchdog pings from the serving runtime when the unit asks for them.

use std::time::Duration;

use sd_notify::NotifyState;

/// The mode is serving: sockets bound, pipeline running. Without NOTIFY_SOCKET this does nothing.
pub fn ready(status: &str) {
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)]) {
        log::warn!("cannot tell systemd that the service is ready: {e}");
    }
}

/// The mode is stopping (flushing its window, finishing uploads).
pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// Pings systemd's watchdog at half the unit's `WatchdogSec=` for as long as the runtime that
/// polls it keeps running; never returns. Without a watchdog it just waits.
pub async fn watchdog() {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return std::future::pending().await;
    }
    let every = Duration::from_micros(usec / 2);
    loop {
        tokio::time::sleep(every).await;
        let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
    }
}
