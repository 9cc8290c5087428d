//! The jb-mesh event envelope, `{"type","node","timestamp","data"}`, as Go's
//! `encoding/json` writes and reads its struct.
//!
//! Writing: the four keys always, in declaration order (the struct has no `omitempty`),
//! an unset time as Go's zero time, strings with Go's escaping. Reading: a key names a
//! field when it equals the field's name ignoring case as Go folds it (ASCII letters,
//! and `ſ` as `s`), the last occurrence winning; other keys are ignored. The `data`
//! value itself is arbitrary JSON, decoded by the caller into its own values.

use crate::go_json::write_json_str;
use crate::go_time::WireTime;

/// Every event travels on `SUBJECT_PREFIX + type`.
pub const SUBJECT_PREFIX: &str = "events.";

/// Go's zero time as it writes it: an unset timestamp.
pub const ZERO_TIME_JSON: &str = "\"0001-01-01T00:00:00Z\"";

/// A field of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Type,
    Node,
    Timestamp,
    Data,
}

const FIELDS: [(&str, Field); 4] = [
    ("type", Field::Type),
    ("node", Field::Node),
    ("timestamp", Field::Timestamp),
    ("data", Field::Data),
];

impl Field {
    /// The field a JSON key names, as Go's decoder matches struct fields.
    pub fn of(key: &str) -> Option<Self> {
        for (name, field) in FIELDS {
            if key == name {
                return Some(field);
            }
        }
        FIELDS
            .into_iter()
            .find(|(name, _)| folds_to(key, name))
            .map(|(_, field)| field)
    }
}

/// Whether `key` equals `name` (lower-case ASCII) under Go's simple case folding: the
/// only non-ASCII letters that fold onto ASCII ones are `ſ` (to `s`) and the Kelvin sign
/// (to `k`).
fn folds_to(key: &str, name: &str) -> bool {
    let mut wanted = name.bytes();
    for c in key.chars() {
        let folded = match c {
            'ſ' => b's',
            'K' => b'k',
            c if c.is_ascii() => (c as u8).to_ascii_lowercase(),
            _ => return false,
        };
        if wanted.next() != Some(folded) {
            return false;
        }
    }
    wanted.next().is_none()
}

/// Appends the envelope up to and including `"data":`; the caller writes the data
/// (`null` for none) and the closing `}`.
pub fn write_head(out: &mut String, kind: &str, node: &str, time: Option<&WireTime>) {
    out.push_str("{\"type\":");
    write_json_str(out, kind);
    out.push_str(",\"node\":");
    write_json_str(out, node);
    out.push_str(",\"timestamp\":");
    match time {
        Some(t) => t.write_json(out),
        None => out.push_str(ZERO_TIME_JSON),
    }
    out.push_str(",\"data\":");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_as_go_folds_them() {
        assert_eq!(Field::of("type"), Some(Field::Type));
        assert_eq!(Field::of("TYPE"), Some(Field::Type));
        assert_eq!(Field::of("NoDe"), Some(Field::Node));
        assert_eq!(Field::of("timeſtamp"), Some(Field::Timestamp));
        assert_eq!(Field::of("Data"), Some(Field::Data));
        for other in ["", "typ", "types", "tÿpe", "dataa", "tıme"] {
            assert_eq!(Field::of(other), None, "{other}");
        }
    }

    #[test]
    fn head_as_go_writes_it() {
        let mut out = String::new();
        write_head(&mut out, "a<b", "n", None);
        out.push_str("null}");
        assert_eq!(
            out,
            r#"{"type":"a\u003cb","node":"n","timestamp":"0001-01-01T00:00:00Z","data":null}"#
        );
        let mut out = String::new();
        let t = WireTime {
            unix_nanos: 1_500_000_000,
            offset_seconds: 0,
        };
        write_head(&mut out, "t", "", Some(&t));
        assert_eq!(
            out,
            r#"{"type":"t","node":"","timestamp":"1970-01-01T00:00:01.5Z","data":"#
        );
    }
}
