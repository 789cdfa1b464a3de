//! Delivery of flushed records: the sealed batch format, the durable on-disk spool and the uploader.
//! Nothing here knows DNS; it moves opaque COF NDJSON from the flusher to a collector.
