//! Presentation (zone-file text) formatting of names, types and canonical rdata, used only at flush time.
//! Known types get their RFC presentation form; anything that does not parse falls back to RFC 3597 `\# len hex`.

use std::fmt::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};

// Type numbers that `write_rdata` formats; `type_mnemonic` lists many more.
const A: u16 = 1;
const NS: u16 = 2;
const MD: u16 = 3;
const MF: u16 = 4;
const CNAME: u16 = 5;
const SOA: u16 = 6;
const MB: u16 = 7;
const MG: u16 = 8;
const MR: u16 = 9;
const PTR: u16 = 12;
const HINFO: u16 = 13;
const MINFO: u16 = 14;
const MX: u16 = 15;
const TXT: u16 = 16;
const RP: u16 = 17;
const AFSDB: u16 = 18;
const X25: u16 = 19;
const ISDN: u16 = 20;
const RT: u16 = 21;
const NSAP: u16 = 22;
const SIG: u16 = 24;
const KEY: u16 = 25;
const PX: u16 = 26;
const GPOS: u16 = 27;
const AAAA: u16 = 28;
const LOC: u16 = 29;
const SRV: u16 = 33;
const NAPTR: u16 = 35;
const KX: u16 = 36;
const DNAME: u16 = 39;
const DS: u16 = 43;
const SSHFP: u16 = 44;
const RRSIG: u16 = 46;
const NSEC: u16 = 47;
const DNSKEY: u16 = 48;
const DHCID: u16 = 49;
const NSEC3: u16 = 50;
const NSEC3PARAM: u16 = 51;
const TLSA: u16 = 52;
const SMIMEA: u16 = 53;
const CDS: u16 = 59;
const CDNSKEY: u16 = 60;
const OPENPGPKEY: u16 = 61;
const CSYNC: u16 = 62;
const ZONEMD: u16 = 63;
const SVCB: u16 = 64;
const HTTPS: u16 = 65;
const SPF: u16 = 99;
const NID: u16 = 104;
const L32: u16 = 105;
const L64: u16 = 106;
const LP: u16 = 107;
const EUI48: u16 = 108;
const EUI64: u16 = 109;
const URI: u16 = 256;
const CAA: u16 = 257;
const DLV: u16 = 32769;

/// Writes an IPv4 address in dotted decimal. A records are the bulk of every flush, and this
/// is several times cheaper than going through `fmt` and `Ipv4Addr`'s Display.
fn push_ipv4(octets: [u8; 4], out: &mut String) {
    let (text, len) = ipv4_text(octets);
    // Digits and dots only, so always UTF-8.
    out.push_str(std::str::from_utf8(&text[..len]).unwrap_or_default());
}

/// The dotted-decimal text of an IPv4 address in a buffer, and its length: for
/// [`push_ipv4`], and for the COF encoder, which writes A records straight into its line.
pub(crate) fn ipv4_text(octets: [u8; 4]) -> ([u8; 15], usize) {
    let mut text = [0u8; 15];
    let mut n = 0;
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            text[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            text[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            text[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        text[n] = b'0' + octet % 10;
        n += 1;
    }
    (text, n)
}

/// Appends an IPv6 address exactly as `Ipv6Addr`'s `Display` does (RFC 5952: lowercase hex,
/// the longest run of two or more zero groups as `::`, the first on a tie, IPv4-mapped addresses
/// as `::ffff:a.b.c.d`), without going through `fmt`, which cost a fifth of COF formatting in the
/// sealing benchmark.
fn push_ipv6(octets: [u8; 16], out: &mut String) {
    let addr = Ipv6Addr::from(octets);
    if let Some(v4) = addr.to_ipv4_mapped() {
        out.push_str("::ffff:");
        push_ipv4(v4.octets(), out);
        return;
    }
    let groups = addr.segments();
    // The longest run of zero groups, if at least two long.
    let (mut best_at, mut best_len) = (0usize, 0usize);
    let mut i = 0;
    while i < 8 {
        if groups[i] == 0 {
            let start = i;
            while i < 8 && groups[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                (best_at, best_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let push_group = |g: u16, out: &mut String| {
        let mut started = false;
        for shift in [12u16, 8, 4, 0] {
            let nibble = usize::from((g >> shift) & 0xf);
            if nibble != 0 || started || shift == 0 {
                out.push(char::from(HEX[nibble]));
                started = true;
            }
        }
    };
    if best_len >= 2 {
        for (n, &g) in groups[..best_at].iter().enumerate() {
            if n > 0 {
                out.push(':');
            }
            push_group(g, out);
        }
        out.push_str("::");
        for (n, &g) in groups[best_at + best_len..].iter().enumerate() {
            if n > 0 {
                out.push(':');
            }
            push_group(g, out);
        }
    } else {
        for (n, &g) in groups.iter().enumerate() {
            if n > 0 {
                out.push(':');
            }
            push_group(g, out);
        }
    }
}

/// The mnemonic of an RR type, if it has one.
///
/// Covers the IANA "Resource Record (RR) TYPEs" registry entries that zone-file tools know;
/// callers print `TYPEnnn` (RFC 3597) for the rest.
pub fn type_mnemonic(rtype: u16) -> Option<&'static str> {
    Some(match rtype {
        1 => "A",
        2 => "NS",
        3 => "MD",
        4 => "MF",
        5 => "CNAME",
        6 => "SOA",
        7 => "MB",
        8 => "MG",
        9 => "MR",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        19 => "X25",
        20 => "ISDN",
        21 => "RT",
        22 => "NSAP",
        23 => "NSAP-PTR",
        24 => "SIG",
        25 => "KEY",
        26 => "PX",
        27 => "GPOS",
        28 => "AAAA",
        29 => "LOC",
        30 => "NXT",
        31 => "EID",
        32 => "NIMLOC",
        33 => "SRV",
        34 => "ATMA",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        38 => "A6",
        39 => "DNAME",
        40 => "SINK",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        56 => "NINFO",
        57 => "RKEY",
        58 => "TALINK",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        66 => "DSYNC",
        99 => "SPF",
        100 => "UINFO",
        101 => "UID",
        102 => "GID",
        103 => "UNSPEC",
        104 => "NID",
        105 => "L32",
        106 => "L64",
        107 => "LP",
        108 => "EUI48",
        109 => "EUI64",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        258 => "AVC",
        259 => "DOA",
        260 => "AMTRELAY",
        261 => "RESINFO",
        262 => "WALLET",
        32768 => "TA",
        32769 => "DLV",
        _ => return None,
    })
}

/// Writes an uncompressed wire name in presentation form, absolute (trailing dot), with `\.`, `\\` and `\DDD` escapes.
///
/// Escaping follows BIND: `. ; ( ) @ $ " \` get a backslash, bytes outside `0x21..=0x7e` become `\DDD`.
/// The root name is written as `.`; bytes after the terminating zero label are ignored.
///
/// Callers are expected to pass validated names, but this never panics: on an invalid name
/// (a label length with the top bits set, a label running past the end, no terminating zero,
/// or more than 255 octets) it writes the labels decoded so far followed by the marker `\#`
/// and no trailing dot. The marker cannot come out of a valid name, because `#` is never escaped.
pub fn write_name(wire: &[u8], out: &mut String) {
    let mut pos = 0;
    while let Some(&len) = wire.get(pos) {
        if len == 0 {
            if pos == 0 {
                out.push('.');
            }
            return;
        }
        let end = pos + 1 + usize::from(len);
        // `>=`: the root octet that must still follow counts towards the 255.
        if len & 0xc0 != 0 || end >= MAX_NAME_LEN || end > wire.len() {
            break;
        }
        write_label(&wire[pos + 1..end], out);
        out.push('.');
        pos = end;
    }
    out.push_str("\\#");
}

/// Writes canonical rdata (names uncompressed) of type `rtype` in presentation form.
///
/// Rdata that does not parse exactly for its type (wrong length, trailing bytes, invalid name,
/// malformed SvcParams, …), and every type without a formatter here, is written in the RFC 3597
/// generic form `\# <len> <HEX>` with uppercase hex and no spaces inside the hex (`\# 0` when empty).
/// Hex fields (DS digest, TLSA data, NSEC3 salt, …) are uppercase as BIND prints them; NSEC3
/// hashes are uppercase unpadded base32hex; SVCB `alpn` and unknown key values are quoted.
pub fn write_rdata(rtype: u16, rdata: &[u8], out: &mut String) {
    let mark = out.len();
    if format_known(rtype, rdata, out).is_err() {
        out.truncate(mark);
        write_generic(rdata, out);
    }
}

/// Wire names are limited to 255 octets (RFC 1035 §3.1), the terminating zero included.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// The rdata did not parse for its type; the caller falls back to RFC 3597.
#[derive(Debug)]
struct Malformed;

// Writing into a `String` cannot fail, but this lets `write!(...)?` sit next to parse errors.
impl From<fmt::Error> for Malformed {
    fn from(_: fmt::Error) -> Self {
        Malformed
    }
}

type Res<T = ()> = Result<T, Malformed>;

/// A bounds-checked cursor over rdata.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if n > self.buf.len() {
            return Err(Malformed);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Res<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Res<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Like `rest`, for fields that RFCs require to be non-empty (keys, digests, signatures).
    fn rest_nonempty(&mut self) -> Res<&'a [u8]> {
        match self.rest() {
            [] => Err(Malformed),
            rest => Ok(rest),
        }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// A `<character-string>`: one length octet, then that many bytes.
    fn char_string(&mut self) -> Res<&'a [u8]> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    /// A validated uncompressed wire name, terminating zero included.
    fn name(&mut self) -> Res<&'a [u8]> {
        let mut pos = 0;
        loop {
            let len = usize::from(*self.buf.get(pos).ok_or(Malformed)?);
            // Top bits set means a compression pointer or an obsolete extended label type,
            // neither of which may appear in canonical rdata.
            if len & 0xc0 != 0 {
                return Err(Malformed);
            }
            pos += 1 + len;
            if pos > MAX_NAME_LEN {
                return Err(Malformed);
            }
            if len == 0 {
                return self.take(pos);
            }
        }
    }
}

fn format_known(rtype: u16, rdata: &[u8], out: &mut String) -> Res {
    let mut r = Reader { buf: rdata };
    match rtype {
        A => push_ipv4(r.array::<4>()?, out),
        AAAA => push_ipv6(r.array::<16>()?, out),
        NS | MD | MF | CNAME | MB | MG | MR | PTR | DNAME => name(&mut r, out)?,
        SOA => {
            name(&mut r, out)?;
            out.push(' ');
            name(&mut r, out)?;
            for _ in 0..5 {
                write!(out, " {}", r.u32()?)?;
            }
        }
        MINFO | RP => {
            name(&mut r, out)?;
            out.push(' ');
            name(&mut r, out)?;
        }
        MX | AFSDB | RT | KX | LP => {
            write!(out, "{} ", r.u16()?)?;
            name(&mut r, out)?;
        }
        PX => {
            write!(out, "{} ", r.u16()?)?;
            name(&mut r, out)?;
            out.push(' ');
            name(&mut r, out)?;
        }
        SRV => {
            write!(out, "{} {} {} ", r.u16()?, r.u16()?, r.u16()?)?;
            name(&mut r, out)?;
        }
        HINFO => {
            quoted(r.char_string()?, out);
            out.push(' ');
            quoted(r.char_string()?, out);
        }
        // TXT needs at least one string (RFC 1035 §3.3.14), so empty rdata falls back to `\# 0`.
        TXT | SPF | X25 | ISDN | GPOS => {
            // X25 has one string, ISDN an address and an optional subaddress, GPOS exactly three.
            let allowed = match rtype {
                X25 => 1..=1,
                ISDN => 1..=2,
                GPOS => 3..=3,
                _ => 1..=usize::MAX,
            };
            let mut count = 0;
            loop {
                quoted(r.char_string()?, out);
                count += 1;
                if r.is_empty() {
                    break;
                }
                out.push(' ');
            }
            if !allowed.contains(&count) {
                return Err(Malformed);
            }
        }
        NAPTR => {
            write!(out, "{} {}", r.u16()?, r.u16()?)?;
            for _ in 0..3 {
                out.push(' ');
                quoted(r.char_string()?, out);
            }
            out.push(' ');
            name(&mut r, out)?;
        }
        NSAP => {
            out.push_str("0x");
            hex_upper(r.rest_nonempty()?, out);
        }
        CAA => {
            let flags = r.u8()?;
            let tag = r.char_string()?;
            // RFC 8659 §4.1: tags are non-empty and alphanumeric, so they print unquoted.
            if tag.is_empty() || !tag.iter().all(u8::is_ascii_alphanumeric) {
                return Err(Malformed);
            }
            write!(out, "{flags} ")?;
            tag.iter().for_each(|&b| out.push(char::from(b)));
            out.push(' ');
            quoted(r.rest(), out);
        }
        DS | CDS | DLV => {
            write!(out, "{} {} {} ", r.u16()?, r.u8()?, r.u8()?)?;
            hex_upper(r.rest_nonempty()?, out);
        }
        SSHFP => {
            write!(out, "{} {} ", r.u8()?, r.u8()?)?;
            hex_upper(r.rest_nonempty()?, out);
        }
        TLSA | SMIMEA => {
            write!(out, "{} {} {} ", r.u8()?, r.u8()?, r.u8()?)?;
            hex_upper(r.rest_nonempty()?, out);
        }
        DNSKEY | CDNSKEY | KEY => {
            write!(out, "{} {} {} ", r.u16()?, r.u8()?, r.u8()?)?;
            base64(r.rest_nonempty()?, out);
        }
        RRSIG | SIG => {
            write_type(r.u16()?, out);
            write!(out, " {} {} {} ", r.u8()?, r.u8()?, r.u32()?)?;
            let expiration = r.u32()?;
            let inception = r.u32()?;
            write_time(expiration, out)?;
            out.push(' ');
            write_time(inception, out)?;
            write!(out, " {} ", r.u16()?)?;
            name(&mut r, out)?;
            out.push(' ');
            base64(r.rest_nonempty()?, out);
        }
        NSEC => {
            name(&mut r, out)?;
            type_bitmap(&mut r, out)?;
        }
        NSEC3 => {
            write!(out, "{} {} {} ", r.u8()?, r.u8()?, r.u16()?)?;
            salt(r.char_string()?, out);
            out.push(' ');
            let hash = r.char_string()?;
            if hash.is_empty() {
                return Err(Malformed);
            }
            base32hex(hash, out);
            type_bitmap(&mut r, out)?;
        }
        NSEC3PARAM => {
            write!(out, "{} {} {} ", r.u8()?, r.u8()?, r.u16()?)?;
            salt(r.char_string()?, out);
        }
        CSYNC => {
            write!(out, "{} {}", r.u32()?, r.u16()?)?;
            type_bitmap(&mut r, out)?;
        }
        DHCID | OPENPGPKEY => base64(r.rest_nonempty()?, out),
        ZONEMD => {
            write!(out, "{} {} {} ", r.u32()?, r.u8()?, r.u8()?)?;
            hex_upper(r.rest_nonempty()?, out);
        }
        URI => {
            write!(out, "{} {} ", r.u16()?, r.u16()?)?;
            // RFC 7553 §4.4: the target URI is not a <character-string> but the rest of the rdata.
            quoted(r.rest_nonempty()?, out);
        }
        SVCB | HTTPS => svcb(&mut r, out)?,
        LOC => loc(&mut r, out)?,
        NID | L64 => {
            write!(out, "{} ", r.u16()?)?;
            let b = r.array::<8>()?;
            for (i, pair) in b.chunks_exact(2).enumerate() {
                if i > 0 {
                    out.push(':');
                }
                hex_lower(pair, out);
            }
        }
        L32 => write!(out, "{} {}", r.u16()?, Ipv4Addr::from(r.array::<4>()?))?,
        EUI48 => eui(&r.array::<6>()?, out),
        EUI64 => eui(&r.array::<8>()?, out),
        // NULL has no presentation form (RFC 1035 §3.3.10); the rest are rare enough for RFC 3597.
        _ => return Err(Malformed),
    }
    if r.is_empty() {
        Ok(())
    } else {
        Err(Malformed)
    }
}

fn name(r: &mut Reader<'_>, out: &mut String) -> Res {
    write_name(r.name()?, out);
    Ok(())
}

/// Label bytes that a presentation name shows as they are: printable ASCII except the eight
/// that take a backslash (`. ; ( ) @ $ " \`). None of them needs a JSON escape either, so the COF
/// encoder copies a name made only of these straight into its line.
pub(crate) const LABEL_PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = !matches!(
            b as u8,
            b'.' | b';' | b'(' | b')' | b'@' | b'$' | b'"' | b'\\'
        );
        b += 1;
    }
    table
};

fn write_label(label: &[u8], out: &mut String) {
    for &b in label {
        if LABEL_PLAIN[usize::from(b)] {
            out.push(char::from(b));
        } else if (0x21..=0x7e).contains(&b) {
            out.push('\\');
            out.push(char::from(b));
        } else {
            push_ddd(b, out);
        }
    }
}

/// `\DDD` with exactly three decimal digits, as RFC 1035 §5.1 requires.
fn push_ddd(b: u8, out: &mut String) {
    out.push('\\');
    out.push(char::from(b'0' + b / 100));
    out.push(char::from(b'0' + b / 10 % 10));
    out.push(char::from(b'0' + b % 10));
}

/// Writes bytes for use inside a quoted `<character-string>`; spaces and zone-file specials
/// other than `"` and `\` need no escape between quotes.
fn escape_text(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => push_ddd(b, out),
        }
    }
}

fn quoted(bytes: &[u8], out: &mut String) {
    out.push('"');
    escape_text(bytes, out);
    out.push('"');
}

fn write_type(rtype: u16, out: &mut String) {
    match type_mnemonic(rtype) {
        Some(m) => out.push_str(m),
        None => {
            let _ = write!(out, "TYPE{rtype}");
        }
    }
}

fn write_generic(rdata: &[u8], out: &mut String) {
    let _ = write!(out, "\\# {}", rdata.len());
    if !rdata.is_empty() {
        out.push(' ');
        hex_upper(rdata, out);
    }
}

fn hex_with(bytes: &[u8], digits: &[u8; 16], out: &mut String) {
    for &b in bytes {
        out.push(char::from(digits[usize::from(b >> 4)]));
        out.push(char::from(digits[usize::from(b & 0x0f)]));
    }
}

fn hex_upper(bytes: &[u8], out: &mut String) {
    hex_with(bytes, b"0123456789ABCDEF", out);
}

fn hex_lower(bytes: &[u8], out: &mut String) {
    hex_with(bytes, b"0123456789abcdef", out);
}

/// NSEC3 and NSEC3PARAM show an empty salt as `-` (RFC 5155 §3.3).
fn salt(salt: &[u8], out: &mut String) {
    if salt.is_empty() {
        out.push('-');
    } else {
        hex_upper(salt, out);
    }
}

/// EUI-48/EUI-64 as lowercase hex pairs joined by `-` (RFC 7043 §3.2, §4.2).
fn eui(bytes: &[u8], out: &mut String) {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        hex_lower(std::slice::from_ref(b), out);
    }
}

/// Standard base64 with `=` padding (RFC 4648 §4).
fn base64(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        // n input bytes yield n + 1 significant sextets; the rest of the quartet is padding.
        for i in 0..4 {
            if i <= chunk.len() {
                let sextet = (bits >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

/// Base32 with the extended hex alphabet, uppercase and unpadded, as NSEC3 owner hashes are shown (RFC 5155 §3.3).
fn base32hex(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHIJKLMNOPQRSTUV";
    let mut acc: u16 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[usize::from((acc >> bits) & 0x1f)]));
        }
        // Only the low `bits` (< 5) bits are still pending; dropping the rest keeps `acc` from overflowing.
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            ALPHABET[usize::from((acc << (5 - bits)) & 0x1f)],
        ));
    }
}

/// The NSEC/NSEC3/CSYNC type bitmap (RFC 4034 §4.1.2), each type preceded by a space.
///
/// Windows must be strictly increasing, 1..=32 octets long and not end in a zero octet;
/// otherwise two different rdata could print the same, so the whole rdata falls back.
fn type_bitmap(r: &mut Reader<'_>, out: &mut String) -> Res {
    let mut prev_window: Option<u8> = None;
    while !r.is_empty() {
        let window = r.u8()?;
        let len = r.u8()?;
        if prev_window.is_some_and(|p| window <= p) || !(1..=32).contains(&len) {
            return Err(Malformed);
        }
        prev_window = Some(window);
        let bits = r.take(usize::from(len))?;
        if bits.last() == Some(&0) {
            return Err(Malformed);
        }
        for (i, &octet) in bits.iter().enumerate() {
            for bit in 0..8 {
                if octet & (0x80 >> bit) != 0 {
                    out.push(' ');
                    // At most 255 * 256 + 31 * 8 + 7 = 65535, so this fits a u16.
                    write_type(u16::from(window) << 8 | (i as u16) << 3 | bit, out);
                }
            }
        }
    }
    Ok(())
}

/// A 32-bit seconds-since-epoch DNSSEC time as `YYYYMMDDHHMMSS` UTC (RFC 4034 §3.2).
///
/// The value is taken as-is (1970–2106) rather than with serial arithmetic around "now",
/// so output depends only on the rdata.
fn write_time(secs: u32, out: &mut String) -> Res {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    write!(
        out,
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )?;
    Ok(())
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: u32) -> (u32, u32, u32) {
    // Shift the epoch to 0000-03-01 so that a year runs March..February: the leap day is then
    // the last day of its year and month lengths follow a fixed 153-days-per-5-months pattern.
    // 719_468 is the number of days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097; // 400-year cycles, each exactly 146_097 days
    let day_of_era = z % 146_097;
    // Remove the leap days accumulated so far in this era (one every 4 years, minus one per
    // century, plus one for the 400th year) to count whole 365-day years.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March … 11 = February
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = era * 400 + year_of_era + u32::from(month <= 2);
    (year, month, day)
}

/// SVCB/HTTPS (RFC 9460 §2.1), keys written as BIND does: `alpn` and unknown values quoted.
fn svcb(r: &mut Reader<'_>, out: &mut String) -> Res {
    write!(out, "{} ", r.u16()?)?;
    name(r, out)?;
    let mut prev_key: Option<u16> = None;
    while !r.is_empty() {
        let key = r.u16()?;
        let len = r.u16()?;
        let value = r.take(usize::from(len))?;
        // RFC 9460 §2.2: keys in strictly increasing order, 65535 reserved as "invalid key".
        if prev_key.is_some_and(|p| key <= p) || key == 65535 {
            return Err(Malformed);
        }
        prev_key = Some(key);
        out.push(' ');
        svc_param(key, value, out)?;
    }
    Ok(())
}

fn svc_key_name(key: u16) -> Option<&'static str> {
    Some(match key {
        0 => "mandatory",
        1 => "alpn",
        2 => "no-default-alpn",
        3 => "port",
        4 => "ipv4hint",
        5 => "ech",
        6 => "ipv6hint",
        7 => "dohpath",
        8 => "ohttp",
        _ => return None,
    })
}

fn write_svc_key(key: u16, out: &mut String) {
    match svc_key_name(key) {
        Some(k) => out.push_str(k),
        None => {
            let _ = write!(out, "key{key}");
        }
    }
}

fn svc_param(key: u16, value: &[u8], out: &mut String) -> Res {
    write_svc_key(key, out);
    match key {
        0 => {
            let pairs = value.chunks_exact(2);
            if value.is_empty() || !pairs.remainder().is_empty() {
                return Err(Malformed);
            }
            out.push('=');
            let mut prev: Option<u16> = None;
            for pair in pairs {
                let k = u16::from_be_bytes([pair[0], pair[1]]);
                // RFC 9460 §8: sorted, no duplicates, and "mandatory" may not list itself.
                if k == 0 || prev.is_some_and(|p| k <= p) {
                    return Err(Malformed);
                }
                if prev.is_some() {
                    out.push(',');
                }
                prev = Some(k);
                write_svc_key(k, out);
            }
        }
        1 => {
            if value.is_empty() {
                return Err(Malformed);
            }
            out.push_str("=\"");
            let mut ids = Reader { buf: value };
            let mut first = true;
            while !ids.is_empty() {
                let id = ids.char_string()?;
                if id.is_empty() {
                    return Err(Malformed);
                }
                if !first {
                    out.push(',');
                }
                first = false;
                alpn_id(id, out);
            }
            out.push('"');
        }
        2 | 8 => {
            if !value.is_empty() {
                return Err(Malformed);
            }
        }
        3 => {
            let [hi, lo] = value else {
                return Err(Malformed);
            };
            write!(out, "={}", u16::from_be_bytes([*hi, *lo]))?;
        }
        4 => ip_hints::<Ipv4Addr, 4>(value, out)?,
        5 => {
            if value.is_empty() {
                return Err(Malformed);
            }
            out.push('=');
            base64(value, out);
        }
        6 => ip_hints::<Ipv6Addr, 16>(value, out)?,
        _ => {
            // An empty value prints as the bare key, like `no-default-alpn` (RFC 9460 §2.1).
            if !value.is_empty() {
                out.push('=');
                quoted(value, out);
            }
        }
    }
    Ok(())
}

/// One alpn-id inside the quoted value list. RFC 9460 Appendix A.1 escapes `,` and `\` at
/// the list level first, and the quoted string escapes each of those backslashes again,
/// hence `\\,` and `\\\\`.
fn alpn_id(id: &[u8], out: &mut String) {
    for &b in id {
        match b {
            b',' => out.push_str("\\\\,"),
            b'\\' => out.push_str("\\\\\\\\"),
            _ => escape_text(std::slice::from_ref(&b), out),
        }
    }
}

/// A non-empty comma-separated list of addresses for `ipv4hint` (N = 4) or `ipv6hint` (N = 16).
fn ip_hints<Addr, const N: usize>(value: &[u8], out: &mut String) -> Res
where
    Addr: From<[u8; N]> + fmt::Display,
{
    let addrs = value.chunks_exact(N);
    if value.is_empty() || !addrs.remainder().is_empty() {
        return Err(Malformed);
    }
    out.push('=');
    for (i, chunk) in addrs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut octets = [0; N];
        octets.copy_from_slice(chunk);
        write!(out, "{}", Addr::from(octets))?;
    }
    Ok(())
}

/// LOC (RFC 1876 §3) in BIND's form, e.g. `52 22 23.000 N 4 53 32.000 E -2.00m 1m 10000m 10m`.
fn loc(r: &mut Reader<'_>, out: &mut String) -> Res {
    if r.u8()? != 0 {
        // Other versions have no defined layout.
        return Err(Malformed);
    }
    let size = r.u8()?;
    let horiz = r.u8()?;
    let vert = r.u8()?;
    coordinate(r.u32()?, 90, b"NS", out)?;
    out.push(' ');
    coordinate(r.u32()?, 180, b"EW", out)?;
    // Altitude is in centimetres above a base 100 000 m below the WGS 84 reference spheroid.
    let alt = i64::from(r.u32()?) - 10_000_000;
    let sign = if alt < 0 { "-" } else { "" };
    let abs = alt.unsigned_abs();
    write!(out, " {sign}{}.{:02}m", abs / 100, abs % 100)?;
    for precision in [size, horiz, vert] {
        out.push(' ');
        loc_precision(precision, out)?;
    }
    Ok(())
}

/// Latitude or longitude: thousandths of an arc second, offset by 2^31 at the equator/meridian.
fn coordinate(raw: u32, max_degrees: u32, hemispheres: &[u8; 2], out: &mut String) -> Res {
    let offset = i64::from(raw) - (1 << 31);
    let abs = offset.unsigned_abs();
    if abs > u64::from(max_degrees) * 3_600_000 {
        return Err(Malformed);
    }
    let hemisphere = char::from(hemispheres[usize::from(offset < 0)]);
    write!(
        out,
        "{} {} {}.{:03} {hemisphere}",
        abs / 3_600_000,
        abs / 60_000 % 60,
        abs / 1000 % 60,
        abs % 1000
    )?;
    Ok(())
}

/// Size/precision octet: mantissa (high nibble) times 10^exponent (low nibble) centimetres,
/// each nibble 0..=9.
fn loc_precision(octet: u8, out: &mut String) -> Res {
    let mantissa = u64::from(octet >> 4);
    let exponent = u32::from(octet & 0x0f);
    if mantissa > 9 || exponent > 9 {
        return Err(Malformed);
    }
    if exponent >= 2 {
        write!(out, "{}m", mantissa * 10u64.pow(exponent - 2))?;
    } else {
        write!(out, "0.{:02}m", mantissa * 10u64.pow(exponent))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv6_text_matches_std_on_edge_cases() {
        for text in [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:db8:0:0:1:0:0:1",
            "2001:0:0:1:0:0:0:1",
            "1:0:1:0:1:0:1:0",
            "0:1:0:1:0:1:0:1",
            "fe80::1:0:0:0",
            "::ffff:192.0.2.1",
            "::192.0.2.1",
            "64:ff9b::192.0.2.1",
            "1:2:3:4:5:6:7:8",
            "abcd:ef01::ffff:0:1",
        ] {
            let addr: std::net::Ipv6Addr = text.parse().unwrap();
            let mut out = String::new();
            super::push_ipv6(addr.octets(), &mut out);
            assert_eq!(out, addr.to_string(), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn ipv6_text_matches_std(octets in proptest::array::uniform16(proptest::sample::select(vec![0u8, 0, 0, 1, 0xff, 0x12]))) {
            let mut out = String::new();
            super::push_ipv6(octets, &mut out);
            proptest::prop_assert_eq!(out, std::net::Ipv6Addr::from(octets).to_string());
        }

        #[test]
        fn ipv6_text_matches_std_on_any_bytes(octets in proptest::array::uniform16(proptest::prelude::any::<u8>())) {
            let mut out = String::new();
            super::push_ipv6(octets, &mut out);
            proptest::prop_assert_eq!(out, std::net::Ipv6Addr::from(octets).to_string());
        }

        #[test]
        fn ipv4_text_matches_std(octets in proptest::array::uniform4(proptest::prelude::any::<u8>())) {
            let (text, len) = super::ipv4_text(octets);
            let want = std::net::Ipv4Addr::from(octets).to_string();
            proptest::prop_assert_eq!(&text[..len], want.as_bytes());
            let mut out = String::new();
            super::push_ipv4(octets, &mut out);
            proptest::prop_assert_eq!(out, want);
        }
    }

    use super::*;
    use proptest::prelude::*;

    /// Wire form of a dotted name without escapes; `.` is the root.
    fn wire(name: &str) -> Vec<u8> {
        let mut w = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            w.push(label.len() as u8);
            w.extend_from_slice(label.as_bytes());
        }
        w.push(0);
        w
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn rd(rtype: u16, rdata: &[u8]) -> String {
        let mut s = String::new();
        write_rdata(rtype, rdata, &mut s);
        s
    }

    fn nm(w: &[u8]) -> String {
        let mut s = String::new();
        write_name(w, &mut s);
        s
    }

    fn from_hex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn mnemonics() {
        assert_eq!(type_mnemonic(1), Some("A"));
        assert_eq!(type_mnemonic(23), Some("NSAP-PTR"));
        assert_eq!(type_mnemonic(65), Some("HTTPS"));
        assert_eq!(type_mnemonic(255), Some("ANY"));
        assert_eq!(type_mnemonic(32769), Some("DLV"));
        assert_eq!(type_mnemonic(54), None);
        assert_eq!(type_mnemonic(65280), None);
    }

    #[test]
    fn names() {
        assert_eq!(nm(&[0]), ".");
        assert_eq!(nm(&wire("www.example.")), "www.example.");
        let odd = cat(&[&[12], b"a b.c\\d\"e();", &[3], b"@$\xff", &[0]]);
        assert_eq!(nm(&odd), "a\\032b\\.c\\\\d\\\"e\\(\\)\\;.\\@\\$\\255.");
        // Trailing bytes after the root label are not part of the name.
        assert_eq!(nm(&[1, b'a', 0, 9, 9]), "a.");
    }

    #[test]
    fn invalid_names_get_marker() {
        assert_eq!(nm(&[]), "\\#");
        assert_eq!(nm(&[3, b'w', b'w', b'w', 5, b'a']), "www.\\#");
        assert_eq!(nm(&[3, b'w', b'w', b'w']), "www.\\#");
        assert_eq!(nm(&[0xc0, 0x0c]), "\\#");
        // Four 63-octet labels of `?` (0x3f) and the root: 257 octets, over the 255 limit.
        let mut long = vec![63u8; 256];
        long.push(0);
        let s = nm(&long);
        assert!(s.ends_with("?.\\#"), "{s}");
        assert_eq!(
            rd(NS, &long),
            format!("\\# 257 {}", "3F".repeat(256) + "00")
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(rd(A, &[192, 0, 2, 1]), "192.0.2.1");
        assert_eq!(rd(A, &[0, 10, 100, 255]), "0.10.100.255");
        assert_eq!(rd(A, &[9, 99, 199, 250]), "9.99.199.250");
        assert_eq!(rd(A, &[1, 2, 3, 4, 5]), "\\# 5 0102030405");
        assert_eq!(rd(A, &[]), "\\# 0");
        let v6 = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(rd(AAAA, &v6), "2001:db8::1");
        assert_eq!(rd(AAAA, &v6[..15]), "\\# 15 20010DB80000000000000000000000");
    }

    #[test]
    fn single_names() {
        for t in [NS, CNAME, DNAME, PTR, MB, MD, MF, MG, MR] {
            assert_eq!(rd(t, &wire("ns1.example.")), "ns1.example.");
        }
        assert_eq!(rd(NS, &[0]), ".");
        // Trailing garbage, a compression pointer, or a missing terminator all fall back.
        assert_eq!(rd(NS, &[1, b'a', 0, 7]), "\\# 4 01610007");
        assert_eq!(rd(CNAME, &[0xc0, 0x0c]), "\\# 2 C00C");
        assert_eq!(rd(PTR, &[1, b'a']), "\\# 2 0161");
    }

    #[test]
    fn soa() {
        let mut rname = wire("x.example.");
        rname[1] = b'.';
        let data = cat(&[
            &wire("ns1.example."),
            &cat(&[&[10], b"hostmaster", &rname]),
            &2024010101u32.to_be_bytes(),
            &7200u32.to_be_bytes(),
            &3600u32.to_be_bytes(),
            &1209600u32.to_be_bytes(),
            &300u32.to_be_bytes(),
        ]);
        assert_eq!(
            rd(SOA, &data),
            "ns1.example. hostmaster.\\..example. 2024010101 7200 3600 1209600 300"
        );
        assert!(rd(SOA, &data[..data.len() - 1]).starts_with("\\# "));
    }

    #[test]
    fn pref_and_name() {
        let data = cat(&[&[0, 10], &wire("mail.example.")]);
        for t in [MX, AFSDB, RT, KX, LP] {
            assert_eq!(rd(t, &data), "10 mail.example.");
        }
        let px = cat(&[&[0, 10], &wire("a.example."), &wire("b.example.")]);
        assert_eq!(rd(PX, &px), "10 a.example. b.example.");
        let two = cat(&[&wire("mbox.example."), &wire("txt.example.")]);
        assert_eq!(rd(RP, &two), "mbox.example. txt.example.");
        assert_eq!(rd(MINFO, &two), "mbox.example. txt.example.");
        let srv = cat(&[&[0, 0, 0, 5, 0x13, 0xc4], &wire("sip.example.")]);
        assert_eq!(rd(SRV, &srv), "0 5 5060 sip.example.");
    }

    #[test]
    fn text() {
        let data = cat(&[&[11], b"a\"b\\c\nd e;f", &[0], &[1, 0xff]]);
        assert_eq!(rd(TXT, &data), "\"a\\\"b\\\\c\\010d e;f\" \"\" \"\\255\"");
        assert_eq!(rd(TXT, &[0]), "\"\"");
        assert_eq!(rd(TXT, &[]), "\\# 0");
        assert_eq!(rd(TXT, &[3, b'a', b'b']), "\\# 3 036162");
        let spf = cat(&[&[11], b"v=spf1 -all"]);
        assert_eq!(rd(SPF, &spf), "\"v=spf1 -all\"");
        let hinfo = cat(&[&[2], b"PC", &[5], b"Linux"]);
        assert_eq!(rd(HINFO, &hinfo), "\"PC\" \"Linux\"");
        assert!(rd(HINFO, &[0, 0, 0]).starts_with("\\# "));
        assert_eq!(rd(X25, &cat(&[&[3], b"311"])), "\"311\"");
        assert_eq!(
            rd(ISDN, &cat(&[&[3], b"150", &[2], b"04"])),
            "\"150\" \"04\""
        );
        assert_eq!(rd(ISDN, &[0, 0, 0]), "\\# 3 000000");
        assert_eq!(
            rd(GPOS, &cat(&[&[2], b"-1", &[1], b"2", &[1], b"3"])),
            "\"-1\" \"2\" \"3\""
        );
    }

    #[test]
    fn naptr() {
        let data = cat(&[
            &[0, 100, 0, 10, 1, b'S', 7],
            b"SIP+D2U",
            &[0],
            &wire("_sip._udp.example."),
        ]);
        assert_eq!(
            rd(NAPTR, &data),
            "100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp.example."
        );
    }

    #[test]
    fn caa() {
        let data = cat(&[&[0, 5], b"issue", b"letsencrypt.org"]);
        assert_eq!(rd(CAA, &data), "0 issue \"letsencrypt.org\"");
        assert_eq!(rd(CAA, &cat(&[&[128, 5], b"iodef"])), "128 iodef \"\"");
        assert_eq!(rd(CAA, &[0, 2, b'a', b'-']), "\\# 4 0002612D");
        assert_eq!(rd(CAA, &[0, 0]), "\\# 2 0000");
    }

    #[test]
    fn dnssec_keys_and_digests() {
        let digest = "e06d44b80b8f1d39a95c0b0d7c65d08458e880409bbc683457104237c7f8ec8d";
        let ds = cat(&[&[0x4f, 0x66, 8, 2], &from_hex(digest)]);
        let expect = format!("20326 8 2 {}", digest.to_uppercase());
        for t in [DS, CDS, DLV] {
            assert_eq!(rd(t, &ds), expect);
        }
        assert_eq!(rd(CDS, &[0, 0, 0, 0, 0]), "0 0 0 00");
        assert_eq!(rd(DS, &[0, 0, 0, 0]), "\\# 4 00000000");
        for t in [DNSKEY, CDNSKEY, KEY] {
            assert_eq!(rd(t, &[1, 1, 3, 8, 3, 1, 0, 1]), "257 3 8 AwEAAQ==");
        }
        assert_eq!(rd(CDNSKEY, &[0, 0, 3, 0, 0]), "0 3 0 AA==");
        assert_eq!(rd(DNSKEY, &[1, 1, 3, 8]), "\\# 4 01010308");
        let sshfp = cat(&[
            &[1, 1],
            &from_hex("dd465c09cfa51fb45020cc83316fff21b9ec74ac"),
        ]);
        assert_eq!(
            rd(SSHFP, &sshfp),
            "1 1 DD465C09CFA51FB45020CC83316FFF21B9EC74AC"
        );
        let tlsa = cat(&[&[3, 1, 1], &from_hex("abcdef0123")]);
        assert_eq!(rd(TLSA, &tlsa), "3 1 1 ABCDEF0123");
        assert_eq!(rd(SMIMEA, &tlsa), "3 1 1 ABCDEF0123");
    }

    #[test]
    fn rrsig() {
        let data = cat(&[
            &[0, 1, 8, 2],
            &300u32.to_be_bytes(),
            &1_700_000_000u32.to_be_bytes(),
            &1_698_796_800u32.to_be_bytes(),
            &12345u16.to_be_bytes(),
            &wire("example."),
            b"test",
        ]);
        let expect = "A 8 2 300 20231114221320 20231101000000 12345 example. dGVzdA==";
        assert_eq!(rd(RRSIG, &data), expect);
        assert_eq!(rd(SIG, &data), expect);
        let mut unknown = data.clone();
        unknown[..2].copy_from_slice(&65280u16.to_be_bytes());
        assert!(rd(RRSIG, &unknown).starts_with("TYPE65280 8 2 300 "));
        // No signature bytes after the signer.
        assert!(rd(RRSIG, &data[..data.len() - 4]).starts_with("\\# "));
    }

    #[test]
    fn times() {
        let t = |secs| {
            let mut s = String::new();
            write_time(secs, &mut s).unwrap();
            s
        };
        assert_eq!(t(0), "19700101000000");
        assert_eq!(t(1_700_000_000), "20231114221320");
        assert_eq!(t(951_782_400), "20000229000000");
        assert_eq!(t(951_868_799), "20000229235959");
        assert_eq!(t(u32::MAX), "21060207062815");
    }

    #[test]
    fn nsec() {
        let mut bitmap = vec![0, 6, 0x40, 0, 0, 0, 0, 0x03, 4, 27];
        bitmap.extend([0; 26]);
        bitmap.push(0x20);
        let data = cat(&[&wire("host.example."), &bitmap]);
        assert_eq!(rd(NSEC, &data), "host.example. A RRSIG NSEC TYPE1234");
        assert_eq!(rd(NSEC, &wire("host.example.")), "host.example.");
        // Windows out of order, a zero-length window, or a trailing zero octet fall back.
        let swapped = cat(&[&wire("a."), &[4, 1, 0x80, 0, 1, 0x40]]);
        assert!(rd(NSEC, &swapped).starts_with("\\# "));
        assert!(rd(NSEC, &cat(&[&wire("a."), &[0, 0]])).starts_with("\\# "));
        assert!(rd(NSEC, &cat(&[&wire("a."), &[0, 2, 0x40, 0]])).starts_with("\\# "));
        let last = cat(&[&wire("a."), &[255, 32], &[0; 31], &[0x01]]);
        assert_eq!(rd(NSEC, &last), "a. TYPE65535");
        let csync = cat(&[&66u32.to_be_bytes(), &[0, 3, 0, 4, 0x60, 0, 0, 0x08]]);
        assert_eq!(rd(CSYNC, &csync), "66 3 A NS AAAA");
    }

    #[test]
    fn nsec3() {
        let hash = from_hex("174eb2409fe28bcb4887a1836f957f0a8425e27b");
        let data = cat(&[
            &[1, 1, 0, 12, 0, 20],
            &hash,
            &[0, 6, 0x40, 0, 0, 0, 0, 0x02],
        ]);
        assert_eq!(
            rd(NSEC3, &data),
            "1 1 12 - 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A RRSIG"
        );
        let salted = cat(&[&[1, 0, 0, 0, 4, 0xaa, 0xbb, 0xcc, 0xdd, 20], &hash]);
        assert_eq!(
            rd(NSEC3, &salted),
            "1 0 0 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR"
        );
        assert!(rd(NSEC3, &[1, 0, 0, 0, 0, 0]).starts_with("\\# "));
        assert_eq!(rd(NSEC3PARAM, &[1, 0, 0, 0, 0]), "1 0 0 -");
        assert_eq!(rd(NSEC3PARAM, &[1, 0, 0, 10, 2, 0xab, 0xcd]), "1 0 10 ABCD");
        assert_eq!(rd(NSEC3PARAM, &[1, 0, 0, 0, 0, 0]), "\\# 6 010000000000");
    }

    #[test]
    fn encodings_match_rfc4648_vectors() {
        let enc = |f: fn(&[u8], &mut String), input: &str| {
            let mut s = String::new();
            f(input.as_bytes(), &mut s);
            s
        };
        let b64 = [
            "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy",
        ];
        let b32 = [
            "",
            "CO",
            "CPNG",
            "CPNMU",
            "CPNMUOG",
            "CPNMUOJ1",
            "CPNMUOJ1E8",
        ];
        for (n, (e64, e32)) in b64.iter().zip(b32).enumerate() {
            assert_eq!(enc(base64, &"foobar"[..n]), *e64);
            assert_eq!(enc(base32hex, &"foobar"[..n]), e32);
        }
    }

    fn param(key: u16, value: &[u8]) -> Vec<u8> {
        cat(&[
            &key.to_be_bytes(),
            &(value.len() as u16).to_be_bytes(),
            value,
        ])
    }

    #[test]
    fn svcb() {
        let data = cat(&[
            &[0, 1, 0],
            &param(1, b"\x02h2\x02h3"),
            &param(3, &443u16.to_be_bytes()),
            &param(4, &[192, 0, 2, 1, 192, 0, 2, 2]),
        ]);
        assert_eq!(
            rd(SVCB, &data),
            "1 . alpn=\"h2,h3\" port=443 ipv4hint=192.0.2.1,192.0.2.2"
        );
        let v6 = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        let https = cat(&[
            &[0, 1],
            &wire("svc.example."),
            &param(0, &[0, 1, 0, 3]),
            &param(1, b"\x08f\\oo,bar\x02h2"),
            &param(2, b""),
            &param(3, &8443u16.to_be_bytes()),
            &param(5, &[0, 0, 0]),
            &param(6, &v6),
            &param(7, b"/q{?dns}"),
            &param(65000, b"a b\""),
            &param(65001, b""),
        ]);
        assert_eq!(
            rd(HTTPS, &https),
            "1 svc.example. mandatory=alpn,port alpn=\"f\\\\\\\\oo\\\\,bar,h2\" no-default-alpn \
             port=8443 ech=AAAA ipv6hint=2001:db8::1 dohpath=\"/q{?dns}\" key65000=\"a b\\\"\" key65001"
        );
        assert_eq!(
            rd(HTTPS, &cat(&[&[0, 0], &wire("alias.example.")])),
            "0 alias.example."
        );
    }

    #[test]
    fn svcb_malformed_falls_back() {
        let head: &[u8] = &[0, 1, 0];
        let port = param(3, &443u16.to_be_bytes());
        let alpn = param(1, b"\x02h2");
        let bad = [
            cat(&[head, &port, &alpn]),             // keys out of order
            cat(&[head, &port, &port]),             // duplicate key
            cat(&[head, &param(3, &[1])]),          // short port
            cat(&[head, &param(1, b"\x00")]),       // empty alpn-id
            cat(&[head, &param(1, b"\x05h2")]),     // alpn-id overruns
            cat(&[head, &param(2, b"x")]),          // no-default-alpn with a value
            cat(&[head, &param(4, &[1, 2, 3])]),    // partial IPv4 hint
            cat(&[head, &param(6, &[0; 4])]),       // partial IPv6 hint
            cat(&[head, &param(0, &[0, 3, 0, 1])]), // mandatory out of order
            cat(&[head, &param(0, &[0, 0])]),       // mandatory lists itself
            cat(&[head, &param(65535, b"")]),       // reserved key
            cat(&[head, &port[..5]]),               // truncated value
        ];
        for data in bad {
            let s = rd(SVCB, &data);
            assert_eq!(
                s,
                format!("\\# {} {}", data.len(), {
                    let mut h = String::new();
                    hex_upper(&data, &mut h);
                    h
                })
            );
        }
    }

    #[test]
    fn misc_types() {
        let uri = cat(&[&[0, 10, 0, 1], b"https://example.com/"]);
        assert_eq!(rd(URI, &uri), "10 1 \"https://example.com/\"");
        assert_eq!(rd(URI, &[0, 10, 0, 1]), "\\# 4 000A0001");
        assert_eq!(rd(EUI48, &[0, 0, 0x5e, 0, 0x53, 0x2a]), "00-00-5e-00-53-2a");
        assert_eq!(
            rd(EUI64, &[0, 0, 0x5e, 0xef, 0x10, 0, 0, 0x2a]),
            "00-00-5e-ef-10-00-00-2a"
        );
        assert_eq!(rd(EUI48, &[0; 8]), "\\# 8 0000000000000000");
        let nid = [0, 10, 0, 0x14, 0x4f, 0xff, 0xff, 0x20, 0xee, 0x64];
        assert_eq!(rd(NID, &nid), "10 0014:4fff:ff20:ee64");
        assert_eq!(rd(L64, &nid), "10 0014:4fff:ff20:ee64");
        assert_eq!(rd(L32, &[0, 10, 10, 1, 2, 0]), "10 10.1.2.0");
        assert_eq!(rd(NSAP, &[0x47, 0x00, 0x05]), "0x470005");
        let dhcid =
            from_hex("000201636fc0b8271c82825bb1ac5c41cf5351aa69b4febd94e8f17cdb95000da48c40");
        assert_eq!(
            rd(DHCID, &dhcid),
            "AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA="
        );
        assert_eq!(rd(OPENPGPKEY, b"test"), "dGVzdA==");
        let zonemd = cat(&[&2018031900u32.to_be_bytes(), &[1, 1], &[0xfe; 12]]);
        assert_eq!(
            rd(ZONEMD, &zonemd),
            "2018031900 1 1 FEFEFEFEFEFEFEFEFEFEFEFE"
        );
    }

    #[test]
    fn loc() {
        // 52 22 23.000 N 4 53 32.000 E -2m 1m 10000m 10m
        let lat = (1u32 << 31) + ((52 * 60 + 22) * 60 + 23) * 1000;
        let lon = (1u32 << 31) + ((4 * 60 + 53) * 60 + 32) * 1000;
        let alt = 10_000_000u32 - 200;
        let data = cat(&[
            &[0, 0x12, 0x16, 0x13],
            &lat.to_be_bytes(),
            &lon.to_be_bytes(),
            &alt.to_be_bytes(),
        ]);
        assert_eq!(
            rd(LOC, &data),
            "52 22 23.000 N 4 53 32.000 E -2.00m 1m 10000m 10m"
        );
        // 52 22 23.500 S 4 53 32.001 W 100.50m 0.50m 1m 0.00m
        let lat = (1u32 << 31) - ((52 * 60 + 22) * 60 * 1000 + 23_500);
        let lon = (1u32 << 31) - ((4 * 60 + 53) * 60 * 1000 + 32_001);
        let alt = 10_000_000u32 + 10_050;
        let data = cat(&[
            &[0, 0x51, 0x12, 0x00],
            &lat.to_be_bytes(),
            &lon.to_be_bytes(),
            &alt.to_be_bytes(),
        ]);
        assert_eq!(
            rd(LOC, &data),
            "52 22 23.500 S 4 53 32.001 W 100.50m 0.50m 1m 0.00m"
        );
        let mut bad_version = data.clone();
        bad_version[0] = 1;
        assert!(rd(LOC, &bad_version).starts_with("\\# 16 "));
        let mut bad_precision = data.clone();
        bad_precision[1] = 0xa0;
        assert!(rd(LOC, &bad_precision).starts_with("\\# 16 "));
        assert!(rd(LOC, &data[..15]).starts_with("\\# 15 "));
    }

    #[test]
    fn generic_fallback() {
        assert_eq!(rd(65280, &[0xab, 0xcd, 0xef]), "\\# 3 ABCDEF");
        assert_eq!(rd(65280, &[]), "\\# 0");
        assert_eq!(rd(10, &[1, 2]), "\\# 2 0102");
        // Output is appended, and a fallback only discards what this call wrote.
        let mut s = String::from("x ");
        write_rdata(A, &[1, 2, 3], &mut s);
        assert_eq!(s, "x \\# 3 010203");
    }

    const FORMATTED: &[u16] = &[
        A, NS, MD, MF, CNAME, SOA, MB, MG, MR, PTR, HINFO, MINFO, MX, TXT, RP, AFSDB, X25, ISDN,
        RT, NSAP, SIG, KEY, PX, GPOS, AAAA, LOC, SRV, NAPTR, KX, DNAME, DS, SSHFP, RRSIG, NSEC,
        DNSKEY, DHCID, NSEC3, NSEC3PARAM, TLSA, SMIMEA, CDS, CDNSKEY, OPENPGPKEY, CSYNC, ZONEMD,
        SVCB, HTTPS, SPF, NID, L32, L64, LP, EUI48, EUI64, URI, CAA, DLV,
    ];

    proptest! {
        #[test]
        fn rdata_never_panics(
            rtype in prop_oneof![proptest::sample::select(FORMATTED), any::<u16>()],
            data in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut s = String::from("prefix");
            write_rdata(rtype, &data, &mut s);
            prop_assert!(s.len() > "prefix".len());
            prop_assert!(s.starts_with("prefix"));
        }

        #[test]
        fn svcb_params_never_panic(
            target in proptest::sample::select(vec![vec![0u8], wire("svc.example.")]),
            params in proptest::collection::vec(
                (0u16..10, proptest::collection::vec(any::<u8>(), 0..20)), 0..6),
        ) {
            let mut data = cat(&[&[0, 1], &target]);
            for (key, value) in &params {
                data.extend(param(*key, value));
            }
            let s = rd(HTTPS, &data);
            prop_assert!(!s.is_empty());
        }

        #[test]
        fn name_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let s = nm(&data);
            prop_assert!(!s.is_empty());
        }
    }
}
