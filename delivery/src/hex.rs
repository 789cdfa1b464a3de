//! Lowercase hex encoding for key files, batch ids and the test vector.
//! Tiny on purpose: the crate needs only these two directions.

/// Encodes bytes as lowercase hex.
pub(crate) fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Decodes exactly `out.len() * 2` hex digits (either case) into `out`; `None` otherwise.
pub(crate) fn decode_into(text: &str, out: &mut [u8]) -> Option<()> {
    let t = text.as_bytes();
    if t.len() != out.len() * 2 {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(t.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_rejects() {
        let bytes = [0u8, 1, 0xab, 0xff];
        let s = super::encode(&bytes);
        assert_eq!(s, "0001abff");
        let mut out = [0u8; 4];
        assert_eq!(super::decode_into("0001ABff", &mut out), Some(()));
        assert_eq!(out, bytes);
        assert_eq!(super::decode_into("0001abf", &mut out), None);
        assert_eq!(super::decode_into("0001abfg", &mut out), None);
    }
}
