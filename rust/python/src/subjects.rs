//! The subject functions: validation, tokens, matching, collision and subset.

use pyo3::prelude::*;
use turnout_core::{self as core, SubjectKind};

use crate::args::{invalid_subject, subject_error, text, NOT_UTF8};

fn checked(subject: &Bound<'_, PyAny>, kind: SubjectKind) -> PyResult<bool> {
    Ok(text(subject, "subject")?.is_some_and(|s| core::check(s, kind).is_ok()))
}

/// Whether `subject` is a valid pattern or literal subject.
#[pyfunction]
fn is_valid_subject(subject: &Bound<'_, PyAny>) -> PyResult<bool> {
    checked(subject, SubjectKind::Pattern)
}

/// Whether `subject` is valid and has no wildcard token.
#[pyfunction]
fn is_valid_literal(subject: &Bound<'_, PyAny>) -> PyResult<bool> {
    checked(subject, SubjectKind::Literal)
}

/// Raises `InvalidSubjectError` naming the subject and the rule it breaks.
#[pyfunction]
#[pyo3(signature = (subject, *, literal = false))]
fn validate_subject(subject: &Bound<'_, PyAny>, literal: bool) -> PyResult<()> {
    let py = subject.py();
    let Some(s) = text(subject, "subject")? else {
        return Err(invalid_subject(py, subject, NOT_UTF8));
    };
    let kind = if literal {
        SubjectKind::Literal
    } else {
        SubjectKind::Pattern
    };
    core::check(s, kind).map_err(|err| subject_error(py, subject, err))
}

/// Whether `pattern` matches `subject`, every token of `subject` taken literally.
#[pyfunction]
fn subject_matches(subject: &Bound<'_, PyAny>, pattern: &Bound<'_, PyAny>) -> PyResult<bool> {
    let (s, p) = (text(subject, "subject")?, text(pattern, "pattern")?);
    Ok(matches!((s, p), (Some(s), Some(p)) if core::subject_matches(s, p)))
}

/// Whether some literal subject is matched by both `a` and `b`.
#[pyfunction]
fn subjects_collide(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<bool> {
    let (a, b) = (text(a, "a")?, text(b, "b")?);
    Ok(matches!((a, b), (Some(a), Some(b)) if core::subjects_collide(a, b)))
}

/// Whether every subject matched by `pattern` is also matched by `of`.
#[pyfunction]
fn is_subset(pattern: &Bound<'_, PyAny>, of: &Bound<'_, PyAny>) -> PyResult<bool> {
    let (p, o) = (text(pattern, "pattern")?, text(of, "of")?);
    Ok(matches!((p, o), (Some(p), Some(o)) if core::is_subset(p, o)))
}

/// The tokens of a valid subject or pattern.
#[pyfunction]
fn tokens(subject: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let py = subject.py();
    let Some(s) = text(subject, "subject")? else {
        return Err(invalid_subject(py, subject, NOT_UTF8));
    };
    let tokens = core::tokens(s).map_err(|err| subject_error(py, subject, err))?;
    Ok(tokens.into_iter().map(str::to_owned).collect())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(is_valid_subject, m)?)?;
    m.add_function(wrap_pyfunction!(is_valid_literal, m)?)?;
    m.add_function(wrap_pyfunction!(validate_subject, m)?)?;
    m.add_function(wrap_pyfunction!(subject_matches, m)?)?;
    m.add_function(wrap_pyfunction!(subjects_collide, m)?)?;
    m.add_function(wrap_pyfunction!(is_subset, m)?)?;
    m.add_function(wrap_pyfunction!(tokens, m)?)?;
    Ok(())
}
