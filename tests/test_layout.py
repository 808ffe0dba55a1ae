"""The package's layout: the library imports none of the tools, and no module imports itself back in a circle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trl_policysplit"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The package's modules a file imports, at any depth of the file (lazy imports count too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("trl_policysplit"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("trl_policysplit"))
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {target for target in found if target in modules and target != name}


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in PACKAGE.rglob("*.py")}


def test_the_library_imports_no_tool():
    graph = _graph()
    library = [name for name in graph if not name.startswith("trl_policysplit.tools")]
    assert "trl_policysplit.policy_split_trainer" in library and "trl_policysplit.tools.cli" in graph
    offending = {name: sorted(t for t in graph[name] if t.startswith("trl_policysplit.tools")) for name in library}
    assert not {name: targets for name, targets in offending.items() if targets}


def test_no_import_circles():
    graph = _graph()
    # A package's __init__ importing its own modules is not a circle; everything else must be acyclic.
    edges = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}
    edges = {name: {t for t in targets if t != name.rsplit(".", 1)[0]} for name, targets in edges.items()}
    visiting, done = set(), set()

    def visit(name: str, path: list[str]) -> None:
        if name in done:
            return
        assert name not in visiting, "import circle: " + " -> ".join([*path, name])
        visiting.add(name)
        for target in sorted(edges.get(name, ())):
            if not target.startswith(name + "."):  # a package importing its submodules
                visit(target, [*path, name])
        visiting.discard(name)
        done.add(name)

    for name in sorted(edges):
        visit(name, [])


def test_the_studies_are_not_in_the_wheel_and_the_package_does_not_import_them() -> None:
    import configparser

    from setuptools import find_packages

    root = Path(__file__).resolve().parent.parent
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    include = [line.strip() for line in config["options.packages.find"]["include"].splitlines() if line.strip()]
    packages = find_packages(where=str(root), include=include)
    assert "trl_policysplit.tools" in packages and not any(name.startswith("benchmarks") for name in packages)
    importers = [
        str(path.relative_to(root))
        for path in (root / "trl_policysplit").rglob("*.py")
        if re.search(r"^\s*(from|import) benchmarks\b", path.read_text(), re.M)
    ]
    assert importers == []
