//! Signals: SIGTERM or SIGINT stop a mode (it flushes what it holds and exits cleanly), SIGHUP
//! reloads its configuration. An async wait for tokio-based modes, a watcher thread for capture.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Resolves at the first SIGTERM or SIGINT, and logs which one arrived; calls `on_reload` at
/// each SIGHUP before that.
pub async fn wait_for_stop(mut on_reload: impl FnMut()) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        log::error!("cannot install signal handlers; stop with SIGKILL loses the open window");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                crate::service::stopping();
                log::info!("SIGTERM: stopping");
                return;
            }
            _ = int.recv() => {
                crate::service::stopping();
                log::info!("SIGINT: stopping");
                return;
            }
            _ = hup.recv() => {
                log::info!("SIGHUP: reloading the configuration");
                on_reload();
            }
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
        tokio::spawn(async move {
            wait_for_stop(on_reload).await;
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
    let spawned = std::thread::Builder::new()
        .name("dnsensor-signals".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => rt.block_on(wait_for_stop(on_reload)),
                Err(e) => {
                    log::error!("cannot watch for signals: {e}");
                    return;
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    if let Err(e) = spawned {
        log::error!("cannot watch for signals: {e}");
    }
}
