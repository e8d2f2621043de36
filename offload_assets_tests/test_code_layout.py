"""The layout's two rules, read from the source: only defs/ and cli/ use Dagster, and no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "offload_assets"
DAGSTER_ROOMS = {"defs", "cli"}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path], *, include_functions: bool) -> set[str]:
    """What ``name`` imports (absolute names), leaving out ``if TYPE_CHECKING:`` blocks."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
            if include_functions or isinstance(node, (ast.If, ast.Try, ast.With)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field, None) or [])

    visit(ast.parse(path.read_text()).body)
    return found


def _is_dagster(module: str) -> bool:
    """Dagster and its integrations (dagster_aws, ...); not dagster_pipes, the client library a Glue job uses."""
    top = module.split(".")[0]
    return top == "dagster" or (top.startswith("dagster_") and top != "dagster_pipes")


def test_only_defs_and_cli_import_dagster():
    modules = _modules()
    users = {
        name
        for name, path in modules.items()
        if any(_is_dagster(imported) for imported in _imports(name, path, modules, include_functions=True))
    }
    assert users, "the Dagster skin imports Dagster"
    assert {name for name in users if name.split(".")[1] not in DAGSTER_ROOMS} == set()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while (top := stack.pop()) != module:
                component.append(top)
            if component:
                cycles.append(sorted([*component, module]))

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles():
    modules = _modules()
    for include_functions in (False, True):
        graph = {
            name: {m for m in _imports(name, path, modules, include_functions=include_functions) if m in modules}
            - {name}
            for name, path in modules.items()
        }
        assert _cycles(graph) == [], "imports inside functions too" if include_functions else "module-level imports"
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check itself works
