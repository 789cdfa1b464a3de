//! HTTPS for the collector: loading the PEM certificate chain and key into rustls (ring
//! provider), and a listener that hands axum only connections whose handshake finished.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::CollectorError;

/// A peer that has not finished its handshake by then is dropped, so that idle sockets
/// cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for axum to pick them up.
const READY_QUEUE: usize = 64;

fn tls_error(path: &Path, reason: impl std::fmt::Display) -> CollectorError {
    CollectorError::Tls {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Builds a server configuration from a PEM certificate chain (leaf first) and a PEM private
/// key (PKCS#8, PKCS#1 or SEC1). Only HTTP/1.1 is offered over ALPN, as that is all we serve.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, CollectorError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_error(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(cert, e))?;
    if certs.is_empty() {
        return Err(tls_error(cert, "no CERTIFICATE section in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls_error(key, format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An axum listener over TLS. Handshakes run in their own tasks, so one slow peer never
/// holds up the others; axum sees a connection only once it is encrypted.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp`; must be called inside a tokio runtime.
    pub(crate) fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = TlsAcceptor::from(config);
        let accept_task = tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(TlsListener {
            ready,
            local_addr,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // axum drops the listener when it shuts down; stop taking new connections then.
        self.accept_task.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Usually EMFILE; back off instead of spinning on the error.
                log::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    // A closed channel means the server is shutting down; dropping is right.
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => log::warn!("TLS handshake with {peer} failed: {e}"),
                Err(_) => log::warn!("TLS handshake with {peer} timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends when aborted, which happens on drop; nothing to give.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
