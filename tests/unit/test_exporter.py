"""The broker exporter's pure parts: the oldest message's publish time, workers per queue."""

from __future__ import annotations

import json

import pytest

from service.observability.exporter import count_workers, oldest_age, published_at
from service.routing import QUEUES
from service.worker.registry import LiveWorker


def message(headers: dict[str, object]) -> bytes:
    """A waiting message as Celery's Redis transport stores it (the parts the exporter reads)."""
    return json.dumps({"body": "W10=", "headers": {"task": "jobs.add", **headers}}).encode()


def test_the_publish_time_comes_from_the_message_headers() -> None:
    assert published_at(message({"published_at": 1000.5})) == 1000.5
    assert published_at(message({"published_at": "1000.5"}).decode()) == 1000.5


@pytest.mark.parametrize(
    "raw",
    [message({}), message({"published_at": None}), message({"published_at": "soon"}),
     b"not json", b"[]", b'{"body": "W10="}'],
)  # fmt: skip
def test_a_message_without_a_readable_publish_time_has_none(raw: bytes) -> None:
    assert published_at(raw) is None


def test_the_oldest_age_is_zero_for_an_empty_queue_and_never_negative() -> None:
    assert oldest_age(None, now=2000.0) == 0.0
    assert oldest_age(message({"published_at": 1990.0}), now=2000.0) == 10.0
    # a publisher whose clock runs ahead
    assert oldest_age(message({"published_at": 2005.0}), now=2000.0) == 0.0
    assert oldest_age(message({}), now=2000.0) is None


def test_workers_and_their_processes_are_counted_on_every_routed_queue_they_consume() -> None:
    counts, processes = count_workers(
        [
            LiveWorker("a@host", ("default", "email"), 3),
            LiveWorker("b@host", ("default",), 2),
            LiveWorker("c@host", ("not_routed",), 4),
        ]
    )
    assert counts == {**dict.fromkeys(QUEUES, 0), "default": 2, "email": 1}
    assert processes == {**dict.fromkeys(QUEUES, 0), "default": 5, "email": 3}
