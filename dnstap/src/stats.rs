//! Counters of the dnstap source, shared between the server's tasks and whoever reports them.
//! Plain relaxed atomics: they are statistics, read for the exit summary and metrics only.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! stats {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Live counters of a [`crate::Server`], shared via `Arc`; see [`crate::Server::stats`].
        #[derive(Debug, Default)]
        pub struct DnstapStats {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        /// A point-in-time copy of [`DnstapStats`].
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl DnstapStats {
            /// Reads every counter once. The counters are read one by one, so a snapshot taken
            /// while traffic flows is only approximately consistent across fields.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl StatsSnapshot {
            /// Every counter with its name, in declaration order, for summaries and metrics.
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }

            /// Every counter with its name and its description (the doc comment above), in
            /// declaration order, for the metrics endpoint's help texts.
            pub fn described(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), concat!($($doc),*).trim_ascii_start(), self.$name),)*]
            }
        }
    };
}

stats! {
    /// Connections accepted, on all listeners.
    connections_accepted,
    /// Connections closed at once because `max_connections` senders were already served.
    connections_refused,
    /// Connections closed because of a protocol, framing or I/O error.
    connections_closed_error,
    /// Connections that ended the stream with STOP.
    connections_finished,
    /// Connections closed for any reason (STOP, error, the sender leaving, shutdown).
    connections_closed,
    /// Data frames received.
    frames,
    /// Bytes read from all connections.
    bytes_read,
    /// Connections that announced a data frame larger than the cap.
    frames_oversized,
    /// Connections that ended in the middle of a frame.
    frames_truncated,
    /// Handshake and framing violations: wrong content type, garbage, frames out of order.
    protocol_errors,
    /// Data frames that decoded as a dnstap protobuf.
    messages_decoded,
    /// Data frames that did not decode as a dnstap protobuf.
    decode_errors,
    /// Responses turned into observations and offered to the pipeline.
    messages_used,
    /// Messages of a type that is not recorded (queries, client responses unless enabled, …).
    messages_ignored,
    /// Response messages without a response_message field.
    responses_missing,
    /// Observations the pipeline shed because it was behind (also counted by the Handoff).
    observations_shed,
}

impl DnstapStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one and returns the new value.
    pub(crate) fn inc_get(counter: &AtomicU64) -> u64 {
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }
}
