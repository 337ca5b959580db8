"""The chart README's values table, generated from values.schema.json and values.yaml.

Run `python -m tests.support.chart_docs --write` after changing a value; the chart tests fail
while the README's table differs from what this module generates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "flask-celery"
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"


def leaves(
    schema: dict[str, Any], values: Any, path: str = ""
) -> list[tuple[str, dict[str, Any], Any]]:
    """(key, schema, default) for every documented value, in schema order."""
    out: list[tuple[str, dict[str, Any], Any]] = []
    for key, sub in schema.get("properties", {}).items():
        p = f"{path}.{key}" if path else key
        default = values.get(key) if isinstance(values, dict) else None
        if sub.get("type") == "object" and sub.get("properties") and key != "resources":
            out += leaves(sub, default, p)
        else:
            out.append((p, sub, default))
            item = sub.get("items", {})
            if p == "workers.groups":
                for k in ("name", "queues"):
                    out.append((f"{p}[].{k}", item["properties"][k], None))
    return out


def _type(s: dict[str, Any]) -> str:
    t = s.get("type")
    return " \\| ".join(t) if isinstance(t, list) else str(t)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> str:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for key, sub, default in leaves(schema, values):
        shown = "" if key.startswith("workers.groups[]") else f"`{_cell(json.dumps(default))}`"
        rows.append(f"| `{key}` | {_type(sub)} | {shown} | {_cell(sub['description'])} |")
    return "\n".join(rows)


def readme_with_table(readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    path = CHART / "README.md"
    updated = readme_with_table(path.read_text())
    if "--write" in sys.argv:
        path.write_text(updated)
    else:
        sys.stdout.write(table() + "\n")
