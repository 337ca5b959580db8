"""The chart tests' Python packages are installed (else every other chart test is skipped)."""

from __future__ import annotations

import pytest
from chart_requirements import MISSING


def test_chart_test_packages_are_installed():
    if MISSING:
        pytest.skip(
            f"chart tests not collected, missing {', '.join(MISSING)}: "
            "pip install -r tests/chart/requirements.txt"
        )
