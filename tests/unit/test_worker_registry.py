"""Reading the registry of live workers: a key and its value make a worker, or nothing."""

from __future__ import annotations

import json

import pytest

from service.worker.registry import LiveWorker, parse, worker_key


def test_a_key_and_its_value_name_the_node_its_queues_and_pool() -> None:
    value = json.dumps({"queues": ["default", "email"], "concurrency": 3})
    assert parse(worker_key("general-1@pod"), value) == LiveWorker(
        "general-1@pod", ("default", "email"), 3
    )
    assert parse(worker_key("general-1@pod").encode(), value.encode()).node == "general-1@pod"


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"not json", b"[]", b'{"queues": ["default"]}', b'{"concurrency": 2}',
     b'{"queues": ["default"], "concurrency": "many"}'],
)  # fmt: skip
def test_an_expired_or_foreign_value_is_no_worker(raw: bytes | None) -> None:
    assert parse(worker_key("gone@pod"), raw) is None
