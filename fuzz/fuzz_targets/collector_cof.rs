//! Fuzz target for the collector's reading of a batch's NDJSON: whatever a sensor (or anyone with
//! the public key and the token) seals, checking it must not panic, and its verdict must agree
//! with a line-by-line reading: a payload is accepted exactly when each of its lines is.
#![no_main]

use dnsensor_collector::check_ndjson;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = check_ndjson(data);
    let mut records = 0;
    let mut first_bad = None;
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        match check_ndjson(line) {
            Ok(n) => {
                assert!(n <= 1, "one line gave {n} records");
                records += n;
            }
            Err(_) if first_bad.is_none() => first_bad = Some(i + 1),
            Err(_) => {}
        }
    }
    match (whole, first_bad) {
        (Ok(n), None) => assert_eq!(n, records),
        (Err(e), Some(line)) => assert!(
            e.starts_with(&format!("NDJSON line {line}: ")),
            "{e} (first bad line {line})"
        ),
        (whole, first_bad) => panic!("payload {whole:?}, first bad line {first_bad:?}"),
    }
});
