"""Exceptions shared by the Rust core and the pure-Python reference."""

from __future__ import annotations

_SHOWN = 120  # a hostile 1 MB subject must not become a 1 MB message


class InvalidSubjectError(ValueError):
    """A subject or pattern breaks the NATS subject rules (SPEC section 1).

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
