//! The tap's counters: live atomics that threads publish into, and a plain summary with one-line `Display`.
//! One field list generates both, so a counter can never be forgotten in one of them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    (sum { $($(#[doc = $sd:literal])* $s:ident,)* } max { $($(#[doc = $md:literal])* $m:ident,)* }) => {
        /// A point-in-time copy of the tap's counters. Workers also use it for their local deltas.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct CaptureSummary {
            $($(#[doc = $sd])* pub $s: u64,)*
            $($(#[doc = $md])* pub $m: u64,)*
        }

        /// The tap's live counters, shared between the capture thread, the shard workers and
        /// whoever reports them (summary line, metrics endpoint).
        #[derive(Debug, Default)]
        pub struct CaptureCounters {
            $($s: AtomicU64,)*
            $($m: AtomicU64,)*
        }

        impl CaptureCounters {
            /// The counters as they are now.
            pub fn snapshot(&self) -> CaptureSummary {
                CaptureSummary {
                    $($s: self.$s.load(Ordering::Relaxed),)*
                    $($m: self.$m.load(Ordering::Relaxed),)*
                }
            }

            /// Adds a thread's local delta: sums for event counts, maxima for high-water marks.
            pub(crate) fn add(&self, d: &CaptureSummary) {
                $(if d.$s != 0 { self.$s.fetch_add(d.$s, Ordering::Relaxed); })*
                $(if d.$m != 0 { self.$m.fetch_max(d.$m, Ordering::Relaxed); })*
            }
        }

        impl CaptureSummary {
            /// The event counts (summed across threads) with their names and descriptions (the
            /// doc comments), in declaration order, for the metrics endpoint.
            pub fn sums_described(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($s), concat!($($sd),*).trim_ascii_start(), self.$s),)*]
            }

            /// The values kept as maxima (libpcap's totals and high-water marks), likewise.
            pub fn maxima_described(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($m), concat!($($md),*).trim_ascii_start(), self.$m),)*]
            }

            /// Folds another summary into this one (same rules as [`CaptureCounters`]).
            pub fn merge(&mut self, d: &CaptureSummary) {
                $(self.$s += d.$s;)*
                $(self.$m = self.$m.max(d.$m);)*
            }
        }

        impl fmt::Display for CaptureSummary {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut first = true;
                $(
                    if !first { f.write_str(" ")?; }
                    first = false;
                    write!(f, concat!(stringify!($s), "={}"), self.$s)?;
                )*
                $(write!(f, concat!(" ", stringify!($m), "={}"), self.$m)?;)*
                let _ = first;
                Ok(())
            }
        }
    };
}

counters! {
    sum {
        /// Packets read from libpcap.
        packets,
        /// Bytes of those packets as captured.
        bytes,
        /// Capture files read to their end or to their damage.
        files,
        /// Capture files that ended in damage (read up to it; see the log).
        truncated_files,
        /// DNS messages found (queries and responses, UDP and TCP).
        dns_messages,
        /// Queries seen and remembered for pairing.
        queries,
        /// Responses matched to their query.
        responses_paired,
        /// Responses without a matching query, dropped.
        unsolicited,
        /// Responses without a matching query, used because `accept_unpaired` is set.
        unpaired_accepted,
        /// Responses to RD=1 queries (client segment) not recorded because `client_responses` is off.
        client_skipped,
        /// Responses with an opcode other than QUERY, ignored.
        other_opcode,
        /// Responses handed to the pipeline.
        observations,
        /// Of those, responses that carried a learned bailiwick.
        with_bailiwick,
        /// Queries that were never answered within the query timeout.
        queries_expired,
        /// Queries forgotten early because the pending-query table was full.
        queries_evicted,
        /// IP fragments seen.
        fragments,
        /// Datagrams rebuilt from fragments.
        fragments_reassembled,
        /// Fragments dropped: timeouts, memory cap, overlaps, oversize, too many pieces.
        fragment_drops,
        /// TCP stream directions started.
        tcp_streams,
        /// DNS messages taken from TCP streams.
        tcp_messages,
        /// TCP payload bytes skipped: mid-stream starts, gaps, overflowing buffers.
        tcp_bytes_skipped,
        /// TCP stream directions dropped because of the stream cap or the memory cap.
        tcp_evictions,
        /// TCP stream directions closed after being idle too long.
        tcp_idle_closed,
        /// Zone/server pairs learned for the bailiwick.
        zones_learned,
        /// Zone/server pairs forgotten because the table was full.
        zones_evicted,
        /// Frames whose link layer could not be decoded (or carried no IP).
        link_errors,
        /// Packets whose IP layer could not be decoded.
        ip_errors,
        /// Packets cut short by the snap length (or damaged lengths), dropped.
        short_packets,
        /// UDP or TCP headers that could not be decoded.
        transport_errors,
        /// IP packets that are neither UDP nor TCP, or not on a DNS port.
        not_dns,
        /// Payloads on a DNS port that are not DNS messages (shorter than a header).
        dns_errors,
        /// Packets dropped because a shard's queue was full (live capture only).
        shed,
        /// Observations the pipeline shed because its workers were behind.
        observations_shed,
    }
    max {
        /// libpcap's ps_drop: packets the kernel dropped for lack of buffer space.
        pcap_drops,
        /// libpcap's ps_ifdrop: packets the interface or driver dropped.
        pcap_ifdrops,
        /// Most bytes one shard held in fragment reassembly at once.
        fragment_bytes_peak,
        /// Most TCP stream directions one shard held at once.
        tcp_streams_peak,
        /// Most bytes one shard held in TCP reassembly at once.
        tcp_bytes_peak,
        /// Most queries one shard held waiting for responses at once.
        pending_queries_peak,
        /// Most zone/server pairs the bailiwick table held at once.
        zone_entries_peak,
    }
}

impl CaptureCounters {
    /// libpcap's own counters are totals; they replace rather than add.
    pub(crate) fn set_pcap(&self, drops: u64, ifdrops: u64) {
        self.pcap_drops.store(drops, Ordering::Relaxed);
        self.pcap_ifdrops.store(ifdrops, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_with_every_counter() {
        let c = CaptureCounters::default();
        c.add(&CaptureSummary {
            packets: 3,
            pcap_drops: 2,
            ..Default::default()
        });
        c.add(&CaptureSummary {
            packets: 4,
            pcap_drops: 1,
            ..Default::default()
        });
        let s = c.snapshot();
        assert_eq!(s.packets, 7);
        assert_eq!(s.pcap_drops, 2);
        let line = s.to_string();
        assert!(line.starts_with("packets=7 bytes=0 files=0 "), "{line}");
        assert!(
            line.contains(" responses_paired=0 unsolicited=0 "),
            "{line}"
        );
        assert!(line.contains(" pcap_drops=2 pcap_ifdrops=0 "), "{line}");
        assert!(!line.contains('\n'));
    }
}
