"""Structure rules of the package (issue 16), read from the source with ``ast``.

* No function or method in ``wsloc/`` longer than 80 lines (``def`` line to last line,
  docstring included, decorators not).
* No module uses a private name (one leading underscore, not a dunder) of another wsloc
  module: neither ``from M import _name`` nor ``M._name`` where ``M`` is a wsloc module bound
  by an import (``import wsloc.m as M``, ``from . import m``, ...). A private name is a
  module's own business; a name two modules share is public in the module that defines it.
* No import cycle among wsloc modules through **module-level** imports (statements that run
  when the module is imported, ``if``/``try`` blocks at the top level included;
  ``if TYPE_CHECKING:`` blocks left out, they never run). Imports inside functions are not
  counted: they run after every module has finished importing, so they cannot make an
  import fail or see a half-initialised module, and they are how a module keeps a heavy or
  upward dependency off its import path (e.g. the torch-free segmentation processes). The
  implicit import of a package's ``__init__`` before its submodules is not counted either
  (every submodule would form a cycle with its own package); ``from pkg import name`` counts
  as importing ``pkg`` itself, or the submodule ``pkg.name`` when ``name`` is one.

Each failure names ``file:line``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "wsloc"
MAX_LINES = 80


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _where(module: str, node: ast.AST) -> str:
    return f"{MODULES[module].relative_to(ROOT)}:{node.lineno}"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _package_of(module: str) -> str:
    """The package a relative import in ``module`` starts from."""
    is_package = MODULES[module].name == "__init__.py"
    return module if is_package else module.rpartition(".")[0]


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """Absolute module named by a ``from X import ...`` statement in ``module``."""
    if not node.level:
        return node.module or ""
    base = _package_of(module).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _module_level_imports(tree: ast.Module):
    """Import statements that run when the module is imported (see the module doc)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name != "TYPE_CHECKING":
                todo[:0] = node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo[:0] = node.body + [n for h in node.handlers for n in h.body] + node.orelse + node.finalbody


def _targets(module: str, node: ast.AST) -> list[str]:
    """The wsloc modules an import statement loads explicitly."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    base = _resolve(module, node)
    if base not in MODULES:
        return []
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    plain = [a for a in node.names if f"{base}.{a.name}" not in MODULES]
    return subs + ([base] if plain else [])


def _module_aliases(module: str, tree: ast.Module) -> dict[str, str]:
    """Local names bound to wsloc modules by any import in the file -> the module."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES:
                    out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            for a in node.names:
                if f"{base}.{a.name}" in MODULES:
                    out[a.asname or a.name] = f"{base}.{a.name}"
    return out


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The wsloc module an expression such as ``wsloc.io.datasets`` or ``ds`` names, if any."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, aliases)
        if base is not None and f"{base}.{node.attr}" in MODULES:
            return f"{base}.{node.attr}"
    return None


def test_no_function_is_longer_than_80_lines():
    long = []
    for module, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{_where(module, node)}: {node.name} has {n} lines (at most {MAX_LINES})")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)


def test_no_module_uses_a_private_name_of_another():
    found = []
    for module, tree in TREES.items():
        aliases = _module_aliases(module, tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(module, node)
                if source.split(".")[0] != "wsloc" or source == module:
                    continue
                for a in node.names:
                    if _is_private(a.name):
                        found.append(f"{_where(module, node)}: from {source} import {a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("wsloc.") and any(_is_private(p) for p in a.name.split(".")):
                        found.append(f"{_where(module, node)}: import {a.name}")
            elif isinstance(node, ast.Attribute) and _is_private(node.attr):
                target = _dotted(node.value, aliases)
                if target is not None and target != module:
                    found.append(f"{_where(module, node)}: {target}.{node.attr}")
    assert not found, "private names used across modules:\n" + "\n".join(sorted(set(found)))


def _cycles(edges: dict[str, dict[str, ast.AST]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges[v]:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_among_module_level_imports():
    edges: dict[str, dict[str, ast.AST]] = {m: {} for m in MODULES}
    for module, tree in TREES.items():
        for node in _module_level_imports(tree):
            for target in _targets(module, node):
                if target != module:
                    edges[module].setdefault(target, node)
    problems = []
    for comp in _cycles(edges):
        members = set(comp)
        links = [f"  {_where(m, node)}: {m} imports {t}" for m in comp for t, node in edges[m].items() if t in members]
        problems.append(f"cycle among {', '.join(comp)}:\n" + "\n".join(links))
    assert not problems, "import cycles (module-level imports):\n" + "\n".join(problems)


def test_the_rules_see_a_known_violation(tmp_path):
    """The checks are not vacuous: the helpers find what they are meant to find."""
    tree = ast.parse("from .maps import _private\nimport wsloc.evaluate.maps as mp\nx = mp._hidden\n")
    assert [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names] == ["_private"]
    aliases = _module_aliases("wsloc.evaluate.masks", tree)
    assert aliases == {"mp": "wsloc.evaluate.maps"}
    attr = next(n for n in ast.walk(tree) if isinstance(n, ast.Attribute))
    assert _dotted(attr.value, aliases) == "wsloc.evaluate.maps" and _is_private(attr.attr)
    assert _resolve("wsloc.evaluate.masks", tree.body[0]) == "wsloc.evaluate.maps"
    assert _cycles({"a": {"b": None}, "b": {"a": None}, "c": {}}) == [["a", "b"]]
    assert not _is_private("__all__") and _is_private("_pct")
