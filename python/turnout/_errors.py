"""Exceptions raised by the Rust core, defined here so that pure-Python code (the
reference index, the phase helpers) raises the very same classes."""

from __future__ import annotations

from turnout import _core

_SHOWN = 120  # a hostile 1 MB subject must not become a 1 MB message


class InvalidSubjectError(ValueError):
    """A subject or pattern breaks the subject rules (nats-server's).

    A subject is non-empty tokens joined by ``.``; it holds no whitespace (space, tab, CR,
    LF, FF) and no NUL, and is valid UTF-8. In a pattern ``*`` is any one token and ``>``
    one or more, only as the last token; a literal (what is published) has neither. At
    most 65,536 bytes and 1,024 tokens, so a hostile input costs bounded work.
    ``subject`` is the offending string as given and ``reason`` says which rule it broke.
    """

    subject: str
    reason: str

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        shown = subject if len(subject) <= _SHOWN else subject[:_SHOWN] + "..."
        super().__init__(f"invalid subject {shown!r}: {reason}")

    def __reduce__(self) -> tuple[type[InvalidSubjectError], tuple[str, str]]:
        return (type(self), (self.subject, self.reason))


class PhaseError(ValueError):
    """A workflow phase operation was refused (the message is the Go coordinator's text)."""


class WorkflowNotFoundError(PhaseError):
    """The workflow is not tracked: ``workflow not found: <id>``."""


class InvalidTransitionError(PhaseError):
    """The phase table does not allow the move:
    ``invalid transition from <from> to <to> for workflow <id>``."""


# The Rust core raises these very classes: they are handed to it once, here.
_core._register_errors(
    InvalidSubjectError, PhaseError, WorkflowNotFoundError, InvalidTransitionError
)
