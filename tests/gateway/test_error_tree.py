"""The gateway's internal errors belong to the one tree, and the safety package has no import
cycle hidden behind function-level imports (issue #12, item 4)."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway.safety
from gateway.calls import ClientDisconnected as ReExported
from gateway.errors import ClientDisconnected, DetectorFailed
from genaiops.errors import GatewayError, GenAIOpsError


def test_detector_failed_and_client_disconnected_are_genaiops_errors():
    assert issubclass(DetectorFailed, GatewayError) and issubclass(DetectorFailed, GenAIOpsError)
    assert issubclass(ClientDisconnected, GatewayError)
    assert ReExported is ClientDisconnected
    assert gateway.safety.DetectorFailed is DetectorFailed


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(modules imported at top level, modules imported inside functions) of one file."""
    top, lazy = set(), set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {node.module}
        elif isinstance(node, ast.Import):
            names = {a.name for a in node.names}
        else:
            continue
        (top if node.col_offset == 0 else lazy).update(names)
    return top, lazy


def test_safety_modules_import_each_other_without_cycles_or_lazy_imports():
    pkg = Path(gateway.safety.__file__).parent
    graph: dict[str, set[str]] = {}
    for f in pkg.glob("*.py"):
        if f.name == "__init__.py":
            continue
        mod = f"gateway.safety.{f.stem}"
        top, lazy = _imports(f)
        assert not {m for m in lazy if m.startswith("gateway.")}, (mod, lazy)
        graph[mod] = {m for m in top if m.startswith("gateway.safety.")}

    def visit(mod: str, stack: tuple[str, ...]) -> None:
        assert mod not in stack, f"import cycle: {' -> '.join((*stack, mod))}"
        for dep in graph.get(mod, ()):
            visit(dep, (*stack, mod))

    for mod in graph:
        visit(mod, ())
