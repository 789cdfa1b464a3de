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
    /// The last time written and its digits (see [`CofEncoder::push_time`]).
    last_time: Option<(u64, DecimalText)>,
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
        self.push_name(out, key.owner);

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
            if let (TYPE_A, Ok(octets)) = (key.rtype, <[u8; 4]>::try_from(rdata)) {
                // The bulk of every flush: straight into the line, no `String` on the way.
                let (text, len) = present::ipv4_text(octets);
                out.push(b'"');
                out.extend_from_slice(text.get(..len).unwrap_or_default());
                out.push(b'"');
                continue;
            }
            self.text.clear();
            present::write_rdata(key.rtype, rdata, &mut self.text);
            // An address is plain ASCII; rdata of the wrong length for its type is written in
            // the generic form, whose `\#` needs the JSON escape like any other text.
            if key.rtype == TYPE_AAAA && rdata.len() == 16 {
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
            self.push_name(out, bailiwick);
        }
        out.extend_from_slice(b",\"time_first\":");
        self.push_time(out, entry.first);
        out.extend_from_slice(b",\"time_last\":");
        self.push_time(out, entry.last);
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

    /// Appends a time in Unix seconds. Most lines of a flush carry the same few seconds, twice
    /// each, so the last one's digits are kept and copied instead of worked out again.
    fn push_time(&mut self, out: &mut Vec<u8>, t: u64) {
        let digits = match self.last_time {
            Some((last, digits)) if last == t => digits,
            _ => {
                let digits = DecimalText::of(t);
                self.last_time = Some((t, digits));
                digits
            }
        };
        out.extend_from_slice(digits.as_bytes());
    }

    /// Appends a wire name as a JSON string of its presentation form.
    fn push_name(&mut self, out: &mut Vec<u8>, wire: &[u8]) {
        if !push_plain_name(out, wire) {
            self.text.clear();
            present::write_name(wire, &mut self.text);
            push_json_str(out, &self.text);
        }
    }
}

/// Appends `wire` as the JSON string of its presentation form, straight from the labels, when
/// the name is valid and no byte needs an escape: nearly every name. Otherwise it appends
/// nothing and returns false, and the caller takes the general path (present::write_name, then
/// a JSON check), which gives the same text here. Names are most of each line, and going
/// through a `String` and checking every byte twice was the largest part of formatting.
fn push_plain_name(out: &mut Vec<u8>, wire: &[u8]) -> bool {
    // First the whole name is checked; then it is copied at once and each length octet after
    // the first, and the root's zero, becomes a dot: a plain name's text is its wire form so
    // changed. A copy per label cost more than the rest of the name's work.
    let mut pos = 0;
    loop {
        let Some(&len) = wire.get(pos) else {
            return false;
        };
        if len == 0 {
            break;
        }
        let end = pos + 1 + usize::from(len);
        // The limits of present::write_name, which marks a name that breaks them.
        if len & 0xc0 != 0 || end >= present::MAX_NAME_LEN {
            return false;
        }
        let Some(label) = wire.get(pos + 1..end) else {
            return false;
        };
        if !label.iter().all(|&b| present::LABEL_PLAIN[usize::from(b)]) {
            return false;
        }
        pos = end;
    }
    out.push(b'"');
    match wire.get(1..=pos) {
        // The root name.
        None | Some([]) => out.push(b'.'),
        Some(text) => {
            let start = out.len();
            out.extend_from_slice(text);
            let copied = &mut out[start..];
            // Byte i of `text` is byte i + 1 of the wire name.
            let mut octet = usize::from(wire.first().copied().unwrap_or(0));
            while let Some(b) = copied.get_mut(octet) {
                let next = usize::from(*b);
                *b = b'.';
                octet += 1 + next;
            }
        }
    }
    out.push(b'"');
    true
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

/// Appends `n` in decimal; cheaper than `fmt` for the numbers on every line.
fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(DecimalText::of(n).as_bytes());
}

/// The decimal digits of a `u64`, right-aligned in a buffer.
#[derive(Debug, Clone, Copy)]
struct DecimalText {
    digits: [u8; 20],
    start: usize,
}

impl DecimalText {
    /// Two digits per division, because the times have ten.
    fn of(mut n: u64) -> DecimalText {
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
        DecimalText { digits, start: i }
    }

    fn as_bytes(&self) -> &[u8] {
        self.digits.get(self.start..).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::{push_json_str, push_plain_name, push_u64, CofEncoder};
    use crate::dedup::Entry;
    use crate::present;
    use crate::rrset::KeyView;

    /// The general path that `push_plain_name` stands in for.
    fn general_name(wire: &[u8]) -> Vec<u8> {
        let mut text = String::new();
        present::write_name(wire, &mut text);
        let mut out = Vec::new();
        push_json_str(&mut out, &text);
        out
    }

    fn direct_name(wire: &[u8]) -> Option<Vec<u8>> {
        let mut out = b"x".to_vec();
        let plain = push_plain_name(&mut out, wire);
        if !plain {
            assert_eq!(out, b"x", "nothing appended when it declines");
            return None;
        }
        Some(out.split_off(1))
    }

    /// Wire bytes made mostly of labels, so that valid names are common but any byte may appear.
    fn arb_wire() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let label = prop_oneof![
            proptest::collection::vec(
                proptest::sample::select(b"abcXYZ09-_*.\\\"@ \x00\xff".to_vec()),
                0..6
            ),
            proptest::collection::vec(any::<u8>(), 0..4),
        ];
        (
            proptest::collection::vec(label, 0..6),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..3),
        )
            .prop_map(|(labels, rooted, tail)| {
                let mut wire = Vec::new();
                for l in labels {
                    wire.push(l.len() as u8);
                    wire.extend_from_slice(&l);
                }
                if rooted {
                    wire.push(0);
                }
                wire.extend_from_slice(&tail);
                wire
            })
    }

    proptest::proptest! {
        #[test]
        fn direct_names_agree_with_the_general_path(wire in arb_wire()) {
            if let Some(direct) = direct_name(&wire) {
                proptest::prop_assert_eq!(direct, general_name(&wire));
            }
        }

        #[test]
        fn direct_names_agree_on_any_bytes(wire in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Some(direct) = direct_name(&wire) {
                proptest::prop_assert_eq!(direct, general_name(&wire));
            }
        }

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

    /// A key as the extractor lays it out (see `rrset::KeyView`).
    fn key(owner: &[u8], rtype: u16, zone: Option<&[u8]>, rdatas: &[&[u8]]) -> Vec<u8> {
        let mut k = owner.to_vec();
        k.extend_from_slice(&rtype.to_be_bytes());
        k.extend_from_slice(&1u16.to_be_bytes());
        match zone {
            Some(z) => {
                k.push(1);
                k.extend_from_slice(z);
            }
            None => k.push(0),
        }
        k.extend_from_slice(&(rdatas.len() as u16).to_be_bytes());
        for r in rdatas {
            k.extend_from_slice(&(r.len() as u16).to_be_bytes());
            k.extend_from_slice(r);
        }
        k
    }

    #[test]
    fn lines_are_exact_on_the_direct_and_the_general_paths() {
        let entry = |count, first, last| Entry {
            count,
            first,
            last,
            clients: 0,
        };
        let a = key(
            b"\x03www\x02d1\x03com\x00",
            1,
            Some(b"\x02d1\x03com\x00"),
            &[&[192, 0, 2, 1], &[198, 51, 100, 10]],
        );
        let odd = key(b"\x03a\"b\x00", 2, None, &[b"\x01x\x00", b"\x02n\\\x00"]);
        let short_a = key(b"\x00", 1, None, &[&[1, 2, 3]]);
        let mut enc = CofEncoder::new();
        let mut out = Vec::new();
        for (k, e, id) in [
            (&a, entry(3, 1_700_000_000, 1_700_000_060), Some("s1")),
            (&a, entry(1, 1_700_000_060, 1_700_000_060), None),
            (&odd, entry(2, 9, 10), None),
            (&short_a, entry(u64::MAX, 0, 0), None),
        ] {
            enc.write_line(&mut out, &KeyView::parse(k).unwrap(), &e, id);
        }
        let want = concat!(
            r#"{"rrname":"www.d1.com.","rrtype":"A","rdata":["192.0.2.1","198.51.100.10"],"bailiwick":"d1.com.","time_first":1700000000,"time_last":1700000060,"count":3,"sensor_id":"s1"}"#,
            "\n",
            r#"{"rrname":"www.d1.com.","rrtype":"A","rdata":["192.0.2.1","198.51.100.10"],"bailiwick":"d1.com.","time_first":1700000060,"time_last":1700000060,"count":1}"#,
            "\n",
            r#"{"rrname":"a\\\"b.","rrtype":"NS","rdata":["x.","n\\\\."],"time_first":9,"time_last":10,"count":2}"#,
            "\n",
            r#"{"rrname":".","rrtype":"A","rdata":["\\# 3 010203"],"time_first":0,"time_last":0,"count":18446744073709551615}"#,
            "\n",
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, want);
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("every line is JSON");
        }
    }

    #[test]
    fn direct_names_take_plain_names_and_decline_the_rest() {
        assert_eq!(
            direct_name(b"\x03www\x02d1\x03com\x00").unwrap(),
            b"\"www.d1.com.\""
        );
        assert_eq!(direct_name(b"\x00").unwrap(), b"\".\"");
        assert_eq!(
            direct_name(b"\x01*\x02_a\x00trailing").unwrap(),
            b"\"*._a.\""
        );
        // Escapes, a missing root, a pointer and an overlong label go the general way.
        for wire in [
            &b"\x03a.b\x00"[..],
            b"\x01\"\x00",
            b"\x01 \x00",
            b"\x03www",
            b"\xc0\x0c",
            b"\x05ab",
        ] {
            assert_eq!(direct_name(wire), None, "{wire:?}");
        }
        let long: Vec<u8> = (0..5)
            .flat_map(|_| {
                let mut l = vec![63u8];
                l.extend([b'a'; 63]);
                l
            })
            .chain([0])
            .collect();
        assert_eq!(direct_name(&long), None);
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
