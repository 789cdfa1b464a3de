//! End to end: NSD world → BIND named (dnstap via libfstrm) → `dnsensor dnstap`.
//! World 2: authoritative servers on 127.53.2.1–6; named listens on 127.0.0.1:<free port>
//! and sends its queries from 127.53.2.53.

mod common;

use std::time::Duration;

use common::expect::{self, ZoneData, QUERIES};
use common::{unix_now, Dnsensor, TestDir, World};

#[test]
fn bind_resolver_responses_become_cof() {
    let dir = TestDir::new("bind");
    let world = World::start(2, &dir.sub("world"));
    let zd = ZoneData::load(&world);

    // dnsensor first: BIND drops dnstap messages while the socket is missing and only
    // retries the connection every few seconds.
    let mut sensor = Dnsensor::start(dir.path());
    let t0 = unix_now();
    let mut resolver = world.start_bind(&sensor.sock);

    let queries: Vec<(&str, &str)> = QUERIES.iter().map(|(n, t, _)| (*n, *t)).collect();
    let results = resolver.query(&queries);
    expect::check_world(&world, &zd, &results);

    let complete = sensor.wait_for(Duration::from_secs(20), expect::all_required_present);
    if !complete {
        eprintln!("not all required records showed up within 20 s; stopping anyway");
    }
    // named flushes its dnstap queue and sends STOP on SIGTERM.
    resolver.stop();
    let run = sensor.finish();
    let t1 = unix_now();

    // The client (dig) is 127.0.0.1; the resolver's query source is 127.53.2.53.
    let forbidden = ["127.0.0.1", &world.resolver_addr()];
    expect::check_output(&zd, &run, t0, t1, &forbidden);
}
