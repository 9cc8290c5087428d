//! Go's `encoding/json` writer: its string escaping (HTML-safe by default), its float
//! spelling, and a pass that makes a standard encoder's output Go's.

use std::fmt::Write as _;

/// Appends `value` in decimal.
pub fn write_decimal(out: &mut String, value: i64) {
    let mut text = [0u8; 20];
    let mut at = text.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        text[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&text[at..]).unwrap_or_default());
}

/// What [`write_json_str`] does with each byte: 0 copies it; a letter is the short escape
/// (`\n`); `u` is a `\u00XX` escape; `LEAD` marks the first byte of U+2028/U+2029's
/// UTF-8 form, escaped only when the next two bytes complete one of them.
const ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'<' as usize] = b'u';
    table[b'>' as usize] = b'u';
    table[b'&' as usize] = b'u';
    table[LEAD as usize] = LEAD;
    table
};
const LEAD: u8 = 0xe2;

/// Appends `s` as a JSON string with Go's escaping: `"` and `\`, the short escapes
/// `\b \f \n \r \t`, other control characters as `\u00XX`, and, as Go's HTML-safe
/// default does, `<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes.
pub fn write_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = s.as_bytes();
    let mut plain_from = 0;
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        let escape = ESCAPES[byte as usize];
        if escape == 0 {
            at += 1;
            continue;
        }
        let (skip, text): (usize, [u8; 6]) = match escape {
            LEAD => match bytes.get(at + 1..at + 3) {
                Some([0x80, last @ (0xa8 | 0xa9)]) => {
                    (3, [b'\\', b'u', b'2', b'0', b'2', b'0' + (last - 0xa0)])
                }
                _ => {
                    at += 1;
                    continue;
                }
            },
            b'u' => (
                1,
                [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ],
            ),
            short => (1, [b'\\', short, 0, 0, 0, 0]),
        };
        // Runs end before an ASCII byte or a UTF-8 lead byte: always a char boundary.
        out.push_str(&s[plain_from..at]);
        let len = if escape == b'u' || escape == LEAD {
            6
        } else {
            2
        };
        out.push_str(std::str::from_utf8(&text[..len]).unwrap_or_default());
        at += skip;
        plain_from = at;
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

/// Appends `value` as Go's `encoding/json` writes a `float64`: the shortest digits that
/// read back exactly, positional when `1e-6 <= |value| < 1e21` (`50`, not `50.0`), else
/// with an exponent, `e+21` or `e-7` (Go trims a negative exponent's leading zero).
pub fn write_go_float(out: &mut String, value: f64) {
    let magnitude = value.abs();
    if magnitude == 0.0 || (1e-6..1e21).contains(&magnitude) {
        // Rust's `Display` is the shortest round-tripping spelling, never with an exponent.
        let _ = write!(out, "{value}");
        return;
    }
    let text = format!("{value:e}");
    match text.split_once('e') {
        Some((mantissa, exponent)) => {
            out.push_str(mantissa);
            out.push('e');
            if !exponent.starts_with('-') {
                out.push('+');
            }
            out.push_str(exponent);
        }
        None => out.push_str(&text),
    }
}

/// Appends JSON text written by a standard encoder (orjson) as Go's `encoding/json` would
/// have written the same values: floats in Go's spelling ([`write_go_float`]) and strings
/// with Go's HTML-safe escapes (`<`, `>`, `&`, U+2028, U+2029). Those characters only
/// occur inside strings and numbers only outside them, so one scan that tracks strings
/// finds both. Integers and everything else are copied as they are.
pub fn write_go_json(out: &mut String, json: &str) {
    let bytes = json.as_bytes();
    let mut plain_from = 0;
    let mut at = 0;
    let mut in_string = false;
    while at < bytes.len() {
        let byte = bytes[at];
        if in_string {
            match byte {
                b'\\' => at += 2,
                b'"' => {
                    in_string = false;
                    at += 1;
                }
                b'<' | b'>' | b'&' => {
                    out.push_str(&json[plain_from..at]);
                    out.push_str(match byte {
                        b'<' => "\\u003c",
                        b'>' => "\\u003e",
                        _ => "\\u0026",
                    });
                    at += 1;
                    plain_from = at;
                }
                LEAD => match bytes.get(at + 1..at + 3) {
                    Some([0x80, last @ (0xa8 | 0xa9)]) => {
                        out.push_str(&json[plain_from..at]);
                        out.push_str(if *last == 0xa8 { "\\u2028" } else { "\\u2029" });
                        at += 3;
                        plain_from = at;
                    }
                    _ => at += 1,
                },
                _ => at += 1,
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let end = bytes[at..]
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(bytes.len(), |n| at + n);
                let token = &json[at..end];
                if token.contains(['.', 'e', 'E']) {
                    if let Ok(value) = token.parse::<f64>() {
                        out.push_str(&json[plain_from..at]);
                        write_go_float(out, value);
                        plain_from = end;
                    }
                }
                at = end;
            }
            _ => at += 1,
        }
    }
    out.push_str(&json[plain_from.min(json.len())..]);
}

/// `json` (JSON text from any encoder) with Go's HTML-safe escapes applied: `<`, `>`, `&`,
/// U+2028 and U+2029 become `\u` escapes. They can only occur inside strings, so the
/// replacement needs no parse. Borrowed when there is nothing to escape.
pub fn html_safe(json: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let needs = |at: usize| match json[at] {
        b'<' | b'>' | b'&' => true,
        LEAD => matches!(json.get(at + 1..at + 3), Some([0x80, 0xa8 | 0xa9])),
        _ => false,
    };
    let Some(first) = (0..json.len()).find(|&at| needs(at)) else {
        return std::borrow::Cow::Borrowed(json);
    };
    let mut out = Vec::with_capacity(json.len() + 16);
    out.extend_from_slice(&json[..first]);
    let mut at = first;
    while at < json.len() {
        let byte = json[at];
        let escaped: &[u8] = match byte {
            b'<' => b"\\u003c",
            b'>' => b"\\u003e",
            b'&' => b"\\u0026",
            LEAD if needs(at) => {
                let text: &[u8] = if json[at + 2] == 0xa8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                };
                out.extend_from_slice(text);
                at += 3;
                continue;
            }
            _ => {
                out.push(byte);
                at += 1;
                continue;
            }
        };
        out.extend_from_slice(escaped);
        at += 1;
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_writes_them() {
        for (value, go) in [
            (1.0, "1"),
            (0.1, "0.1"),
            (-0.0, "-0"),
            (0.0, "0"),
            (50.0, "50"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (1e-10, "1e-10"),
            (5e-324, "5e-324"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (-1.5e300, "-1.5e+300"),
            (123_456_789.125, "123456789.125"),
        ] {
            let mut out = String::new();
            write_go_float(&mut out, value);
            assert_eq!(out, go, "{value:?}");
        }
    }

    #[test]
    fn standard_json_becomes_gos() {
        let cases = [
            (
                r#"{"a":1.0,"b":[1e-7,2,-3.5e+21],"c":"x<y>&z"}"#,
                r#"{"a":1,"b":[1e-7,2,-3.5e+21],"c":"x\u003cy\u003e\u0026z"}"#,
            ),
            // Digits, dots and escaped quotes inside strings are left alone.
            (
                r#"{"1.0":"2.0 \"<\" 3e5","n":null,"t":true}"#,
                r#"{"1.0":"2.0 \"\u003c\" 3e5","n":null,"t":true}"#,
            ),
            (
                "[\"\u{2028}\u{2029}\u{20ac}\",9223372036854775808,-0.0]",
                r#"["\u2028\u2029€",9223372036854775808,-0]"#,
            ),
            ("", ""),
        ];
        for (json, go) in cases {
            let mut out = String::new();
            write_go_json(&mut out, json);
            assert_eq!(out, go, "{json}");
        }
    }

    #[test]
    fn decimals() {
        for value in [0, 7, -7, 42, 1_000_000, i64::MAX, i64::MIN] {
            let mut out = String::new();
            write_decimal(&mut out, value);
            assert_eq!(out, value.to_string());
        }
    }

    /// Go's escaping is serde_json's plus the HTML-safe escapes.
    fn go_reference(s: &str) -> String {
        serde_json::to_string(s)
            .unwrap()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    }

    #[test]
    fn strings_escape_as_the_reference_does() {
        let mut samples: Vec<String> = (0u32..0x3000)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b{c}"))
            .collect();
        samples.extend(
            [
                "",
                "plain",
                "€ and ‚ share the lead byte",
                "\u{2027}\u{2028}\u{2029}\u{202a}",
                "ends in \u{2028}",
                "\u{e2}",
                "😀<x>",
                "\u{0}\u{1f}\u{7f}",
            ]
            .map(String::from),
        );
        for sample in samples {
            let mut out = String::new();
            write_json_str(&mut out, &sample);
            assert_eq!(out, go_reference(&sample), "{sample:?}");
        }
    }

    #[test]
    fn strings_as_go_escapes_them() {
        let mut out = String::new();
        write_json_str(&mut out, "a\"b\\c\n\t\u{1}<&>\u{2028}é\u{8}\u{c}");
        assert_eq!(out, r#""a\"b\\c\n\t\u0001\u003c\u0026\u003e\u2028é\b\f""#);
    }

    #[test]
    fn html_safe_escapes_what_go_escapes() {
        assert_eq!(&*html_safe(b"{\"a\":1}"), b"{\"a\":1}");
        assert_eq!(
            &*html_safe("[\"<a>&\u{2028}\u{2029}\u{20ac}\"]".as_bytes()),
            br#"["\u003ca\u003e\u0026\u2028\u2029"#
                .iter()
                .chain("\u{20ac}\"]".as_bytes())
                .copied()
                .collect::<Vec<u8>>()
                .as_slice()
        );
    }
}
