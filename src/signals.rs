//! Signals: SIGTERM or SIGINT stop a mode (it flushes what it holds and exits cleanly), SIGHUP
//! reloads its configuration. An async wait for tokio-based modes, a watcher thread for capture.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM, SIGINT and SIGHUP, caught from the moment this value exists. Modes create it before
/// they say they are ready: a stop that arrived in between would otherwise take the default
/// action, killing the process and losing the open window.
pub struct StopSignals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl StopSignals {
    /// Registers the handlers. Must run inside a tokio runtime, whose driver delivers them.
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves at the first SIGTERM or SIGINT, and logs which one arrived; calls `on_reload`
    /// at each SIGHUP before that.
    pub async fn wait(mut self, mut on_reload: impl FnMut()) {
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    crate::service::stopping();
                    log::info!("SIGTERM: stopping");
                    return;
                }
                _ = self.int.recv() => {
                    crate::service::stopping();
                    log::info!("SIGINT: stopping");
                    return;
                }
                _ = self.hup.recv() => {
                    log::info!("SIGHUP: reloading the configuration");
                    on_reload();
                }
            }
        }
    }
}

/// What [`StopSignals::wait`] does, or, when the handlers could not be installed, logs that and
/// never resolves.
pub async fn wait_for_stop(signals: std::io::Result<StopSignals>, on_reload: impl FnMut()) {
    match signals {
        Ok(signals) => signals.wait(on_reload).await,
        Err(e) => {
            log::error!(
                "cannot install signal handlers ({e}); stop with SIGKILL loses the open window"
            );
            std::future::pending::<()>().await
        }
    }
}

/// The runtime for a mode's sockets: `threads` workers, or, for 1, everything on the calling
/// thread, which saves the cross-thread wake-ups that dominate at moderate packet rates.
pub fn io_runtime(name: &str, threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Runs `serve` on `runtime` with a stop flag that turns true at the first SIGTERM or SIGINT;
/// `on_reload` runs at each SIGHUP.
pub fn serve_until_stopped<F: std::future::Future>(
    runtime: &tokio::runtime::Runtime,
    on_reload: impl FnMut() + Send + 'static,
    serve: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> F,
) -> F::Output {
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let signals = StopSignals::install();
        tokio::spawn(async move {
            wait_for_stop(signals, on_reload).await;
            let _ = stop_tx.send(true);
        });
        // The sockets are bound and the pipeline runs; the watchdog is pinged from this
        // runtime, so a wedged runtime stops the pings.
        tokio::spawn(crate::service::watchdog());
        crate::service::ready("serving");
        serve(stop_rx).await
    })
}

/// Sets `stop` at the first SIGTERM or SIGINT, from a thread of its own, for loops that poll a
/// flag instead of awaiting; `on_reload` runs on that thread at each SIGHUP.
pub fn set_on_stop(stop: Arc<AtomicBool>, on_reload: impl FnMut() + Send + 'static) {
    // The handlers are registered here, before the caller goes on to say it is ready; only the
    // waiting happens on the watcher thread.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot watch for signals: {e}");
            return;
        }
    };
    let signals = {
        let _context = runtime.enter();
        StopSignals::install()
    };
    let spawned = std::thread::Builder::new()
        .name("dnsensor-signals".into())
        .spawn(move || {
            runtime.block_on(wait_for_stop(signals, on_reload));
            stop.store(true, Ordering::Relaxed);
        });
    if let Err(e) = spawned {
        log::error!("cannot watch for signals: {e}");
    }
}
