"""The project's own infrastructure in the one classification: what Redis, kombu and SQLAlchemy
really raise when they cannot be reached is transient; the database's answers about the data
are not. A retry the broker cannot take requeues its message instead of dropping it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import kombu.exceptions
import pytest
import redis
import sqlalchemy as sa
import sqlalchemy.exc
from celery import Celery, Task
from celery.exceptions import Reject
from kombu import Connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.processes import free_port
from service.reliability import task
from service.reliability.retry import (
    RetryPolicy,
    is_broker_error,
    is_database_error,
    is_transient,
)


def raised(call: object) -> BaseException:
    try:
        call()  # type: ignore[operator]
    except Exception as exc:  # noqa: BLE001 - the exception is what is classified
        return exc
    raise AssertionError("no exception")


def test_a_refused_redis_is_transient() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    exc = raised(client.ping)
    assert isinstance(exc, redis.exceptions.ConnectionError)
    assert is_broker_error(exc) and is_transient(exc)


def test_a_refused_broker_publish_is_transient() -> None:
    with Connection(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5) as conn:
        producer = conn.Producer()
        exc = raised(
            lambda: producer.publish(
                {}, routing_key="x", retry=True, retry_policy={"max_retries": 0}
            )
        )
    assert isinstance(exc, kombu.exceptions.OperationalError)
    assert is_transient(exc)


def test_the_result_store_subscription_error_is_transient() -> None:
    # Celery's Redis result store raises RuntimeError caused by the connection error
    try:
        try:
            raise redis.exceptions.TimeoutError("read timed out")
        except redis.exceptions.TimeoutError as cause:
            raise RuntimeError("retry limit exceeded while trying to reconnect") from cause
    except RuntimeError as exc:
        assert is_transient(exc)
    assert not is_transient(RuntimeError("no cause"))


def test_an_unreachable_database_is_transient() -> None:
    engine = sa.create_engine(f"postgresql+psycopg://u@127.0.0.1:{free_port()}/db")
    exc = raised(engine.connect)
    assert isinstance(exc, sqlalchemy.exc.OperationalError)
    assert is_database_error(exc) and is_transient(exc)


def test_a_pool_with_no_connection_to_give_is_transient(tmp_path: Path) -> None:
    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        poolclass=sa.pool.QueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.1,
    )
    with engine.connect():
        exc = raised(engine.connect)
    assert isinstance(exc, sqlalchemy.exc.TimeoutError)
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        sqlalchemy.exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")),
        sqlalchemy.exc.DisconnectionError("gone"),
        sqlalchemy.exc.DBAPIError("COMMIT", {}, Exception("gone"), connection_invalidated=True),
        sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("server closed the connection")),
    ],
    ids=["interface", "disconnection", "invalidated", "operational"],
)
def test_database_disconnects_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


def test_what_the_database_says_about_the_data_is_permanent(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
    with engine.begin() as conn:
        exc = raised(lambda: conn.execute(sa.text("INSERT INTO t VALUES (1)")))
    assert isinstance(exc, sqlalchemy.exc.IntegrityError)
    assert not is_transient(exc)
    data_error = sqlalchemy.exc.DataError("INSERT", {}, sqlite3.DataError("too long"))
    assert not is_transient(data_error)


@pytest.fixture
def unreachable_broker_task() -> Iterator[Task]:
    """A task of a Celery app whose broker refuses connections, in a worker's request."""
    app = Celery(
        "unreachable",
        broker=f"redis://127.0.0.1:{free_port()}/0",
        broker_connection_timeout=0.5,
        task_publish_retry_policy={"max_retries": 0},
    )

    @app.task(name="tests.unreachable", shared=False)
    def unreachable(value: object) -> None:
        pass

    unreachable.push_request(
        id="t-1", args=[1], kwargs={}, retries=0, delivery_info={}, called_directly=False
    )
    try:
        yield unreachable
    finally:
        unreachable.pop_request()


POLICY = RetryPolicy(max_retries=3, backoff_base=1, backoff_max=1)


def test_a_retry_the_broker_cannot_take_requeues_its_message(
    unreachable_broker_task: Task,
) -> None:
    ends = task.retry(unreachable_broker_task, TimeoutError("redis"), 0, POLICY)
    assert isinstance(ends, Reject) and ends.requeue
    assert is_broker_error(ends.reason)


def test_a_retry_that_cannot_be_sent_at_all_is_rejected_for_good(
    unreachable_broker_task: Task,
) -> None:
    unreachable_broker_task.request.args = [object()]  # no JSON for it: nothing to requeue
    with pytest.raises(Reject) as rejected:
        task.retry(unreachable_broker_task, TimeoutError("redis"), 0, POLICY)
    assert not rejected.value.requeue
    assert isinstance(rejected.value.reason, kombu.exceptions.EncodeError)
