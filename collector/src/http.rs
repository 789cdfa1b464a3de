//! The HTTP API: the batch upload endpoint and the two query endpoints, with bearer-token
//! checks, body limits, and the mapping from every failure to its documented status code.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use dnsensor_delivery::batch::{self, BatchError, BatchId};
use dnsensor_delivery::keys::SecretKey;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use crate::cof::parse_ndjson;
use crate::query::{self, Params};
use crate::stats::CollectorStats;
use crate::store::{BatchMeta, Store, StoreOutcome};
use crate::tls::TlsListener;

/// Everything a request handler needs; shared by all connections.
pub(crate) struct AppState {
    pub store: Arc<Store>,
    pub key: SecretKey,
    pub token: String,
    pub max_body_bytes: usize,
    pub max_plaintext_bytes: usize,
    /// Batches being opened and merged at once. Each may decompress to
    /// `max_plaintext_bytes`, and merges queue on the one writer anyway, so a few suffice.
    pub batch_slots: Arc<tokio::sync::Semaphore>,
    pub stats: Arc<CollectorStats>,
}

/// Default number of [`AppState::batch_slots`].
pub(crate) const BATCH_SLOTS: usize = 2;

/// The peer's address as handlers see it, for the logs. Our own type so that it can be filled
/// in from both the plain and the TLS listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl Connected<axum::serve::IncomingStream<'_, TlsListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// The API's routes.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/batches", post(post_batch))
        .route("/api/v1/rrset/{name}", get(get_rrset))
        .route("/api/v1/rdata/{value}", get(get_rdata))
        .with_state(state)
}

/// A refused request: its status and the reason, which goes both into the JSON body and
/// into the warning log.
struct Reject {
    status: StatusCode,
    reason: String,
    /// Set when the request body was left unread: the connection cannot carry another request
    /// then, and saying so stops a client from reusing it and failing its next request.
    close: bool,
}

fn reject(status: StatusCode, reason: impl Into<String>) -> Reject {
    Reject {
        status,
        reason: reason.into(),
        close: false,
    }
}

impl Reject {
    fn closing(mut self) -> Reject {
        self.close = true;
        self
    }

    fn into_response(self, stats: &CollectorStats, peer: PeerAddr, what: &str) -> Response {
        stats.refuse(self.status.as_u16());
        if self.status.is_server_error() {
            log::error!("{what} from {}: {}", peer.0, self.reason);
        } else {
            log::warn!("rejected {what} from {}: {}", peer.0, self.reason);
        }
        let mut resp = (self.status, axum::Json(json!({ "error": self.reason }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.close {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guessed
/// token was right. (The length still shows; a token is long random text, so that is moot.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn check_token(headers: &HeaderMap, token: &str) -> Result<(), Reject> {
    let unauthorized = |why: &str| reject(StatusCode::UNAUTHORIZED, why);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization header"))?
        .as_bytes();
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let presented = match value.split_at_checked(7) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest,
        _ => return Err(unauthorized("Authorization is not a bearer token")),
    };
    if constant_time_eq(presented, token.as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("wrong bearer token"))
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn post_batch(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let stats = Arc::clone(&state.stats);
    match receive_batch(state, &headers, body).await {
        Ok(resp) => resp,
        Err(r) => r.into_response(&stats, peer, "batch upload"),
    }
}

async fn receive_batch(
    state: Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Reject> {
    // An unauthenticated body is not worth reading.
    check_token(headers, &state.token).map_err(Reject::closing)?;
    let limit = state.max_body_bytes;
    let too_large = || {
        reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than {limit} bytes"),
        )
        .closing()
    };
    // Refuse on the declared length first so that an oversize upload is not read at all.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(too_large());
    }
    let body: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(e) => {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            )
            .closing())
        }
    };
    let key_id = idempotency_key(headers)?;
    let _slot = Arc::clone(&state.batch_slots)
        .acquire_owned()
        .await
        .map_err(|e| reject(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // Opening, decompressing, parsing and the SQLite transaction all block.
    tokio::task::spawn_blocking(move || process_batch(&state, key_id, &body))
        .await
        .unwrap_or_else(|e| {
            Err(reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("batch worker failed: {e}"),
            ))
        })
}

fn idempotency_key(headers: &HeaderMap) -> Result<BatchId, Reject> {
    let bad = |why: &str| reject(StatusCode::BAD_REQUEST, why);
    let text = headers
        .get("idempotency-key")
        .ok_or_else(|| bad("missing Idempotency-Key header"))?
        .to_str()
        .map_err(|_| bad("Idempotency-Key is not text"))?;
    // The protocol says 32 lowercase hex digits; insist on it so ids compare as text.
    let well_formed = text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(bad("Idempotency-Key is not 32 lowercase hex digits"));
    }
    BatchId::from_str(text).map_err(|_| bad("Idempotency-Key is not a batch id"))
}

fn batch_error(e: BatchError) -> Reject {
    let status = match e {
        BatchError::Truncated
        | BatchError::BadMagic
        | BatchError::UnsupportedVersion(_)
        | BatchError::BadHeader(_) => StatusCode::BAD_REQUEST,
        BatchError::Open | BatchError::Decompress(_) => StatusCode::UNPROCESSABLE_ENTITY,
        BatchError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
    };
    reject(status, format!("batch: {e}"))
}

fn process_batch(state: &AppState, key_id: BatchId, sealed: &[u8]) -> Result<Response, Reject> {
    // The clear header is checked before the costly open so a mislabelled upload is cheap to
    // refuse; it is only trusted once `open` has authenticated it as AAD.
    let header = batch::read_header(sealed).map_err(batch_error)?;
    if header.batch_id != key_id {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            format!(
                "Idempotency-Key {key_id} does not match the batch id {}",
                header.batch_id
            ),
        ));
    }
    let opened = batch::open(&state.key, sealed, state.max_plaintext_bytes).map_err(batch_error)?;
    let header = opened.header;
    let records =
        parse_ndjson(&opened.ndjson).map_err(|e| reject(StatusCode::BAD_REQUEST, e.to_string()))?;
    if records.len() != usize::try_from(header.records).unwrap_or(usize::MAX) {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            format!(
                "header says {} records, the payload has {}",
                header.records,
                records.len()
            ),
        ));
    }
    let id = header.batch_id.to_string();
    let meta = BatchMeta {
        batch_id: &id,
        sensor_id: &header.sensor_id,
        created: header.created,
        records: header.records,
    };
    let outcome = state
        .store
        .store_batch(&meta, &records, now_unix())
        .map_err(|e| {
            reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing batch {id} failed: {e}"),
            )
        })?;
    let body = json!({ "batch_id": id, "records": header.records });
    Ok(match outcome {
        StoreOutcome::Stored => {
            CollectorStats::add(&state.stats.batches_stored, 1);
            CollectorStats::add(&state.stats.records_stored, u64::from(header.records));
            log::info!(
                "stored batch {id} from sensor {}: {} records",
                header.sensor_id,
                header.records
            );
            (StatusCode::CREATED, axum::Json(body)).into_response()
        }
        StoreOutcome::Duplicate => {
            CollectorStats::add(&state.stats.batches_duplicate, 1);
            log::info!(
                "batch {id} from sensor {} was already stored; not counted again",
                header.sensor_id
            );
            (StatusCode::OK, axum::Json(body)).into_response()
        }
    })
}

async fn get_rrset(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
) -> Response {
    answer_query(&state, &headers, &uri, |p| query::rrset_query(&name, p))
        .await
        .unwrap_or_else(|r| r.into_response(&state.stats, peer, "rrset query"))
}

async fn get_rdata(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path(value): Path<String>,
) -> Response {
    answer_query(&state, &headers, &uri, |p| query::rdata_query(&value, p))
        .await
        .unwrap_or_else(|r| r.into_response(&state.stats, peer, "rdata query"))
}

async fn answer_query(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    uri: &Uri,
    build: impl FnOnce(&Params) -> Result<crate::store::Query, String>,
) -> Result<Response, Reject> {
    check_token(headers, &state.token)?;
    let params = axum::extract::Query::<Params>::try_from_uri(uri)
        .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("query string: {e}")))?
        .0;
    let q = build(&params).map_err(|e| reject(StatusCode::BAD_REQUEST, e))?;
    let store = Arc::clone(&state.store);
    let rows = tokio::task::spawn_blocking(move || store.query(&q))
        .await
        .map_err(|e| reject(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("query failed: {e}"),
            )
        })?;
    let body = query::render(&rows).map_err(|e| {
        reject(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored rdata: {e}"),
        )
    })?;
    CollectorStats::add(&state.stats.queries_answered, 1);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check() {
        let mut h = HeaderMap::new();
        assert!(check_token(&h, "secret").is_err());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer secret"),
        );
        assert!(check_token(&h, "secret").is_ok());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secreT"),
        );
        assert!(check_token(&h, "secret").is_err());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic secret"),
        );
        assert!(check_token(&h, "secret").is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert!(check_token(&h, "secret").is_err());
    }
}
