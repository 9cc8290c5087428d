"""A griffe extension that turns the docstrings' reStructuredText into the Markdown the API
pages are rendered from.

turnout's docstrings are written for ``help()`` and for readers of the source, in the
reST conventions Python uses (``:class:`Bus```, a paragraph ending in ``::`` before a
literal block). mkdocstrings renders Markdown, so without this the roles would show as
raw text. A role naming something the site renders (a public member of one of the
``documented`` modules) becomes a cross-reference to it, resolved from where the
docstring is (``:meth:`emit``` inside ``Bus`` is ``turnout.bus.Bus.emit``). A role naming
something private, in an undocumented module or outside turnout (the standard library:
the site fetches no other inventory) stays code. A name that resolves to nothing is a
warning, which ``mkdocs build --strict`` makes fatal.
"""

from __future__ import annotations

import builtins
import logging
import re
import sys
from typing import Any

import griffe

# Under "mkdocs." so that strict mode counts these warnings.
logger = logging.getLogger("mkdocs.plugins.turnout.sphinx_roles")

ROLE = re.compile(r":(?:py:)?(class|meth|func|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")
# "text::" ending a paragraph introduces a literal block; a lone "::" line says nothing.
LITERAL_MARKER = re.compile(r"(\S)::\n(?=\n)|^[ \t]*::\n(?=\n)", re.MULTILINE)

Found = griffe.Object | griffe.Alias


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of the package once it is loaded."""

    def __init__(self, documented: list[str]) -> None:
        super().__init__()
        self.documented = sorted(documented, key=len, reverse=True)  # longest prefix first
        self.done: set[str] = set()
        self.warn = True

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path in self.done:  # a griffe may call it by both names
            return
        self.done.add(pkg.path)
        seen: set[str] = set()
        for module in self.documented:
            self._walk(pkg, pkg.modules_collection.get_member(module), seen)
        # A public module an API page renders but ``documented`` forgot: still rewritten,
        # without warnings (it may be a module no page renders).
        self.warn = False
        for module in self._public_modules(pkg):
            self._walk(pkg, module, seen)
        self.warn = True

    on_package_loaded = on_package  # its name before griffe 1.14

    def _public_modules(self, module: griffe.Module) -> list[griffe.Module]:
        found = [module]
        for name, member in module.members.items():
            if not member.is_alias and member.is_module and not name.startswith("_"):
                found += self._public_modules(member)  # type: ignore[arg-type]
        return found

    def _walk(self, pkg: griffe.Module, obj: Found, seen: set[str]) -> None:
        """Rewrites what the site renders: the documented modules' public members, where
        they are defined (so private modules' own docstrings are left alone)."""
        if obj.is_alias:
            try:
                obj = obj.final_target
            except griffe.AliasResolutionError:
                return
        if obj.path in seen or not obj.path.startswith(pkg.name):
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = self._rewrite(pkg, obj, obj.docstring.value)
        for member in obj.members.values():
            if member.is_public and not (obj.is_module and member.is_module):
                self._walk(pkg, member, seen)

    def _rewrite(self, pkg: griffe.Module, obj: griffe.Object, text: str) -> str:
        def role(match: re.Match[str]) -> str:
            kind, short, name = match.groups()
            name = name.strip()
            shown = name.rsplit(".", 1)[-1] if short else name
            if kind in ("meth", "func"):
                shown += "()"
            found = self._find(pkg, obj, name)
            if found is None:
                if self.warn:
                    logger.warning("%s: cannot resolve :%s:`%s`", obj.path, kind, name)
                return f"`{shown}`"
            target = self._rendered_path(pkg, found) if found else None
            return f"[`{shown}`][{target}]" if target else f"`{shown}`"

        text = ROLE.sub(role, text)
        return LITERAL_MARKER.sub(lambda m: f"{m.group(1)}:\n" if m.group(1) else "", text)

    def _find(self, pkg: griffe.Module, obj: griffe.Object, name: str) -> Found | bool | None:
        """What ``name`` names from ``obj``'s scope: a griffe object; False for something
        outside turnout; None for nothing at all."""
        head, _, rest = name.partition(".")
        if head == pkg.name:
            path = name
        else:
            scope: griffe.Object | None = obj
            member = None
            while scope is not None and member is None:
                member = self._member(pkg, scope, head)
                scope = scope.parent
            if member is None:
                external = hasattr(builtins, head) or head in sys.stdlib_module_names
                return False if external else None
            if member.is_alias and not member.target_path.startswith(pkg.name + "."):
                return False  # an import of something outside turnout
            path = f"{member.path}.{rest}" if rest else member.path
        try:
            found: Found = pkg.modules_collection.get_member(path)
        except (KeyError, ValueError, griffe.AliasResolutionError):
            return None
        if found.is_alias and not found.target_path.startswith(pkg.name + "."):
            return False  # an import of something outside turnout
        return found

    def _member(self, pkg: griffe.Module, scope: Found, name: str) -> Found | None:
        """``scope``'s member ``name``, looking through a class's bases (by hand: griffe
        resolves inherited members only once the whole collection is loaded)."""
        if name in scope.members:
            return scope.members[name]
        for base in getattr(scope, "bases", ()):
            path = str(getattr(base, "canonical_path", base))
            try:
                parent = pkg.modules_collection.get_member(path)
            except (KeyError, ValueError, griffe.AliasResolutionError):
                continue
            found = self._member(pkg, parent, name)
            if found is not None:
                return found
        return None

    def _rendered_path(self, pkg: griffe.Module, found: Found) -> str | None:
        """The path under which the site renders ``found``, following imports (an import
        a module does not export is shown where it comes from); None if nowhere."""
        while True:
            if self._renders(pkg, found.path):
                return found.path
            if not found.is_alias:
                return None
            try:
                found = pkg.modules_collection.get_member(found.target_path)
            except (KeyError, ValueError, griffe.AliasResolutionError):
                return None

    def _renders(self, pkg: griffe.Module, path: str) -> bool:
        for module in self.documented:
            if path == module:
                return True
            if not path.startswith(module + "."):
                continue
            rest = path[len(module) + 1 :].split(".")
            if any(part.startswith("_") for part in rest):
                return False
            top = pkg.modules_collection.get_member(f"{module}.{rest[0]}")
            return not top.is_module and top.is_public
        return False
