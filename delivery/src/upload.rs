//! The uploader: drains the spool to the collector over HTTPS, oldest batch first.
//! Blocking worker threads; backoff with full jitter; Retry-After; permanent refusals go to `rejected/`.
//!
//! Protocol: `POST {url}/api/v1/batches` with the sealed batch as body, `Authorization: Bearer
//! <token>`, `Idempotency-Key: <batch id>` and `Content-Type: application/vnd.dnsensor.batch`.
//! 2xx deletes the batch; 400/404/405/410/413/415/422 move it to `rejected/`; 401/403 stop all
//! uploads (batches stay, capture goes on); anything else (408, 425, 429, 5xx, network errors,
//! timeouts) is retried after a backoff.

use std::fs;
use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rand::RngExt as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use thiserror::Error;

use crate::batch::read_header;
use crate::spool::{Spool, SpooledBatch};

/// Path appended to the collector URL.
pub const BATCHES_PATH: &str = "/api/v1/batches";
/// Media type of a sealed batch.
pub const CONTENT_TYPE: &str = "application/vnd.dnsensor.batch";
/// How often the "uploads stopped" error is repeated while the token is refused.
pub const AUTH_RELOG_INTERVAL: Duration = Duration::from_secs(300);
/// Longest idle wait between spool checks; stores and shutdown wake workers sooner.
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// How to reach the collector.
#[derive(Clone, PartialEq, Eq)]
pub struct UploaderConfig {
    /// Base URL, e.g. `https://collector.example:8443`; `http://` only for loopback hosts.
    pub url: String,
    /// Bearer token.
    pub token: String,
    /// PEM file of CA certificates to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Uploads in flight at once (default 2).
    pub concurrency: usize,
    /// Whole-request timeout (default 30 s).
    pub request_timeout: Duration,
    /// First backoff ceiling after a failure (default 1 s); it doubles per failure.
    pub backoff_initial: Duration,
    /// Largest backoff, and the cap on a server's Retry-After (default 5 min).
    pub backoff_max: Duration,
}

impl Default for UploaderConfig {
    fn default() -> UploaderConfig {
        UploaderConfig {
            url: String::new(),
            token: String::new(),
            ca_file: None,
            concurrency: 2,
            request_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

impl std::fmt::Debug for UploaderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never print it.
        f.debug_struct("UploaderConfig")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("ca_file", &self.ca_file)
            .field("concurrency", &self.concurrency)
            .field("request_timeout", &self.request_timeout)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .finish()
    }
}

/// Why the uploader cannot start. Each message is one line.
#[derive(Debug, Error)]
pub enum UploadError {
    /// The collector URL is unusable or not allowed.
    #[error("collector URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another setting is invalid.
    #[error("uploader: {0}")]
    Config(String),
    /// The token file cannot be used.
    #[error("token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CA file cannot be used.
    #[error("collector CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No system root certificates could be loaded.
    #[error("system root certificates: {0}")]
    Roots(String),
    /// A worker thread could not be spawned.
    #[error("cannot start uploader thread: {0}")]
    Thread(io::Error),
}

/// Counters of an uploader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Batches the collector accepted (2xx).
    pub uploaded: u64,
    /// Batches refused for good and moved to `rejected/`.
    pub rejected: u64,
    /// Failed attempts that will be retried.
    pub retries: u64,
    /// True once a 401/403 stopped all uploads, until a new URL or token is applied.
    pub auth_stopped: bool,
    /// Worker threads alive, including old ones finishing an upload after a new number of
    /// workers was applied.
    pub workers: usize,
}

/// Where a URL's scheme allows it to go.
struct ParsedUrl {
    https: bool,
    host: String,
}

fn bad_url(url: &str, reason: &str) -> UploadError {
    UploadError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_url(url: &str) -> Result<ParsedUrl, UploadError> {
    let lower = url.to_ascii_lowercase();
    let (https, rest) = if let Some(r) = lower.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = lower.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad_url(
            url,
            "must start with https:// (or http:// for loopback)",
        ));
    };
    if rest.contains(['?', '#']) {
        return Err(bad_url(url, "must not have a query or fragment"));
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad_url(url, "contains whitespace"));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err(bad_url(url, "must not contain user information"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad_url(url, "unterminated [IPv6 address]"))?;
        if h.parse::<Ipv6Addr>().is_err() {
            return Err(bad_url(url, "bad IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad_url(url, "junk after ]"))?,
            ),
        };
        (h, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad_url(url, "has no host"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad_url(url, "bad port"));
        }
    }
    Ok(ParsedUrl {
        https,
        host: host.to_owned(),
    })
}

/// True for 127.0.0.0/8, ::1 and `localhost`.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback())
}

impl UploaderConfig {
    /// A configuration with the defaults and the given URL and token.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> UploaderConfig {
        UploaderConfig {
            url: url.into(),
            token: token.into(),
            ..UploaderConfig::default()
        }
    }

    /// Checks the settings: `https://`, or `http://` only to 127.0.0.0/8, ::1 or localhost; a
    /// token that fits in a header; positive concurrency, timeout and backoffs.
    pub fn validate(&self) -> Result<(), UploadError> {
        let parsed = parse_url(&self.url)?;
        if !parsed.https && !is_loopback_host(&parsed.host) {
            return Err(bad_url(
                &self.url,
                "plain http:// is allowed only to a loopback host (127.0.0.0/8, ::1, localhost); use https://",
            ));
        }
        validate_token(&self.token).map_err(UploadError::Config)?;
        if self.concurrency == 0 || self.concurrency > 64 {
            return Err(UploadError::Config(format!(
                "concurrency {} must be between 1 and 64",
                self.concurrency
            )));
        }
        if self.request_timeout.is_zero() {
            return Err(UploadError::Config(
                "request timeout must be positive".into(),
            ));
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return Err(UploadError::Config(format!(
                "backoff must satisfy 0 < initial ({:?}) <= max ({:?})",
                self.backoff_initial, self.backoff_max
            )));
        }
        Ok(())
    }

    /// The full endpoint: the URL without trailing slashes, plus [`BATCHES_PATH`].
    pub fn endpoint(&self) -> String {
        format!("{}{BATCHES_PATH}", self.url.trim_end_matches('/'))
    }
}

fn validate_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("token is empty".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("token must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// Reads a bearer token from a file: surrounding whitespace is trimmed; an empty token is an error.
pub fn read_token_file(path: &Path) -> Result<String, UploadError> {
    let err = |reason: String| UploadError::TokenFile {
        path: path.to_owned(),
        reason,
    };
    let meta = fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > 64 * 1024 {
        return Err(err(format!("{} bytes is too long for a token", meta.len())));
    }
    let text = fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.trim();
    validate_token(token).map_err(err)?;
    Ok(token.to_owned())
}

/// Loads the trust anchors: the CA file if given, else the system roots.
fn load_roots(
    config: &UploaderConfig,
) -> Result<Vec<ureq::tls::Certificate<'static>>, UploadError> {
    if let Some(path) = &config.ca_file {
        let ca_err = |reason: String| UploadError::CaFile {
            path: path.clone(),
            reason,
        };
        let mut out = Vec::new();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_err(e.to_string()))? {
            let cert = cert.map_err(|e| ca_err(e.to_string()))?;
            out.push(ureq::tls::Certificate::from_der(cert.as_ref()).to_owned());
        }
        if out.is_empty() {
            return Err(ca_err("no PEM certificate in it".into()));
        }
        return Ok(out);
    }
    if !parse_url(&config.url)?.https {
        // Loopback http needs no trust anchors; don't fail on a machine without any.
        return Ok(Vec::new());
    }
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        log::warn!("system root certificates: {e}");
    }
    if found.certs.is_empty() {
        return Err(UploadError::Roots(
            "none found; install the system CA bundle or give a CA file".into(),
        ));
    }
    Ok(found
        .certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect())
}

fn build_agent(config: &UploaderConfig) -> Result<ureq::Agent, UploadError> {
    let roots = load_roots(config)?;
    // ring, chosen explicitly, so that no other provider (aws-lc-rs) is needed or picked up.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
        .unversioned_rustls_crypto_provider(provider)
        .build();
    let agent_config = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(config.request_timeout))
        .http_status_as_error(false)
        // A redirect of a POST is never what the collector means; treat it as an answer.
        .max_redirects(0)
        // No proxy from the environment: the sensor talks to its collector directly.
        .proxy(None)
        .user_agent(concat!("dnsensor/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(ureq::Agent::new_with_config(agent_config))
}

/// Parses Retry-After: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse().unwrap_or(u64::MAX)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What to do with a batch after the collector answered `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted (2xx): delete it.
    Delivered,
    /// Refused for good: move it to `rejected/`.
    Reject,
    /// The token was refused: stop all uploads.
    AuthStop,
    /// Try again later.
    Retry,
}

/// Classifies an HTTP status according to the collector protocol.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        400 | 404 | 405 | 410 | 413 | 415 | 422 => Verdict::Reject,
        401 | 403 => Verdict::AuthStop,
        // 408, 425, 429, 5xx, and anything unexpected: keep the batch and try again.
        _ => Verdict::Retry,
    }
}

#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

/// What an upload is made with. Replaced whole when the settings change, so an upload in flight
/// keeps the ones it started with.
struct Settings {
    config: UploaderConfig,
    endpoint: String,
    agent: ureq::Agent,
}

impl Settings {
    fn new(config: UploaderConfig) -> Result<Settings, UploadError> {
        config.validate()?;
        Ok(Settings {
            agent: build_agent(&config)?,
            endpoint: config.endpoint(),
            config,
        })
    }
}

struct Shared {
    settings: RwLock<Arc<Settings>>,
    /// Workers started for another number of workers than the current one exit at their next
    /// turn; this counts those changes.
    generation: AtomicU64,
    workers: Mutex<Vec<JoinHandle<()>>>,
    spool: Spool,
    stop: AtomicBool,
    /// Set by [`Uploader::shutdown`]: until this instant, workers deliver what waits in the
    /// spool without waiting for anything, then exit.
    drain_until: Mutex<Option<Instant>>,
    auth_stopped: AtomicBool,
    uploaded: AtomicU64,
    rejected: AtomicU64,
    retries: AtomicU64,
    backoff: Mutex<Backoff>,
    running: Mutex<usize>,
    exited: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn stats(&self) -> UploadStats {
        UploadStats {
            uploaded: self.uploaded.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            auth_stopped: self.auth_stopped.load(Ordering::Relaxed),
            workers: *lock(&self.running),
        }
    }

    /// Time left before the next attempt may start, if any.
    fn backoff_remaining(&self) -> Option<Duration> {
        let b = lock(&self.backoff);
        let left = b.not_before?.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some(left)
    }

    fn succeeded(&self) {
        let mut b = lock(&self.backoff);
        b.failures = 0;
        b.not_before = None;
    }

    /// Records a failure: the next attempt waits a random time in [0, min(max, initial·2^n)]
    /// ("full jitter"), and at least the server's Retry-After (capped at `backoff_max`).
    fn failed(&self, retry_after: Option<Duration>) -> Duration {
        let config = &self.settings().config;
        let mut b = lock(&self.backoff);
        b.failures = b.failures.saturating_add(1);
        let exp = b.failures.saturating_sub(1).min(30);
        let ceiling = config
            .backoff_initial
            .saturating_mul(1u32 << exp)
            .min(config.backoff_max);
        let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let mut delay = Duration::from_nanos(rand::rng().random_range(0..=ceiling_nanos));
        if let Some(ra) = retry_after {
            delay = delay.max(ra.min(config.backoff_max));
        }
        let until = Instant::now() + delay;
        b.not_before = Some(b.not_before.map_or(until, |nb| nb.max(until)));
        delay
    }
}

/// Reads an [`Uploader`]'s counters; see [`Uploader::stats_handle`].
#[derive(Clone)]
pub struct UploadStatsHandle(Arc<Shared>);

impl UploadStatsHandle {
    /// Current counters.
    pub fn stats(&self) -> UploadStats {
        self.0.stats()
    }
}

impl std::fmt::Debug for UploadStatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UploadStatsHandle")
            .field(&self.0.stats())
            .finish()
    }
}

/// Drains the spool to the collector on worker threads until shut down.
pub struct Uploader {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("endpoint", &self.shared.settings().endpoint)
            .field("stats", &self.shared.stats())
            .finish()
    }
}

impl Uploader {
    /// Validates `config`, sets up TLS and starts `concurrency` workers, which upload what is
    /// already in the spool and then each batch promptly as it is stored.
    pub fn start(config: UploaderConfig, spool: Spool) -> Result<Uploader, UploadError> {
        let settings = Settings::new(config)?;
        let (endpoint, concurrency) = (settings.endpoint.clone(), settings.config.concurrency);
        let shared = Arc::new(Shared {
            settings: RwLock::new(Arc::new(settings)),
            generation: AtomicU64::new(0),
            workers: Mutex::new(Vec::new()),
            spool,
            stop: AtomicBool::new(false),
            drain_until: Mutex::new(None),
            auth_stopped: AtomicBool::new(false),
            uploaded: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            backoff: Mutex::new(Backoff::default()),
            running: Mutex::new(0),
            exited: Condvar::new(),
        });
        // Dropping the uploader on an error stops the workers already started.
        let uploader = Uploader {
            shared: Arc::clone(&shared),
        };
        spawn_workers(&shared, concurrency, 0)?;
        log::info!("uploading to {endpoint} with {concurrency} workers");
        Ok(uploader)
    }

    /// Current counters.
    pub fn stats(&self) -> UploadStats {
        self.shared.stats()
    }

    /// A handle that reads the counters from another thread (a metrics endpoint), also after
    /// shutdown.
    pub fn stats_handle(&self) -> UploadStatsHandle {
        UploadStatsHandle(Arc::clone(&self.shared))
    }

    /// A handle that changes the settings while the uploader runs (a reload).
    pub fn control(&self) -> UploadControl {
        UploadControl(Arc::clone(&self.shared))
    }

    /// Delivers what waits in the spool, the batch sealed at shutdown included, for up to
    /// `grace`, then stops. Each batch is tried once: the first failure, or a backoff still
    /// running, ends the delivery, so a collector that is down costs no time. Batches not
    /// delivered stay in the spool for the next start. Returns the final counters.
    pub fn shutdown(self, grace: Duration) -> UploadStats {
        let deadline = Instant::now() + grace;
        *lock(&self.shared.drain_until) = Some(deadline);
        self.shared.spool.wake_all();
        let mut running = lock(&self.shared.running);
        while *running > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            running = self
                .shared
                .exited
                .wait_timeout(running, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let all_done = *running == 0;
        drop(running);
        self.signal_stop();
        if all_done {
            for h in lock(&self.shared.workers).drain(..) {
                let _ = h.join();
            }
        } else {
            log::warn!(
                "uploader: uploads still in flight after {grace:?}; leaving them to the spool"
            );
        }
        self.shared.stats()
    }

    fn signal_stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.spool.wake_all();
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Changes a running [`Uploader`]'s settings; see [`Uploader::control`].
#[derive(Clone)]
pub struct UploadControl(Arc<Shared>);

impl std::fmt::Debug for UploadControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UploadControl")
            .field(&self.0.settings().config)
            .finish()
    }
}

impl UploadControl {
    /// The settings in force.
    pub fn current(&self) -> UploaderConfig {
        self.0.settings().config.clone()
    }

    /// Puts `config` in force from the next upload on and returns the names of the settings
    /// that changed (empty when none did). The CA file is read again even when its name is the
    /// same, since a reload is how a renewed one is taken in.
    ///
    /// A bad `config` is an error and changes nothing. Otherwise the backoff is forgotten, so the
    /// waiting batches are tried at once, and a new URL or token lifts a stop for a refused
    /// token. A new number of workers starts a fresh set; the old workers finish the upload they
    /// are in and exit.
    pub fn apply(&self, config: UploaderConfig) -> Result<Vec<&'static str>, UploadError> {
        let s = &self.0;
        let settings = Settings::new(config)?;
        let new = &settings.config;
        let old = s.settings().config.clone();
        let changed: Vec<&'static str> = [
            ("collector-url", new.url != old.url),
            ("token", new.token != old.token),
            ("collector-ca", new.ca_file != old.ca_file),
            ("upload-concurrency", new.concurrency != old.concurrency),
            ("upload-timeout", new.request_timeout != old.request_timeout),
            (
                "backoff",
                (new.backoff_initial, new.backoff_max) != (old.backoff_initial, old.backoff_max),
            ),
        ]
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect();
        let new_credentials = new.url != old.url || new.token != old.token;
        let concurrency = new.concurrency;
        *s.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        s.succeeded();
        if new_credentials && s.auth_stopped.swap(false, Ordering::SeqCst) {
            log::info!("uploader: new collector URL or token; uploads resume");
        }
        if concurrency != old.concurrency {
            let generation = s.generation.fetch_add(1, Ordering::SeqCst) + 1;
            lock(&s.workers).retain(|h| !h.is_finished());
            spawn_workers(s, concurrency, generation)?;
        }
        s.spool.wake_all();
        Ok(changed)
    }
}

/// Starts `count` workers of `generation`, keeping their handles for shutdown.
fn spawn_workers(shared: &Arc<Shared>, count: usize, generation: u64) -> Result<(), UploadError> {
    for i in 0..count {
        let s = Arc::clone(shared);
        *lock(&shared.running) += 1;
        let spawned = std::thread::Builder::new()
            .name(format!("dnsensor-upload-{i}"))
            .spawn(move || {
                worker(&s, i, generation);
                *lock(&s.running) -= 1;
                s.exited.notify_all();
            });
        match spawned {
            Ok(h) => lock(&shared.workers).push(h),
            Err(e) => {
                *lock(&shared.running) -= 1;
                return Err(UploadError::Thread(e));
            }
        }
    }
    Ok(())
}

fn worker(s: &Shared, index: usize, generation: u64) {
    let mut last_auth_log: Option<Instant> = None;
    loop {
        let seen = s.spool.generation();
        if s.stop.load(Ordering::SeqCst) || s.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if let Some(until) = *lock(&s.drain_until) {
            // Shutting down: one try per batch while the grace lasts. A failure ends the delivery
            // for every worker (whatever its backoff), so no batch is tried twice.
            let give_up = Instant::now() >= until
                || s.auth_stopped.load(Ordering::SeqCst)
                || s.backoff_remaining().is_some();
            if give_up {
                return;
            }
            match s.spool.claim_oldest() {
                Some(batch) => {
                    if upload_one(s, &batch) == Upload::Kept {
                        *lock(&s.drain_until) = Some(Instant::now());
                    }
                }
                None => return,
            }
            continue;
        }
        if s.auth_stopped.load(Ordering::SeqCst) {
            // One worker repeats the alarm so that it is not lost in the log.
            if index == 0 {
                let due = last_auth_log.is_none_or(|t| t.elapsed() >= AUTH_RELOG_INTERVAL);
                if due {
                    if last_auth_log.is_some() {
                        log_auth_stop(s, None);
                    }
                    last_auth_log = Some(Instant::now());
                }
            }
            s.spool
                .wait_for_change(seen, AUTH_RELOG_INTERVAL.min(IDLE_WAIT));
            continue;
        }
        if let Some(wait) = s.backoff_remaining() {
            s.spool.wait_for_change(seen, wait);
            continue;
        }
        match s.spool.claim_oldest() {
            Some(batch) => {
                upload_one(s, &batch);
            }
            None => s.spool.wait_for_change(seen, IDLE_WAIT),
        }
    }
}

fn log_auth_stop(s: &Shared, status: Option<u16>) {
    let st = s.spool.stats();
    let why = status.map_or_else(|| "earlier".to_owned(), |c| format!("with HTTP {c}"));
    log::error!(
        "UPLOADS STOPPED: the collector at {} refused the upload token ({why}). Capture goes on and \
         {} batches ({} bytes) are waiting in the spool {}. Fix the token file and reload (SIGHUP) or restart the sensor.",
        s.settings().endpoint,
        st.files,
        st.bytes,
        s.spool.dir().display()
    );
}

/// What became of a claimed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upload {
    /// Delivered, refused for good, or gone: it has left the spool's queue.
    Done,
    /// Back in the spool to be tried again later.
    Kept,
}

/// Uploads one claimed batch.
fn upload_one(s: &Shared, batch: &SpooledBatch) -> Upload {
    let data = match fs::read(&batch.path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log::warn!(
                "uploader: {} vanished from the spool; skipping it",
                batch.path.display()
            );
            s.spool.forget_missing(batch);
            return Upload::Done;
        }
        Err(e) => {
            log::error!("uploader: cannot read {}: {e}", batch.path.display());
            s.failed(None);
            s.spool.release(batch);
            return Upload::Kept;
        }
    };
    let header = match read_header(&data) {
        Ok(h) => h,
        Err(e) => {
            // A corrupt local file will never be accepted; keep it for inspection.
            log::error!(
                "uploader: {} is not a valid batch ({e}); moving it to rejected/",
                batch.path.display()
            );
            return reject(s, batch);
        }
    };
    let id = header.batch_id.to_string();
    let settings = s.settings();
    let result = settings
        .agent
        .post(&settings.endpoint)
        .header(
            "Authorization",
            &format!("Bearer {}", settings.config.token),
        )
        .header("Idempotency-Key", &id)
        .header("Content-Type", CONTENT_TYPE)
        .send(&data[..]);
    let mut response = match result {
        Ok(r) => r,
        Err(e) => {
            s.retries.fetch_add(1, Ordering::Relaxed);
            let delay = s.failed(None);
            log::warn!("upload of batch {id} failed: {e}; retrying in {delay:.1?}");
            s.spool.release(batch);
            return Upload::Kept;
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    // Read a little of the body for the log and so that the connection can be reused.
    let mut body = Vec::new();
    let _ = response
        .body_mut()
        .as_reader()
        .take(2048)
        .read_to_end(&mut body);
    let body = String::from_utf8_lossy(&body);
    let body = body.trim();
    match verdict(status) {
        Verdict::Delivered => {
            s.succeeded();
            s.uploaded.fetch_add(1, Ordering::Relaxed);
            log::debug!("batch {id} delivered (HTTP {status})");
            if let Err(e) = s.spool.delivered(batch) {
                log::error!("uploader: batch {id} delivered but {e}");
            }
            Upload::Done
        }
        Verdict::Reject => {
            s.succeeded();
            log::error!(
                "collector refused batch {id} for good (HTTP {status}: {body}); moving it to {}",
                s.spool.rejected_dir().display()
            );
            reject(s, batch)
        }
        Verdict::AuthStop => {
            s.auth_stopped.store(true, Ordering::SeqCst);
            s.spool.release(batch);
            log_auth_stop(s, Some(status));
            Upload::Kept
        }
        Verdict::Retry => {
            s.retries.fetch_add(1, Ordering::Relaxed);
            let delay = s.failed(retry_after);
            log::warn!(
                "collector answered HTTP {status} for batch {id} ({body}); retrying in {delay:.1?}"
            );
            s.spool.release(batch);
            Upload::Kept
        }
    }
}

fn reject(s: &Shared, batch: &SpooledBatch) -> Upload {
    match s.spool.reject(batch) {
        Ok(_) => {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            Upload::Done
        }
        Err(e) => {
            log::error!("uploader: {e}");
            // Could not move it: wait before touching it again rather than spinning.
            s.failed(None);
            Upload::Kept
        }
    }
}
