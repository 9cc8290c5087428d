"""A griffe extension that gives the compiled core's API its docstrings from the Rust
source, as ``help()`` shows them.

The site reads the package statically (``python/``, the core through its hand-written
``_core.pyi``, which has signatures and no docstrings: the Rust doc comments are their one
home). So this imports the built ``turnout._core`` once and copies each object's
docstring onto the stub's object that has none. The docs build therefore needs turnout
installed in its environment (``pip install '.[docs]'`` does it); without it the build
warns, which ``mkdocs build --strict`` makes fatal.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from types import ModuleType
from typing import Any

import griffe

# Under "mkdocs." so that strict mode counts these warnings.
logger = logging.getLogger("mkdocs.plugins.turnout.core_docstrings")

CORE = "_core"


class CoreDocstrings(griffe.Extension):
    def __init__(self) -> None:
        super().__init__()
        self.done: set[str] = set()

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path in self.done:  # a griffe may call it by both names
            return
        self.done.add(pkg.path)
        stub = pkg.members.get(CORE)
        if stub is None:
            return
        try:
            core = importlib.import_module(f"{pkg.name}.{CORE}")
        except ImportError as exc:
            logger.warning(
                "cannot import %s.%s for its docstrings (%s): install turnout into this "
                "environment, e.g. pip install -e '.[docs]'",
                pkg.name,
                CORE,
                exc,
            )
            return
        self._copy(stub, core)

    on_package_loaded = on_package  # its name before griffe 1.14

    def _copy(self, obj: griffe.Object | griffe.Alias, live: ModuleType | type | object) -> None:
        for name, member in obj.members.items():
            if member.is_alias:
                continue
            value = inspect.getattr_static(live, name, None)
            if value is None:
                continue
            doc = inspect.getdoc(value) if not isinstance(value, int | str) else None
            if doc and member.docstring is None:
                member.docstring = griffe.Docstring(doc, parent=member)
            if member.is_class:
                self._copy(member, value)
