//! The reference collector: receives sealed batches over HTTP(S), opens and verifies them,
//! merges their records into SQLite and answers COF queries.
