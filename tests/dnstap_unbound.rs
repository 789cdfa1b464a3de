//! End to end: NSD world → Unbound (dnstap, bidirectional Frame Streams) → `dnsensor dnstap`.
//! World 1: authoritative servers on 127.53.1.1–6, Unbound on 127.53.1.53:53.

mod common;

#[test]
fn unbound_resolver_responses_become_cof() {
    common::expect::resolver_end_to_end(1, "unbound", |world, sock| world.start_unbound(sock));
}
