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
        // The name so far, this label and the root label still to come: at most 255 bytes.
        if len & 0xC0 != 0 || at - HEADER_LEN + 1 + len + 1 > 255 {
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
    use proptest::prelude::*;

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

    /// RFC 1035 caps a name at 255 bytes, length bytes and the root label included.
    #[test]
    fn a_question_name_is_at_most_255_bytes() {
        // Four labels of 62 bytes and one of `last`: 4 * 63 + (1 + last) + 1 bytes in all.
        let name = |last: usize| -> Vec<String> {
            let mut labels = vec!["x".repeat(62); 4];
            labels.push("y".repeat(last));
            labels
        };
        let q =
            |labels: &[String]| query(&labels.iter().map(String::as_str).collect::<Vec<_>>(), 1);
        let longest = q(&name(1));
        assert_eq!(question_span(&longest), Some(12..12 + 255 + 4));
        assert_eq!(question_span(&q(&name(2))), None, "a 256-byte name");
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

    /// The checks every message must pass, whatever its bytes; shared with the fuzz target's
    /// idea of the same rules.
    fn check_any(msg: &[u8]) -> Result<(), TestCaseError> {
        prop_assert_eq!(id(msg).is_some(), msg.len() >= HEADER_LEN);
        let span = question_span(msg);
        if let Some(span) = &span {
            prop_assert_eq!(span.start, HEADER_LEN);
            prop_assert!(span.end <= msg.len());
            // A name of uncompressed labels ending in the root label, then type and class.
            prop_assert!(span.len() >= 5 && span.len() - 4 <= 255);
            prop_assert_eq!(msg[span.end - 5], 0);
        }
        let mut out = Vec::new();
        error_answer(msg, Rcode::ServFail, &mut out);
        prop_assert!(
            out.len() <= msg.len(),
            "an error answer never outgrows its query"
        );
        if msg.len() < HEADER_LEN {
            prop_assert!(out.is_empty());
            return Ok(());
        }
        prop_assert_eq!(id(&out), id(msg));
        prop_assert!(is_response(&out));
        prop_assert!(!is_truncated(&out));
        prop_assert_eq!(out[3] & 0x0F, Rcode::ServFail as u8);
        prop_assert_eq!(
            u16::from_be_bytes([out[4], out[5]]),
            u16::from(span.is_some())
        );
        prop_assert_eq!(&out[6..12], &[0u8; 6][..]);
        prop_assert_eq!(question_span(&out), span.clone());
        prop_assert!(same_question(msg, &out));
        Ok(())
    }

    fn label() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 1..=63)
    }

    proptest! {
        /// Arbitrary bytes, from a client or an upstream: nothing panics and every rule holds.
        #[test]
        fn any_bytes_keep_the_rules(msg in prop::collection::vec(any::<u8>(), 0..300)) {
            check_any(&msg)?;
        }

        /// A well-formed question is found exactly, and an answer matches it only when it
        /// repeats those bytes; a change anywhere else does not matter.
        #[test]
        fn a_question_matches_only_its_own_bytes(
            header in prop::array::uniform12(any::<u8>()),
            labels in prop::collection::vec(label(), 0..4),
            qtype in any::<u16>(),
            rest in prop::collection::vec(any::<u8>(), 0..40),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut q = header.to_vec();
            q[4..6].copy_from_slice(&1u16.to_be_bytes());
            for l in &labels {
                q.push(l.len() as u8);
                q.extend_from_slice(l);
            }
            q.push(0);
            q.extend_from_slice(&qtype.to_be_bytes());
            q.extend_from_slice(&1u16.to_be_bytes());
            let end = q.len();
            q.extend_from_slice(&rest);
            check_any(&q)?;
            prop_assert_eq!(question_span(&q), Some(HEADER_LEN..end));
            let mut answer = q.clone();
            let at = flip.index(answer.len());
            answer[at] ^= 1 << bit;
            prop_assert_eq!(same_question(&q, &answer), !(HEADER_LEN..end).contains(&at));
            prop_assert!(!same_question(&q, &q[..end - 1]), "a cut question never matches");
        }
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
