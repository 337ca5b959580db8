"""The README's configuration tables, generated from the settings table in service/config.py.

Run `make docs` (or `python -m tests.support.config_docs --write`) after changing a setting;
tests/unit/test_config.py fails while the README differs from what this module generates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from service.config import CELERY_SETTINGS, SETTINGS, Setting
from tests.support.markdown import with_block

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = "config-table"
#: Defaults longer than this are described, not shown.
LONGEST_SHOWN = 40


def _default(setting: Setting) -> str:
    if setting.default is None:
        return "unset"
    try:
        shown = json.dumps(setting.default)
    except TypeError:  # Celery objects (queues, crontabs)
        return "see `service/config.py`"
    return f"`{shown}`" if len(shown) <= LONGEST_SHOWN else "see `service/config.py`"


def _row(setting: Setting) -> str:
    noun = setting.type.__name__ + (" or null" if setting.optional else "")
    return f"| `{setting.env}` | {noun} | {_default(setting)} | {setting.doc} |"


def _table(rows: Any) -> list[str]:
    return ["| variable | type | default | meaning |", "|---|---|---|---|", *map(_row, rows)]


def tables() -> str:
    """The app's settings, then Celery's."""
    app = [s for s in SETTINGS if s.name != "CELERY"]
    return "\n".join(
        [*_table(app), "", "Celery's settings, under `CELERY`:", "", *_table(CELERY_SETTINGS)]
    )


def readme_with_tables(readme: str) -> str:
    """`readme` with its configuration block regenerated."""
    return with_block(readme, BLOCK, tables())


if __name__ == "__main__":
    updated = readme_with_tables(README.read_text())
    if "--write" in sys.argv:
        README.write_text(updated)
    else:
        sys.stdout.write(tables() + "\n")
