"""The documentation's examples for the bus, events, workspaces and execution events run and hold.

Every ```python block on those pages is run in a fresh interpreter (its asserts are the
checks); a block right after a ``<!-- not run -->`` line needs a server and is skipped."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ("bus.md", "events.md", "workspaces.md", "execution.md", "testing.md")
NOT_RUN = "<!-- not run -->"

_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def _examples() -> list[tuple[str, str, bool]]:
    """(id, code, runs) of every python block of the pages, in order."""
    found = []
    for title in PAGES:
        body = (DOCS / title).read_text(encoding="utf-8")
        for number, block in enumerate(_BLOCK.finditer(body), 1):
            before = body[: block.start()].rstrip().rsplit("\n", 1)[-1]
            found.append((f"{title}-{number}", block.group(1), before.strip() != NOT_RUN))
    return found


EXAMPLES = _examples()


def test_every_section_has_examples() -> None:
    titles = {example_id.rsplit("-", 1)[0] for example_id, _, _ in EXAMPLES}
    assert titles == set(PAGES)


@pytest.mark.parametrize(("code", "runs"), [e[1:] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES])
def test_example_runs(code: str, runs: bool, tmp_path: Path) -> None:
    if not runs:
        pytest.skip("the page marks this example as needing a server")
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
