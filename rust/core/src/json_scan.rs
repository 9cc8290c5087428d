//! A strict JSON scanner that reads top-level fields of an object without building a
//! value tree.
//!
//! The whole message is still validated as JSON (RFC 8259, UTF-8), so a message a field
//! was read from is one a consumer can decode; only the fields asked for are materialised
//! (borrowed when they hold no escapes). Outside strings every valid byte is ASCII, so the
//! scan spends its time skipping string bodies: 16 bytes at a time with SSE2, 8 with SWAR
//! elsewhere. It is held to `serde_json` by a differential test on mutated messages.

use std::borrow::Cow;

/// The string value of top-level `field` in the JSON object `message`; `None` if the
/// message is not a valid JSON object (RFC 8259, UTF-8) or the field is missing or not a
/// string. A repeated field counts by its last occurrence, as Go's and orjson's decoders do.
pub fn key_of<'m>(message: &'m [u8], field: &str) -> Option<Cow<'m, str>> {
    let mut scan = Scanner {
        bytes: message,
        at: 0,
    };
    scan.space();
    scan.eat(b'{')?;
    scan.space();
    let mut found = None;
    if !scan.eat_if(b'}') {
        loop {
            let is_field = scan.key_is(field)?;
            scan.space();
            scan.eat(b':')?;
            scan.space();
            if is_field {
                found = if scan.peek() == Some(b'"') {
                    Some(scan.string()?)
                } else {
                    scan.value(1)?;
                    None
                };
            } else {
                scan.value(1)?;
            }
            scan.space();
            if scan.eat_if(b'}') {
                break;
            }
            scan.eat(b',')?;
            scan.space();
        }
    }
    scan.space();
    (scan.at == message.len()).then_some(found?)
}

/// A top-level value of a JSON object as [`object_fields`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar<'m> {
    Str(Cow<'m, str>),
    /// A number without fraction or exponent that fits an `i64`.
    Int(i64),
    /// Any other valid value (null, a boolean, another number, an array, an object).
    Other,
}

/// The top-level values of `names` in the JSON object `message` (`None` where a name is
/// absent); `None` if the message is not a valid JSON object. A repeated name counts by
/// its last occurrence, as in [`key_of`]. Only these values are materialised: the decoder
/// of a flat wire type reads its fields without a value tree.
pub fn object_fields<'m, const N: usize>(
    message: &'m [u8],
    names: [&str; N],
) -> Option<[Option<Scalar<'m>>; N]> {
    FieldNames::new(names).read(message)
}

/// The names [`object_fields`] reads, checked once: a decoder that reads the same fields
/// of many messages keeps one.
#[derive(Debug, Clone)]
pub struct FieldNames<'n, const N: usize> {
    /// Each name, and whether it is plain (no quote, backslash or control byte), so
    /// that a key spelled exactly as it is can be matched byte for byte.
    names: [(&'n str, bool); N],
    /// When every name is plain: the bytes before each value in the compact form a
    /// writer such as Go's makes (`{"a":`, then `,"b":`, ...), for [`Self::read_compact`].
    compact: Option<[Box<[u8]>; N]>,
}

impl<'n, const N: usize> FieldNames<'n, N> {
    pub fn new(names: [&'n str; N]) -> Self {
        let names = names.map(|name| {
            let plain = name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
            (name, plain)
        });
        let compact = names.iter().all(|&(_, plain)| plain).then(|| {
            let mut first = true;
            names.map(|(name, _)| {
                let lead = if std::mem::take(&mut first) { "{" } else { "," };
                format!("{lead}\"{name}\":").into_bytes().into_boxed_slice()
            })
        });
        Self { names, compact }
    }

    /// [`object_fields`] of `message` for these names.
    #[inline]
    pub fn read<'m>(&self, message: &'m [u8]) -> Option<[Option<Scalar<'m>>; N]> {
        let mut found: [Option<Scalar<'m>>; N] = std::array::from_fn(|_| None);
        if self.read_compact(message, |at, value| found[at] = Some(value)) {
            return Some(found);
        }
        read_fields(message, &self.names)
    }

    /// The value of the name at `position` alone, as [`Self::read`] reads it (`None` if the
    /// message is not a valid JSON object, `Some(None)` if the name is absent): a router
    /// that needs one field does not build the others.
    #[inline]
    pub fn read_one<'m>(&self, message: &'m [u8], position: usize) -> Option<Option<Scalar<'m>>> {
        let mut found = None;
        if self.read_compact(message, |at, value| {
            if at == position {
                found = Some(value);
            }
        }) {
            return Some(found);
        }
        read_fields(message, &self.names).map(|mut all| all.get_mut(position)?.take())
    }

    /// Reads a message that is exactly the compact form of these names in order (no
    /// whitespace, no other field), each value a string without escapes or non-ASCII bytes
    /// or an integer of up to 18 digits, handing each value to `each` with its name's
    /// position: such a message is valid JSON by its shape, so one pass reads it with
    /// nothing else to check. `false` for any other message, valid or not, which
    /// [`read_fields`] then reads in full (`each` may have been called for some names).
    #[inline]
    fn read_compact<'m>(&self, message: &'m [u8], mut each: impl FnMut(usize, Scalar<'m>)) -> bool {
        let Some(keys) = self.compact.as_ref() else {
            return false;
        };
        let mut at = 0;
        for (position, key) in keys.iter().enumerate() {
            let end = at + key.len();
            match message.get(at..end) {
                Some(bytes) if same_bytes(bytes, key) => at = end,
                _ => return false,
            }
            let value = match message.get(at) {
                Some(b'"') => {
                    let start = at + 1;
                    at = skip_plain(message, start);
                    while message
                        .get(at)
                        .is_some_and(|&b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\')
                    {
                        at += 1;
                    }
                    if message.get(at) != Some(&b'"') {
                        return false;
                    }
                    // SAFETY: every byte of the body was seen above and is ASCII.
                    let body = unsafe { std::str::from_utf8_unchecked(&message[start..at]) };
                    at += 1;
                    Scalar::Str(Cow::Borrowed(body))
                }
                Some(&first @ (b'-' | b'0'..=b'9')) => {
                    let negative = first == b'-';
                    at += usize::from(negative);
                    let start = at;
                    let mut value: i64 = 0;
                    while let Some(&digit @ b'0'..=b'9') = message.get(at) {
                        // Wraps past 18 digits, where the value is thrown away below.
                        value = value.wrapping_mul(10).wrapping_add(i64::from(digit - b'0'));
                        at += 1;
                    }
                    let digits = at - start;
                    // No digit, a leading zero, or too many digits to add up unchecked.
                    if digits == 0 || digits > 18 || (digits > 1 && message[start] == b'0') {
                        return false;
                    }
                    Scalar::Int(if negative { -value } else { value })
                }
                _ => return false,
            };
            each(position, value);
        }
        message.get(at..) == Some(b"}")
    }
}

fn read_fields<'m, const N: usize>(
    message: &'m [u8],
    names: &[(&str, bool); N],
) -> Option<[Option<Scalar<'m>>; N]> {
    let mut scan = Scanner {
        bytes: message,
        at: 0,
    };
    let mut found: [Option<Scalar<'m>>; N] = std::array::from_fn(|_| None);
    scan.space();
    scan.eat(b'{')?;
    scan.space();
    // Writers put the fields in one order: the name after the last one found is tried
    // first, byte for byte, before the key is scanned as any string.
    let mut expected = 0;
    if !scan.eat_if(b'}') {
        loop {
            let position = match scan.plain_key(names.get(expected)) {
                Some(()) => Some(expected),
                None => {
                    let key = scan.string()?;
                    names.iter().position(|(name, _)| *name == key)
                }
            };
            scan.space();
            scan.eat(b':')?;
            scan.space();
            let start = scan.at;
            let value = if scan.peek() == Some(b'"') {
                Scalar::Str(scan.string()?)
            } else {
                scan.value(1)?;
                let raw = &message[start..scan.at];
                // Validated JSON: an integer is an optional `-` and digits only.
                match std::str::from_utf8(raw).ok().and_then(|t| t.parse().ok()) {
                    Some(n) if !raw.contains(&b'+') => Scalar::Int(n),
                    _ => Scalar::Other,
                }
            };
            if let Some(at) = position {
                found[at] = Some(value);
                expected = at + 1;
            }
            scan.space();
            if scan.eat_if(b'}') {
                break;
            }
            scan.eat(b',')?;
            scan.space();
        }
    }
    scan.space();
    (scan.at == message.len()).then_some(found)
}

/// `a == b` for slices of one length, eight bytes at a time: for keys of a dozen bytes
/// a call to `memcmp` costs more than the comparison.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() || n < 8 {
        return a == b;
    }
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("eight bytes"));
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// Nesting deeper than this is refused rather than recursed into.
const MAX_DEPTH: usize = 128;

/// A strict JSON scanner: it validates and skips values, and materialises only the
/// strings asked for. Outside strings every valid byte is ASCII, so UTF-8 is checked
/// only inside strings that hold non-ASCII bytes.
struct Scanner<'m> {
    bytes: &'m [u8],
    at: usize,
}

/// The bytes of `word` (read little-endian) that a string scan must stop at: `"`, `\`, a
/// control character, or non-ASCII, as the high bit of each such byte (classic SWAR
/// zero-byte tests). A borrow can also flag a byte above a true hit, never below one, so
/// the lowest flagged byte is always a true hit: the scan jumps straight to it.
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    quote | backslash | control | (word & HIGHS)
}

/// The position of the first byte at or after `at` that a string scan must stop at (see
/// [`special_bytes`]), or a position within the last 8 bytes from which to go on byte by
/// byte. Most of a message is plain string content: it goes 16 bytes at a time where SSE2
/// is there (every x86-64 CPU), 8 at a time elsewhere and for the tail.
fn skip_plain(bytes: &[u8], mut at: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = bytes.get(at..at + 16) {
        let chunk: &[u8; 16] = chunk.try_into().expect("sixteen bytes");
        match first_special_16(chunk) {
            Some(offset) => return at + offset,
            None => at += 16,
        }
    }
    while let Some(chunk) = bytes.get(at..at + 8) {
        let special = special_bytes(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        if special != 0 {
            return at + (special.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at
}

/// [`special_bytes`] for 16 bytes with SSE2: the offset of the first byte that is `"`, `\`,
/// a control character, or non-ASCII.
#[cfg(target_arch = "x86_64")]
fn first_special_16(chunk: &[u8; 16]) -> Option<usize> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline, so these intrinsics are always
    // available; the unaligned load reads exactly the 16 bytes `chunk` borrows.
    let mask = unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // A signed compare: bytes from 0x80 up are negative, so this one test finds both
        // the control characters and the non-ASCII bytes.
        let low = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), low)) as u32
    };
    (mask != 0).then(|| mask.trailing_zeros() as usize)
}

impl<'m> Scanner<'m> {
    fn bytes(&self) -> &'m [u8] {
        self.bytes
    }

    /// Reads the key `"name"` if the next bytes are exactly that and `name` is `plain`
    /// (no quote, backslash or control byte): then they are the whole string, with nothing
    /// to check or decode. `None` leaves the scanner where it was.
    fn plain_key(&mut self, name: Option<&(&str, bool)>) -> Option<()> {
        let (name, plain) = name?;
        let name = name.as_bytes();
        let rest = self.bytes.get(self.at..)?;
        let end = name.len() + 2;
        let quoted = rest.get(..end)?;
        if *plain && quoted[0] == b'"' && quoted[end - 1] == b'"' && &quoted[1..end - 1] == name {
            self.at += end;
            Some(())
        } else {
            None
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat_if(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.at += usize::from(hit);
        hit
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.eat_if(byte).then_some(())
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string_span().map(drop),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.at += 1;
                self.space();
                if self.eat_if(b'}') {
                    return Some(());
                }
                loop {
                    self.string_span()?;
                    self.space();
                    self.eat(b':')?;
                    self.space();
                    self.value(depth + 1)?;
                    self.space();
                    if self.eat_if(b'}') {
                        return Some(());
                    }
                    self.eat(b',')?;
                    self.space();
                }
            }
            b'[' => {
                self.at += 1;
                self.space();
                if self.eat_if(b']') {
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    self.space();
                    if self.eat_if(b']') {
                        return Some(());
                    }
                    self.eat(b',')?;
                    self.space();
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes().get(self.at..end)? == word).then(|| self.at = end)
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        self.eat_if(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat_if(b'.') && self.digits() == 0 {
            return None;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// A string's raw body and whether it holds escapes; the body is valid UTF-8 and
    /// its escapes valid, but they are not decoded.
    fn string_span(&mut self) -> Option<(&'m str, bool)> {
        self.eat(b'"')?;
        let start = self.at;
        let bytes = self.bytes;
        let (mut escaped, mut ascii) = (false, true);
        loop {
            self.at = skip_plain(bytes, self.at);
            match *bytes.get(self.at)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.at += 2;
                }
                0..=0x1f => return None,
                0x80.. => {
                    ascii = false;
                    self.at += 1;
                }
                _ => self.at += 1,
            }
        }
        let raw = bytes.get(start..self.at)?;
        self.at += 1;
        let raw = if ascii {
            // SAFETY: the scan above saw every byte of `raw` and none was >= 0x80, and
            // ASCII is valid UTF-8. Skipping the check halves the cost of a message.
            unsafe { std::str::from_utf8_unchecked(raw) }
        } else {
            std::str::from_utf8(raw).ok()?
        };
        if escaped {
            unescape(raw)?;
        }
        Some((raw, escaped))
    }

    /// A string, borrowed from the message unless it has escapes to decode.
    fn string(&mut self) -> Option<Cow<'m, str>> {
        let (raw, escaped) = self.string_span()?;
        Some(if escaped {
            Cow::Owned(unescape(raw)?)
        } else {
            Cow::Borrowed(raw)
        })
    }

    /// Whether the next string (a key) equals `field`, without decoding plain keys.
    fn key_is(&mut self, field: &str) -> Option<bool> {
        let (raw, escaped) = self.string_span()?;
        Some(if escaped {
            unescape(raw)? == field
        } else {
            raw == field
        })
    }
}

/// Decodes the escapes of a JSON string body; `None` for an invalid escape or a lone
/// surrogate.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next()? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let first = hex4(&mut chars)?;
                if (0xD800..0xDC00).contains(&first) {
                    // A high surrogate must be followed by an escaped low one.
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let second = hex4(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return None;
                    }
                    char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))?
                } else {
                    char::from_u32(first)?
                }
            }
            _ => return None,
        };
        out.push(decoded);
    }
    Some(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    (0..4).try_fold(0, |acc, _| Some(acc * 16 + chars.next()?.to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_field_at_top_level_only() {
        let msg = br#"{"nested":{"workspace_name":"no"},"workspace_name":"ws-1","n":[1,{"a":2}]}"#;
        assert_eq!(key_of(msg, "workspace_name").as_deref(), Some("ws-1"));
        assert_eq!(
            key_of(br#"{"nested":{"workspace_name":"no"}}"#, "workspace_name"),
            None
        );
    }

    #[test]
    fn escapes_are_decoded_in_keys_and_values() {
        let msg = br#"{"\u0077orkspace_name":"caf\u00e9 \"1\""}"#;
        assert_eq!(key_of(msg, "workspace_name").as_deref(), Some("café \"1\""));
    }

    #[test]
    fn object_fields_reads_scalars_by_name() {
        let message = br#"{"a": "x", "n": -12, "f": 1.5, "big": 99999999999999999999,
            "e": "\u00e9", "z": null, "o": {"a": 1}, "a": "last"}"#;
        let [a, n, f, big, e, z, o, missing] =
            object_fields(message, ["a", "n", "f", "big", "e", "z", "o", "missing"]).unwrap();
        assert_eq!(a, Some(Scalar::Str("last".into())));
        assert_eq!(n, Some(Scalar::Int(-12)));
        assert_eq!((f, big), (Some(Scalar::Other), Some(Scalar::Other)));
        assert_eq!(e, Some(Scalar::Str("\u{e9}".into())));
        assert_eq!(
            (z, o, missing),
            (Some(Scalar::Other), Some(Scalar::Other), None)
        );
        for bad in [
            &b"[1]"[..],
            b"{\"a\": 1,}",
            b"{\"a\": 01}",
            b"{\"a\" 1}",
            b"{} x",
        ] {
            assert!(object_fields(bad, ["a"]).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn fields_are_found_in_any_order_and_the_last_repeat_wins() {
        let names = ["a", "b", "c"];
        let read = |message: &[u8]| {
            object_fields(message, names).map(|f| {
                f.map(|v| {
                    v.map(|s| match s {
                        Scalar::Int(n) => n,
                        _ => -1,
                    })
                })
            })
        };
        assert_eq!(
            read(br#"{"a":1,"b":2,"c":3}"#),
            Some([Some(1), Some(2), Some(3)])
        );
        assert_eq!(
            read(br#"{"c":3,"b":2,"a":1}"#),
            Some([Some(1), Some(2), Some(3)])
        );
        assert_eq!(
            read(br#"{"a":1,"a":4,"b":2,"b":5}"#),
            Some([Some(4), Some(5), None])
        );
        assert_eq!(
            read(br#"{"a":1,"\u0062":2,"ab":9,"c":3}"#),
            Some([Some(1), Some(2), Some(3)])
        );
        assert_eq!(read(br#"{"a":1,"b":2,"c"}"#), None);
        // A name that is not plain text is never matched byte for byte.
        let quoted = ["a\"b", "c"];
        assert!(object_fields(br#"{"a"b":1}"#, quoted).is_none());
        assert!(matches!(
            object_fields(br#"{"a\"b":1}"#, quoted),
            Some([Some(Scalar::Int(1)), None])
        ));
    }

    #[test]
    fn the_compact_form_reads_as_the_full_scan_does() {
        let names = FieldNames::new(["id", "name", "n"]);
        let seeds: [&[u8]; 3] = [
            br#"{"id":"0b6e-4f","name":"ws-1","n":-12}"#,
            br#"{"id":"","name":"caf\u00e9","n":0}"#,
            br#"{"id":"x","name":"y","n":123456789012345678}"#,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"{}\":,.-+e0123456789\\n \x7f\xc3\x01";
        for seed in seeds {
            assert_eq!(names.read(seed), read_fields(seed, &names.names));
            for _ in 0..20_000 {
                let mut m = seed.to_vec();
                for _ in 0..=(next() % 2) {
                    let at = (next() as usize) % (m.len() + 1);
                    let byte = alphabet[(next() as usize) % alphabet.len()];
                    match next() % 3 {
                        0 if at < m.len() => m[at] = byte,
                        1 if at < m.len() => {
                            m.remove(at);
                        }
                        _ => m.insert(at, byte),
                    }
                }
                let full = read_fields(&m, &names.names);
                assert_eq!(names.read(&m), full, "{}", String::from_utf8_lossy(&m));
                assert_eq!(
                    names.read_one(&m, 1),
                    full.map(|[_, name, _]| name),
                    "{}",
                    String::from_utf8_lossy(&m)
                );
            }
        }
        let compact = |m: &[u8]| names.read_compact(m, |_, _| {});
        assert!(compact(seeds[0]));
        assert!(!compact(br#"{"id":"a","name":"b","n":1.5}"#));
        assert!(!compact(br#"{"id":"a","name":"b","n":1} "#));
        assert!(!compact(br#"{"id":"a","n":1,"name":"b"}"#));
        assert!(FieldNames::new(["a\"b"]).compact.is_none());
    }

    #[test]
    fn the_last_repeat_wins() {
        assert_eq!(key_of(br#"{"k":"a","k":"b"}"#, "k").as_deref(), Some("b"));
        assert_eq!(key_of(br#"{"k":"a","k":1}"#, "k"), None);
    }

    #[test]
    fn malformed_messages() {
        for bad in [
            &b""[..],
            b"[]",
            b"\"k\"",
            b"{\"k\":\"a\"",
            b"{\"k\":\"a\"} x",
            b"{\"k\":\"a\",}",
            b"{\"k\":1}",
            b"{\"k\":null}",
            b"{\"k\":\"\xff\"}",
            b"{\"other\":tru}",
        ] {
            assert_eq!(key_of(bad, "k"), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(key_of(b" {\"k\" : \"a\" } \n", "k").as_deref(), Some("a"));
        let deep = format!(
            "{{\"k\":\"a\",\"d\":{}{}}}",
            "[".repeat(500),
            "]".repeat(500)
        );
        assert_eq!(key_of(deep.as_bytes(), "k"), None, "nesting is bounded");
    }

    /// What serde_json makes of a message: the same question answered by a full parser.
    fn oracle(message: &[u8], field: &str) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(message).ok()?;
        value.as_object()?.get(field)?.as_str().map(str::to_owned)
    }

    #[test]
    fn agrees_with_serde_json_on_mutated_messages() {
        let seeds: [&[u8]; 4] = [
            br#"{"k":"v","n":-12.5e+3,"a":[true,false,null,{"x":"\u00e9\n"}],"o":{}}"#,
            br#"{"a":0,"k":"caf\u00e9 \ud83d\ude00","b":[1,2.0,3e4]}"#,
            br#" { "k" : "x" , "k" : "y" } "#,
            br#"{"s":"\"\\\/\b\f\r\t","k":"\u0041"}"#,
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"{}[]\":,.-+eE0123456789tfnrlu\\ak \x7f";
        for seed in seeds {
            assert_eq!(key_of(seed, "k").map(Cow::into_owned), oracle(seed, "k"));
            for _ in 0..20_000 {
                let mut m = seed.to_vec();
                for _ in 0..=(next() % 3) {
                    let at = (next() as usize) % (m.len() + 1);
                    let byte = alphabet[(next() as usize) % alphabet.len()];
                    match next() % 3 {
                        0 if at < m.len() => m[at] = byte,
                        1 if at < m.len() => {
                            m.remove(at);
                        }
                        _ => m.insert(at, byte),
                    }
                }
                assert_eq!(
                    key_of(&m, "k").map(Cow::into_owned),
                    oracle(&m, "k"),
                    "{}",
                    String::from_utf8_lossy(&m)
                );
            }
        }
    }

    #[test]
    fn the_lowest_flagged_byte_is_the_first_special_one() {
        let specials = [b'"', b'\\', 0x00, 0x1f, 0x80, 0xc3, 0xff];
        let plain = [b'a', b' ', b'~', 0x7f, b'!', b'#', b'0', 0x21];
        for first in 0..8 {
            for &special in &specials {
                for &next in specials.iter().chain(&plain) {
                    let mut word = [b'a'; 8];
                    word[first] = special;
                    if first + 1 < 8 {
                        word[first + 1] = next;
                    }
                    let flagged = special_bytes(u64::from_le_bytes(word));
                    assert_eq!(flagged.trailing_zeros() / 8, first as u32, "{word:?}");
                }
            }
        }
        assert_eq!(special_bytes(u64::from_le_bytes(plain)), 0);
    }

    #[test]
    fn skip_plain_stops_at_the_first_special_byte_anywhere() {
        let specials = [b'"', b'\\', 0x00, 0x1f, 0x80, 0xff];
        for len in 0..40 {
            for first in 0..len {
                for &special in &specials {
                    let mut text = vec![b'a'; len];
                    text[first] = special;
                    text[len - 1] = b'"';
                    let stop = skip_plain(&text, 0);
                    // It stops at the special byte, or short of it within the last 8.
                    assert!(stop <= first, "{len} {first} {special}");
                    assert!(stop == first || len - stop < 8, "{len} {first} {special}");
                }
            }
            let plain = vec![b'x'; len];
            assert!(len - skip_plain(&plain, 0) < 8);
        }
    }
}
