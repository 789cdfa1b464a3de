//! The query endpoints' input and output: turning a path value and `?rrtype=`/`?limit=` into
//! a store query, and stored rows back into COF NDJSON lines.

use serde::{Deserialize, Serialize};

use crate::cof::{normalise_ip, normalise_name, normalise_rrtype};
use crate::store::{Query, Row, Selector};

/// Rows returned when the request has no `?limit=`.
pub const DEFAULT_QUERY_LIMIT: u32 = 1_000;
/// The largest `?limit=` accepted; it bounds the memory one answer can take.
pub const MAX_QUERY_LIMIT: u32 = 100_000;

/// The query string both endpoints accept. Kept as text so that a bad value gets our own 400
/// message rather than the framework's.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    rrtype: Option<String>,
    limit: Option<String>,
}

fn common(params: &Params) -> Result<(Option<String>, u32), String> {
    let rrtype = params.rrtype.as_deref().map(normalise_rrtype).transpose()?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_QUERY_LIMIT,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_QUERY_LIMIT).contains(&n) => n,
            _ => {
                return Err(format!(
                    "limit must be a number from 1 to {MAX_QUERY_LIMIT}"
                ))
            }
        },
    };
    Ok((rrtype, limit))
}

/// `/rrset/{name}`: an exact owner name, or `*.parent` for every name strictly below parent.
pub(crate) fn rrset_query(name: &str, params: &Params) -> Result<Query, String> {
    let (rrtype, limit) = common(params)?;
    let selector = if let Some(parent) = name.strip_prefix("*.") {
        // "*." alone asks for everything below the root.
        let parent = if parent.is_empty() { "." } else { parent };
        Selector::Below(normalise_name(parent)?)
    } else {
        Selector::Name(normalise_name(name)?)
    };
    Ok(Query {
        selector,
        rrtype,
        limit,
    })
}

/// `/rdata/{value}`: an IPv4/IPv6 address, or a name that rdata points at.
pub(crate) fn rdata_query(value: &str, params: &Params) -> Result<Query, String> {
    let (rrtype, limit) = common(params)?;
    let key = match normalise_ip(value) {
        Some(ip) => ip,
        None => normalise_name(value)?,
    };
    Ok(Query {
        selector: Selector::Rdata(key),
        rrtype,
        limit,
    })
}

#[derive(Serialize)]
struct CofLine<'a> {
    rrname: &'a str,
    rrtype: &'a str,
    rdata: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bailiwick: Option<&'a str>,
    time_first: i64,
    time_last: i64,
    count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    clients: Option<i64>,
}

/// Renders rows as COF NDJSON, one line per RRset, each ending in a newline.
pub(crate) fn render(rows: &[Row]) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    for row in rows {
        let line = CofLine {
            rrname: &row.rrname,
            rrtype: &row.rrtype,
            rdata: serde_json::from_str(&row.rdata_json)?,
            bailiwick: (!row.bailiwick.is_empty()).then_some(row.bailiwick.as_str()),
            time_first: row.time_first,
            time_last: row.time_last,
            count: row.count,
            clients: row.clients,
        };
        out.push_str(&serde_json::to_string(&line)?);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(rrtype: Option<&str>, limit: Option<&str>) -> Params {
        Params {
            rrtype: rrtype.map(String::from),
            limit: limit.map(String::from),
        }
    }

    #[test]
    fn rrset_forms() {
        let q = rrset_query("WWW.Example.com", &p(Some("aaaa"), None)).unwrap();
        assert_eq!(q.selector, Selector::Name("www.example.com.".into()));
        assert_eq!(q.rrtype.as_deref(), Some("AAAA"));
        assert_eq!(q.limit, DEFAULT_QUERY_LIMIT);
        let q = rrset_query("*.example.com.", &p(None, Some("5"))).unwrap();
        assert_eq!(q.selector, Selector::Below("example.com.".into()));
        assert_eq!(q.limit, 5);
        assert_eq!(
            rrset_query("*.", &p(None, None)).unwrap().selector,
            Selector::Below(".".into())
        );
        assert!(rrset_query("a", &p(None, Some("0"))).is_err());
        assert!(rrset_query("a", &p(None, Some("100001"))).is_err());
        assert!(rrset_query("a", &p(Some("A;"), None)).is_err());
    }

    #[test]
    fn rdata_forms() {
        let sel = |v| rdata_query(v, &Params::default()).unwrap().selector;
        assert_eq!(sel("2001:DB8::0001"), Selector::Rdata("2001:db8::1".into()));
        assert_eq!(sel("192.0.2.1"), Selector::Rdata("192.0.2.1".into()));
        assert_eq!(
            sel("Mail.Example.com"),
            Selector::Rdata("mail.example.com.".into())
        );
    }
}
