//! The record pipeline shared by every dnsensor source.
//! Sources hand in `Observation`s; this crate walks the DNS messages, keys RRsets, de-duplicates them and writes COF.

pub mod cof;
pub mod dedup;
mod handoff;
pub mod memo;
pub mod observation;
pub mod output;
pub mod pipeline;
pub mod present;
pub mod privacy;
pub mod rrset;
pub mod wire;

pub use observation::{Observation, Segment, Transport};

/// An `io::Error` as an operator wants to read it: "No such file or directory", without the
/// "(os error 2)" that std appends.
pub fn describe_io_error(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}
