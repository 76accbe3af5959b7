"""The library's shape: dependencies point one way (no import cycle between its packages and modules, counting
imports inside functions), and no module grows past ~600 lines."""

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent.parent / "medix_lib"


def _units() -> dict[str, set[str]]:
    """Top-level unit (``medix_lib.judge``, ``medix_lib.models``, ...) -> the units it imports."""
    graph: dict[str, set[str]] = {}
    for path in LIBRARY.rglob("*.py"):
        parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
        unit = ".".join(parts[:2]) if len(parts) > 1 else parts[0]
        package = parts[:-1]
        deps = graph.setdefault(unit.removesuffix(".__init__"), set())
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(list(package[:len(package) - node.level + 1]) + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] if base == "medix_lib" else [base]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("medix_lib."):
                    target = ".".join(name.split(".")[:2])
                    if target != unit.removesuffix(".__init__"):
                        deps.add(target)
    return graph


def test_no_import_cycle():
    graph = _units()
    cycles = []

    def visit(node, path):
        for dep in sorted(graph.get(node, ())):
            if dep in path:
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            else:
                visit(dep, path + [dep])

    for unit in sorted(graph):
        visit(unit, [unit])
    assert not cycles, sorted(set(cycles))[:5]


def test_models_resolve_and_load_they_never_train():
    assert not {"medix_lib.verifier", "medix_lib.training"} & _units()["medix_lib.models"]


def test_no_module_over_600_lines():
    lines = {str(p.relative_to(LIBRARY)): len(p.read_text().splitlines()) for p in LIBRARY.rglob("*.py")}
    assert not {name: n for name, n in lines.items() if n > 600}
