//! COF records as the collector reads them: parsing and validating a sensor's NDJSON lines,
//! normalising the key fields, and pulling out the rdata values that `/rdata` looks up.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

/// Longest owner name or rdata element we accept, in characters. A wire name is at most 255
/// bytes; presentation escapes (`\DDD`) can make it up to four times longer.
const MAX_NAME_CHARS: usize = 1024;
/// Longest rdata element, in characters: 65535 wire bytes as RFC 3597 hex plus some slack.
const MAX_RDATA_CHARS: usize = 140_000;
/// Most elements in one RRset. A 64 KiB message cannot hold more records than this.
const MAX_RDATA_ELEMENTS: usize = 6_000;
/// Longest type mnemonic (`TYPE65535` and `NSEC3PARAM` both fit).
const MAX_RRTYPE_CHARS: usize = 16;

/// `rdata` as COF allows it: an array of strings, or a single string.
#[derive(Deserialize)]
#[serde(untagged)]
enum RdataField {
    Many(Vec<String>),
    One(String),
}

/// One line as a sensor writes it. Unknown fields (`sensor_id`, `origin`, …) are ignored so
/// that newer sensors can add fields without being refused.
#[derive(Deserialize)]
struct WireRecord {
    rrname: String,
    rrtype: String,
    rdata: RdataField,
    #[serde(default)]
    bailiwick: Option<String>,
    time_first: u64,
    time_last: u64,
    /// COF says "should"; a line without it was seen once.
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    clients: Option<u64>,
}

/// A validated record, normalised so that equal keys compare equal as SQLite text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub rrname: String,
    pub rrtype: String,
    /// Empty when the sensor did not know the bailiwick.
    pub bailiwick: String,
    /// The rdata array re-serialised compactly, in the order the sensor sent it.
    pub rdata_json: String,
    pub time_first: i64,
    pub time_last: i64,
    pub count: i64,
    pub clients: Option<i64>,
    /// Normalised addresses and target names found in the rdata (see [`rdata_index_values`]).
    pub index_values: Vec<String>,
}

/// Why an NDJSON payload was refused; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineError {
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NDJSON line {}: {}", self.line, self.reason)
    }
}

/// Parses every non-blank line of `ndjson` into a [`Record`]; the first bad line fails the
/// whole payload, because a batch is stored all or nothing.
pub(crate) fn parse_ndjson(ndjson: &[u8]) -> Result<Vec<Record>, LineError> {
    let mut out = Vec::new();
    for (i, raw) in ndjson.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = parse_line(line).map_err(|reason| LineError {
            line: i + 1,
            reason,
        })?;
        out.push(record);
    }
    Ok(out)
}

fn parse_line(line: &[u8]) -> Result<Record, String> {
    let wire: WireRecord =
        serde_json::from_slice(line).map_err(|e| format!("not a COF record: {e}"))?;
    let rrname = normalise_name(&wire.rrname).map_err(|e| format!("rrname: {e}"))?;
    let rrtype = normalise_rrtype(&wire.rrtype).map_err(|e| format!("rrtype: {e}"))?;
    let bailiwick = match wire.bailiwick.as_deref() {
        None | Some("") => String::new(),
        Some(b) => normalise_name(b).map_err(|e| format!("bailiwick: {e}"))?,
    };
    let rdata = match wire.rdata {
        RdataField::Many(v) => v,
        RdataField::One(s) => vec![s],
    };
    if rdata.is_empty() {
        return Err("rdata is empty".into());
    }
    if rdata.len() > MAX_RDATA_ELEMENTS {
        return Err(format!("rdata has more than {MAX_RDATA_ELEMENTS} elements"));
    }
    if let Some(e) = rdata.iter().find(|e| bad_text(e, MAX_RDATA_CHARS)) {
        return Err(format!(
            "rdata element is empty, too long or has control characters: {:.40?}",
            e
        ));
    }
    let time_first = to_i64(wire.time_first, "time_first")?;
    let time_last = to_i64(wire.time_last, "time_last")?;
    if time_first > time_last {
        return Err("time_first is after time_last".into());
    }
    let count = to_i64(wire.count.unwrap_or(1), "count")?;
    if count == 0 {
        return Err("count is 0".into());
    }
    let clients = wire.clients.map(|c| to_i64(c, "clients")).transpose()?;
    let index_values = rdata_index_values(&rrtype, &rdata);
    // serde_json writes strings one way only, so the same array always yields the same text.
    let rdata_json = serde_json::to_string(&rdata).map_err(|e| e.to_string())?;
    Ok(Record {
        rrname,
        rrtype,
        bailiwick,
        rdata_json,
        time_first,
        time_last,
        count,
        clients,
        index_values,
    })
}

fn to_i64(v: u64, what: &str) -> Result<i64, String> {
    // SQLite integers are signed 64-bit.
    i64::try_from(v).map_err(|_| format!("{what} is larger than {}", i64::MAX))
}

fn bad_text(s: &str, max: usize) -> bool {
    s.is_empty() || s.len() > max || s.chars().any(char::is_control)
}

/// Lowercases a presentation-format name and makes it absolute, so `WWW.Example.com` and
/// `www.example.com.` are one key. Escapes (`\DDD`) are kept as they are.
pub(crate) fn normalise_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if bad_text(name, MAX_NAME_CHARS) || name.contains(' ') {
        return Err("name is too long or has spaces or control characters".into());
    }
    let mut out = name.to_ascii_lowercase();
    if out.contains("..") || (out.starts_with('.') && out != ".") {
        return Err("name has an empty label".into());
    }
    if !ends_with_unescaped_dot(&out) {
        out.push('.');
    }
    Ok(out)
}

/// True when the name's last character is a label separator rather than an escaped `\.`.
fn ends_with_unescaped_dot(name: &str) -> bool {
    let Some(before) = name.strip_suffix('.') else {
        return false;
    };
    let backslashes = before.bytes().rev().take_while(|&b| b == b'\\').count();
    backslashes % 2 == 0
}

/// Uppercases a type mnemonic (`a` → `A`, `type65534` → `TYPE65534`) and checks its alphabet.
pub(crate) fn normalise_rrtype(rrtype: &str) -> Result<String, String> {
    let ok = !rrtype.is_empty()
        && rrtype.len() <= MAX_RRTYPE_CHARS
        && rrtype
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(rrtype.to_ascii_uppercase())
    } else {
        Err(format!("not a type mnemonic: {rrtype:.20?}"))
    }
}

/// Normalises an address the way [`rdata_index_values`] stores it: IPv6 in RFC 5952 form
/// (`2001:DB8::0001` → `2001:db8::1`). `None` when `s` is not an address.
pub(crate) fn normalise_ip(s: &str) -> Option<String> {
    if let Ok(v4) = s.parse::<Ipv4Addr>() {
        return Some(v4.to_string());
    }
    s.parse::<Ipv6Addr>().ok().map(|v6| v6.to_string())
}

/// Which whitespace-separated field of an rdata element is a target name, by type.
/// `usize::MAX` means "the last field".
fn target_field(rrtype: &str) -> Option<usize> {
    match rrtype {
        "NS" | "CNAME" | "DNAME" | "PTR" | "MB" | "MD" | "MF" | "MG" | "MR" | "NSAP-PTR" => Some(0),
        // SOA: the primary server (mname).
        "SOA" => Some(0),
        "MX" | "KX" | "AFSDB" | "RT" | "SVCB" | "HTTPS" => Some(1),
        "SRV" => Some(3),
        "NAPTR" => Some(usize::MAX),
        _ => None,
    }
}

/// The values an RRset is found by in `/rdata`: each A/AAAA address, and each target name of
/// the types that point at another name. Unparseable elements are skipped, not refused,
/// because they are still worth storing.
pub(crate) fn rdata_index_values(rrtype: &str, rdata: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for element in rdata {
        let value = match rrtype {
            "A" => element.parse::<Ipv4Addr>().ok().map(|a| a.to_string()),
            "AAAA" => element.parse::<Ipv6Addr>().ok().map(|a| a.to_string()),
            _ => target_field(rrtype).and_then(|field| {
                let mut fields = element.split_ascii_whitespace();
                let target = if field == usize::MAX {
                    fields.next_back()
                } else {
                    fields.nth(field)
                }?;
                // "." in SVCB/HTTPS/NAPTR means "no target" or "the owner itself".
                if target == "." && rrtype != "NS" && rrtype != "CNAME" {
                    return None;
                }
                normalise_name(target).ok()
            }),
        };
        if let Some(v) = value {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_are_lowercased_and_made_absolute() {
        assert_eq!(
            normalise_name("WWW.Example.com").unwrap(),
            "www.example.com."
        );
        assert_eq!(
            normalise_name("www.example.com.").unwrap(),
            "www.example.com."
        );
        assert_eq!(normalise_name(".").unwrap(), ".");
        assert_eq!(normalise_name("a\\.").unwrap(), "a\\..");
        assert!(normalise_name("").is_err());
        assert!(normalise_name("a..b").is_err());
        assert!(normalise_name("a b").is_err());
    }

    #[test]
    fn index_values_by_type() {
        assert_eq!(
            rdata_index_values("AAAA", &strings(&["2001:DB8::0001", "bogus"])),
            strings(&["2001:db8::1"])
        );
        assert_eq!(
            rdata_index_values(
                "MX",
                &strings(&["10 Mail.Example.com.", "20 mail.example.com"])
            ),
            strings(&["mail.example.com."])
        );
        assert_eq!(
            rdata_index_values("SRV", &strings(&["0 5 5060 sip.example.com."])),
            strings(&["sip.example.com."])
        );
        assert_eq!(
            rdata_index_values("HTTPS", &strings(&["1 . alpn=h2"])),
            Vec::<String>::new()
        );
        assert_eq!(
            rdata_index_values("TXT", &strings(&["\"v=spf1 -all\""])),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_line_is_validated_and_normalised() {
        let line = br#"{"rrname":"WWW.example.com","rrtype":"a","rdata":"192.0.2.1","time_first":5,"time_last":9,"count":3,"sensor_id":"s"}"#;
        let r = parse_ndjson(line).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].rrname, "www.example.com.");
        assert_eq!(r[0].rrtype, "A");
        assert_eq!(r[0].bailiwick, "");
        assert_eq!(r[0].rdata_json, r#"["192.0.2.1"]"#);
        assert_eq!(r[0].index_values, strings(&["192.0.2.1"]));
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn label() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9-]{1,12}"
        }

        proptest! {
            /// Any bytes: no panic; what is accepted is normalised and consistent, and a refusal
            /// names a line of the payload.
            #[test]
            fn any_bytes_are_refused_or_normalised(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                match parse_ndjson(&bytes) {
                    Ok(records) => {
                        for r in records {
                            prop_assert!(r.rrname.ends_with('.'));
                            prop_assert!(!r.rrname.bytes().any(|b| b.is_ascii_uppercase()));
                            prop_assert!(r.time_first <= r.time_last && r.count >= 1);
                        }
                    }
                    Err(e) => {
                        let lines = bytes.split(|&b| b == b'\n').count();
                        prop_assert!((1..=lines).contains(&e.line), "{e}");
                    }
                }
            }

            /// Lines a sensor could write are accepted, with their names lowercased and made
            /// absolute, their type uppercased and their counts and times kept.
            #[test]
            fn sensor_lines_are_accepted_and_normalised(
                labels in proptest::collection::vec(label(), 1..5),
                absolute in any::<bool>(),
                rrtype in prop::sample::select(vec!["a", "AAAA", "ns", "Txt", "type65534"]),
                rdata in proptest::collection::vec("[ -~]{1,30}", 1..4),
                first in 0u64..(1 << 40),
                span in 0u64..(1 << 20),
                count in 1u64..(1 << 40),
            ) {
                let mut name = labels.join(".");
                if absolute {
                    name.push('.');
                }
                let line = serde_json::json!({
                    "rrname": name, "rrtype": rrtype, "rdata": rdata,
                    "time_first": first, "time_last": first + span, "count": count,
                });
                let records = parse_ndjson(line.to_string().as_bytes()).unwrap();
                prop_assert_eq!(records.len(), 1);
                let r = &records[0];
                prop_assert_eq!(&r.rrname, &format!("{}.", labels.join(".").to_ascii_lowercase()));
                prop_assert_eq!(&r.rrtype, &rrtype.to_ascii_uppercase());
                prop_assert_eq!(&r.rdata_json, &serde_json::to_string(&rdata).unwrap());
                prop_assert_eq!((r.time_first, r.time_last, r.count), (first as i64, (first + span) as i64, count as i64));
            }
        }
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let ok = r#"{"rrname":"a.","rrtype":"A","rdata":["192.0.2.1"],"time_first":1,"time_last":2,"count":1}"#;
        for bad in [
            "not json",
            r#"{"rrname":"a.","rrtype":"A","rdata":[],"time_first":1,"time_last":2}"#,
            r#"{"rrname":"a.","rrtype":"A","rdata":["x"],"time_first":3,"time_last":2}"#,
            r#"{"rrname":"a.","rrtype":"A","rdata":["x"],"time_first":1,"time_last":2,"count":0}"#,
            r#"{"rrname":"a.","rrtype":"A B","rdata":["x"],"time_first":1,"time_last":2}"#,
            r#"{"rrtype":"A","rdata":["x"],"time_first":1,"time_last":2}"#,
        ] {
            let payload = format!("{ok}\n\n{bad}\n");
            let err = parse_ndjson(payload.as_bytes()).unwrap_err();
            assert_eq!(err.line, 3, "{bad}");
        }
    }
}
