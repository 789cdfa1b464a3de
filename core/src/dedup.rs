//! The de-duplication window: one table per worker, counting each RRset key's sightings and its first and last time.
