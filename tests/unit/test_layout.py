"""Where test code lives: shared helpers in tests/support, fixtures in conftest.py files.

A test folder or a benchmark takes shared code from `tests.support` only: it never imports a
test module or a conftest (fixtures reach a test through pytest, never through an import), nor
anything of another folder of tests/.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py")])


def import_targets(node: ast.Import | ast.ImportFrom, path: Path) -> list[str]:
    """Every module the statement may load: for `from a import b`, both `a` and `a.b`;
    relative imports resolved against the package of `path`."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = path.relative_to(ROOT).parts[:-1]
    base = [*package[: len(package) - node.level + 1]] if node.level else []
    module = ".".join([*base, *(node.module.split(".") if node.module else [])])
    return [module, *(f"{module}.{alias.name}" for alias in node.names)]


def misplaced_imports(path: Path) -> Iterator[str]:
    """`file:line: import (why)` for each import of `path` that breaks the layout."""
    rel = path.relative_to(ROOT)
    home = rel.parts[1] if rel.parts[0] == "tests" and len(rel.parts) > 2 else None
    allowed = {"support", home}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        why = set()
        for target in import_targets(node, path):
            parts = target.split(".")
            if parts[-1].startswith("test_"):
                why.add("a test module")
            elif parts[-1] == "conftest":
                why.add("a conftest")
            if parts[0] == "tests" and len(parts) > 1 and parts[1] not in allowed:
                why.add(f"tests/{parts[1]}, not tests/support")
        if why:
            yield f"{rel}:{node.lineno}: {ast.unparse(node)} (imports {', '.join(sorted(why))})"


def test_tests_and_benchmarks_import_shared_code_from_tests_support_only() -> None:
    found = [line for path in SOURCES for line in misplaced_imports(path)]
    assert found == [], "move what these import to tests/support:\n" + "\n".join(found)


def test_conftest_files_hold_only_fixtures_and_hooks() -> None:
    found = []
    for path in (ROOT / "tests").rglob("conftest.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body[1:] if ast.get_docstring(tree) else tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.FunctionDef) and (
                node.name.startswith("pytest_")
                or any("fixture" in ast.unparse(d) for d in node.decorator_list)
            ):
                continue
            statement = ast.unparse(node).splitlines()[0][:70]
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {statement}")
    assert found == [], "move these to tests/support:\n" + "\n".join(found)
