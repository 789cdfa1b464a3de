//! Passive DNS Common Output Format: one JSON object per RRset, one line each.
//! Records become text here, at flush time only; the hot path never formats.

use crate::dedup::Entry;
use crate::present;
use crate::rrset::KeyView;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

/// Reusable buffers for turning keys into COF lines.
#[derive(Debug, Default)]
pub struct CofEncoder {
    text: String,
    /// Write each entry's distinct-client count as `clients`.
    clients: bool,
}

impl CofEncoder {
    /// A fresh encoder.
    pub fn new() -> CofEncoder {
        CofEncoder::default()
    }

    /// An encoder that also writes `"clients":N` after `count`, for `--client-counts`.
    pub fn with_clients() -> CofEncoder {
        CofEncoder {
            clients: true,
            ..CofEncoder::default()
        }
    }

    /// Appends one COF line (with its trailing newline) for `key` and `entry` to `out`.
    ///
    /// Field order is fixed: rrname, rrtype, rdata, bailiwick (when known), time_first,
    /// time_last, count, clients (with [`CofEncoder::with_clients`]), sensor_id (when set).
    pub fn write_line(
        &mut self,
        out: &mut Vec<u8>,
        key: &KeyView<'_>,
        entry: &Entry,
        sensor_id: Option<&str>,
    ) {
        out.extend_from_slice(b"{\"rrname\":");
        self.text.clear();
        present::write_name(key.owner, &mut self.text);
        push_json_str(out, &self.text);

        // Mnemonics, numbers and addresses are plain ASCII by construction: no JSON check.
        out.extend_from_slice(b",\"rrtype\":\"");
        match present::type_mnemonic(key.rtype) {
            Some(m) => out.extend_from_slice(m.as_bytes()),
            // COF: the number where the type has no mnemonic.
            None => push_u64(out, key.rtype.into()),
        }
        out.push(b'"');

        out.extend_from_slice(b",\"rdata\":[");
        for (i, rdata) in key.rdatas().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.text.clear();
            present::write_rdata(key.rtype, rdata, &mut self.text);
            if matches!(key.rtype, TYPE_A | TYPE_AAAA) {
                out.push(b'"');
                out.extend_from_slice(self.text.as_bytes());
                out.push(b'"');
            } else {
                push_json_str(out, &self.text);
            }
        }
        out.push(b']');

        if let Some(bailiwick) = key.bailiwick {
            out.extend_from_slice(b",\"bailiwick\":");
            self.text.clear();
            present::write_name(bailiwick, &mut self.text);
            push_json_str(out, &self.text);
        }
        out.extend_from_slice(b",\"time_first\":");
        push_u64(out, entry.first);
        out.extend_from_slice(b",\"time_last\":");
        push_u64(out, entry.last);
        out.extend_from_slice(b",\"count\":");
        push_u64(out, entry.count);
        if self.clients {
            out.extend_from_slice(b",\"clients\":");
            push_u64(out, entry.clients.into());
        }
        if let Some(id) = sensor_id {
            out.extend_from_slice(b",\"sensor_id\":");
            push_json_str(out, id);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// Bytes that stand for themselves inside a JSON string: printable ASCII except `"` and `\`.
/// A table, because the flusher checks every byte of every name and address it writes.
const JSON_PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x20;
    while b < 0x7f {
        table[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    table
};

/// Appends `s` as a JSON string literal. serde_json does the escaping so that control
/// characters and quotes in names and TXT data always give valid JSON.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Nearly every name and address is plain printable ASCII with nothing to escape.
    if s.bytes().all(|b| JSON_PLAIN[usize::from(b)]) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing into a Vec cannot fail, and a &str always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// "00" to "99", for writing numbers two digits per division.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `n` in decimal; cheaper than `fmt` for the three numbers on every line, and two
/// digits at a time because the times have ten.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::{push_json_str, push_u64};

    proptest::proptest! {
        #[test]
        fn decimal_numbers_agree_with_fmt(n in proptest::prelude::any::<u64>(), small in 0u64..1000) {
            for n in [n, small, n >> 20] {
                let mut out = Vec::new();
                push_u64(&mut out, n);
                proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
            }
        }

        #[test]
        fn json_strings_agree_with_serde_json(s in ".{0,40}") {
            let mut out = Vec::new();
            push_json_str(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json::to_vec(&s).unwrap());
        }
    }

    #[test]
    fn decimal_numbers() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 1_795_742_737, u64::MAX] {
            push_u64(&mut out, n);
            out.push(b' ');
        }
        assert_eq!(out, b"0 7 10 1795742737 18446744073709551615 ");
    }

    #[test]
    fn json_strings_plain_and_escaped() {
        let mut out = Vec::new();
        push_json_str(&mut out, "www.d1.com.");
        out.push(b' ');
        push_json_str(&mut out, "\"v=spf1 \\\"x\\\"\"");
        out.push(b' ');
        push_json_str(&mut out, "a\u{1}b\u{7f}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""www.d1.com." "\"v=spf1 \\\"x\\\"\"" "a\u0001b"#.to_string() + "\u{7f}\""
        );
    }
}
