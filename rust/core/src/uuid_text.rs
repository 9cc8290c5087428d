//! UUIDs in their 36-character hyphenated text form (`8-4-4-4-12` hex digits, either
//! case), read eight digits at a time: a decoder reading two UUIDs per message spends
//! less on them than on the rest of the message.

/// The value of the UUID `text` spells in the hyphenated form, or `None` for any other
/// text.
pub fn parse_hyphenated(text: &[u8]) -> Option<u128> {
    let bytes: &[u8; 36] = text.try_into().ok()?;
    if bytes[8] != b'-' || bytes[13] != b'-' || bytes[18] != b'-' || bytes[23] != b'-' {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
    let half = |at: usize| {
        u64::from(u32::from_le_bytes(
            bytes[at..at + 4].try_into().expect("four bytes"),
        ))
    };
    // The 32 digits as four words of eight, first digit in the lowest byte.
    let words = [
        word(0),
        half(9) | (half(14) << 32),
        half(19) | (half(24) << 32),
        word(28),
    ];
    let mut value = 0u128;
    for w in words {
        value = (value << 32) | u128::from(eight_digits(w)?);
    }
    Some(value)
}

/// The value of the eight hex digits in `word` (the first digit in the lowest byte), or
/// `None` if a byte is not one.
fn eight_digits(word: u64) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = ONES * 0x80;
    if word & HIGHS != 0 {
        return None;
    }
    // For bytes below 0x80 (checked above), the high bit of each byte of the result is
    // set where the byte lies in `low..=high`; no carry crosses a byte.
    let within = |x: u64, low: u8, high: u8| {
        x.wrapping_add(ONES * u64::from(0x80 - low))
            & !x.wrapping_add(ONES * u64::from(0x7f - high))
            & HIGHS
    };
    let digit = within(word, b'0', b'9');
    let letter = within(word | (ONES * 0x20), b'a', b'f');
    if (digit | letter) != HIGHS {
        return None;
    }
    // A digit's value is its low four bits; a letter's, its low four bits plus nine.
    let nibbles = (word & (ONES * 0x0f)) + (letter >> 7) * 9;
    // Pack the nibbles, the first the most significant: pairs, then quads, then all.
    let pairs = ((nibbles & 0x00ff_00ff_00ff_00ff) << 4) | ((nibbles >> 8) & 0x00ff_00ff_00ff_00ff);
    let quads = ((pairs & 0x0000_ffff_0000_ffff) << 8) | ((pairs >> 16) & 0x0000_ffff_0000_ffff);
    Some((((quads & 0xffff_ffff) << 16) | (quads >> 32)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain reading: the digits without hyphens, by the standard library.
    fn oracle(text: &[u8]) -> Option<u128> {
        let text = std::str::from_utf8(text).ok()?;
        let groups: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lengths != [8, 4, 4, 4, 12]
            || !groups
                .iter()
                .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return None;
        }
        u128::from_str_radix(&groups.concat(), 16).ok()
    }

    #[test]
    fn reads_both_cases_and_refuses_other_text() {
        let text = b"0B6E1a2f-9c3D-4e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(
            parse_hyphenated(text),
            Some(0x0b6e1a2f_9c3d_4e5f_8a9b_0c1d2e3f4a5b)
        );
        assert_eq!(
            parse_hyphenated(b"00000000-0000-0000-0000-000000000000"),
            Some(0)
        );
        assert_eq!(
            parse_hyphenated(b"ffffffff-ffff-ffff-ffff-ffffffffffff"),
            Some(u128::MAX)
        );
        for bad in [
            &b""[..],
            b"0b6e1a2f-9c3d-4e5f-8a9b-0c1d2e3f4a5",
            b"0b6e1a2f-9c3d-4e5f-8a9b-0c1d2e3f4a5bb",
            b"0b6e1a2f9c3d-4e5f-8a9b-0c1d2e3f4a5b-",
            b"0b6e1a2g-9c3d-4e5f-8a9b-0c1d2e3f4a5b",
            b"0b6e1a2f-9c3d-4e5f-8a9b-0c1d2e3f4a5\xc3",
        ] {
            assert_eq!(
                parse_hyphenated(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn every_byte_in_every_place_agrees_with_the_plain_reading() {
        let base = *b"0b6e1a2f-9c3d-4e5f-8a9b-0c1d2e3f4a5b";
        for at in 0..base.len() {
            for byte in 0..=255u8 {
                let mut text = base;
                text[at] = byte;
                assert_eq!(parse_hyphenated(&text), oracle(&text), "{at} {byte}");
            }
        }
    }
}
