//! End to end: NSD world → Unbound (dnstap, bidirectional Frame Streams) → `dnsensor dnstap`.
//! World 1: authoritative servers on 127.53.1.1–6, Unbound on 127.53.1.53:53.

mod common;

use std::time::Duration;

use common::expect::{self, ZoneData, QUERIES};
use common::{unix_now, Dnsensor, TestDir, World};

#[test]
fn unbound_resolver_responses_become_cof() {
    let dir = TestDir::new("unbound");
    let world = World::start(1, &dir.sub("world"));
    let zd = ZoneData::load(&world);

    // dnsensor first, so the socket exists when the resolver connects.
    let mut sensor = Dnsensor::start(dir.path());
    let t0 = unix_now();
    let mut resolver = world.start_unbound(&sensor.sock);

    let queries: Vec<(&str, &str)> = QUERIES.iter().map(|(n, t, _)| (*n, *t)).collect();
    let results = resolver.query(&queries);
    expect::check_world(&world, &zd, &results);

    // Unbound hands messages to its dnstap thread on a timer and drops what is still
    // queued when it exits, so wait for the output before stopping it.
    let complete = sensor.wait_for(Duration::from_secs(20), expect::all_required_present);
    if !complete {
        eprintln!("not all required records showed up within 20 s; stopping anyway");
    }
    resolver.stop();
    let run = sensor.finish();
    let t1 = unix_now();

    let forbidden = ["127.0.0.1", &world.resolver_addr()];
    expect::check_output(&zd, &run, t0, t1, &forbidden);
}
