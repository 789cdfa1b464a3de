//! The reference collector: receives sealed batches over HTTP(S), opens and verifies them,
//! merges their records into SQLite and answers COF queries.
//!
//! The binary's `dnsensor collector` command builds a [`CollectorConfig`], calls
//! [`Collector::bind`] and then [`Collector::serve`]. `docs/collector.md` describes the API,
//! the answer codes and the store.

#![warn(missing_docs)]

mod cof;
mod http;
mod query;
mod stats;
mod store;
mod tls;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dnsensor_delivery::keys::SecretKey;
use thiserror::Error;

pub use query::{DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT};
pub use stats::{CollectorStats, REFUSAL_STATUSES};

/// Default cap on an upload's body (the sealed batch), in bytes: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Cap on a batch's decompressed NDJSON, in bytes: 512 MiB. It bounds the memory a small,
/// highly compressible upload can make the collector allocate.
pub const MAX_PLAINTEXT_BYTES: usize = 512 * 1024 * 1024;

/// The PEM files that turn on HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What the collector needs to run.
#[derive(Clone)]
pub struct CollectorConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// The collector's HPKE secret key; sensors seal to its public half.
    pub key: SecretKey,
    /// SQLite database file; created when missing.
    pub db: PathBuf,
    /// Bearer token every request must carry.
    pub token: String,
    /// Serve HTTPS with these files; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Largest accepted upload body in bytes (see [`DEFAULT_MAX_BODY_BYTES`]).
    pub max_body_bytes: usize,
}

// By hand so that the secret key and the token never reach a log line.
impl fmt::Debug for CollectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectorConfig")
            .field("listen", &self.listen)
            .field("key", &"<secret>")
            .field("db", &self.db)
            .field("token", &"<secret>")
            .field("tls", &self.tls)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// Why the collector could not start or stopped.
#[derive(Debug, Error)]
pub enum CollectorError {
    /// The database could not be opened, created or migrated.
    #[error("database {}: {source}", path.display())]
    Db {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("TLS {}: {reason}", path.display())]
    Tls {
        /// The file at fault.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The token file could not be read or holds no token.
    #[error("token file {}: {reason}", path.display())]
    Token {
        /// The token file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// Serving failed after start-up.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// Checks a batch's NDJSON payload as the collector does before storing it: returns how many
/// records it holds, or why the first bad line is refused (the whole batch is then refused).
/// For tools and fuzzing; the server uses the same parser.
pub fn check_ndjson(ndjson: &[u8]) -> Result<usize, String> {
    cof::parse_ndjson(ndjson)
        .map(|records| records.len())
        .map_err(|e| e.to_string())
}

/// Reads a bearer token from `path`: surrounding whitespace (a trailing newline) is dropped,
/// and an empty file is an error rather than a collector that anyone can use.
pub fn read_token_file(path: &Path) -> Result<String, CollectorError> {
    let err = |reason: String| CollectorError::Token {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(err("the file is empty".into()));
    }
    // A header value cannot carry control characters; refuse now rather than at every request.
    if token.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return Err(err("the token must be printable ASCII".into()));
    }
    Ok(token.to_owned())
}

enum Listening {
    Plain(tokio::net::TcpListener),
    Tls(tokio::net::TcpListener, Arc<rustls::ServerConfig>),
}

/// A collector that has opened its database and bound its socket, but is not yet serving.
pub struct Collector {
    listening: Listening,
    local_addr: SocketAddr,
    state: Arc<http::AppState>,
}

impl Collector {
    /// Opens (or creates) the database, loads the TLS files when given, and binds the socket.
    /// Each failure is one error naming the file or address at fault.
    pub async fn bind(config: CollectorConfig) -> Result<Collector, CollectorError> {
        let db = config.db.clone();
        let store = tokio::task::spawn_blocking(move || store::Store::open(&db))
            .await
            .map_err(|e| CollectorError::Serve(std::io::Error::other(e)))?
            .map_err(|source| CollectorError::Db {
                path: config.db.clone(),
                source,
            })?;
        let tls = match &config.tls {
            Some(files) => Some(tls::server_config(&files.cert, &files.key)?),
            None => None,
        };
        let tcp = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| CollectorError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = tcp.local_addr().map_err(|source| CollectorError::Bind {
            addr: config.listen,
            source,
        })?;
        let listening = match tls {
            Some(tls) => Listening::Tls(tcp, tls),
            None => Listening::Plain(tcp),
        };
        let state = Arc::new(http::AppState {
            store: Arc::new(store),
            key: config.key,
            token: config.token,
            max_body_bytes: config.max_body_bytes,
            max_plaintext_bytes: MAX_PLAINTEXT_BYTES,
            batch_slots: Arc::new(tokio::sync::Semaphore::new(http::BATCH_SLOTS)),
            stats: Arc::new(CollectorStats::default()),
        });
        log::info!(
            "collector listening on {}{} with database {}",
            if matches!(listening, Listening::Tls(..)) {
                "https://"
            } else {
                "http://"
            },
            local_addr,
            config.db.display()
        );
        Ok(Collector {
            listening,
            local_addr,
            state,
        })
    }

    /// The counters, for a metrics endpoint; they go on counting while the collector serves.
    pub fn stats(&self) -> Arc<CollectorStats> {
        Arc::clone(&self.state.stats)
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests
    /// finish (so an upload being merged still commits and gets its answer) before returning.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CollectorError> {
        let app = http::router(self.state).into_make_service_with_connect_info::<http::PeerAddr>();
        match self.listening {
            Listening::Plain(tcp) => axum::serve(tcp, app).with_graceful_shutdown(shutdown).await,
            Listening::Tls(tcp, config) => {
                let listener = tls::TlsListener::new(tcp, config).map_err(CollectorError::Serve)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        }
        .map_err(CollectorError::Serve)?;
        log::info!("collector stopped");
        Ok(())
    }
}
