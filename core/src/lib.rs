//! The record pipeline shared by every dnsensor source.
//! Sources hand in `Observation`s; this crate walks the DNS messages, keys RRsets, de-duplicates them and writes COF.

pub mod cof;
pub mod dedup;
pub mod observation;
pub mod output;
pub mod pipeline;
pub mod present;
pub mod rrset;
pub mod wire;

pub use observation::{Observation, Segment, Transport};
