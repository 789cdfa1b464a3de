//! The sealed batch: one flush of COF NDJSON, zstd-compressed and HPKE-sealed to the collector.
//! A clear header (version, sensor id, batch id, created, record count) is bound as AAD.
//!
//! Layout (all integers big-endian; `docs/batch-format.md` is the normative description):
//!
//! ```text
//! "DNSB" | version u8 = 1 | sensor-id length u8 (1..=255) | sensor id (UTF-8)
//!        | batch id [16] | created u64 (unix seconds) | records u32        <- clear header = AAD
//! | enc [32] (HPKE encapsulated key) | ciphertext (zstd frame + 16-byte tag)
//! ```

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::rand_core::CryptoRng;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use thiserror::Error;

use crate::keys::{BatchKem, PublicKey, SecretKey};

/// Version byte of the layout described in `docs/batch-format.md`.
pub const FORMAT_VERSION: u8 = 1;
/// The four bytes every batch starts with.
pub const MAGIC: [u8; 4] = *b"DNSB";
/// The HPKE `info` string of version 1 (RFC 9180 §5.1, mode base).
pub const HPKE_INFO: &[u8] = b"dnsensor batch v1";
/// Length of the HPKE encapsulated key (X25519 public key).
pub const ENC_LEN: usize = 32;
/// Length of the ChaCha20-Poly1305 tag at the end of the ciphertext.
pub const TAG_LEN: usize = 16;
/// zstd level used by [`seal`] and [`crate::SealingSink`]: −3, one of zstd's fast levels.
/// `bench/seal.sh` measured format → zstd → seal at 1.04–1.31M records/s on one core with it,
/// against 0.87–1.17M at level 1, and the goal is at least 1M so that sealing never holds the
/// flusher back; the price is 55.7 sealed bytes a record instead of 38.4 (docs/benchmarks.md).
/// `--zstd-level` picks another.
pub const DEFAULT_ZSTD_LEVEL: i32 = -3;
/// Largest zstd window (log2 bytes) that [`open`] accepts, which bounds the decoder's memory.
/// Levels 1–19 on batches of 10,000 lines stay well below it.
pub const MAX_WINDOW_LOG: u32 = 23;

/// Fixed part of the header after the sensor id: batch id, created, records.
const FIXED_TAIL: usize = 16 + 8 + 4;

/// Why a batch could not be built, parsed or opened.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The input ends before the header, the encapsulated key or the tag is complete.
    #[error("batch truncated")]
    Truncated,
    /// The input does not start with `DNSB`.
    #[error("not a dnsensor batch (bad magic)")]
    BadMagic,
    /// The version byte is not one this build can read.
    #[error("unsupported batch format version {0}")]
    UnsupportedVersion(u8),
    /// A header field is invalid (e.g. a sensor id that is empty or not UTF-8).
    #[error("bad batch header: {0}")]
    BadHeader(String),
    /// HPKE authentication failed: wrong key, or the header or ciphertext was altered.
    #[error("batch cannot be opened: wrong key or tampered")]
    Open,
    /// The decrypted payload is not a valid zstd stream (or compression failed when sealing).
    #[error("batch payload: {0}")]
    Decompress(String),
    /// The decompressed payload exceeds the caller's limit.
    #[error("batch payload larger than {limit} bytes")]
    TooLarge {
        /// The `max_plaintext` given to [`open`].
        limit: usize,
    },
}

/// A batch's identity: 16 random bytes. Shown as 32 lowercase hex digits; it is the
/// idempotency key of the upload.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct BatchId(pub [u8; 16]);

impl BatchId {
    /// A fresh random id.
    pub fn random() -> BatchId {
        let mut b = [0u8; 16];
        rand::fill(&mut b[..]);
        BatchId(b)
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex::encode(&self.0))
    }
}

impl FromStr for BatchId {
    type Err = BatchError;
    /// Parses 32 hex digits.
    fn from_str(s: &str) -> Result<BatchId, BatchError> {
        let mut b = [0u8; 16];
        crate::hex::decode_into(s, &mut b)
            .ok_or_else(|| BatchError::BadHeader(format!("batch id {s:?} is not 32 hex digits")))?;
        Ok(BatchId(b))
    }
}

/// The clear header of a batch, readable without a key and authenticated as AAD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Who produced the batch: 1–255 bytes of UTF-8 without control characters.
    pub sensor_id: String,
    /// Unique id, used as the idempotency key.
    pub batch_id: BatchId,
    /// When the batch was sealed, in unix seconds.
    pub created: u64,
    /// Number of COF lines in the payload (as the sensor counted them; not verified by [`open`]).
    pub records: u32,
}

impl BatchHeader {
    /// Encodes the header (magic to records); these bytes are also the AAD.
    pub fn encode(&self) -> Result<Vec<u8>, BatchError> {
        validate_sensor_id(self.sensor_id.as_bytes())?;
        let id = self.sensor_id.as_bytes();
        let mut out = Vec::with_capacity(6 + id.len() + FIXED_TAIL);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        // validate_sensor_id guarantees 1..=255 bytes, so the length fits in a u8.
        out.push(u8::try_from(id.len()).map_err(|_| sensor_id_len_error(id.len()))?);
        out.extend_from_slice(id);
        out.extend_from_slice(&self.batch_id.0);
        out.extend_from_slice(&self.created.to_be_bytes());
        out.extend_from_slice(&self.records.to_be_bytes());
        Ok(out)
    }
}

/// A batch after [`open`]: its header and the decompressed COF NDJSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedBatch {
    /// The authenticated header.
    pub header: BatchHeader,
    /// The COF lines, exactly as the sensor flushed them.
    pub ndjson: Vec<u8>,
}

fn sensor_id_len_error(len: usize) -> BatchError {
    BatchError::BadHeader(format!("sensor id is {len} bytes; must be 1 to 255"))
}

fn validate_sensor_id(id: &[u8]) -> Result<&str, BatchError> {
    if id.is_empty() || id.len() > 255 {
        return Err(sensor_id_len_error(id.len()));
    }
    let s = std::str::from_utf8(id)
        .map_err(|_| BatchError::BadHeader("sensor id is not UTF-8".into()))?;
    if s.chars().any(char::is_control) {
        return Err(BatchError::BadHeader(
            "sensor id contains control characters".into(),
        ));
    }
    Ok(s)
}

/// Parses the clear header; returns it and its length in bytes.
fn parse_header(sealed: &[u8]) -> Result<(BatchHeader, usize), BatchError> {
    // Check magic and version on whatever prefix exists, so that a short foreign file is
    // reported as foreign rather than as truncated.
    let magic_len = sealed.len().min(4);
    if sealed[..magic_len] != MAGIC[..magic_len] {
        return Err(BatchError::BadMagic);
    }
    let version = *sealed.get(4).ok_or(BatchError::Truncated)?;
    if version != FORMAT_VERSION {
        return Err(BatchError::UnsupportedVersion(version));
    }
    let id_len = usize::from(*sealed.get(5).ok_or(BatchError::Truncated)?);
    let end = 6 + id_len + FIXED_TAIL;
    let header = sealed.get(..end).ok_or(BatchError::Truncated)?;
    let sensor_id = validate_sensor_id(&header[6..6 + id_len])?.to_owned();
    let tail = &header[6 + id_len..];
    let mut batch_id = [0u8; 16];
    batch_id.copy_from_slice(&tail[..16]);
    let mut created = [0u8; 8];
    created.copy_from_slice(&tail[16..24]);
    let mut records = [0u8; 4];
    records.copy_from_slice(&tail[24..28]);
    Ok((
        BatchHeader {
            sensor_id,
            batch_id: BatchId(batch_id),
            created: u64::from_be_bytes(created),
            records: u32::from_be_bytes(records),
        },
        end,
    ))
}

/// Reads the clear header without a key. It is not authenticated until [`open`] succeeds.
pub fn read_header(sealed: &[u8]) -> Result<BatchHeader, BatchError> {
    parse_header(sealed).map(|(h, _)| h)
}

/// Seals `ndjson` at [`DEFAULT_ZSTD_LEVEL`] with fresh randomness.
pub fn seal(
    public: &PublicKey,
    header: &BatchHeader,
    ndjson: &[u8],
) -> Result<Vec<u8>, BatchError> {
    Sealer::new(public.clone(), DEFAULT_ZSTD_LEVEL)?.seal(header, ndjson)
}

/// Seals with a given zstd level and RNG; with a seeded RNG the output is reproducible, which
/// the test vector in `docs/batch-format.md` relies on.
pub fn seal_with_rng<R: CryptoRng>(
    public: &PublicKey,
    header: &BatchHeader,
    ndjson: &[u8],
    zstd_level: i32,
    rng: &mut R,
) -> Result<Vec<u8>, BatchError> {
    Sealer::new(public.clone(), zstd_level)?.seal_with_rng(header, ndjson, rng)
}

/// Seals batches to one public key, reusing its zstd context between batches (creating one
/// per batch costs more than the HPKE setup).
pub struct Sealer {
    public: PublicKey,
    compressor: zstd::bulk::Compressor<'static>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("public", &self.public)
            .finish()
    }
}

impl Sealer {
    /// A sealer for `public` at zstd level `zstd_level`.
    pub fn new(public: PublicKey, zstd_level: i32) -> Result<Sealer, BatchError> {
        let compressor = zstd::bulk::Compressor::new(zstd_level)
            .map_err(|e| BatchError::Decompress(format!("zstd level {zstd_level}: {e}")))?;
        Ok(Sealer { public, compressor })
    }

    /// Compresses and seals one batch with the thread's CSPRNG.
    pub fn seal(&mut self, header: &BatchHeader, ndjson: &[u8]) -> Result<Vec<u8>, BatchError> {
        self.seal_with_rng(header, ndjson, &mut rand::rng())
    }

    /// Compresses and seals one batch with `rng` for the HPKE ephemeral key.
    pub fn seal_with_rng<R: CryptoRng>(
        &mut self,
        header: &BatchHeader,
        ndjson: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, BatchError> {
        let out = header.encode()?;
        let compressed = self
            .compressor
            .compress(ndjson)
            .map_err(|e| BatchError::Decompress(format!("zstd compression failed: {e}")))?;
        seal_payload(&self.public, out, &compressed, rng)
    }
}

/// HPKE-seals `payload` (already compressed) after the encoded header `out`, with `out` as AAD.
fn seal_payload<R: CryptoRng>(
    public: &PublicKey,
    mut out: Vec<u8>,
    payload: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, BatchError> {
    let (enc, ciphertext) =
        hpke::single_shot_seal_with_rng::<ChaCha20Poly1305, HkdfSha256, BatchKem>(
            &OpModeS::Base,
            &public.inner,
            HPKE_INFO,
            payload,
            &out,
            rng,
        )
        // Sealing fails only if encapsulation does, i.e. never for a valid X25519 key; the
        // error type is reused rather than widening the public enum.
        .map_err(|_| BatchError::Open)?;
    out.reserve_exact(ENC_LEN + ciphertext.len());
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Seals a payload that is already a zstd stream, as is, without compressing it again. For
/// producers that compress themselves, and for tests and fuzzing of [`open`]'s decompression
/// (a payload that is not valid zstd seals fine and fails in [`open`] with `Decompress`).
pub fn seal_compressed(
    public: &PublicKey,
    header: &BatchHeader,
    compressed: &[u8],
) -> Result<Vec<u8>, BatchError> {
    seal_payload(public, header.encode()?, compressed, &mut rand::rng())
}

/// Authenticates, decrypts and decompresses a batch. Safe on any input: never panics, and the
/// decompressed output never exceeds `max_plaintext` bytes (it stops and returns
/// [`BatchError::TooLarge`]).
pub fn open(
    secret: &SecretKey,
    sealed: &[u8],
    max_plaintext: usize,
) -> Result<OpenedBatch, BatchError> {
    let (header, header_len) = parse_header(sealed)?;
    let rest = &sealed[header_len..];
    if rest.len() < ENC_LEN + TAG_LEN {
        return Err(BatchError::Truncated);
    }
    let (enc, ciphertext) = rest.split_at(ENC_LEN);
    let enc = <BatchKem as Kem>::EncappedKey::from_bytes(enc).map_err(|_| BatchError::Open)?;
    let compressed = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, BatchKem>(
        &OpModeR::Base,
        &secret.inner,
        &enc,
        HPKE_INFO,
        ciphertext,
        &sealed[..header_len],
    )
    .map_err(|_| BatchError::Open)?;
    let ndjson = decompress_bounded(&compressed, max_plaintext)?;
    Ok(OpenedBatch { header, ndjson })
}

/// Decompresses a zstd stream, refusing windows above [`MAX_WINDOW_LOG`] and output above `limit`.
fn decompress_bounded(compressed: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let err = |e: std::io::Error| BatchError::Decompress(e.to_string());
    let mut decoder = zstd::stream::read::Decoder::with_buffer(compressed).map_err(err)?;
    decoder.window_log_max(MAX_WINDOW_LOG).map_err(err)?;
    let mut out = Vec::new();
    // Read one byte past the limit: getting it proves the payload is too large without ever
    // holding more than limit + 1 bytes.
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    decoder.take(cap).read_to_end(&mut out).map_err(err)?;
    if out.len() > limit {
        return Err(BatchError::TooLarge { limit });
    }
    Ok(out)
}
