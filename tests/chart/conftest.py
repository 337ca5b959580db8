"""Chart test fixtures: one run per installed helm binary (see tests/support/chart.py), and the
rendered chart run as local processes (see tests/support/chart_processes.py) on the session
redis-server of tests/conftest.py."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.redis_server import RedisServer
from harness.stack import stack_flask_app
from tests.support.chart import NAME, TEST_API_KEYS, helm_binaries, helm_id, process_helm
from tests.support.chart import render as _render
from tests.support.chart_processes import LocalCluster, LocalContainer


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


@pytest.fixture(scope="session")
def local_cluster(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> LocalCluster:
    """The pods of the default render with the test API keys (harness/auth.py), resolved
    for local runs against `redis_server` (starts none)."""
    docs = _render(process_helm(), TEST_API_KEYS)
    return LocalCluster(docs, redis_server.port, tmp_path_factory.mktemp("pods"))


@pytest.fixture(scope="session")
def local_web(local_cluster: LocalCluster) -> Iterator[LocalContainer]:
    """The rendered web pod, once the database is migrated: gunicorn, ready on its probes."""
    name = NAME.format("web")
    web = local_cluster.start_pods([name])[name]
    yield web
    web.stop()


@pytest.fixture(scope="session")
def celery_client(local_web: LocalContainer) -> Any:
    """A Celery app configured like the web pod, for control commands, sends and results."""
    return stack_flask_app(local_web.env).extensions["celery"]
