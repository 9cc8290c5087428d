//! NATS subject rules: validation, tokens, matching, collision and subset.
//!
//! A subject is `.`-separated tokens. In a pattern the token `*` matches exactly one
//! token and `>` matches one or more and may only come last; `foo*`, `*bar` and `>>` are
//! ordinary literal tokens. A subject handed to matching is taken token by token
//! literally: `*` and `>` in it are just tokens (nats-server does the same).

use std::fmt;

/// Upper bound on a subject's UTF-8 length, so hostile input costs bounded work.
pub const MAX_SUBJECT_LENGTH: usize = 65_536;
/// Upper bound on a subject's token count (it also bounds the match recursion depth).
pub const MAX_TOKENS: usize = 1_024;

/// The token that matches exactly one token.
pub const SINGLE_WILDCARD: &str = "*";
/// The token that matches one or more tokens at the end of a pattern.
pub const FULL_WILDCARD: &str = ">";

/// Which rules a string is held to; each kind adds rules to the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    /// What `match` takes: non-empty tokens, no whitespace, within bounds.
    Subject,
    /// A subscription pattern: also `>` only as the last token.
    Pattern,
    /// What is published: also no wildcard token at all.
    Literal,
}

/// The rule a subject broke. Checked in the order of the variants, so a string breaking
/// several rules reports the first (the pure-Python reference follows the same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectError {
    Empty,
    TooLong,
    Whitespace,
    Nul,
    TooManyTokens,
    EmptyToken,
    FullWildcardNotLast,
    WildcardInLiteral,
}

impl SubjectError {
    /// The reason as users read it; also the `reason` of Python's `InvalidSubjectError`.
    pub fn reason(self) -> String {
        match self {
            Self::Empty => "empty subject".into(),
            Self::TooLong => format!("longer than {MAX_SUBJECT_LENGTH} bytes"),
            Self::Whitespace => "contains whitespace".into(),
            Self::Nul => "contains NUL".into(),
            Self::TooManyTokens => format!("more than {MAX_TOKENS} tokens"),
            Self::EmptyToken => "empty token".into(),
            Self::FullWildcardNotLast => "'>' must be the last token".into(),
            Self::WildcardInLiteral => "wildcard in a literal subject".into(),
        }
    }
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason())
    }
}

impl std::error::Error for SubjectError {}

/// Checks `s` against the rules of `kind`, reporting the first rule broken.
///
/// One pass over the bytes: this runs on every uncached match.
pub fn check(s: &str, kind: SubjectKind) -> Result<(), SubjectError> {
    if s.is_empty() {
        return Err(SubjectError::Empty);
    }
    if s.len() > MAX_SUBJECT_LENGTH {
        return Err(SubjectError::TooLong);
    }
    let bytes = s.as_bytes();
    // A forbidden byte outranks every token rule wherever it is, so token findings are
    // only noted until the end of the scan.
    let (mut dots, mut start) = (0usize, 0usize);
    let (mut empty, mut full_not_last, mut wildcard) = (false, false, false);
    for (at, &byte) in bytes.iter().enumerate() {
        match byte {
            b'.' => {
                match &bytes[start..at] {
                    b"" => empty = true,
                    b">" => (wildcard, full_not_last) = (true, true),
                    b"*" => wildcard = true,
                    _ => {}
                }
                dots += 1;
                start = at + 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c => return Err(SubjectError::Whitespace),
            0 => return Err(SubjectError::Nul),
            _ => {}
        }
    }
    match &bytes[start..] {
        b"" => empty = true,
        b">" | b"*" => wildcard = true,
        _ => {}
    }
    if dots >= MAX_TOKENS {
        Err(SubjectError::TooManyTokens)
    } else if empty {
        Err(SubjectError::EmptyToken)
    } else if kind != SubjectKind::Subject && full_not_last {
        Err(SubjectError::FullWildcardNotLast)
    } else if kind == SubjectKind::Literal && wildcard {
        Err(SubjectError::WildcardInLiteral)
    } else {
        Ok(())
    }
}

/// How the token scan of a subject being matched classes each byte.
const PLAIN: u8 = 0;
const DOT: u8 = 1;
const FORBIDDEN: u8 = 2;
static BYTE_CLASSES: [u8; 256] = {
    let mut classes = [PLAIN; 256];
    classes[b'.' as usize] = DOT;
    let mut forbidden = [b' ', b'\t', b'\n', b'\r', 0x0c, 0].as_slice();
    while let [byte, rest @ ..] = forbidden {
        classes[*byte as usize] = FORBIDDEN;
        forbidden = rest;
    }
    classes
};

/// The first token of `rest`, a part of a subject being matched, and what follows its
/// dot; `None` when the token is empty or holds whitespace or NUL (the subject is then
/// malformed). The match walk splits a subject with this, so that checking it costs no
/// pass of its own: each byte is classed once, by table.
pub fn next_token(rest: &str) -> Option<(&str, Option<&str>)> {
    let bytes = rest.as_bytes();
    let mut at = 0;
    while at < bytes.len() && BYTE_CLASSES[bytes[at] as usize] == PLAIN {
        at += 1;
    }
    if at == 0 {
        return None;
    }
    match bytes.get(at) {
        None => Some((rest, None)),
        // The dot is ASCII, so both sides are on character boundaries.
        Some(&b'.') => Some((&rest[..at], Some(&rest[at + 1..]))),
        Some(_) => None,
    }
}

/// Whether `rest`, what follows the first `taken` tokens of a subject being matched (each
/// already checked by [`next_token`]), completes a well-formed subject.
pub fn rest_is_well_formed(mut rest: &str, mut taken: usize) -> bool {
    loop {
        let Some((_, tail)) = next_token(rest) else {
            return false;
        };
        taken += 1;
        if taken > MAX_TOKENS {
            return false;
        }
        match tail {
            Some(tail) => rest = tail,
            None => return true,
        }
    }
}

/// A valid pattern or literal.
pub fn is_valid_subject(s: &str) -> bool {
    check(s, SubjectKind::Pattern).is_ok()
}

/// Valid and without wildcard tokens.
pub fn is_valid_literal(s: &str) -> bool {
    check(s, SubjectKind::Literal).is_ok()
}

/// The tokens of a valid pattern.
pub fn tokens(s: &str) -> Result<Vec<&str>, SubjectError> {
    check(s, SubjectKind::Pattern)?;
    Ok(s.split('.').collect())
}

/// Whether the valid `pattern` matches the well-formed `subject`, whose every token is
/// taken literally. Anything invalid gives false.
pub fn subject_matches(subject: &str, pattern: &str) -> bool {
    check(subject, SubjectKind::Subject).is_ok()
        && check(pattern, SubjectKind::Pattern).is_ok()
        && matches_checked(subject, pattern)
}

/// `subject_matches` for inputs already checked.
fn matches_checked(subject: &str, pattern: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        if p == FULL_WILDCARD {
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(t) if p == SINGLE_WILDCARD || p == t => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// A valid pattern split into its fixed tokens and whether it ends in `>`.
struct Shape<'a> {
    fixed: Vec<&'a str>,
    open: bool,
}

impl<'a> Shape<'a> {
    fn of(pattern: &'a str) -> Option<Self> {
        check(pattern, SubjectKind::Pattern).ok()?;
        let mut fixed: Vec<&str> = pattern.split('.').collect();
        let open = fixed.last() == Some(&FULL_WILDCARD);
        if open {
            fixed.pop();
        }
        Some(Self { fixed, open })
    }

    /// Fewest tokens of a subject it matches (`>` needs at least one).
    fn min_len(&self) -> usize {
        self.fixed.len() + usize::from(self.open)
    }

    /// Most tokens of a subject it matches, `None` for unbounded.
    fn max_len(&self) -> Option<usize> {
        (!self.open).then_some(self.fixed.len())
    }
}

/// Whether some literal subject is matched by both patterns.
pub fn subjects_collide(a: &str, b: &str) -> bool {
    let (Some(a), Some(b)) = (Shape::of(a), Shape::of(b)) else {
        return false;
    };
    let shortest_common = a.min_len().max(b.min_len());
    let longest_common = match (a.max_len(), b.max_len()) {
        (Some(x), Some(y)) => x.min(y),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => usize::MAX,
    };
    // Past either pattern's fixed tokens the other's `>` accepts anything.
    shortest_common <= longest_common
        && a.fixed
            .iter()
            .zip(&b.fixed)
            .all(|(x, y)| *x == SINGLE_WILDCARD || *y == SINGLE_WILDCARD || x == y)
}

/// Whether every subject matched by `pattern` is also matched by `of`.
pub fn is_subset(pattern: &str, of: &str) -> bool {
    let (Some(p), Some(o)) = (Shape::of(pattern), Shape::of(of)) else {
        return false;
    };
    let lengths_fit = if o.open {
        p.min_len() > o.fixed.len()
    } else {
        !p.open && p.fixed.len() == o.fixed.len()
    };
    // A literal token of `of` admits only the same literal token of `pattern`, never `*`.
    lengths_fit
        && o.fixed
            .iter()
            .zip(&p.fixed)
            .all(|(o, p)| *o == SINGLE_WILDCARD || (o == p && *p != SINGLE_WILDCARD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        for ok in [
            "foo",
            "foo.bar",
            "*",
            ">",
            "foo.*",
            "foo.>",
            "*.*.>",
            "foo*.*bar.>>",
        ] {
            assert!(is_valid_subject(ok), "{ok}");
        }
        for bad in [
            "", ".", "a.", ".a", "a..b", "a b", "a\tb", "a\0b", ">.a", "a.>.b",
        ] {
            assert!(!is_valid_subject(bad), "{bad:?}");
        }
        assert!(is_valid_literal("foo*.>>"));
        assert!(!is_valid_literal("foo.*"));
        assert!(!is_valid_literal(">"));
    }

    #[test]
    fn reasons_follow_rule_order() {
        assert_eq!(
            check("a..b c", SubjectKind::Pattern),
            Err(SubjectError::Whitespace)
        );
        assert_eq!(
            check("a.>..b", SubjectKind::Pattern),
            Err(SubjectError::EmptyToken)
        );
        assert_eq!(
            check("a.>.*", SubjectKind::Literal),
            Err(SubjectError::FullWildcardNotLast)
        );
        assert_eq!(check("a.>.b", SubjectKind::Subject), Ok(()));
        assert_eq!(
            check("a.*", SubjectKind::Literal),
            Err(SubjectError::WildcardInLiteral)
        );
    }

    #[test]
    fn bounds() {
        let longest = "a".repeat(MAX_SUBJECT_LENGTH);
        assert!(is_valid_subject(&longest));
        assert_eq!(
            check(&(longest + "a"), SubjectKind::Subject),
            Err(SubjectError::TooLong)
        );
        let most = vec!["a"; MAX_TOKENS].join(".");
        assert!(is_valid_subject(&most));
        let too_many = most + ".a";
        assert_eq!(
            check(&too_many, SubjectKind::Subject),
            Err(SubjectError::TooManyTokens)
        );
    }

    #[test]
    fn token_scan_agrees_with_check() {
        let longest = "a".repeat(MAX_SUBJECT_LENGTH);
        let most = vec!["a"; MAX_TOKENS].join(".");
        let too_many = format!("{most}.a");
        let samples = [
            "a",
            "a.b",
            "a..b",
            ".a",
            "a.",
            ".",
            "a b",
            "a\tb.c",
            "a.\0",
            "a.>.b",
            "*.>",
            ">",
            "\u{e9}t\u{e9}.x",
            "a.\x0c",
            "a\rb",
            longest.as_str(),
            most.as_str(),
            too_many.as_str(),
        ];
        for subject in samples {
            assert_eq!(
                rest_is_well_formed(subject, 0),
                check(subject, SubjectKind::Subject).is_ok(),
                "{subject:?}"
            );
        }
        assert_eq!(next_token("ab.cd"), Some(("ab", Some("cd"))));
        assert_eq!(next_token("ab"), Some(("ab", None)));
        assert_eq!(next_token("a b.c"), None);
        assert_eq!(next_token(".c"), None);
    }

    #[test]
    fn matching() {
        for p in ["foo.*", "foo.>", "*.bar", ">", "foo.bar"] {
            assert!(subject_matches("foo.bar", p), "{p}");
        }
        assert!(!subject_matches("foo", "foo.>"));
        assert!(!subject_matches("foo", "foo.*"));
        assert!(!subject_matches("foo.bar.baz", "foo.*"));
        assert!(subject_matches("a.>", "a.>"));
        assert!(subject_matches("a.*", "a.*"));
        assert!(!subject_matches("a.>", "a.b"));
        assert!(!subject_matches("foo..bar", "foo.*.bar"));
        assert!(!subject_matches("foo.bar", "foo..bar"));
    }

    #[test]
    fn collision() {
        assert!(subjects_collide("foo.*", "*.foo"));
        assert!(!subjects_collide("foo.*", "foo.*.bar.>"));
        assert!(subjects_collide("foo.>", "*.*.bar"));
        assert!(!subjects_collide("foo.>", "foo"));
        assert!(subjects_collide(">", "a.b.c"));
        assert!(!subjects_collide("a.b", "a.c"));
        assert!(!subjects_collide("a..b", "a.*.b"));
    }

    #[test]
    fn subset() {
        assert!(is_subset("foo.*", "*.*"));
        assert!(is_subset("*.*", ">"));
        assert!(is_subset("foo.*", ">"));
        assert!(!is_subset(">", "*.*"));
        assert!(!is_subset("*.*", "foo.*"));
        assert!(is_subset("a.b.>", "a.>"));
        assert!(!is_subset("a.>", "a.b.>"));
        assert!(is_subset("a.>", "a.>"));
        assert!(!is_subset("a.>", "a.*"));
        assert!(is_subset("a", "a"));
        assert!(!is_subset("a", "a.>"));
    }
}
