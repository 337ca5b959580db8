"""Which Python packages of tests/chart/requirements.txt are missing (stdlib only)."""

from __future__ import annotations

import importlib.util

#: The packages by import name.
REQUIRED = (
    "yaml",
    "jmespath",
    "jsonschema",
    "kubernetes_validate",
    "cloudcoil.models.keda",
    "cloudcoil.models.prometheus_operator",
)


def missing(names: tuple[str, ...] = REQUIRED) -> list[str]:
    """The import names that cannot be found."""
    out = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out.append(name)
    return out


MISSING = missing()
