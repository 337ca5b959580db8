"""Chart test fixtures: one run per installed helm binary (see chart_helpers)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from tests.chart.chart_helpers import helm_binaries, helm_id
from tests.chart.chart_helpers import render as _render


@pytest.fixture(params=helm_binaries() or [None], ids=lambda p: helm_id(p) if p else "no-helm")
def helm(request: pytest.FixtureRequest) -> str:
    """One helm binary; every test that renders runs once per binary."""
    if request.param is None:
        pytest.fail("no helm binary in .tools/helm-*/: run `make helm`")
    return request.param


@pytest.fixture
def render(helm: str) -> Callable[..., list[dict[str, Any]]]:
    """`render(values, show_only=..., extra_args=...)` with this test's helm binary."""
    return functools.partial(_render, helm)
