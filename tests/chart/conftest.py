"""Chart test fixtures: one run per installed helm binary (see chart_helpers)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# The helpers module sits next to this file; putting its folder on sys.path keeps
# `import chart_helpers` working under every pytest import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chart_requirements import MISSING  # noqa: E402

if MISSING:
    # Without the validators no chart test can run; test_chart_requirements.py reports the skip.
    collect_ignore_glob = ["test_chart_[!r]*.py"]
else:
    from chart_helpers import helm_binaries, helm_id  # noqa: E402
    from chart_helpers import render as _render  # noqa: E402


@pytest.fixture(
    params=(helm_binaries() if not MISSING else []) or [None],
    ids=lambda p: helm_id(p) if p else "no-helm",
)
def helm(request: pytest.FixtureRequest) -> str:
    """One helm binary; every test that renders runs once per binary."""
    if request.param is None:
        pytest.skip("no helm binary in .tools/helm-*/: run `bash scripts/install-helm.sh`")
    return request.param


@pytest.fixture
def render(helm: str) -> Callable[..., list[dict[str, Any]]]:
    """`render(values, show_only=..., extra_args=...)` with this test's helm binary."""
    return functools.partial(_render, helm)
