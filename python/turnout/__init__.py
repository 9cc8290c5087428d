"""turnout: high-throughput event routing for Python, with a Rust core.

The subject rules and the subject index live in Rust (``turnout._core``); this package is
the public face. ``turnout.reference`` is a pure-Python twin of the same API.
"""

from __future__ import annotations

from turnout._core import (
    MAX_SUBJECT_LENGTH,
    MAX_TOKENS,
    MatchResult,
    SubjectIndex,
    __version__,
    is_subset,
    is_valid_literal,
    is_valid_subject,
    subject_matches,
    subjects_collide,
    tokens,
    validate_subject,
)
from turnout._errors import InvalidSubjectError

__all__ = [
    "MAX_SUBJECT_LENGTH",
    "MAX_TOKENS",
    "InvalidSubjectError",
    "MatchResult",
    "SubjectIndex",
    "__version__",
    "is_subset",
    "is_valid_literal",
    "is_valid_subject",
    "subject_matches",
    "subjects_collide",
    "tokens",
    "validate_subject",
]
