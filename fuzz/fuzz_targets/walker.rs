//! Fuzz target for the DNS message walker and RRset extraction, fed arbitrary bytes.
//! Nothing may panic, every emitted key must parse, and every owner must lie inside the bailiwick given.
#![no_main]

use dnsensor_core::rrset::{is_at_or_below, ExtractStats, Extractor, KeyView};
use dnsensor_core::wire::Message;
use libfuzzer_sys::fuzz_target;

/// Runs one extraction and checks every key and the counters; returns the rrset count and the
/// first emitted owner.
fn check(ex: &mut Extractor, data: &[u8], bailiwick: Option<&[u8]>) -> (u64, Option<Vec<u8>>) {
    let mut stats = ExtractStats::default();
    let mut emitted = 0u64;
    let mut first_owner = None;
    ex.extract(data, bailiwick, &mut stats, |key| {
        let view = KeyView::parse(key).expect("emitted key does not parse");
        assert!(view.rdata_count >= 1);
        assert_eq!(view.rdatas().count(), usize::from(view.rdata_count));
        assert_eq!(view.bailiwick.is_some(), bailiwick.is_some());
        if let Some(zone) = bailiwick {
            assert!(
                is_at_or_below(view.owner, zone),
                "owner {:?} outside bailiwick {:?}",
                view.owner,
                zone
            );
        }
        if first_owner.is_none() {
            first_owner = Some(view.owner.to_vec());
        }
        emitted += 1;
    });
    assert_eq!(stats.messages, 1);
    assert!(stats.malformed <= 1);
    assert_eq!(stats.rrsets, emitted);
    assert!(stats.out_of_bailiwick <= stats.records);
    assert!(stats.rrsets <= stats.records - stats.out_of_bailiwick);
    if bailiwick.is_none() {
        assert_eq!(stats.out_of_bailiwick, 0);
    }
    (emitted, first_owner)
}

/// `name` with its first `skip` labels removed (the root once they run out).
fn parent(name: &[u8], skip: usize) -> &[u8] {
    let mut pos = 0usize;
    for _ in 0..skip {
        match name.get(pos) {
            Some(&len) if len > 0 => pos += 1 + usize::from(len),
            _ => break,
        }
    }
    name.get(pos..).unwrap_or(&[0])
}

fuzz_target!(|data: &[u8]| {
    // The walker alone: every owner it hands out must decompress.
    if let Ok(msg) = Message::parse(data) {
        let mut name = Vec::new();
        for rec in msg.records() {
            let Ok(rec) = rec else { break };
            name.clear();
            rec.owner
                .write_to(true, &mut name)
                .expect("walker handed out an invalid owner");
            assert!(name.len() <= 255);
            assert!(rec.rdata_offset + rec.rdata.len() <= data.len());
        }
    }

    let mut ex = Extractor::new();
    let (plain, first_owner) = check(&mut ex, data, None);

    // The root zone holds every owner: the same sets, none out of bailiwick.
    let (rooted, _) = check(&mut ex, data, Some(&[0]));
    assert_eq!(plain, rooted);

    // A real zone taken from the message itself, so the bailiwick check sees both sides.
    if let Some(owner) = first_owner {
        let skip = usize::from(data.last().copied().unwrap_or(0) % 4);
        check(&mut ex, data, Some(parent(&owner, skip)));
    }

    // An arbitrary (usually malformed) bailiwick from the input's tail.
    if let Some((&n, rest)) = data.split_last() {
        let len = usize::from(n % 32).min(rest.len());
        check(&mut ex, data, Some(&rest[rest.len() - len..]));
    }
});
