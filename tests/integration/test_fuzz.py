"""The API fuzzed from its own OpenAPI document: no 5xx, and every answer as documented.

A gunicorn of its own (its own database and Redis databases, no workers: what is enqueued
stays queued) is driven by schemathesis through every operation with generated bodies,
parameters and headers, with a key of every scope; and again without a key, where every
protected operation must answer 401.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import schemathesis
import schemathesis.checks
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from harness.auth import bearer
from harness.processes import stop
from harness.redis_server import RedisServer
from harness.stack import migrate, stack_environment, start_web

#: Redis databases of the session redis-server nothing else uses.
BROKER_DB, RESULTS_DB = 12, 13
#: Generated cases per operation: bounded, so the whole module takes well under a minute.
EXAMPLES = 30

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def fuzz_web(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[str]:
    state = tmp_path_factory.mktemp("fuzz")
    env = stack_environment(state, redis_server.url(BROKER_DB), redis_server.url(RESULTS_DB))
    migrate(env)
    proc, url = start_web(env, state / "gunicorn.log")
    yield url
    stop(proc)
    for db in (BROKER_DB, RESULTS_DB):
        redis.Redis.from_url(redis_server.url(db)).flushdb()


@pytest.fixture(scope="module")
def api_schema(fuzz_web: str) -> Any:
    # loaded as a document, so that no call inherits the key that fetched it
    document = httpx.get(f"{fuzz_web}/openapi.json", headers=bearer(), timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=fuzz_web)
    return schema


def fuzz(
    schema: Any, examples: int, check: Callable[[Any], None]
) -> tuple[int, int, dict[str, str]]:
    """Run `check` on up to `examples` generated cases of every operation, valid and invalid
    ones (schemathesis' positive and negative modes); return the number of operations, of
    cases run, and the first failure of each operation that failed."""
    operations = [result.ok() for result in schema.get_all_operations()]
    failures, cases_run = {}, 0
    for operation in operations:
        cases = st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode))

        @given(case=cases)
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
        )
        def run(case: Any) -> None:
            nonlocal cases_run
            cases_run += 1
            check(case)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - every operation's failure is reported
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:2000]
    return len(operations), cases_run, failures


def test_no_operation_fails_or_answers_other_than_documented(api_schema: Any) -> None:
    def check(case: Any) -> None:
        case.call_and_validate(headers=bearer(), checks=CHECKS, timeout=15)

    operations, cases, failures = fuzz(api_schema, EXAMPLES, check)
    print(f"fuzzed {operations} operations with a key: {cases} cases")
    assert operations >= 20 and cases >= 10 * operations, (operations, cases)
    assert failures == {}


def test_without_a_key_every_protected_operation_answers_401(api_schema: Any) -> None:
    def check(case: Any) -> None:
        response = case.call(timeout=15)
        protected = case.operation.definition.raw.get("security") != []
        assert (response.status_code == 401) == protected, (response.status_code, response.text)

    operations, cases, failures = fuzz(api_schema, 5, check)
    print(f"fuzzed {operations} operations without a key: {cases} cases")
    assert operations >= 20 and cases >= 3 * operations, (operations, cases)
    assert failures == {}
