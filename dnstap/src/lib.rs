//! dnstap source: a Frame Streams server on unix and TCP sockets that turns dnstap messages into Observations.
//! Which message types are used, and what becomes the bailiwick, is decided here; record logic lives in core.
