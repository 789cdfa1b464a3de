//! Tests of the uploader against a scripted in-process HTTP(S) server on 127.0.0.1.
//! Timing checks are lower bounds only (a delay the server must have seen); waits are generous.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use dnsensor_delivery::batch::{self, BatchHeader, BatchId};
use dnsensor_delivery::keys;
use dnsensor_delivery::spool::{Spool, SpoolConfig};
use dnsensor_delivery::upload::{
    parse_retry_after, read_token_file, verdict, UploadError, Uploader, UploaderConfig, Verdict,
};

#[derive(Clone, Debug)]
enum Action {
    /// Answer with this status and extra header lines.
    Respond(u16, Vec<(&'static str, String)>),
    /// Read the request and never answer.
    Hang,
    /// 201 when the request carries this bearer token, else 401.
    RequireToken(&'static str),
}

#[derive(Clone, Debug)]
struct Req {
    at: Instant,
    /// Wall-clock arrival, for comparing with an HTTP date.
    wall: SystemTime,
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

#[derive(Clone)]
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Req>>>,
}

struct Script {
    queue: Mutex<VecDeque<Action>>,
    default: Action,
}

impl Server {
    /// Plain HTTP server; answers the scripted actions in order, then `default`.
    fn start(script: Vec<Action>, default: Action) -> Server {
        Server::start_with(script, default, None)
    }

    fn start_with(
        script: Vec<Action>,
        default: Action,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Script {
            queue: Mutex::new(script.into()),
            default,
        });
        let reqs = Arc::clone(&requests);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let reqs = Arc::clone(&reqs);
                let script = Arc::clone(&script);
                let tls = tls.clone();
                thread::spawn(move || match tls {
                    None => serve(stream, &reqs, &script),
                    Some(cfg) => {
                        let conn = rustls::ServerConnection::new(cfg).unwrap();
                        serve(rustls::StreamOwned::new(conn, stream), &reqs, &script)
                    }
                });
            }
        });
        Server { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

/// Serves HTTP/1.1 requests on one connection until it closes.
fn serve<S: Read + Write>(stream: S, reqs: &Mutex<Vec<Req>>, script: &Script) {
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let at = Instant::now();
        let wall = SystemTime::now();
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let bearer = headers.get("authorization").cloned().unwrap_or_default();
        let action = match script
            .queue
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| script.default.clone())
        {
            Action::RequireToken(t) if bearer == format!("Bearer {t}") => ok201(),
            Action::RequireToken(_) => status(401),
            other => other,
        };
        reqs.lock().unwrap().push(Req {
            at,
            wall,
            method,
            path,
            headers,
            body,
        });
        match action {
            Action::Hang => {
                // Hold the connection open without answering, longer than any client timeout.
                thread::sleep(Duration::from_secs(30));
                return;
            }
            Action::RequireToken(_) => unreachable!("resolved above"),
            Action::Respond(status, extra) => {
                let body = format!("status {status}");
                let mut resp = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                for (k, v) in extra {
                    resp.push_str(&format!("{k}: {v}\r\n"));
                }
                resp.push_str("\r\n");
                resp.push_str(&body);
                let s = r.get_mut();
                if s.write_all(resp.as_bytes())
                    .and_then(|()| s.flush())
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

fn ok201() -> Action {
    Action::Respond(201, vec![])
}

fn status(code: u16) -> Action {
    Action::Respond(code, vec![])
}

fn spool_in(dir: &Path) -> Spool {
    Spool::open(SpoolConfig {
        dir: dir.to_owned(),
        max_bytes: 1 << 24,
        max_files: 1000,
    })
    .unwrap()
}

/// Seals and stores one real batch; returns its header and sealed bytes.
fn store(spool: &Spool) -> (BatchHeader, Vec<u8>) {
    let (_, pk) = keys::generate();
    let h = BatchHeader {
        sensor_id: "test-sensor".into(),
        batch_id: BatchId::random(),
        created: 1_700_000_000,
        records: 1,
    };
    let sealed = batch::seal(&pk, &h, b"{\"rrname\":\"x.example.\"}\n").unwrap();
    spool.store(&h, &sealed).unwrap();
    (h, sealed)
}

/// Stores `n` batches; returns their ids, sorted.
fn store_batches(spool: &Spool, n: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..n)
        .map(|_| store(spool).0.batch_id.to_string())
        .collect();
    ids.sort();
    ids
}

/// The batch ids of every request the server took, sorted.
fn sent_batch_ids(server: &Server) -> Vec<String> {
    let mut ids: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    ids.sort();
    ids
}

fn config(url: &str) -> UploaderConfig {
    UploaderConfig {
        concurrency: 1,
        request_timeout: Duration::from_secs(5),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..UploaderConfig::new(url, "s3cret-token")
    }
}

/// Waits for `cond`, failing after a generous limit (a liveness check, not a timing one).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn created_deletes_and_carries_headers_oldest_first() {
    let server = Server::start(vec![], ok201());
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    // Two batches from "before the restart", one stored while running.
    let a = store(&spool);
    let b = store(&spool);
    let up = Uploader::start(config(&server.url()), spool.clone()).unwrap();
    wait_for("two uploads", || up.stats().uploaded == 2);
    let c = store(&spool);
    wait_for("third upload", || up.stats().uploaded == 3);
    let stats = up.shutdown(Duration::from_secs(5));
    assert_eq!((stats.uploaded, stats.rejected, stats.retries), (3, 0, 0));
    assert!(!stats.auth_stopped);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    for (req, (h, sealed)) in reqs.iter().zip([&a, &b, &c]) {
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/api/v1/batches");
        assert_eq!(req.headers["authorization"], "Bearer s3cret-token");
        assert_eq!(req.headers["idempotency-key"], h.batch_id.to_string());
        assert_eq!(
            req.headers["content-type"],
            "application/vnd.dnsensor.batch"
        );
        assert_eq!(&req.body, sealed);
    }
    assert!(spool.pending().is_empty());
    let st = spool.stats();
    assert_eq!((st.files, st.delivered), (0, 3));
    assert_eq!(
        fs::read_dir(dir.path().join("rejected")).unwrap().count(),
        0
    );
}

#[test]
fn trailing_slash_in_url_is_tolerated() {
    let server = Server::start(vec![], status(200));
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    store(&spool);
    let up = Uploader::start(config(&format!("{}/", server.url())), spool.clone()).unwrap();
    wait_for("upload", || up.stats().uploaded == 1);
    up.shutdown(Duration::from_secs(5));
    assert_eq!(server.requests()[0].path, "/api/v1/batches");
}

#[test]
fn unprocessable_moves_to_rejected() {
    let server = Server::start(vec![status(422)], ok201());
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    let (a, sealed) = store(&spool);
    let (b, _) = store(&spool);
    let up = Uploader::start(config(&server.url()), spool.clone()).unwrap();
    wait_for("reject + upload", || {
        let s = up.stats();
        s.rejected == 1 && s.uploaded == 1
    });
    let stats = up.shutdown(Duration::from_secs(5));
    assert_eq!((stats.uploaded, stats.rejected, stats.retries), (1, 1, 0));
    let rejected: Vec<_> = fs::read_dir(dir.path().join("rejected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(rejected.len(), 1);
    let name = rejected[0].file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with(&format!("-{}.batch", a.batch_id)), "{name}");
    assert_eq!(fs::read(&rejected[0]).unwrap(), sealed);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].headers["idempotency-key"], b.batch_id.to_string());
    assert!(spool.pending().is_empty());
    assert_eq!(spool.stats().rejected, 1);
}

#[test]
fn every_permanent_status_rejects() {
    for code in [400, 404, 405, 410, 413, 415, 422] {
        assert_eq!(verdict(code), Verdict::Reject, "{code}");
    }
    for code in [401, 403] {
        assert_eq!(verdict(code), Verdict::AuthStop, "{code}");
    }
    for code in [408, 425, 429, 500, 502, 503, 504, 302, 409] {
        assert_eq!(verdict(code), Verdict::Retry, "{code}");
    }
    for code in [200, 201, 204] {
        assert_eq!(verdict(code), Verdict::Delivered, "{code}");
    }
}

#[test]
fn unauthorized_stops_uploads_and_keeps_batches() {
    let server = Server::start(vec![], status(401));
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    store(&spool);
    store(&spool);
    let up = Uploader::start(config(&server.url()), spool.clone()).unwrap();
    wait_for("auth stop", || up.stats().auth_stopped);
    // Storing goes on and wakes the workers, but they must not send anything more.
    store(&spool);
    thread::sleep(Duration::from_millis(300));
    let stats = up.shutdown(Duration::from_secs(5));
    assert!(stats.auth_stopped);
    assert_eq!((stats.uploaded, stats.rejected), (0, 0));
    assert_eq!(server.requests().len(), 1);
    assert_eq!(spool.pending().len(), 3);
    assert_eq!(spool.stats().files, 3);
}

#[test]
fn a_new_token_lifts_the_stop_and_delivers_what_waited() {
    let server = Server::start(vec![], Action::RequireToken("the-new-token"));
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    store(&spool);
    let up = Uploader::start(config(&server.url()), spool.clone()).unwrap();
    wait_for("auth stop", || up.stats().auth_stopped);
    store(&spool);
    let control = up.control();
    let changed = control
        .apply(UploaderConfig {
            token: "the-new-token".into(),
            ..config(&server.url())
        })
        .unwrap();
    assert_eq!(changed, ["token"]);
    wait_for("both batches delivered", || up.stats().uploaded == 2);
    let stats = up.shutdown(Duration::from_secs(5));
    assert!(!stats.auth_stopped);
    assert_eq!(spool.stats().files, 0);
    let bearers: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.headers["authorization"].clone())
        .collect();
    assert_eq!(
        bearers,
        [
            "Bearer s3cret-token",
            "Bearer the-new-token",
            "Bearer the-new-token"
        ]
    );
}

#[test]
fn a_bad_new_setting_changes_nothing() {
    let server = Server::start(vec![], ok201());
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    let up = Uploader::start(config(&server.url()), spool.clone()).unwrap();
    let control = up.control();
    let err = control
        .apply(config("http://192.0.2.1:8080"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("plain http:// is allowed only to a loopback host"),
        "{err}"
    );
    assert_eq!(control.current(), config(&server.url()));
    assert_eq!(
        control.apply(config(&server.url())).unwrap(),
        Vec::<&str>::new()
    );
    store(&spool);
    wait_for("delivery", || up.stats().uploaded == 1);
    up.shutdown(Duration::from_secs(5));
}

#[test]
fn a_new_worker_count_replaces_the_workers() {
    let server = Server::start(vec![], ok201());
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    let up = Uploader::start(config(&server.url()), spool.clone()).unwrap();
    let control = up.control();
    assert_eq!(up.stats().workers, 1);
    let three = UploaderConfig {
        concurrency: 3,
        ..config(&server.url())
    };
    assert_eq!(control.apply(three).unwrap(), ["upload-concurrency"]);
    // The old worker sees the change at its next turn and leaves.
    wait_for("three workers", || up.stats().workers == 3);
    let mut ids = store_batches(&spool, 6);
    wait_for("six deliveries", || up.stats().uploaded == 6);
    assert_eq!(
        control.apply(config(&server.url())).unwrap(),
        ["upload-concurrency"]
    );
    wait_for("one worker", || up.stats().workers == 1);
    ids.push(store(&spool).0.batch_id.to_string());
    wait_for("the seventh delivery", || up.stats().uploaded == 7);
    let stats = up.shutdown(Duration::from_secs(5));
    assert_eq!(stats.workers, 0);
    let sent = sent_batch_ids(&server);
    ids.sort();
    assert_eq!(sent, ids, "each batch sent exactly once");
}

#[test]
fn forbidden_also_stops() {
    let server = Server::start(vec![], status(403));
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    store(&spool);
    let up = Uploader::start(config(&server.url()), spool.clone()).unwrap();
    wait_for("auth stop", || up.stats().auth_stopped);
    up.shutdown(Duration::from_secs(5));
    assert_eq!(spool.pending().len(), 1);
}

#[test]
fn server_error_is_retried_then_delivered() {
    let server = Server::start(vec![status(500), status(503)], ok201());
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    let (h, _) = store(&spool);
    let up = Uploader::start(config(&server.url()), spool.clone()).unwrap();
    wait_for("delivery", || up.stats().uploaded == 1);
    let stats = up.shutdown(Duration::from_secs(5));
    assert_eq!((stats.uploaded, stats.retries, stats.rejected), (1, 2, 0));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.headers["idempotency-key"], h.batch_id.to_string());
    }
    assert!(spool.pending().is_empty());
}

/// Delivers one batch through a server that first answers `status` with `Retry-After: value`,
/// then 201, and returns the two requests.
fn requests_around_retry_after(status: u16, value: String) -> Vec<Req> {
    let server = Server::start(
        vec![Action::Respond(status, vec![("Retry-After", value)])],
        ok201(),
    );
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    store(&spool);
    let cfg = UploaderConfig {
        backoff_max: Duration::from_secs(10),
        ..config(&server.url())
    };
    let up = Uploader::start(cfg, spool.clone()).unwrap();
    wait_for("delivery", || up.stats().uploaded == 1);
    up.shutdown(Duration::from_secs(5));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    reqs
}

#[test]
fn retry_after_seconds_is_honoured() {
    let reqs = requests_around_retry_after(503, "1".into());
    let gap = reqs[1].at - reqs[0].at;
    // Without Retry-After the first backoff would be at most 10 ms.
    assert!(gap >= Duration::from_secs(1), "retried after only {gap:?}");
}

#[test]
fn retry_after_date_is_honoured() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    // The date as the uploader reads it: whole seconds, so up to 1 s earlier than asked.
    let not_before = httpdate::parse_http_date(&date).unwrap();
    let reqs = requests_around_retry_after(429, date);
    // Without Retry-After the retry would come within 10 ms of the refusal, about 2 s early.
    assert!(
        reqs[1].wall >= not_before,
        "retried {:?} before the Retry-After date",
        not_before.duration_since(reqs[1].wall).unwrap_or_default()
    );
}

#[test]
fn retry_after_parsing() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    let later = now + Duration::from_secs(90);
    assert_eq!(
        parse_retry_after(&httpdate::fmt_http_date(later), now),
        Some(Duration::from_secs(90))
    );
    let earlier = now - Duration::from_secs(90);
    assert_eq!(
        parse_retry_after(&httpdate::fmt_http_date(earlier), now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-5", now), None);
    assert_eq!(parse_retry_after("", now), None);
}

#[test]
fn retry_after_is_capped_at_backoff_max() {
    let server = Server::start(
        vec![Action::Respond(503, vec![("Retry-After", "3600".into())])],
        ok201(),
    );
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    store(&spool);
    let up = Uploader::start(config(&server.url()), spool.clone()).unwrap();
    // With the cap at 50 ms this finishes; uncapped it would take an hour.
    wait_for("delivery", || up.stats().uploaded == 1);
    up.shutdown(Duration::from_secs(5));
}

#[test]
fn hanging_server_times_out_and_is_retried() {
    let server = Server::start(vec![Action::Hang], ok201());
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    let (h, _) = store(&spool);
    let cfg = UploaderConfig {
        request_timeout: Duration::from_millis(300),
        ..config(&server.url())
    };
    let up = Uploader::start(cfg, spool.clone()).unwrap();
    wait_for("delivery", || up.stats().uploaded == 1);
    let stats = up.shutdown(Duration::from_secs(5));
    assert_eq!((stats.uploaded, stats.retries), (1, 1));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(300));
    assert_eq!(reqs[1].headers["idempotency-key"], h.batch_id.to_string());
}

#[test]
fn connection_refused_is_retried_without_losing_batches() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    store(&spool);
    let up = Uploader::start(config(&format!("http://127.0.0.1:{port}")), spool.clone()).unwrap();
    wait_for("retries", || up.stats().retries >= 3);
    let stats = up.shutdown(Duration::from_secs(5));
    assert_eq!(stats.uploaded, 0);
    assert_eq!(spool.pending().len(), 1);
}

#[test]
fn vanished_file_does_not_block_the_rest() {
    let server = Server::start(vec![], ok201());
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    store(&spool);
    let (b, _) = store(&spool);
    // Delete the oldest file behind the spool's back.
    fs::remove_file(dir.path().join(&spool.pending()[0])).unwrap();
    let up = Uploader::start(config(&server.url()), spool.clone()).unwrap();
    wait_for("delivery of the second", || up.stats().uploaded == 1);
    up.shutdown(Duration::from_secs(5));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].headers["idempotency-key"], b.batch_id.to_string());
    assert!(spool.pending().is_empty());
}

#[test]
fn corrupt_spool_file_is_rejected_locally() {
    let server = Server::start(vec![], ok201());
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    let h = BatchHeader {
        sensor_id: "s".into(),
        batch_id: BatchId::random(),
        created: 1,
        records: 1,
    };
    spool.store(&h, b"not a sealed batch").unwrap();
    let up = Uploader::start(config(&server.url()), spool.clone()).unwrap();
    wait_for("local rejection", || up.stats().rejected == 1);
    up.shutdown(Duration::from_secs(5));
    assert!(server.requests().is_empty());
    assert_eq!(
        fs::read_dir(dir.path().join("rejected")).unwrap().count(),
        1
    );
}

#[test]
fn concurrent_workers_deliver_everything_once() {
    let server = Server::start(vec![], ok201());
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    let ids = store_batches(&spool, 20);
    let cfg = UploaderConfig {
        concurrency: 4,
        ..config(&server.url())
    };
    let up = Uploader::start(cfg, spool.clone()).unwrap();
    wait_for("all uploads", || up.stats().uploaded == 20);
    up.shutdown(Duration::from_secs(5));
    assert_eq!(sent_batch_ids(&server), ids);
    assert!(spool.pending().is_empty());
}

#[test]
fn shutdown_is_prompt_when_idle_and_keeps_undelivered() {
    let server = Server::start(vec![], status(503));
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    store(&spool);
    let cfg = UploaderConfig {
        backoff_initial: Duration::from_secs(60),
        backoff_max: Duration::from_secs(60),
        ..config(&server.url())
    };
    let up = Uploader::start(cfg, spool.clone()).unwrap();
    wait_for("first attempt", || up.stats().retries == 1);
    let stats = up.shutdown(Duration::from_secs(10));
    assert_eq!(stats.uploaded, 0);
    assert_eq!(spool.pending().len(), 1);
    // The worker was waiting in a backoff of up to 60 s; it must not have sent again.
    assert_eq!(server.requests().len(), 1);
}

/// Shutdown comes right after the last window is sealed into the spool: what waits there is
/// delivered then, not only the uploads already in flight.
#[test]
fn shutdown_delivers_what_waits_in_the_spool() {
    let server = Server::start(vec![], ok201());
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    let ids = store_batches(&spool, 10);
    let cfg = UploaderConfig {
        concurrency: 2,
        ..config(&server.url())
    };
    // No time for the workers to take more than a batch each before the shutdown begins.
    let up = Uploader::start(cfg, spool.clone()).unwrap();
    let stats = up.shutdown(Duration::from_secs(10));
    assert_eq!((stats.uploaded, stats.retries), (10, 0));
    assert!(spool.pending().is_empty(), "{:?}", spool.pending());
    assert_eq!(sent_batch_ids(&server), ids);
}

/// A collector that fails at shutdown costs one try: nothing is retried within the grace, and
/// the batches stay for the next start.
#[test]
fn shutdown_stops_at_the_first_failure_and_keeps_the_batches() {
    let server = Server::start(
        vec![],
        Action::Respond(503, vec![("Retry-After", "60".to_owned())]),
    );
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    let cfg = UploaderConfig {
        concurrency: 2,
        backoff_max: Duration::from_secs(60),
        ..config(&server.url())
    };
    let up = Uploader::start(cfg, spool.clone()).unwrap();
    store(&spool);
    store(&spool);
    let stats = up.shutdown(Duration::from_secs(10));
    assert_eq!(stats.uploaded, 0);
    assert_eq!(spool.pending().len(), 2);
    // The two workers may each have sent a batch before the first answer came back; after it,
    // neither sends again, and no batch was sent twice.
    let mut sent = sent_batch_ids(&server);
    assert!((1..=2).contains(&sent.len()), "{sent:?}");
    assert_eq!(stats.retries, sent.len() as u64);
    sent.dedup();
    assert_eq!(sent.len() as u64, stats.retries, "a batch was sent twice");
}

#[test]
fn shutdown_leaves_an_unanswered_upload_in_the_spool() {
    let server = Server::start(vec![Action::Hang], ok201());
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    store(&spool);
    let cfg = UploaderConfig {
        request_timeout: Duration::from_secs(20),
        ..config(&server.url())
    };
    let up = Uploader::start(cfg, spool.clone()).unwrap();
    wait_for("request in flight", || server.requests().len() == 1);
    // The grace ends long before the request could: shutdown returns without it.
    let stats = up.shutdown(Duration::from_millis(200));
    assert_eq!((stats.uploaded, stats.retries), (0, 0));
    assert_eq!(spool.pending().len(), 1);
    assert!(dir.path().join(&spool.pending()[0]).exists());
}

#[test]
fn validate_scheme_rules() {
    let ok = |url: &str| UploaderConfig::new(url, "t").validate();
    for url in [
        "https://collector.example",
        "https://collector.example:8443/base/",
        "https://192.0.2.10",
        "http://127.0.0.1:8080",
        "http://127.3.4.5",
        "http://localhost:9000",
        "HTTP://LOCALHOST",
        "http://[::1]:8080",
    ] {
        assert!(ok(url).is_ok(), "{url}: {:?}", ok(url));
    }
    for url in [
        "http://collector.example",
        "http://192.0.2.10:8080",
        "http://10.0.0.1",
        "http://128.0.0.1",
        "http://[::2]",
        "http://localhost.evil.example",
        "ftp://127.0.0.1",
        "collector.example",
        "https://",
        "https://user@collector.example",
        "https://collector.example:99999",
        "https://collector.example/?x=1",
    ] {
        let err = ok(url).expect_err(url);
        assert!(matches!(err, UploadError::BadUrl { .. }), "{url}: {err}");
        let msg = err.to_string();
        assert!(!msg.contains('\n') && msg.contains(url), "{msg}");
    }
    let msg = ok("http://192.0.2.10").unwrap_err().to_string();
    assert!(msg.contains("loopback"), "{msg}");
    // Start refuses the same way, before touching the network.
    let dir = tempfile::tempdir().unwrap();
    let err = Uploader::start(
        UploaderConfig::new("http://192.0.2.10", "t"),
        spool_in(dir.path()),
    )
    .unwrap_err();
    assert!(matches!(err, UploadError::BadUrl { .. }));
    // Other settings.
    assert!(UploaderConfig::new("https://c.example", "")
        .validate()
        .is_err());
    assert!(UploaderConfig::new("https://c.example", "a b")
        .validate()
        .is_err());
    let zero = UploaderConfig {
        concurrency: 0,
        ..UploaderConfig::new("https://c.example", "t")
    };
    assert!(zero.validate().is_err());
    let d = UploaderConfig::default();
    assert_eq!(d.concurrency, 2);
    assert_eq!(d.request_timeout, Duration::from_secs(30));
    assert_eq!(d.backoff_initial, Duration::from_secs(1));
    assert_eq!(d.backoff_max, Duration::from_secs(300));
    assert!(
        !format!("{:?}", UploaderConfig::new("https://c", "hidden-tok")).contains("hidden-tok")
    );
}

#[test]
fn token_file_is_trimmed_and_must_not_be_empty() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("token");
    fs::write(&p, "  abc.DEF-123\n").unwrap();
    assert_eq!(read_token_file(&p).unwrap(), "abc.DEF-123");
    fs::write(&p, " \n\t").unwrap();
    let err = read_token_file(&p).unwrap_err();
    assert!(
        err.to_string().contains("token") && err.to_string().contains("empty"),
        "{err}"
    );
    let err = read_token_file(&dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

fn tls_server_config(names: &[&str]) -> (Arc<rustls::ServerConfig>, String) {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    (Arc::new(cfg), ck.cert.pem())
}

#[test]
fn https_with_ca_file_delivers() {
    let (tls, pem) = tls_server_config(&["localhost", "127.0.0.1"]);
    let server = Server::start_with(vec![], ok201(), Some(tls));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    fs::write(&ca, pem).unwrap();
    let spool = spool_in(&dir.path().join("spool"));
    let (h, sealed) = store(&spool);
    for host in ["localhost", "127.0.0.1"] {
        let cfg = UploaderConfig {
            ca_file: Some(ca.clone()),
            ..config(&format!("https://{host}:{}", server.port))
        };
        let up = Uploader::start(cfg, spool.clone()).unwrap();
        if host == "localhost" {
            wait_for("https delivery", || up.stats().uploaded == 1);
        }
        up.shutdown(Duration::from_secs(5));
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].headers["idempotency-key"], h.batch_id.to_string());
    assert_eq!(reqs[0].body, sealed);
    assert!(spool.pending().is_empty());
}

#[test]
fn https_with_untrusted_certificate_is_retried_not_sent() {
    let (tls, _) = tls_server_config(&["localhost"]);
    let (_, other_pem) = tls_server_config(&["localhost"]);
    let server = Server::start_with(vec![], ok201(), Some(tls));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("other-ca.pem");
    fs::write(&ca, other_pem).unwrap();
    let spool = spool_in(&dir.path().join("spool"));
    store(&spool);
    let cfg = UploaderConfig {
        ca_file: Some(ca),
        ..config(&format!("https://localhost:{}", server.port))
    };
    let up = Uploader::start(cfg, spool.clone()).unwrap();
    wait_for("failed attempts", || up.stats().retries >= 2);
    let stats = up.shutdown(Duration::from_secs(5));
    assert_eq!(stats.uploaded, 0);
    assert!(
        server.requests().is_empty(),
        "no request may pass an untrusted handshake"
    );
    assert_eq!(spool.pending().len(), 1);
}

#[test]
fn bad_ca_file_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("empty.pem");
    fs::write(&ca, "no certificates here\n").unwrap();
    let cfg = UploaderConfig {
        ca_file: Some(ca.clone()),
        ..config("https://localhost:1")
    };
    let err = Uploader::start(cfg, spool_in(&dir.path().join("s"))).unwrap_err();
    assert!(matches!(err, UploadError::CaFile { .. }), "{err}");
    assert!(err.to_string().contains("empty.pem"), "{err}");
    let cfg = UploaderConfig {
        ca_file: Some(dir.path().join("missing.pem")),
        ..config("https://localhost:1")
    };
    let err = Uploader::start(cfg, spool_in(&dir.path().join("s"))).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}
