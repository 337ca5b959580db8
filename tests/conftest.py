"""Fixtures that more than one test folder uses: the session's redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A throwaway redis-server for the whole session, no persistence: the integration stack's
    broker and result backend, and the locally run chart's Redis."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
