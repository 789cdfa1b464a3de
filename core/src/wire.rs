//! A lenient, zero-copy walker over DNS wire messages.
//! Every bound is checked, compression pointers only go backwards, and no input can make it panic.
//!
//! The walker knows only the message's framing: the header, names, and the fixed part and length
//! of each record. What the rdata means is left to the caller (see [`crate::rrset`]), so that one
//! record with bad rdata never costs the rest of the message. Nothing here allocates; the only
//! writer, [`NameRef::write_to`], appends to a buffer the caller owns.

use std::fmt;

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Longest name in uncompressed wire form, length octets and root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Most compression pointers followed while reading one name.
///
/// Pointers must already go strictly backwards, which rules out loops; this bound also caps the
/// work one name can cost (a long chain of pointers to pointers) at a small constant.
pub const MAX_POINTER_HOPS: usize = 64;

/// Why the walker gave up on a name, a record or a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The bytes end before the structure does.
    Truncated,
    /// A compression pointer does not point strictly before the name (or name segment) that holds it,
    /// or it points into the header.
    ForwardPointer,
    /// More than [`MAX_POINTER_HOPS`] pointers in one name.
    TooManyHops,
    /// A name longer than [`MAX_NAME_LEN`] once uncompressed.
    NameTooLong,
    /// A label type other than a plain label or a pointer (0x40 extended, 0x80 reserved).
    /// A length octet above [`MAX_LABEL_LEN`] always has one of these bits set, so this is also
    /// what a label longer than 63 octets looks like.
    BadLabelType,
    /// A compression pointer where the format forbids compression.
    UnexpectedPointer,
    /// Rdata whose size does not fit its type (for example an A record that is not 4 bytes).
    BadRdataLength,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            WireError::Truncated => "truncated",
            WireError::ForwardPointer => "compression pointer does not point backwards",
            WireError::TooManyHops => "too many compression pointers in one name",
            WireError::NameTooLong => "name longer than 255 octets",
            WireError::BadLabelType => "unsupported label type",
            WireError::UnexpectedPointer => "compression pointer where none is allowed",
            WireError::BadRdataLength => "rdata length does not fit its type",
        };
        f.write_str(s)
    }
}

impl std::error::Error for WireError {}

/// `n` bytes of `buf` from `pos`, if they are all there.
#[inline]
pub(crate) fn bytes_at(buf: &[u8], pos: usize, n: usize) -> Result<&[u8], WireError> {
    let end = pos.checked_add(n).ok_or(WireError::Truncated)?;
    buf.get(pos..end).ok_or(WireError::Truncated)
}

/// The big-endian u16 at `pos`.
#[inline]
pub(crate) fn u16_at(buf: &[u8], pos: usize) -> Result<u16, WireError> {
    match bytes_at(buf, pos, 2)? {
        [a, b] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(WireError::Truncated),
    }
}

/// Walks the (possibly compressed) name at `pos` in `msg`, calling `on_run` with each run of
/// in-place labels (length octets included) up to a pointer or through the root label. Returns
/// the offset just past the name's in-place bytes.
///
/// Every pointer must point strictly before the start of the name segment that holds it (the name
/// itself for the first pointer, the previous pointer's target after that) and past the header.
/// So offsets strictly decrease along a chain: no loops are possible, and only bytes that came
/// before can be referenced, as real compressors do. `on_run` only sees runs that are valid so
/// far; a later error still makes the whole name invalid.
fn walk_runs<F: FnMut(&[u8])>(msg: &[u8], pos: usize, mut on_run: F) -> Result<usize, WireError> {
    let mut cur = pos;
    let mut run_start = pos;
    let mut segment_start = pos;
    // Where the in-place part of the name ends; set at the first pointer.
    let mut end: Option<usize> = None;
    let mut hops = 0usize;
    // Uncompressed length so far, counting each label's length octet.
    let mut len = 0usize;
    loop {
        let b = *msg.get(cur).ok_or(WireError::Truncated)?;
        match b & 0xC0 {
            0x00 => {
                // n ≤ 63 by construction of the mask, so no separate label check is needed.
                let n = usize::from(b);
                len += 1 + n;
                if len > MAX_NAME_LEN {
                    return Err(WireError::NameTooLong);
                }
                // No overflow: `cur` is an index of `msg` and n ≤ 63. A plain compare instead of
                // `bytes_at`, as this loop runs for every label of every name.
                let next = cur + 1 + n;
                if next > msg.len() {
                    return Err(WireError::Truncated);
                }
                cur = next;
                if n == 0 {
                    on_run(msg.get(run_start..cur).unwrap_or(&[]));
                    return Ok(end.unwrap_or(cur));
                }
            }
            0xC0 => {
                let lo = *msg.get(cur + 1).ok_or(WireError::Truncated)?;
                let target = usize::from(u16::from_be_bytes([b & 0x3F, lo]));
                if target >= segment_start || target < HEADER_LEN {
                    return Err(WireError::ForwardPointer);
                }
                hops += 1;
                if hops > MAX_POINTER_HOPS {
                    return Err(WireError::TooManyHops);
                }
                if end.is_none() {
                    end = Some(cur + 2);
                }
                on_run(msg.get(run_start..cur).unwrap_or(&[]));
                segment_start = target;
                cur = target;
                run_start = target;
            }
            _ => return Err(WireError::BadLabelType),
        }
    }
}

/// Walks the (possibly compressed) name at `pos` in `msg`, calling `on_label` with each label's
/// bytes, the root label (empty) last. Returns the offset just past the name's in-place bytes.
/// The rules are [`walk_runs`]'; labels are handed out a run at a time, so after an error some
/// labels of the valid part may not have been seen.
pub fn walk_name<F: FnMut(&[u8])>(
    msg: &[u8],
    pos: usize,
    mut on_label: F,
) -> Result<usize, WireError> {
    walk_runs(msg, pos, |run| {
        // The run was validated label by label, so its length octets chain exactly to its end.
        let mut i = 0usize;
        while let Some(&n) = run.get(i) {
            let n = usize::from(n);
            on_label(run.get(i + 1..i + 1 + n).unwrap_or(&[]));
            i += 1 + n;
        }
    })
}

/// Checks the name at `pos` and returns the offset just past its in-place bytes.
pub fn skip_name(msg: &[u8], pos: usize) -> Result<usize, WireError> {
    // The same walk without splitting runs into labels, which nothing here would look at.
    walk_runs(msg, pos, |_| {})
}

/// Checks the uncompressed name at the start of `buf` and returns its length.
///
/// For names that the format never compresses (RRSIG signer, NSEC next name, key bytes, a
/// bailiwick): a pointer there is an error, not something to follow.
pub fn uncompressed_name_len(buf: &[u8]) -> Result<usize, WireError> {
    let mut pos = 0usize;
    loop {
        let b = *buf.get(pos).ok_or(WireError::Truncated)?;
        match b & 0xC0 {
            0x00 => {
                let n = usize::from(b);
                pos += 1 + n;
                if pos > MAX_NAME_LEN {
                    return Err(WireError::NameTooLong);
                }
                if pos > buf.len() {
                    return Err(WireError::Truncated);
                }
                if n == 0 {
                    return Ok(pos);
                }
            }
            0xC0 => return Err(WireError::UnexpectedPointer),
            _ => return Err(WireError::BadLabelType),
        }
    }
}

/// Lowercases the ASCII letters of `buf`, exactly as `make_ascii_lowercase` does, a word at a
/// time: every owner and rdata name is lowercased, and byte by byte this was a sizeable part of
/// the cost of copying a name.
pub(crate) fn lowercase_ascii(buf: &mut [u8]) {
    let len = buf.len();
    if len < 8 {
        buf.make_ascii_lowercase();
        return;
    }
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        lowercase_word(word);
    }
    if !words.into_remainder().is_empty() {
        // The last eight bytes overlap the last whole word; lowercasing twice changes nothing.
        if let Some(last) = buf.get_mut(len - 8..) {
            lowercase_word(last);
        }
    }
}

/// Lowercases the ASCII letters of an eight-byte chunk with bit operations on one `u64`.
fn lowercase_word(chunk: &mut [u8]) {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let Ok(bytes) = <&mut [u8; 8]>::try_from(chunk) else {
        return;
    };
    let w = u64::from_le_bytes(*bytes);
    let low7 = w & !HIGH;
    // Per byte, with no carry into the next one (0x7F + 0x3F < 0x100): the high bit of
    // `low7 + 0x3F` is set for b ≥ b'A', that of `low7 + 0x25` for b > b'Z'; bytes with the
    // high bit set are not ASCII and stay as they are.
    let at_least_a = low7 + 0x3F3F_3F3F_3F3F_3F3F;
    let above_z = low7 + 0x2525_2525_2525_2525;
    let upper = at_least_a & !above_z & !w & HIGH;
    // 0x80 >> 2 is 0x20, the bit that makes an ASCII capital lowercase.
    *bytes = (w | (upper >> 2)).to_le_bytes();
}

/// Appends the labels of `name` to `out` in uncompressed wire form, lowercased if asked.
///
/// On error `out` is left as it was, so the caller can simply skip the record.
fn append_name(
    msg: &[u8],
    pos: usize,
    lowercase: bool,
    out: &mut Vec<u8>,
) -> Result<usize, WireError> {
    let mark = out.len();
    // One copy per run of labels, not per label: owner names are decompressed for every record,
    // and this was the largest item in the worker's profile.
    let res = walk_runs(msg, pos, |run| out.extend_from_slice(run));
    match res {
        Err(_) => out.truncate(mark),
        // Lowercased whole rather than run by run: runs are mostly shorter than a word.
        // Length octets are at most 63, below b'A', so lowercasing leaves them alone.
        Ok(_) if lowercase => {
            if let Some(copied) = out.get_mut(mark..) {
                lowercase_ascii(copied);
            }
        }
        Ok(_) => {}
    }
    res
}

/// A name inside a message, not yet decompressed. Valid once the walker has handed it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRef<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> NameRef<'a> {
    /// Offset of the name's first byte in the message.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Appends the name in uncompressed wire form to `out`, lowercased if asked.
    /// Returns an error (and leaves `out` unchanged) only if the name is not valid.
    pub fn write_to(&self, lowercase: bool, out: &mut Vec<u8>) -> Result<(), WireError> {
        append_name(self.msg, self.pos, lowercase, out).map(|_| ())
    }

    /// Calls `on_label` for each label, root label (empty) last.
    pub fn for_each_label<F: FnMut(&[u8])>(&self, on_label: F) -> Result<(), WireError> {
        walk_name(self.msg, self.pos, on_label).map(|_| ())
    }
}

/// Reads a name inside rdata whose bytes run from `pos` to `rdata_end`, appends it uncompressed
/// (and lowercased if asked) to `out`, and returns the offset past it.
///
/// The name's in-place bytes must lie inside the rdata; pointers may reach back anywhere
/// after the header, as the message's compression allows.
pub(crate) fn append_rdata_name(
    msg: &[u8],
    pos: usize,
    rdata_end: usize,
    lowercase: bool,
    out: &mut Vec<u8>,
) -> Result<usize, WireError> {
    // Cutting the message at the rdata's end keeps the in-place bytes from running into the next
    // record; pointer targets are before `pos`, so they are inside the cut too.
    let bounded = msg.get(..rdata_end).ok_or(WireError::Truncated)?;
    append_name(bounded, pos, lowercase, out)
}

/// The fixed DNS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message id.
    pub id: u16,
    /// The flags word: QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode.
    pub flags: u16,
    /// Question count.
    pub qdcount: u16,
    /// Answer count.
    pub ancount: u16,
    /// Authority count.
    pub nscount: u16,
    /// Additional count.
    pub arcount: u16,
}

impl Header {
    /// Reads the header at the start of `msg`.
    pub fn parse(msg: &[u8]) -> Result<Header, WireError> {
        Ok(Header {
            id: u16_at(msg, 0)?,
            flags: u16_at(msg, 2)?,
            qdcount: u16_at(msg, 4)?,
            ancount: u16_at(msg, 6)?,
            nscount: u16_at(msg, 8)?,
            arcount: u16_at(msg, 10)?,
        })
    }

    /// QR: the message is a response.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// The opcode (0 = QUERY).
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0F) as u8
    }

    /// TC: the message was truncated by its sender.
    pub fn is_truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }

    /// RD: the query asked for recursion.
    pub fn recursion_desired(&self) -> bool {
        self.flags & 0x0100 != 0
    }

    /// The (non-extended) response code.
    pub fn rcode(&self) -> u8 {
        (self.flags & 0x000F) as u8
    }
}

/// The section a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Answer section.
    Answer,
    /// Authority section.
    Authority,
    /// Additional section.
    Additional,
}

/// One resource record as framed in the message. Its rdata is not interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The section it came from.
    pub section: Section,
    /// Owner name, checked valid.
    pub owner: NameRef<'a>,
    /// RR type.
    pub rtype: u16,
    /// RR class (for OPT, the UDP payload size).
    pub class: u16,
    /// TTL (for OPT, the extended rcode and flags).
    pub ttl: u32,
    /// Offset of the rdata in the message; names in rdata are read relative to the message.
    pub rdata_offset: usize,
    /// The rdata bytes, exactly `rdlength` of them.
    pub rdata: &'a [u8],
}

/// A DNS message whose header has been read. Walking it never allocates.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    bytes: &'a [u8],
    header: Header,
}

impl<'a> Message<'a> {
    /// Reads the header; fails only when `bytes` is shorter than [`HEADER_LEN`].
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, WireError> {
        Ok(Message {
            bytes,
            header: Header::parse(bytes)?,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The whole message.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The records of the answer, authority and additional sections, in order, after checking
    /// (and skipping) the question section.
    pub fn records(&self) -> Records<'a> {
        Records {
            msg: self.bytes,
            pos: HEADER_LEN,
            questions: self.header.qdcount,
            left: [
                self.header.ancount,
                self.header.nscount,
                self.header.arcount,
            ],
            done: false,
        }
    }
}

/// Iterator over a message's records; see [`Message::records`].
///
/// It yields `Err` once when the framing breaks (a bad name, a short fixed part, an rdlength
/// past the end, or fewer records than the header counts) and then ends, because nothing after a
/// framing error can be located reliably. Bytes after the last counted record are ignored: some
/// transports pad, and they cannot hide a record the header did not announce.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    msg: &'a [u8],
    pos: usize,
    questions: u16,
    left: [u16; 3],
    done: bool,
}

impl<'a> Records<'a> {
    /// Offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn skip_questions(&mut self) -> Result<(), WireError> {
        while self.questions > 0 {
            let end = skip_name(self.msg, self.pos)?;
            bytes_at(self.msg, end, 4)?;
            self.pos = end + 4;
            self.questions -= 1;
        }
        Ok(())
    }

    /// Reads the record at the current position. With `owner_out`, the owner is also appended
    /// to it, uncompressed and lowercased, by the same walk that checks it; on error it is left
    /// as it was.
    #[inline]
    fn read_record(
        &mut self,
        section: Section,
        owner_out: Option<&mut Vec<u8>>,
    ) -> Result<Record<'a>, WireError> {
        let owner_pos = self.pos;
        match owner_out {
            None => self.read_fixed(section, owner_pos, skip_name(self.msg, owner_pos)?),
            Some(out) => {
                let mark = out.len();
                let read = append_name(self.msg, owner_pos, true, out)
                    .and_then(|p| self.read_fixed(section, owner_pos, p));
                if read.is_err() {
                    out.truncate(mark);
                }
                read
            }
        }
    }

    /// Reads the fixed part and the rdata of the record whose owner is at `owner_pos` and ends
    /// at `p`.
    #[inline]
    fn read_fixed(
        &mut self,
        section: Section,
        owner_pos: usize,
        p: usize,
    ) -> Result<Record<'a>, WireError> {
        // The ten fixed bytes at once: one bounds check instead of four.
        let fixed = bytes_at(self.msg, p, 10)?;
        let Ok([t0, t1, c0, c1, l0, l1, l2, l3, r0, r1]) = <[u8; 10]>::try_from(fixed) else {
            return Err(WireError::Truncated);
        };
        let rtype = u16::from_be_bytes([t0, t1]);
        let class = u16::from_be_bytes([c0, c1]);
        let ttl = u32::from_be_bytes([l0, l1, l2, l3]);
        let rdlen = usize::from(u16::from_be_bytes([r0, r1]));
        let rdata_offset = p + 10;
        let rdata = bytes_at(self.msg, rdata_offset, rdlen)?;
        self.pos = rdata_offset + rdlen;
        Ok(Record {
            section,
            owner: NameRef {
                msg: self.msg,
                pos: owner_pos,
            },
            rtype,
            class,
            ttl,
            rdata_offset,
            rdata,
        })
    }
}

impl<'a> Records<'a> {
    /// Like [`Iterator::next`], and also appends the record's owner to `owner`, uncompressed and
    /// lowercased as [`NameRef::write_to`] would, from the same walk that checks the name, so a
    /// caller that needs every owner does not walk each name twice. On an error or at the end,
    /// `owner` is left as it was.
    #[inline]
    pub fn next_with_owner(
        &mut self,
        owner: &mut Vec<u8>,
    ) -> Option<Result<Record<'a>, WireError>> {
        self.advance(Some(owner))
    }

    #[inline]
    fn advance(
        &mut self,
        owner_out: Option<&mut Vec<u8>>,
    ) -> Option<Result<Record<'a>, WireError>> {
        if self.done {
            return None;
        }
        if let Err(e) = self.skip_questions() {
            self.done = true;
            return Some(Err(e));
        }
        let (idx, section) = match self.left {
            [a, _, _] if a > 0 => (0, Section::Answer),
            [_, n, _] if n > 0 => (1, Section::Authority),
            [_, _, r] if r > 0 => (2, Section::Additional),
            _ => {
                self.done = true;
                return None;
            }
        };
        match self.read_record(section, owner_out) {
            Ok(rec) => {
                if let Some(left) = self.left.get_mut(idx) {
                    *left = left.saturating_sub(1);
                }
                Some(Ok(rec))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.advance(None)
    }
}

impl std::iter::FusedIterator for Records<'_> {}

/// A tiny message builder for tests, with name compression, so that tests can write exactly the
/// bytes they mean, including broken ones.
#[cfg(test)]
pub(crate) mod test_builder {
    /// Builds a message section by section; counts are patched in by [`Builder::finish`].
    pub(crate) struct Builder {
        pub(crate) buf: Vec<u8>,
        counts: [u16; 4],
        /// Suffixes already written (exact text, lowercase or not) and where they start.
        suffixes: Vec<(String, usize)>,
        /// TTL of the records written from here on.
        ttl: u32,
    }

    /// Section index for [`Builder::rr`].
    pub(crate) const AN: usize = 1;
    pub(crate) const NS: usize = 2;
    pub(crate) const AR: usize = 3;

    impl Builder {
        /// A response (QR=1, RD=0) with the given id.
        pub(crate) fn response() -> Builder {
            Builder::with_flags(0x8400)
        }

        pub(crate) fn with_flags(flags: u16) -> Builder {
            let mut buf = vec![0x12, 0x34];
            buf.extend_from_slice(&flags.to_be_bytes());
            buf.extend_from_slice(&[0; 8]);
            Builder {
                buf,
                counts: [0; 4],
                suffixes: Vec::new(),
                ttl: 300,
            }
        }

        /// Sets the TTL of the records written from here on (300 unless set).
        pub(crate) fn ttl(&mut self, ttl: u32) -> &mut Self {
            self.ttl = ttl;
            self
        }

        pub(crate) fn pos(&self) -> usize {
            self.buf.len()
        }

        pub(crate) fn raw(&mut self, b: &[u8]) -> &mut Self {
            self.buf.extend_from_slice(b);
            self
        }

        pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
            self.raw(&v.to_be_bytes())
        }

        /// Writes `name` ("www.example.com", "" or "." for the root), compressing against any
        /// suffix written before with the exact same spelling.
        pub(crate) fn name(&mut self, name: &str) -> &mut Self {
            let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
            for i in 0..labels.len() {
                let suffix = labels[i..].join(".");
                if let Some(&(_, off)) = self.suffixes.iter().find(|(s, _)| *s == suffix) {
                    self.u16(0xC000 | off as u16);
                    return self;
                }
                let here = self.pos();
                if here < 0x4000 {
                    self.suffixes.push((suffix, here));
                }
                self.buf.push(labels[i].len() as u8);
                self.buf.extend_from_slice(labels[i].as_bytes());
            }
            self.buf.push(0);
            self
        }

        /// Writes `name` without compression and without remembering it.
        pub(crate) fn plain_name(&mut self, name: &str) -> &mut Self {
            self.buf.extend_from_slice(&wire(name));
            self
        }

        pub(crate) fn question(&mut self, name: &str, rtype: u16) -> &mut Self {
            self.name(name).u16(rtype).u16(1);
            self.counts[0] += 1;
            self
        }

        /// One record; `rdata` writes the rdata, and rdlength is patched in after it.
        pub(crate) fn rr(
            &mut self,
            section: usize,
            owner: &str,
            rtype: u16,
            class: u16,
            rdata: impl FnOnce(&mut Builder),
        ) -> &mut Self {
            let ttl = self.ttl;
            self.name(owner)
                .u16(rtype)
                .u16(class)
                .raw(&ttl.to_be_bytes());
            let len_at = self.pos();
            self.u16(0);
            rdata(self);
            let len = (self.pos() - len_at - 2) as u16;
            self.buf[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
            self.counts[section] += 1;
            self
        }

        pub(crate) fn finish(&mut self) -> Vec<u8> {
            let mut out = self.buf.clone();
            for (i, c) in self.counts.iter().enumerate() {
                out[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
            }
            out
        }
    }

    /// Uncompressed wire form of a dotted name.
    pub(crate) fn wire(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }
}

#[cfg(test)]
mod tests {

    /// An independent, label-at-a-time decompressor with the same rules, as an oracle for
    /// `append_name`.
    fn append_name_by_label(msg: &[u8], pos: usize, out: &mut Vec<u8>) -> Result<usize, WireError> {
        let mark = out.len();
        let (mut cur, mut segment, mut end, mut hops, mut len) = (pos, pos, None, 0, 0usize);
        let res = loop {
            let Some(&b) = msg.get(cur) else {
                break Err(WireError::Truncated);
            };
            if b & 0xC0 == 0xC0 {
                let Some(&lo) = msg.get(cur + 1) else {
                    break Err(WireError::Truncated);
                };
                let target = (usize::from(b & 0x3F) << 8) | usize::from(lo);
                if target >= segment || target < HEADER_LEN {
                    break Err(WireError::ForwardPointer);
                }
                hops += 1;
                if hops > MAX_POINTER_HOPS {
                    break Err(WireError::TooManyHops);
                }
                end.get_or_insert(cur + 2);
                (segment, cur) = (target, target);
            } else if b & 0xC0 != 0 {
                break Err(WireError::BadLabelType);
            } else {
                let n = usize::from(b);
                len += 1 + n;
                if len > MAX_NAME_LEN {
                    break Err(WireError::NameTooLong);
                }
                let Some(label) = msg.get(cur + 1..cur + 1 + n) else {
                    break Err(WireError::Truncated);
                };
                out.push(b);
                out.extend(label.iter().map(u8::to_ascii_lowercase));
                cur += 1 + n;
                if n == 0 {
                    break Ok(end.unwrap_or(cur));
                }
            }
        };
        if res.is_err() {
            out.truncate(mark);
        }
        res
    }

    #[test]
    fn word_lowercasing_handles_every_byte_in_every_position() {
        for b in 0..=255u8 {
            for len in 8..=17 {
                for at in 0..len {
                    let mut buf = vec![b'Q'; len];
                    buf[at] = b;
                    let want = buf.to_ascii_lowercase();
                    lowercase_ascii(&mut buf);
                    assert_eq!(buf, want, "byte {b:#x} at {at} of {len}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn word_lowercasing_agrees_with_std(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let mut ours = bytes.clone();
            lowercase_ascii(&mut ours);
            proptest::prop_assert_eq!(ours, bytes.to_ascii_lowercase());
        }

        #[test]
        fn run_copy_agrees_with_label_walk(
            // Small bytes make label lengths, 0xC0 pointers, the rest letters and noise.
            msg in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => 0u8..6,
                    1 => proptest::strategy::Just(0xC0u8),
                    2 => proptest::prelude::any::<u8>()
                ],
                0..300,
            ),
            pos in 0usize..40,
        ) {
            let (mut fast, mut slow) = (vec![7u8], vec![7u8]);
            let a = append_name(&msg, pos, true, &mut fast);
            let b = append_name_by_label(&msg, pos, &mut slow);
            proptest::prop_assert_eq!(a, b);
            proptest::prop_assert_eq!(fast, slow);
        }
    }
    proptest::proptest! {
        /// The one-walk owner copy yields exactly the records of the plain iterator, each owner
        /// as `write_to` writes it, and leaves the buffer alone on errors.
        #[test]
        fn next_with_owner_agrees_with_next_and_write_to(
            header in proptest::collection::vec(0u8..3, 12),
            body in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => 0u8..6,
                    1 => proptest::strategy::Just(0xC0u8),
                    2 => proptest::prelude::any::<u8>()
                ],
                0..300,
            ),
        ) {
            let msg = [header, body].concat();
            let Ok(m) = Message::parse(&msg) else { return Ok(()) };
            let (mut plain, mut walked) = (m.records(), m.records());
            let mut owners = vec![9u8];
            loop {
                let before = owners.len();
                let a = plain.next();
                let b = walked.next_with_owner(&mut owners);
                proptest::prop_assert_eq!(a, b);
                match a {
                    Some(Ok(rec)) => {
                        let mut want = Vec::new();
                        rec.owner.write_to(true, &mut want).unwrap();
                        proptest::prop_assert_eq!(&owners[before..], &want[..]);
                    }
                    _ => proptest::prop_assert_eq!(owners.len(), before),
                }
                if a.is_none() {
                    break;
                }
            }
        }
    }

    use super::test_builder::{wire, Builder, AN, AR, NS};
    use super::*;

    fn name_of(msg: &[u8], pos: usize) -> Result<(Vec<u8>, usize), WireError> {
        let mut out = Vec::new();
        let end = append_name(msg, pos, true, &mut out)?;
        Ok((out, end))
    }

    #[test]
    fn header_needs_twelve_bytes() {
        assert_eq!(Message::parse(&[0; 11]).err(), Some(WireError::Truncated));
        let m = Message::parse(&[0, 1, 0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert!(m.header().is_response());
        assert_eq!(m.header().rcode(), 3);
        assert_eq!(m.header().opcode(), 0);
        assert_eq!(m.records().count(), 0);
    }

    #[test]
    fn compressed_names_decompress_and_lowercase() {
        let mut b = Builder::response();
        let first = b.pos();
        b.name("WWW.Example.COM");
        let second = b.pos();
        b.name("mail.Example.COM");
        let msg = b.finish();
        assert_eq!(
            name_of(&msg, first).unwrap(),
            (wire("www.example.com"), second)
        );
        // "mail" + pointer: 5 + 2 in-place bytes.
        assert_eq!(
            name_of(&msg, second).unwrap(),
            (wire("mail.example.com"), second + 7)
        );
    }

    #[test]
    fn forward_pointer_is_rejected() {
        // Name at 12 points to 14 (itself later in the buffer).
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&[0xC0, 14, 1, b'a', 0]);
        assert_eq!(name_of(&msg, 12).err(), Some(WireError::ForwardPointer));
    }

    #[test]
    fn pointer_to_itself_and_loops_are_rejected() {
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&[0xC0, 12]);
        assert_eq!(name_of(&msg, 12).err(), Some(WireError::ForwardPointer));
        // 12: "a" -> ptr 16 ; 16: "b" -> ptr 12 (a loop through a forward pointer).
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&[1, b'a', 0xC0, 16, 1, b'b', 0xC0, 12]);
        assert_eq!(name_of(&msg, 12).err(), Some(WireError::ForwardPointer));
        // Started in the middle, the backward hop to 12 is fine but 12 then jumps forward to 16.
        assert_eq!(name_of(&msg, 16).err(), Some(WireError::ForwardPointer));
    }

    #[test]
    fn pointer_into_header_is_rejected() {
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&[0xC0, 0]);
        assert_eq!(name_of(&msg, 12).err(), Some(WireError::ForwardPointer));
    }

    #[test]
    fn long_pointer_chains_hit_the_hop_limit() {
        // Root at 12, then a chain of pointers each to the previous one.
        let mut msg = vec![0u8; 12];
        msg.push(0);
        for i in 0..(MAX_POINTER_HOPS + 1) {
            let target = 12 + if i == 0 { 0 } else { 1 + 2 * (i - 1) };
            msg.extend_from_slice(&(0xC000u16 | target as u16).to_be_bytes());
        }
        let last = msg.len() - 2;
        assert_eq!(name_of(&msg, last).err(), Some(WireError::TooManyHops));
        let ok = last - 2;
        assert_eq!(name_of(&msg, ok).unwrap(), (vec![0], ok + 2));
    }

    #[test]
    fn label_types_and_lengths() {
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&[0x41, 0, 0]);
        assert_eq!(name_of(&msg, 12).err(), Some(WireError::BadLabelType));
        msg[12] = 0x81;
        assert_eq!(name_of(&msg, 12).err(), Some(WireError::BadLabelType));
        // 63 is fine, and 64 can only be written as 0x40, which is a label type.
        let mut msg = vec![0u8; 12];
        msg.push(63);
        msg.extend_from_slice(&[b'x'; 63]);
        msg.push(0);
        assert_eq!(name_of(&msg, 12).unwrap().0.len(), 65);
        assert_eq!(
            uncompressed_name_len(&[64, 0]),
            Err(WireError::BadLabelType)
        );
    }

    #[test]
    fn names_over_255_are_rejected() {
        // 4 labels of 63: 4 * 64 + 1 = 257 > 255. 3 labels of 63 and one of 61: exactly 255.
        let mut ok = Vec::new();
        for len in [63usize, 63, 63, 61] {
            ok.push(len as u8);
            ok.resize(ok.len() + len, b'a');
        }
        ok.push(0);
        assert_eq!(ok.len(), 255);
        assert_eq!(uncompressed_name_len(&ok), Ok(255));
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&ok);
        assert_eq!(name_of(&msg, 12).unwrap().0, ok);

        let mut long = Vec::new();
        for _ in 0..4 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(uncompressed_name_len(&long), Err(WireError::NameTooLong));
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&long);
        assert_eq!(name_of(&msg, 12).err(), Some(WireError::NameTooLong));

        // Too long only through compression: 200 bytes in place + a pointer to 63+63.
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&[63; 1]);
        msg.extend_from_slice(&[b'b'; 63]);
        msg.push(63);
        msg.extend_from_slice(&[b'c'; 63]);
        msg.push(0);
        let second = msg.len();
        for _ in 0..3 {
            msg.push(63);
            msg.extend_from_slice(&[b'd'; 63]);
        }
        msg.extend_from_slice(&[0xC0, 12]);
        assert_eq!(name_of(&msg, second).err(), Some(WireError::NameTooLong));
    }

    #[test]
    fn uncompressed_names_refuse_pointers_and_truncation() {
        assert_eq!(uncompressed_name_len(&[0]), Ok(1));
        assert_eq!(uncompressed_name_len(&[0, 9, 9]), Ok(1));
        assert_eq!(
            uncompressed_name_len(&[1, b'a', 0xC0, 0]),
            Err(WireError::UnexpectedPointer)
        );
        assert_eq!(uncompressed_name_len(&[3, b'a']), Err(WireError::Truncated));
        assert_eq!(uncompressed_name_len(&[]), Err(WireError::Truncated));
    }

    #[test]
    fn records_walks_all_sections_after_the_question() {
        let mut b = Builder::response();
        b.question("example.com", 1);
        b.rr(AN, "example.com", 1, 1, |b| {
            b.raw(&[192, 0, 2, 1]);
        });
        b.rr(NS, "example.com", 2, 1, |b| {
            b.name("ns.example.com");
        });
        b.rr(AR, "ns.example.com", 1, 1, |b| {
            b.raw(&[192, 0, 2, 53]);
        });
        let msg = b.finish();
        let m = Message::parse(&msg).unwrap();
        let recs: Vec<_> = m.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            recs.iter().map(|r| r.section).collect::<Vec<_>>(),
            [Section::Answer, Section::Authority, Section::Additional]
        );
        assert_eq!(recs[0].rdata, &[192, 0, 2, 1]);
        assert_eq!(recs[1].rtype, 2);
        let mut owner = Vec::new();
        recs[2].owner.write_to(true, &mut owner).unwrap();
        assert_eq!(owner, wire("ns.example.com"));
        assert_eq!(recs[2].ttl, 300);
    }

    #[test]
    fn truncated_rdlength_stops_the_walk_after_the_good_records() {
        let mut b = Builder::response();
        b.rr(AN, "a.example", 1, 1, |b| {
            b.raw(&[192, 0, 2, 1]);
        });
        b.rr(AN, "b.example", 1, 1, |b| {
            b.raw(&[192, 0, 2, 2]);
        });
        let mut msg = b.finish();
        msg.pop();
        let items: Vec<_> = Message::parse(&msg).unwrap().records().collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert_eq!(items[1], Err(WireError::Truncated));
    }

    #[test]
    fn missing_records_and_bad_questions_are_framing_errors() {
        let mut msg = Builder::response().finish();
        msg[7] = 1; // ancount 1, no bytes
        let items: Vec<_> = Message::parse(&msg).unwrap().records().collect();
        assert_eq!(items, [Err(WireError::Truncated)]);

        let mut b = Builder::response();
        b.raw(&[1, b'a', 0xC0, 14, 0, 1, 0, 1]);
        let mut msg = b.finish();
        msg[5] = 1; // qdcount 1
        let items: Vec<_> = Message::parse(&msg).unwrap().records().collect();
        assert_eq!(items, [Err(WireError::ForwardPointer)]);
    }

    #[test]
    fn rdata_names_stay_inside_their_rdata() {
        let mut b = Builder::response();
        b.rr(AN, "example", 2, 1, |b| {
            b.raw(&[2, b'n', b's']);
        });
        // The in-place bytes run past the rdata end into what follows.
        b.raw(&[0]);
        let msg = b.finish();
        let rec = Message::parse(&msg)
            .unwrap()
            .records()
            .next()
            .unwrap()
            .unwrap();
        let end = rec.rdata_offset + rec.rdata.len();
        let mut out = vec![7];
        assert_eq!(
            append_rdata_name(&msg, rec.rdata_offset, end, true, &mut out),
            Err(WireError::Truncated)
        );
        assert_eq!(out, [7]);
        // With the whole message it would have read the trailing root label.
        assert!(append_name(&msg, rec.rdata_offset, true, &mut out).is_ok());
    }
}
