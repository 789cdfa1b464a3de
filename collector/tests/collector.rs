//! End-to-end tests of the collector over real HTTP(S) on 127.0.0.1: uploads sealed with the
//! delivery API, the merge in SQLite, the query endpoints, and every refusal code.

mod common;

use common::*;
use dnsensor_collector::{read_token_file, Collector, CollectorError};

const SENSOR_A: &str = "isp-a-fra1";
const SENSOR_B: &str = "isp-b-ams1";

/// Batch 1, from sensor A: eight RRsets of assorted types.
const BATCH_1: [&str; 8] = [
    r#"{"rrname":"www.example.com.","rrtype":"A","rdata":["192.0.2.1","192.0.2.7"],"bailiwick":"example.com.","time_first":1000,"time_last":1060,"count":12,"clients":3,"sensor_id":"isp-a-fra1"}"#,
    r#"{"rrname":"example.com.","rrtype":"MX","rdata":["10 mail.example.com."],"bailiwick":"com.","time_first":1000,"time_last":1000,"count":1,"sensor_id":"isp-a-fra1"}"#,
    r#"{"rrname":"example.com.","rrtype":"NS","rdata":["ns1.example.net.","ns2.example.net."],"bailiwick":"com.","time_first":1000,"time_last":1100,"count":4,"sensor_id":"isp-a-fra1"}"#,
    r#"{"rrname":"v6.example.com.","rrtype":"AAAA","rdata":["2001:db8::1"],"bailiwick":"example.com.","time_first":1000,"time_last":1000,"count":2,"sensor_id":"isp-a-fra1"}"#,
    r#"{"rrname":"alias.example.com.","rrtype":"CNAME","rdata":["www.example.com."],"time_first":900,"time_last":950,"count":1,"sensor_id":"isp-a-fra1"}"#,
    r#"{"rrname":"_sip._udp.example.com.","rrtype":"SRV","rdata":["0 5 5060 sip.example.com."],"bailiwick":"example.com.","time_first":1000,"time_last":1001,"count":1,"sensor_id":"isp-a-fra1"}"#,
    r#"{"rrname":"badexample.com.","rrtype":"A","rdata":["192.0.2.1"],"bailiwick":"com.","time_first":1000,"time_last":1000,"count":1,"sensor_id":"isp-a-fra1"}"#,
    r#"{"rrname":"example.com.","rrtype":"TXT","rdata":["\"v=spf1 -all\""],"bailiwick":"com.","time_first":1000,"time_last":1000,"count":1,"sensor_id":"isp-a-fra1"}"#,
];

/// Batch 2, from sensor B: the first line has batch 1's first key (in other letter case) and
/// widens its time span, the second a different rdata set, the third a different (unknown)
/// bailiwick; the fourth has batch 1's NS key with a span inside the stored one.
const BATCH_2: [&str; 4] = [
    r#"{"rrname":"WWW.Example.com","rrtype":"a","rdata":["192.0.2.1","192.0.2.7"],"bailiwick":"Example.COM.","time_first":900,"time_last":1200,"count":5,"clients":2,"sensor_id":"isp-b-ams1"}"#,
    r#"{"rrname":"www.example.com.","rrtype":"A","rdata":["192.0.2.9"],"bailiwick":"example.com.","time_first":1100,"time_last":1150,"count":1,"sensor_id":"isp-b-ams1"}"#,
    r#"{"rrname":"www.example.com.","rrtype":"A","rdata":["192.0.2.1","192.0.2.7"],"time_first":1300,"time_last":1300,"count":1,"sensor_id":"isp-b-ams1"}"#,
    r#"{"rrname":"example.com.","rrtype":"NS","rdata":["ns1.example.net.","ns2.example.net."],"bailiwick":"com.","time_first":1050,"time_last":1080,"count":2,"clients":1,"sensor_id":"isp-b-ams1"}"#,
];

const WWW_NO_BAILIWICK: &str = r#"{"rrname":"www.example.com.","rrtype":"A","rdata":["192.0.2.1","192.0.2.7"],"time_first":1300,"time_last":1300,"count":1}"#;
const WWW_MERGED: &str = r#"{"rrname":"www.example.com.","rrtype":"A","rdata":["192.0.2.1","192.0.2.7"],"bailiwick":"example.com.","time_first":900,"time_last":1200,"count":17,"clients":3}"#;
const WWW_OTHER_RDATA: &str = r#"{"rrname":"www.example.com.","rrtype":"A","rdata":["192.0.2.9"],"bailiwick":"example.com.","time_first":1100,"time_last":1150,"count":1}"#;
const EXAMPLE_MX: &str = r#"{"rrname":"example.com.","rrtype":"MX","rdata":["10 mail.example.com."],"bailiwick":"com.","time_first":1000,"time_last":1000,"count":1}"#;
const EXAMPLE_NS: &str = r#"{"rrname":"example.com.","rrtype":"NS","rdata":["ns1.example.net.","ns2.example.net."],"bailiwick":"com.","time_first":1000,"time_last":1100,"count":6,"clients":1}"#;
const EXAMPLE_TXT: &str = r#"{"rrname":"example.com.","rrtype":"TXT","rdata":["\"v=spf1 -all\""],"bailiwick":"com.","time_first":1000,"time_last":1000,"count":1}"#;
const V6_AAAA: &str = r#"{"rrname":"v6.example.com.","rrtype":"AAAA","rdata":["2001:db8::1"],"bailiwick":"example.com.","time_first":1000,"time_last":1000,"count":2}"#;
const ALIAS_CNAME: &str = r#"{"rrname":"alias.example.com.","rrtype":"CNAME","rdata":["www.example.com."],"time_first":900,"time_last":950,"count":1}"#;
const SIP_SRV: &str = r#"{"rrname":"_sip._udp.example.com.","rrtype":"SRV","rdata":["0 5 5060 sip.example.com."],"bailiwick":"example.com.","time_first":1000,"time_last":1001,"count":1}"#;
const BAD_A: &str = r#"{"rrname":"badexample.com.","rrtype":"A","rdata":["192.0.2.1"],"bailiwick":"com.","time_first":1000,"time_last":1000,"count":1}"#;

/// Uploads both batches and checks their answers.
fn load(env: &Env, agent: &ureq::Agent, base: &str) {
    let a = post(
        agent,
        base,
        batch_id(1),
        &sealed(&env.public, SENSOR_A, batch_id(1), &BATCH_1),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(
        a.body,
        r#"{"batch_id":"01010101010101010101010101010101","records":8}"#
    );
    let a = post(
        agent,
        base,
        batch_id(2),
        &sealed(&env.public, SENSOR_B, batch_id(2), &BATCH_2),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(
        a.body,
        r#"{"batch_id":"02020202020202020202020202020202","records":4}"#
    );
}

#[test]
fn two_batches_merge_counts_times_and_clients() {
    let env = Env::new();
    let running = env.start();
    let (agent, base) = (agent(), base(&running));
    load(&env, &agent, &base);

    // 8 keys from batch 1, plus 2 new keys from batch 2; its first and last lines merged.
    assert_eq!(env.rows("rrsets"), 10);
    assert_eq!(env.rows("batches"), 2);
    assert_eq!(
        query(&agent, &base, "/api/v1/rrset/www.example.com.?rrtype=A"),
        [WWW_NO_BAILIWICK, WWW_MERGED, WWW_OTHER_RDATA]
    );
    // The NS key: counts summed, the stored span kept, clients taken from the one that had it.
    assert_eq!(
        query(&agent, &base, "/api/v1/rrset/example.com.?rrtype=NS"),
        [EXAMPLE_NS]
    );
}

#[test]
fn rrset_queries_exact_rrtype_wildcard_and_limit() {
    let env = Env::new();
    let running = env.start();
    let (agent, base) = (agent(), base(&running));
    load(&env, &agent, &base);

    // Case-insensitive, trailing dot optional; most recently seen first.
    let want = [EXAMPLE_NS, EXAMPLE_MX, EXAMPLE_TXT];
    assert_eq!(query(&agent, &base, "/api/v1/rrset/EXAMPLE.com"), want);
    assert_eq!(query(&agent, &base, "/api/v1/rrset/example.com."), want);
    assert_eq!(
        query(&agent, &base, "/api/v1/rrset/example.com.?rrtype=mx"),
        [EXAMPLE_MX]
    );
    assert_eq!(
        query(&agent, &base, "/api/v1/rrset/example.com.?rrtype=AAAA"),
        Vec::<String>::new()
    );

    // Strictly below example.com.: not example.com. itself, not badexample.com.
    assert_eq!(
        query(&agent, &base, "/api/v1/rrset/*.example.com."),
        [
            WWW_NO_BAILIWICK,
            WWW_MERGED,
            WWW_OTHER_RDATA,
            SIP_SRV,
            V6_AAAA,
            ALIAS_CNAME
        ]
    );
    assert_eq!(
        query(&agent, &base, "/api/v1/rrset/*.example.com?rrtype=cname"),
        [ALIAS_CNAME]
    );
    assert_eq!(
        query(&agent, &base, "/api/v1/rrset/*.example.com.?limit=2"),
        [WWW_NO_BAILIWICK, WWW_MERGED]
    );
    assert_eq!(query(&agent, &base, "/api/v1/rrset/*.?limit=100").len(), 10);
    assert_eq!(query(&agent, &base, "/api/v1/rrset/*.com.").len(), 10);

    // Nothing matches: 200 with no lines.
    let a = get_with(&agent, &base, "/api/v1/rrset/nothing.example.", Some(TOKEN));
    assert_eq!((a.status, a.body.as_str()), (200, ""));

    for bad in [
        "/api/v1/rrset/example.com.?limit=0",
        "/api/v1/rrset/example.com.?limit=100001",
        "/api/v1/rrset/example.com.?limit=ten",
        "/api/v1/rrset/example.com.?rrtype=A%20B",
        "/api/v1/rrset/a..b",
    ] {
        let a = get_with(&agent, &base, bad, Some(TOKEN));
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
        assert!(a.body.starts_with(r#"{"error":"#), "{bad}: {}", a.body);
    }
}

#[test]
fn rdata_queries_by_address_and_by_target_name() {
    let env = Env::new();
    let running = env.start();
    let (agent, base) = (agent(), base(&running));
    load(&env, &agent, &base);

    assert_eq!(
        query(&agent, &base, "/api/v1/rdata/192.0.2.1"),
        [WWW_NO_BAILIWICK, WWW_MERGED, BAD_A]
    );
    assert_eq!(
        query(&agent, &base, "/api/v1/rdata/192.0.2.9"),
        [WWW_OTHER_RDATA]
    );
    // IPv6 text is normalised on both sides.
    assert_eq!(
        query(&agent, &base, "/api/v1/rdata/2001:DB8::0001"),
        [V6_AAAA]
    );
    assert_eq!(
        query(&agent, &base, "/api/v1/rdata/2001:db8:0:0:0:0:0:1"),
        [V6_AAAA]
    );
    // Names: MX exchange, NS, CNAME and SRV targets; case and trailing dot do not matter.
    assert_eq!(
        query(&agent, &base, "/api/v1/rdata/Mail.Example.com"),
        [EXAMPLE_MX]
    );
    assert_eq!(
        query(&agent, &base, "/api/v1/rdata/ns2.example.net."),
        [EXAMPLE_NS]
    );
    assert_eq!(
        query(&agent, &base, "/api/v1/rdata/www.example.com."),
        [ALIAS_CNAME]
    );
    assert_eq!(
        query(&agent, &base, "/api/v1/rdata/sip.example.com"),
        [SIP_SRV]
    );
    assert_eq!(
        query(&agent, &base, "/api/v1/rdata/192.0.2.1?rrtype=A&limit=1"),
        [WWW_NO_BAILIWICK]
    );
    // TXT text is not an index key, and an unknown address matches nothing.
    assert!(query(&agent, &base, "/api/v1/rdata/v=spf1").is_empty());
    assert!(query(&agent, &base, "/api/v1/rdata/198.51.100.1").is_empty());
}

#[test]
fn duplicate_batch_id_answers_200_and_counts_once() {
    let env = Env::new();
    let running = env.start();
    let (agent, base) = (agent(), base(&running));
    let body = sealed(&env.public, SENSOR_A, batch_id(1), &BATCH_1);
    assert_eq!(post(&agent, &base, batch_id(1), &body).status, 201);
    for _ in 0..2 {
        let a = post(&agent, &base, batch_id(1), &body);
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(
            a.body,
            r#"{"batch_id":"01010101010101010101010101010101","records":8}"#
        );
    }
    // A fresh seal of the same id (as a sensor's retry after a crash would be) is also a replay.
    let resealed = sealed(&env.public, SENSOR_A, batch_id(1), &BATCH_1);
    assert_ne!(resealed, body);
    assert_eq!(post(&agent, &base, batch_id(1), &resealed).status, 200);

    assert_eq!(env.rows("batches"), 1);
    assert_eq!(env.rows("rrsets"), 8);
    let www = query(&agent, &base, "/api/v1/rrset/www.example.com.");
    assert_eq!(
        www,
        [
            r#"{"rrname":"www.example.com.","rrtype":"A","rdata":["192.0.2.1","192.0.2.7"],"bailiwick":"example.com.","time_first":1000,"time_last":1060,"count":12,"clients":3}"#
        ]
    );
}

#[test]
fn tampered_and_wrong_key_batches_get_422_and_store_nothing() {
    let env = Env::new();
    let running = env.start();
    let (agent, base) = (agent(), base(&running));
    let body = sealed(&env.public, SENSOR_A, batch_id(1), &BATCH_1);

    // A flipped bit in the ciphertext, in its tag, and in the clear header (bound as AAD).
    let created_offset = 6 + SENSOR_A.len() + 16;
    for at in [body.len() / 2 + 30, body.len() - 1, created_offset] {
        let mut t = body.clone();
        t[at] ^= 0x01;
        let a = post(&agent, &base, batch_id(1), &t);
        assert_eq!(a.status, 422, "byte {at}: {}", a.body);
        assert!(a.body.starts_with(r#"{"error":"#), "{}", a.body);
    }

    // Sealed to another collector's key.
    let (_, other_public) = dnsensor_delivery::keys::generate();
    let wrong = sealed(&other_public, SENSOR_A, batch_id(1), &BATCH_1);
    assert_eq!(post(&agent, &base, batch_id(1), &wrong).status, 422);

    assert_eq!(env.rows("rrsets"), 0);
    assert_eq!(env.rows("rdata_index"), 0);
    assert_eq!(env.rows("batches"), 0);
    // None of the refusals claimed the batch id: the genuine batch is still stored.
    assert_eq!(post(&agent, &base, batch_id(1), &body).status, 201);
    assert_eq!(env.rows("rrsets"), 8);
}

#[test]
fn missing_or_wrong_token_gets_401() {
    let env = Env::new();
    let running = env.start();
    let (agent, base) = (agent(), base(&running));
    let body = sealed(&env.public, SENSOR_A, batch_id(1), &BATCH_1);
    let id = batch_id(1).to_string();

    for token in [
        None,
        Some("wrong-token"),
        Some(""),
        Some("test-token-0123456789abcdeF"),
    ] {
        let a = post_raw(&agent, &base, token, Some(&id), &body);
        assert_eq!(a.status, 401, "{token:?}: {}", a.body);
        assert_eq!(a.www_authenticate.as_deref(), Some("Bearer"));
        // The body was not read, so the connection must not be reused.
        assert_eq!(a.connection.as_deref(), Some("close"));
        for path in ["/api/v1/rrset/www.example.com.", "/api/v1/rdata/192.0.2.1"] {
            assert_eq!(get_with(&agent, &base, path, token).status, 401);
        }
    }
    // Basic auth carrying the right secret is still not a bearer token.
    let a = agent
        .get(format!("{base}/api/v1/rrset/www.example.com."))
        .header("Authorization", format!("Basic {TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(a.status().as_u16(), 401);
    assert_eq!(env.rows("batches"), 0);
    assert_eq!(env.rows("rrsets"), 0);
}

#[test]
fn malformed_uploads_get_400_and_store_nothing() {
    let env = Env::new();
    let running = env.start();
    let (agent, base) = (agent(), base(&running));
    let body = sealed(&env.public, SENSOR_A, batch_id(1), &BATCH_1);
    let id = batch_id(1).to_string();
    let header_len = 6 + SENSOR_A.len() + 28;

    // An id with hex letters, so that its uppercase spelling differs from the lowercase one.
    let letters_id = dnsensor_delivery::batch::BatchId([0xab; 16]);
    let letters_body = sealed(&env.public, SENSOR_A, letters_id, &BATCH_1);
    let mut bad_magic = body.clone();
    bad_magic[0] = b'X';
    let mut bad_version = body.clone();
    bad_version[4] = 9;
    let cases: Vec<(&str, Option<String>, Vec<u8>)> = vec![
        ("empty body", Some(id.clone()), Vec::new()),
        ("cut in the magic", Some(id.clone()), body[..3].to_vec()),
        ("cut in the header", Some(id.clone()), body[..10].to_vec()),
        (
            "cut before the tag",
            Some(id.clone()),
            body[..header_len + 40].to_vec(),
        ),
        ("bad magic", Some(id.clone()), bad_magic),
        ("unsupported version", Some(id.clone()), bad_version),
        ("no Idempotency-Key", None, body.clone()),
        (
            "other Idempotency-Key",
            Some(batch_id(2).to_string()),
            body.clone(),
        ),
        (
            "uppercase Idempotency-Key",
            Some(letters_id.to_string().to_uppercase()),
            letters_body,
        ),
        (
            "Idempotency-Key not hex",
            Some("z".repeat(32)),
            body.clone(),
        ),
        (
            "short Idempotency-Key",
            Some(id[..30].to_string()),
            body.clone(),
        ),
    ];
    for (what, key, b) in cases {
        let a = post_raw(&agent, &base, Some(TOKEN), key.as_deref(), &b);
        assert_eq!(a.status, 400, "{what}: {}", a.body);
        assert!(a.body.starts_with(r#"{"error":"#), "{what}: {}", a.body);
    }

    // Properly sealed, but the payload is not valid COF, or disagrees with its header.
    let not_cof = sealed(
        &env.public,
        SENSOR_A,
        batch_id(3),
        &[BATCH_1[0], "{\"rrname\":1}"],
    );
    let a = post(&agent, &base, batch_id(3), &not_cof);
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("NDJSON line 2"), "{}", a.body);
    let no_rdata = sealed(
        &env.public,
        SENSOR_A,
        batch_id(4),
        &[r#"{"rrname":"a.example.","rrtype":"A","rdata":[],"time_first":1,"time_last":1}"#],
    );
    assert_eq!(post(&agent, &base, batch_id(4), &no_rdata).status, 400);
    let header = dnsensor_delivery::batch::BatchHeader {
        sensor_id: SENSOR_A.into(),
        batch_id: batch_id(5),
        created: 1,
        records: 9,
    };
    let ndjson = BATCH_1.join("\n");
    let miscounted =
        dnsensor_delivery::batch::seal(&env.public, &header, ndjson.as_bytes()).unwrap();
    let a = post(&agent, &base, batch_id(5), &miscounted);
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body.contains("header says 9 records, the payload has 8"),
        "{}",
        a.body
    );

    // Cut inside the ciphertext: indistinguishable from tampering, so 422 (documented).
    let a = post(&agent, &base, batch_id(1), &body[..body.len() - 1]);
    assert_eq!(a.status, 422, "{}", a.body);

    assert_eq!(env.rows("batches"), 0);
    assert_eq!(env.rows("rrsets"), 0);
    assert_eq!(post(&agent, &base, batch_id(1), &body).status, 201);
}

#[test]
fn oversize_body_gets_413() {
    let env = Env::new();
    let mut config = env.config();
    config.max_body_bytes = 4096;
    let running = common::start(config);
    let (agent, base) = (agent(), base(&running));
    let id = batch_id(1).to_string();
    let big = vec![0u8; 10_000];

    // Declared length over the limit.
    let a = post_raw(&agent, &base, Some(TOKEN), Some(&id), &big);
    assert_eq!(a.status, 413, "{}", a.body);
    // Chunked, so the limit is only found while reading.
    let mut reader = std::io::Cursor::new(big.clone());
    let resp = agent
        .post(format!("{base}/api/v1/batches"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Idempotency-Key", &id)
        .send(ureq::SendBody::from_reader(&mut reader))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);

    // A real batch under the limit still goes through.
    let body = sealed(&env.public, SENSOR_A, batch_id(1), &BATCH_1);
    assert!(body.len() < 4096);
    assert_eq!(post(&agent, &base, batch_id(1), &body).status, 201);
    assert_eq!(env.rows("batches"), 1);
}

#[test]
fn database_survives_a_restart() {
    let env = Env::new();
    let running = env.start();
    let (agent, first_base) = (agent(), base(&running));
    load(&env, &agent, &first_base);
    running.stop();

    let running = env.start();
    let base = base(&running);
    assert_eq!(
        query(&agent, &base, "/api/v1/rrset/www.example.com.?rrtype=A"),
        [WWW_NO_BAILIWICK, WWW_MERGED, WWW_OTHER_RDATA]
    );
    assert_eq!(query(&agent, &base, "/api/v1/rdata/2001:db8::1"), [V6_AAAA]);
    // The batch ids survived too: a replay after the restart is still not counted.
    let again = sealed(&env.public, SENSOR_A, batch_id(1), &BATCH_1);
    assert_eq!(post(&agent, &base, batch_id(1), &again).status, 200);
    assert_eq!(
        query(&agent, &base, "/api/v1/rrset/www.example.com.?rrtype=A")[1],
        WWW_MERGED
    );
}

#[test]
fn https_with_a_self_signed_certificate() {
    let env = Env::new();
    let (files, cert_pem) = tls_files(env.dir.path());
    let mut config = env.config();
    config.tls = Some(files);
    let running = common::start(config);
    let base = format!("https://127.0.0.1:{}", running.addr.port());
    let agent = tls_agent(cert_pem.as_bytes());

    load(&env, &agent, &base);
    assert_eq!(
        query(&agent, &base, "/api/v1/rrset/www.example.com.?rrtype=A"),
        [WWW_NO_BAILIWICK, WWW_MERGED, WWW_OTHER_RDATA]
    );
    // A client that does not trust the certificate cannot talk to it at all.
    assert!(common::agent()
        .get(format!("{base}/api/v1/rrset/www.example.com."))
        .call()
        .is_err());
    // Nor can plain HTTP.
    let plain = format!(
        "http://127.0.0.1:{}/api/v1/rrset/www.example.com.",
        running.addr.port()
    );
    assert!(common::agent()
        .get(plain)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .map(|r| r.status().as_u16() != 200)
        .unwrap_or(true));
}

#[test]
fn bind_errors_name_the_file() {
    let env = Env::new();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let mut config = env.config();
    config.db = env.dir.path().join("missing-dir").join("c.db");
    let err = rt.block_on(Collector::bind(config)).err().unwrap();
    assert!(matches!(err, CollectorError::Db { .. }), "{err}");
    assert!(err.to_string().contains("missing-dir/c.db"), "{err}");

    let not_a_db = env.dir.path().join("not-a.db");
    write(&not_a_db, &"this is not SQLite\n".repeat(100));
    let mut config = env.config();
    config.db = not_a_db;
    let err = rt.block_on(Collector::bind(config)).err().unwrap();
    assert!(matches!(err, CollectorError::Db { .. }), "{err}");

    let mut config = env.config();
    config.tls = Some(dnsensor_collector::TlsFiles {
        cert: env.dir.path().join("nope.pem"),
        key: env.dir.path().join("nope.key"),
    });
    let err = rt.block_on(Collector::bind(config)).err().unwrap();
    assert!(matches!(err, CollectorError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

#[test]
fn token_file_is_trimmed_and_must_not_be_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    write(&path, "  s3cret-token\n");
    assert_eq!(read_token_file(&path).unwrap(), "s3cret-token");
    write(&path, " \n\n");
    let err = read_token_file(&path).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    assert!(read_token_file(&dir.path().join("absent")).is_err());
}

#[test]
fn concurrent_uploads_of_one_batch_count_it_once() {
    let env = Env::new();
    let running = env.start();
    let base = base(&running);
    let body = sealed(&env.public, SENSOR_A, batch_id(1), &BATCH_1);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| post(&agent(), &base, batch_id(1), &body).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 200, 200, 201], "{statuses:?}");
    assert_eq!(env.rows("batches"), 1);
    assert_eq!(
        query(&agent(), &base, "/api/v1/rrset/www.example.com."),
        [
            r#"{"rrname":"www.example.com.","rrtype":"A","rdata":["192.0.2.1","192.0.2.7"],"bailiwick":"example.com.","time_first":1000,"time_last":1060,"count":12,"clients":3}"#
        ]
    );
}
