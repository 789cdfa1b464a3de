//! Test harness for the collector: runs it in-process on 127.0.0.1:0 with a temporary database,
//! seals batches with the delivery API, and talks to it with a blocking HTTP client.

#![allow(dead_code)] // each test binary uses a different subset of the helpers

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use dnsensor_collector::{Collector, CollectorConfig, TlsFiles};
use dnsensor_delivery::batch::{seal, BatchHeader, BatchId};
use dnsensor_delivery::keys::{generate, PublicKey, SecretKey};

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A collector running on its own thread and runtime, so the tests can use a blocking client.
pub struct Running {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Asks for a graceful shutdown and waits until `serve` has returned.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("collector thread panicked");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A key pair and a temporary directory holding the database.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub secret: SecretKey,
    pub public: PublicKey,
}

impl Env {
    pub fn new() -> Env {
        let (secret, public) = generate();
        Env {
            dir: tempfile::tempdir().unwrap(),
            secret,
            public,
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("collector.db")
    }

    pub fn config(&self) -> CollectorConfig {
        CollectorConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            key: self.secret.clone(),
            db: self.db(),
            token: TOKEN.to_string(),
            tls: None,
            max_body_bytes: dnsensor_collector::DEFAULT_MAX_BODY_BYTES,
        }
    }

    pub fn start(&self) -> Running {
        start(self.config())
    }

    /// Rows in one table of the collector's database, read directly.
    pub fn rows(&self, table: &str) -> i64 {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }
}

pub fn start(config: CollectorConfig) -> Running {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let collector = Collector::bind(config).await.unwrap();
            addr_tx.send(collector.local_addr()).unwrap();
            collector
                .serve(async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
        });
    });
    let addr = addr_rx.recv().expect("collector did not start");
    Running {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// A client that reports every status as a response rather than an error.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// A client that trusts exactly one PEM root certificate.
pub fn tls_agent(root_pem: &[u8]) -> ureq::Agent {
    let root = ureq::tls::Certificate::from_pem(root_pem).unwrap();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .into()
}

pub fn batch_id(n: u8) -> BatchId {
    BatchId([n; 16])
}

/// Seals `lines` as one batch, with a header that counts them.
pub fn sealed(public: &PublicKey, sensor: &str, id: BatchId, lines: &[&str]) -> Vec<u8> {
    let header = BatchHeader {
        sensor_id: sensor.to_string(),
        batch_id: id,
        created: 1_795_742_800,
        records: u32::try_from(lines.len()).unwrap(),
    };
    let mut ndjson = lines.join("\n");
    ndjson.push('\n');
    seal(public, &header, ndjson.as_bytes()).unwrap()
}

/// An answer: status and body text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub content_type: Option<String>,
    pub www_authenticate: Option<String>,
    pub connection: Option<String>,
}

fn answer(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut resp = resp.expect("request failed at the transport level");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let content_type = header("content-type");
    let www_authenticate = header("www-authenticate");
    let connection = header("connection");
    Answer {
        status: resp.status().as_u16(),
        body: resp.body_mut().read_to_string().unwrap(),
        content_type,
        www_authenticate,
        connection,
    }
}

/// POSTs a body to `/api/v1/batches`; `None` leaves a header out.
pub fn post_raw(
    agent: &ureq::Agent,
    base: &str,
    token: Option<&str>,
    idempotency_key: Option<&str>,
    body: &[u8],
) -> Answer {
    let mut req = agent
        .post(format!("{base}/api/v1/batches"))
        .header("Content-Type", "application/vnd.dnsensor.batch");
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    answer(req.send(body))
}

/// POSTs a sealed batch the way the sensor does.
pub fn post(agent: &ureq::Agent, base: &str, id: BatchId, body: &[u8]) -> Answer {
    post_raw(agent, base, Some(TOKEN), Some(&id.to_string()), body)
}

/// GETs a query path (starting with `/api/v1/`) with the given token.
pub fn get_with(agent: &ureq::Agent, base: &str, path: &str, token: Option<&str>) -> Answer {
    let mut req = agent.get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    answer(req.call())
}

/// GETs a query path and returns its NDJSON lines, asserting a 200 NDJSON answer.
pub fn query(agent: &ureq::Agent, base: &str, path: &str) -> Vec<String> {
    let a = get_with(agent, base, path, Some(TOKEN));
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    assert_eq!(a.content_type.as_deref(), Some("application/x-ndjson"));
    a.body.lines().map(String::from).collect()
}

pub fn base(r: &Running) -> String {
    format!("http://{}", r.addr)
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

pub fn tls_files(dir: &Path) -> (TlsFiles, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert_pem = ck.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    write(&cert, &cert_pem);
    write(&key, &ck.signing_key.serialize_pem());
    (TlsFiles { cert, key }, cert_pem)
}
