"""The README's examples for the bus, events, workspaces and execution events run and hold.

Every ```python block in those sections is run in a fresh interpreter (its asserts are the
checks); a block right after a ``<!-- not run -->`` line needs a server and is skipped."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SECTIONS = ("The event bus", "Events", "Workspaces", "Execution events")
NOT_RUN = "<!-- not run -->"

_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def _section(text: str, title: str) -> str:
    """The text of the ``## title`` section, up to the next ``## `` heading."""
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : None if end < 0 else end]


def _examples() -> list[tuple[str, str, bool]]:
    """(id, code, runs) of every python block of the sections, in order."""
    text = README.read_text(encoding="utf-8")
    found = []
    for title in SECTIONS:
        body = _section(text, title)
        for number, block in enumerate(_BLOCK.finditer(body), 1):
            before = body[: block.start()].rstrip().rsplit("\n", 1)[-1]
            found.append((f"{title}-{number}", block.group(1), before.strip() != NOT_RUN))
    return found


EXAMPLES = _examples()


def test_every_section_has_examples() -> None:
    titles = {example_id.rsplit("-", 1)[0] for example_id, _, _ in EXAMPLES}
    assert titles == set(SECTIONS)


@pytest.mark.parametrize(("code", "runs"), [e[1:] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES])
def test_example_runs(code: str, runs: bool, tmp_path: Path) -> None:
    if not runs:
        pytest.skip("the README marks this example as needing a server")
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
