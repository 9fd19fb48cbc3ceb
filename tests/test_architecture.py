"""The package's shape, as docs/architecture.md draws it: what may import what, and no import cycle.

Imports are read from the source (every ``import`` statement, those inside functions included), so a
cycle cannot hide behind a lazy import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lsml_hub"
REPO = PACKAGE.parent

# Modules with no lsml_hub import above this list; every package below may use them.
FOUNDATION = {"errors", "version", "_checks", "_io", "_seed", "_device", "_lazy", "_hub_client", "output_folder",
              "run_layout", "compute", "distributed"}
# Package -> the packages it may import besides the foundation (docs/architecture.md, "What may import what").
ALLOWED = {
    "models": set(),
    "algorithms": set(),
    "data": set(),
    "evaluation": {"data"},
    "hub": {"models", "algorithms"},
    "training": {"models", "algorithms", "data", "evaluation", "hub"},
    "metatest": {"models", "data", "evaluation", "hub"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The lsml_hub modules ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{alias.name}" for alias in node.names} & set(MODULES)
            found.update(subs or {node.module})
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def top(name: str) -> str:
    """``lsml_hub.data.task`` -> ``data``; the root package itself -> ``""``."""
    return name.split(".")[1] if "." in name else ""


def test_no_import_cycle():
    state: dict[str, str] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join([*path[path.index(dep):], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = "done"

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [name])
    assert not cycles


def test_the_foundation_imports_only_the_foundation():
    bad = {name: sorted(top(d) for d in deps if top(d) not in FOUNDATION)
           for name, deps in GRAPH.items() if top(name) in FOUNDATION}
    assert not {name: deps for name, deps in bad.items() if deps}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_what_the_architecture_allows(package):
    allowed = FOUNDATION | ALLOWED[package] | {package}
    bad = {name: sorted({top(d) for d in deps} - allowed) for name, deps in GRAPH.items() if top(name) == package}
    assert not {name: deps for name, deps in bad.items() if deps}


def test_the_architecture_doc_states_the_rules_this_test_checks():
    doc = (REPO / "docs" / "architecture.md").read_text()
    for package, deps in ALLOWED.items():
        line = re.search(rf"^\| `{package}` \|(.*)\|$", doc, re.MULTILINE)
        assert line, f"docs/architecture.md has no row for {package}"
        assert set(re.findall(r"`(\w+)`", line.group(1))) == deps, package
