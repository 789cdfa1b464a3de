//! End to end: NSD world → BIND named (dnstap via libfstrm) → `dnsensor dnstap`.
//! World 2: authoritative servers on 127.53.2.1–6; named listens on 127.0.0.1:<free port>
//! and sends its queries from 127.53.2.53. named flushes its dnstap queue and sends STOP on SIGTERM.

mod common;

#[test]
fn bind_resolver_responses_become_cof() {
    common::expect::resolver_end_to_end(2, "bind", |world, sock| world.start_bind(sock));
}
