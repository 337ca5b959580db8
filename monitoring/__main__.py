"""Write the generated dashboards and rules (and the chart's rules template) into the chart, or
check that they are up to date.

python -m monitoring --write    regenerate every file
python -m monitoring --check    exit 1 naming each file that differs from the generator's
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .alerts import chart_rules_template, rules_file
from .dashboards import dashboard_file, overview, tasks

ROOT = Path(__file__).resolve().parent.parent

#: Each generated file, relative to the repository root, and what renders it.
ARTEFACTS: dict[str, Callable[[], str]] = {
    "charts/flask-celery/dashboards/flask-celery-overview.json": lambda: dashboard_file(overview()),
    "charts/flask-celery/dashboards/flask-celery-tasks.json": lambda: dashboard_file(tasks()),
    "charts/flask-celery/files/prometheus-rules.yaml": rules_file,
}
#: Generated files that only the chart reads: the rules with the chart's values in place of
#: their thresholds, which its PrometheusRule renders.
CHART_TEMPLATES: dict[str, Callable[[], str]] = {
    "charts/flask-celery/files/prometheus-rules.tpl": chart_rules_template,
}


def stale(root: Path) -> list[str]:
    """The artefacts under `root` whose content is not what the generator produces now."""
    out = []
    for name, render in {**ARTEFACTS, **CHART_TEMPLATES}.items():
        path = root / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render():
            out.append(name)
    return out


def write(root: Path) -> list[str]:
    """Regenerate every artefact under `root`; return those that changed."""
    changed = stale(root)
    for name in changed:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text({**ARTEFACTS, **CHART_TEMPLATES}[name](), encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring",
        description="Generate or check the chart's dashboards and rules.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the files")
    mode.add_argument("--check", action="store_true", help="fail if a file is out of date")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="repository root (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.write:
        for name in write(args.root):
            print(f"wrote {name}")
        return 0
    outdated = stale(args.root)
    for name in outdated:
        print(f"{name} is stale: run `python -m monitoring --write`", file=sys.stderr)
    return 1 if outdated else 0


if __name__ == "__main__":
    sys.exit(main())
