//! Fuzz target for the proxy's reading of raw DNS bytes from clients and upstreams: the header,
//! the question's span, the error answers it writes, and the matching of an answer to its query.
#![no_main]

use dnsensor_proxy::message::{
    error_answer, id, is_response, question_span, same_question, Rcode, HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

// Input: a 16-bit length, then that many bytes of "query", the rest is the "answer".
fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let cut = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (query, answer) = rest.split_at(cut);
    for msg in [query, answer] {
        assert_eq!(id(msg).is_some(), msg.len() >= HEADER_LEN);
        let span = question_span(msg);
        if let Some(span) = &span {
            assert_eq!(span.start, HEADER_LEN);
            assert!(span.end <= msg.len() && span.len() >= 5 && span.len() - 4 <= 255);
        }
        let mut out = Vec::new();
        for rcode in [Rcode::Refused, Rcode::ServFail] {
            error_answer(msg, rcode, &mut out);
            assert!(out.len() <= msg.len(), "an error answer outgrew its query");
            if msg.len() >= HEADER_LEN {
                assert_eq!(id(&out), id(msg));
                assert!(is_response(&out));
                assert_eq!(out[3] & 0x0F, rcode as u8);
                assert_eq!(question_span(&out), span);
                assert!(same_question(msg, &out));
            } else {
                assert!(out.is_empty());
            }
        }
    }
    // Matching never panics and is exact on the query's question bytes.
    let matched = same_question(query, answer);
    if let Some(span) = question_span(query) {
        assert_eq!(matched, answer.get(span.clone()) == query.get(span));
    } else {
        assert!(matched);
    }
});
