//! Presentation (zone-file text) formatting of names, types and canonical rdata, used only at flush time.
//! Known types get their RFC presentation form; anything that does not parse falls back to RFC 3597 `\# len hex`.

/// The mnemonic of an RR type, if it has one.
pub fn type_mnemonic(rtype: u16) -> Option<&'static str> {
    todo!("H2")
}

/// Writes an uncompressed wire name in presentation form, absolute (trailing dot), with `\.`, `\\` and `\DDD` escapes.
pub fn write_name(wire: &[u8], out: &mut String) {
    todo!("H2")
}

/// Writes canonical rdata (names uncompressed) of type `rtype` in presentation form.
pub fn write_rdata(rtype: u16, rdata: &[u8], out: &mut String) {
    todo!("H2")
}
