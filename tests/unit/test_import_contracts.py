"""The layout's rules, read from the code: import contracts, one signal catalogue, docstrings."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service"
CATALOGUE = SERVICE / "signals.py"


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def test_imports_point_inward() -> None:
    """The contracts in pyproject.toml ([tool.importlinter]) hold."""
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_only_the_catalogue_connects_celery_signals() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in SERVICE.rglob("*.py")
        if path != CATALOGUE and "celery.signals" in _imported_modules(path)
    ]
    assert offenders == [], f"connect signal receivers in {CATALOGUE.relative_to(ROOT)} only"


def test_every_service_package_says_what_it_is_for() -> None:
    missing = [
        str(init.relative_to(ROOT))
        for init in SERVICE.rglob("__init__.py")
        if "migrations" not in init.parts and not ast.get_docstring(ast.parse(init.read_text()))
    ]
    assert missing == []
