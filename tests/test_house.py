"""The house rules, checked: lint, types, import contracts, and an import graph with no cycle.

ruff and mypy (strict) find nothing, and no module or function is over its size: no exceptions are listed anywhere.

docs/architecture.md explains the rules. The graph is built from the source with `ast`, imports inside functions
included (an import moved into a function to dodge a cycle is still a cycle); `if TYPE_CHECKING:` imports are not
counted, as they never run.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("node", "sync")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a tool of the test environment from the project's root (bounded in time)."""
    executable = Path(sys.executable).parent / name
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([str(executable), *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=env, check=False)


def test_ruff_finds_nothing() -> None:
    result = _tool("ruff", "check", "--no-cache", "--output-format", "concise", "node", "sync", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing() -> None:
    result = _tool("mypy", "--no-incremental")   # files and strictness from pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout, result.stdout


def test_mypy_is_strict_everywhere() -> None:
    """Strict is set for the whole tree, not through a per-module override (python/mypy#11401)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config.get("strict") is True and sorted(config["files"]) == ["node", "sync"]
    assert not any(o.get("strict") is False or o.get("ignore_errors") for o in config.get("overrides", []))


def test_import_contracts_are_kept() -> None:
    result = _tool("lint-imports", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, tree: ast.Module) -> list[str]:
    """Every module name `module` imports, resolved (relative imports made absolute), TYPE_CHECKING excluded."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in
               ast.unparse(node.test) for n in ast.walk(node)}
    names: list[str] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if path.name != "__init__.py":
                    anchor = anchor[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target in _imports(name, path, ast.parse(path.read_text())):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            vertex, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[vertex] = min(low[vertex], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[vertex])
            if low[vertex] == index[vertex]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == vertex:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_anywhere() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_sees_a_cycle_through_a_function_level_import() -> None:
    graph = {"node.a": {"node.b"}, "node.b": {"node.c"}, "node.c": {"node.a"}, "node.d": {"node.a"}}
    assert _cycles(graph) == [["node.a", "node.b", "node.c"]]
    tree = ast.parse("def f():\n    from node.a import x\n")
    assert "node.a" in _imports("node.c", Path("node/c.py"), tree)


def test_sync_stands_alone_and_node_uses_only_its_public_names() -> None:
    graph = _graph()
    reach_ins = sorted(f"{source} -> {target}" for source, targets in graph.items() for target in targets
                       if source.startswith("node") and target.startswith("sync._"))
    assert reach_ins == []
    assert [s for s, targets in graph.items() if s.startswith("sync") and any(t.startswith("node") for t in targets)] \
        == []


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for path in _modules().values():
        source, where = path.read_text(), path.relative_to(ROOT).as_posix()
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES:
            too_long.append(f"module {where}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"function {where}:{node.name} (line {node.lineno}): {length} lines")
    assert too_long == []
