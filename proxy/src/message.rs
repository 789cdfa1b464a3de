//! The little DNS the proxy needs on raw bytes: the header ID and flags, the question's span,
//! and the error answers it writes itself (REFUSED, SERVFAIL). Everything else is forwarded as is.

/// Bytes of a DNS header.
pub const HEADER_LEN: usize = 12;

/// RCODE values the proxy answers with itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    ServFail = 2,
    Refused = 5,
}

/// The message ID, if the message has a header.
pub fn id(msg: &[u8]) -> Option<u16> {
    (msg.len() >= HEADER_LEN).then(|| u16::from_be_bytes([msg[0], msg[1]]))
}

/// Writes `id` into the header. The caller has checked the length.
pub fn set_id(msg: &mut [u8], id: u16) {
    msg[..2].copy_from_slice(&id.to_be_bytes());
}

/// True when the QR bit says the message is a response.
pub fn is_response(msg: &[u8]) -> bool {
    msg.len() > 2 && msg[2] & 0x80 != 0
}

/// The TC bit.
pub fn is_truncated(msg: &[u8]) -> bool {
    msg.len() > 2 && msg[2] & 0x02 != 0
}

/// The byte range of the first question (name, type and class), when QDCOUNT ≥ 1 and it is well
/// formed. Names in a query are never compressed, so a pointer makes it malformed here.
pub fn question_span(msg: &[u8]) -> Option<std::ops::Range<usize>> {
    if msg.len() < HEADER_LEN || u16::from_be_bytes([msg[4], msg[5]]) == 0 {
        return None;
    }
    let mut at = HEADER_LEN;
    loop {
        let len = *msg.get(at)? as usize;
        if len == 0 {
            at += 1;
            break;
        }
        if len & 0xC0 != 0 || at - HEADER_LEN + len + 1 > 255 {
            return None;
        }
        at += 1 + len;
    }
    let end = at + 4;
    (end <= msg.len()).then_some(HEADER_LEN..end)
}

/// True when `response` repeats `query`'s question byte for byte (same case too: resolvers echo
/// it exactly). A query without a readable question is matched on its ID alone.
pub fn same_question(query: &[u8], response: &[u8]) -> bool {
    match question_span(query) {
        None => true,
        Some(span) => response.get(span.clone()) == query.get(span),
    }
}

/// An error answer to `query`: its header with QR set, RD kept, RA set and `rcode`, and its
/// question when readable. Nothing else, so it is never larger than the query.
pub fn error_answer(query: &[u8], rcode: Rcode, out: &mut Vec<u8>) {
    out.clear();
    if query.len() < HEADER_LEN {
        return;
    }
    let span = question_span(query);
    out.extend_from_slice(&query[..4]);
    // QR=1, opcode and RD kept; AA, TC cleared.
    out[2] = 0x80 | (query[2] & 0x79);
    // RA=1 (the proxy stands in for a recursive resolver), Z/AD/CD cleared except CD kept.
    out[3] = 0x80 | (query[3] & 0x10) | rcode as u8;
    let qdcount: u16 = if span.is_some() { 1 } else { 0 };
    out.extend_from_slice(&qdcount.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    if let Some(span) = span {
        out.extend_from_slice(&query[span]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[&str], qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    #[test]
    fn question_span_covers_name_type_class() {
        let q = query(&["www", "example", "com"], 1);
        assert_eq!(question_span(&q), Some(12..q.len()));
        assert_eq!(question_span(&q[..q.len() - 1]), None);
        let mut no_question = q.clone();
        no_question[5] = 0;
        assert_eq!(question_span(&no_question), None);
        let mut pointer = q.clone();
        pointer[12] = 0xC0;
        assert_eq!(question_span(&pointer), None);
    }

    #[test]
    fn error_answer_keeps_id_opcode_rd_and_question() {
        let q = query(&["a", "test"], 28);
        let mut out = Vec::new();
        error_answer(&q, Rcode::Refused, &mut out);
        assert_eq!(&out[..2], &[0x12, 0x34]);
        assert_eq!(out[2], 0x81, "QR and RD");
        assert_eq!(out[3] & 0x0F, 5);
        assert_eq!(&out[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[12..], &q[12..]);
        assert!(same_question(&q, &out));
        error_answer(&q[..5], Rcode::ServFail, &mut out);
        assert!(out.is_empty(), "no header, no answer");
    }

    #[test]
    fn same_question_is_exact() {
        let q = query(&["a", "test"], 1);
        let mut r = q.clone();
        assert!(same_question(&q, &r));
        r[13] = b'A';
        assert!(!same_question(&q, &r), "case differs");
        assert!(!same_question(&q, &r[..14]), "response too short");
    }
}
