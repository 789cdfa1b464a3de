//! The embedded SQLite store: schema, the all-or-nothing merge of one batch, and the lookups
//! behind the query endpoints. All calls block; the HTTP layer runs them on blocking threads.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};

use crate::cof::Record;

/// Version written to `PRAGMA user_version`; a file with another non-zero version is refused
/// rather than silently reinterpreted.
const SCHEMA_VERSION: i64 = 1;

/// Idle reader connections kept for reuse; more may be opened under load.
const MAX_IDLE_READERS: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rrsets (
    id         INTEGER PRIMARY KEY,
    rrname     TEXT    NOT NULL,
    rrname_rev TEXT    NOT NULL,
    rrtype     TEXT    NOT NULL,
    bailiwick  TEXT    NOT NULL DEFAULT '',
    rdata      TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    time_first INTEGER NOT NULL,
    time_last  INTEGER NOT NULL,
    clients    INTEGER,
    UNIQUE (rrname, rrtype, bailiwick, rdata)
);
CREATE INDEX IF NOT EXISTS rrsets_by_rrname_rev ON rrsets (rrname_rev);
CREATE TABLE IF NOT EXISTS rdata_index (
    value    TEXT    NOT NULL,
    rrset_id INTEGER NOT NULL REFERENCES rrsets (id),
    PRIMARY KEY (value, rrset_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    batch_id  TEXT    PRIMARY KEY,
    sensor_id TEXT    NOT NULL,
    created   INTEGER NOT NULL,
    records   INTEGER NOT NULL,
    received  INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Sums counts (saturating, because SQLite would turn an overflowing sum into a float), widens
/// the time span, and keeps the largest distinct-client count: distinct counts from different
/// windows or sensors may overlap, so adding them would overstate.
const UPSERT: &str = "
INSERT INTO rrsets (rrname, rrname_rev, rrtype, bailiwick, rdata, count, time_first, time_last, clients)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (rrname, rrtype, bailiwick, rdata) DO UPDATE SET
    count = CASE WHEN count > 9223372036854775807 - excluded.count
                 THEN 9223372036854775807 ELSE count + excluded.count END,
    time_first = min(time_first, excluded.time_first),
    time_last = max(time_last, excluded.time_last),
    clients = CASE WHEN clients IS NULL THEN excluded.clients
                   WHEN excluded.clients IS NULL THEN clients
                   ELSE max(clients, excluded.clients) END
RETURNING id";

/// What the batch's sender told us about it, stored so that a replay is recognised.
pub(crate) struct BatchMeta<'a> {
    pub batch_id: &'a str,
    pub sensor_id: &'a str,
    pub created: u64,
    pub records: u32,
}

/// Whether [`Store::store_batch`] merged the batch or had already seen its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOutcome {
    Stored,
    Duplicate,
}

/// Which RRsets a query selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selector {
    /// Exactly this owner name (normalised).
    Name(String),
    /// Every owner name strictly below this one (normalised; `.` means every name but the root).
    Below(String),
    /// RRsets with this normalised address or target name in their rdata.
    Rdata(String),
}

/// A query: what to select, an optional type, and a cap on rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub selector: Selector,
    pub rrtype: Option<String>,
    pub limit: u32,
}

/// One stored RRset as a query returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub rrname: String,
    pub rrtype: String,
    pub bailiwick: String,
    pub rdata_json: String,
    pub count: i64,
    pub time_first: i64,
    pub time_last: i64,
    pub clients: Option<i64>,
}

/// The database: one writer connection, so batches merge one at a time, and a few reader
/// connections, which WAL lets run while a batch is being written.
pub(crate) struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

/// A poisoned lock only means a panic happened while it was held; the connection itself is
/// still usable because an unfinished transaction rolls back when it is dropped.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The owner name with its characters reversed, so that "every name below X" becomes a prefix
/// range scan on an index instead of a full scan.
fn reversed(name: &str) -> String {
    name.chars().rev().collect()
}

impl Store {
    /// Opens or creates the database at `path` and brings its schema up to date.
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Store> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // WAL lets queries read while a batch is written; FULL makes a commit durable before
        // the 2xx goes out, which is what lets the sensor delete its copy.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!("{}: journal mode is {mode}, not WAL", path.display());
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version != 0 && version != SCHEMA_VERSION {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
                Some(format!(
                    "schema version {version} is not the {SCHEMA_VERSION} this collector knows"
                )),
            ));
        }
        conn.execute_batch(&format!(
            "BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))?;
        Ok(Store {
            path: path.to_path_buf(),
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Merges `records` and remembers the batch id in one transaction, so that the duplicate
    /// check and the merge cannot be separated by a crash or by a concurrent upload of the same
    /// batch. Returns only after the commit.
    pub(crate) fn store_batch(
        &self,
        meta: &BatchMeta<'_>,
        records: &[Record],
        received: i64,
    ) -> rusqlite::Result<StoreOutcome> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let seen = tx
            .query_row(
                "SELECT 1 FROM batches WHERE batch_id = ?1",
                [meta.batch_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if seen {
            return Ok(StoreOutcome::Duplicate);
        }
        {
            let mut upsert = tx.prepare_cached(UPSERT)?;
            let mut index = tx.prepare_cached(
                "INSERT OR IGNORE INTO rdata_index (value, rrset_id) VALUES (?1, ?2)",
            )?;
            for r in records {
                let id: i64 = upsert.query_row(
                    params![
                        r.rrname,
                        reversed(&r.rrname),
                        r.rrtype,
                        r.bailiwick,
                        r.rdata_json,
                        r.count,
                        r.time_first,
                        r.time_last,
                        r.clients,
                    ],
                    |row| row.get(0),
                )?;
                for v in &r.index_values {
                    index.execute(params![v, id])?;
                }
            }
        }
        tx.execute(
            "INSERT INTO batches (batch_id, sensor_id, created, records, received)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                meta.batch_id,
                meta.sensor_id,
                i64::try_from(meta.created).unwrap_or(i64::MAX),
                meta.records,
                received
            ],
        )?;
        tx.commit()?;
        Ok(StoreOutcome::Stored)
    }

    /// Runs a query on a reader connection; rows come most recently seen first.
    pub(crate) fn query(&self, q: &Query) -> rusqlite::Result<Vec<Row>> {
        let conn = match lock(&self.readers).pop() {
            Some(c) => c,
            None => self.open_reader()?,
        };
        let result = run_query(&conn, q);
        let mut idle = lock(&self.readers);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    fn open_reader(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(conn)
    }
}

fn run_query(conn: &Connection, q: &Query) -> rusqlite::Result<Vec<Row>> {
    let mut sql = String::from(
        "SELECT r.rrname, r.rrtype, r.bailiwick, r.rdata, r.count, r.time_first, r.time_last, r.clients
         FROM rrsets r ",
    );
    let mut args: Vec<Value> = Vec::new();
    match &q.selector {
        Selector::Name(name) => {
            sql.push_str("WHERE r.rrname = ?");
            args.push(Value::Text(name.clone()));
        }
        Selector::Below(parent) if parent == "." => {
            sql.push_str("WHERE r.rrname <> '.'");
        }
        Selector::Below(parent) => {
            // Names strictly below "example.com." end in ".example.com."; reversed, they start
            // with ".moc.elpmaxe.", i.e. they sort in [".moc.elpmaxe.", ".moc.elpmaxe/").
            let prefix = reversed(&format!(".{parent}"));
            let mut upper = prefix.clone();
            upper.pop();
            upper.push('/');
            sql.push_str("WHERE r.rrname_rev >= ? AND r.rrname_rev < ?");
            args.push(Value::Text(prefix));
            args.push(Value::Text(upper));
        }
        Selector::Rdata(value) => {
            sql.push_str("JOIN rdata_index i ON i.rrset_id = r.id WHERE i.value = ?");
            args.push(Value::Text(value.clone()));
        }
    }
    if let Some(t) = &q.rrtype {
        sql.push_str(" AND r.rrtype = ?");
        args.push(Value::Text(t.clone()));
    }
    sql.push_str(" ORDER BY r.time_last DESC, r.id LIMIT ?");
    args.push(Value::Integer(i64::from(q.limit)));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(Row {
            rrname: r.get(0)?,
            rrtype: r.get(1)?,
            bailiwick: r.get(2)?,
            rdata_json: r.get(3)?,
            count: r.get(4)?,
            time_first: r.get(5)?,
            time_last: r.get(6)?,
            clients: r.get(7)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cof::parse_ndjson;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("c.db")).unwrap();
        (dir, s)
    }

    fn meta(id: &str) -> BatchMeta<'_> {
        BatchMeta {
            batch_id: id,
            sensor_id: "s",
            created: 1,
            records: 1,
        }
    }

    fn q(selector: Selector) -> Query {
        Query {
            selector,
            rrtype: None,
            limit: 100,
        }
    }

    #[test]
    fn merge_rule_and_duplicate() {
        let (_d, s) = store();
        let a = parse_ndjson(br#"{"rrname":"a.example.","rrtype":"A","rdata":["192.0.2.1"],"time_first":10,"time_last":20,"count":2,"clients":3}"#).unwrap();
        let b = parse_ndjson(br#"{"rrname":"A.example","rrtype":"A","rdata":["192.0.2.1"],"time_first":5,"time_last":15,"count":4,"clients":2}"#).unwrap();
        assert_eq!(
            s.store_batch(&meta("1"), &a, 0).unwrap(),
            StoreOutcome::Stored
        );
        assert_eq!(
            s.store_batch(&meta("2"), &b, 0).unwrap(),
            StoreOutcome::Stored
        );
        assert_eq!(
            s.store_batch(&meta("2"), &b, 0).unwrap(),
            StoreOutcome::Duplicate
        );
        let rows = s.query(&q(Selector::Name("a.example.".into()))).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].count, rows[0].time_first, rows[0].time_last),
            (6, 5, 20)
        );
        assert_eq!(rows[0].clients, Some(3));
    }

    #[test]
    fn below_excludes_the_name_itself_and_siblings() {
        let (_d, s) = store();
        let recs = parse_ndjson(
            br#"{"rrname":"example.com.","rrtype":"NS","rdata":["ns.example.net."],"time_first":1,"time_last":1}
{"rrname":"www.example.com.","rrtype":"A","rdata":["192.0.2.1"],"time_first":1,"time_last":1}
{"rrname":"a.b.example.com.","rrtype":"A","rdata":["192.0.2.2"],"time_first":1,"time_last":2}
{"rrname":"badexample.com.","rrtype":"A","rdata":["192.0.2.3"],"time_first":1,"time_last":1}"#,
        )
        .unwrap();
        s.store_batch(&meta("1"), &recs, 0).unwrap();
        let names: Vec<String> = s
            .query(&q(Selector::Below("example.com.".into())))
            .unwrap()
            .into_iter()
            .map(|r| r.rrname)
            .collect();
        assert_eq!(names, ["a.b.example.com.", "www.example.com."]);
        assert_eq!(s.query(&q(Selector::Below(".".into()))).unwrap().len(), 4);
    }
}
