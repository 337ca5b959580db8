"""A job's row follows its task through a real worker, and the API reads the row first.

One stack for the module per database (SQLite, PostgreSQL): a Redis, a database, one worker with the
test tasks. Jobs of the test tasks are enqueued the way the API enqueues (the row, then
`service.jobs.outbox`'s publish); their state is read back through the app's HTTP API (`GET
/jobs/<id>`, `GET /jobs`), in process, against the same database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from harness.auth import CLIENT_KEY, OTHER_CLIENT_KEY, authorized
from harness.faults import Stack
from harness.postgres import Database
from harness.processes import wait_until
from service.data.db import db
from service.data.models import DeadLetter, Job
from service.jobs.lifecycle import JOB_HEADER, STATES, settle_dead_letters
from service.jobs.outbox import publish

#: The guarantees hold on both databases the service supports (the chart's is PostgreSQL).
pytestmark = pytest.mark.databases("sqlite", "postgresql")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database: Database) -> Iterator[Stack]:
    """A Redis, a migrated database and one worker with the test tasks."""
    directory = tmp_path_factory.mktemp("job-states")
    s = Stack.start(directory, database_url=database.fresh_url(directory))
    s.worker("w1")
    yield s
    s.close()


@pytest.fixture
def client(stack: Stack) -> FlaskClient:
    return authorized(stack.app.test_client())


def enqueue_test_task(stack: Stack, task: str, *args: Any, owner: str = "tests-all") -> str:
    """Record `task(*args)` as a job of kind `test` and publish it through the outbox, as the
    API does (the test tasks have no route, so `enqueue` itself would refuse them); its id."""
    job_id = str(uuid4())
    with stack.app.app_context():
        job = Job(id=job_id, kind="test", task_name=task, queue="default", owner=owner,
                  request_fingerprint="-", state="recorded", task_args=list(args))  # fmt: skip
        db.session.add(job)
        db.session.commit()
        publish(stack.celery, job)
        db.session.remove()
    return job_id


def queued_row(stack: Stack, task: str, *args: Any) -> str:
    """A job row in state `queued` for `task(*args)`, not published; its id."""
    job_id = str(uuid4())
    with stack.app.app_context():
        db.session.add(Job(id=job_id, kind="test", task_name=task, queue="default",
                           owner="tests-all", request_fingerprint="-", state="queued",
                           task_args=list(args)))  # fmt: skip
        db.session.commit()
        db.session.remove()
    return job_id


def row_state(stack: Stack, job_id: str) -> tuple[str, int]:
    """The row's state and attempts."""
    with stack.app.app_context():
        job = db.session.get(Job, job_id)
        assert job is not None
        state = (job.state, job.attempts)
        db.session.remove()
    return state


def watch(client: FlaskClient, job_id: str, timeout: float = 30) -> tuple[list[str], Any]:
    """Poll `GET /jobs/<id>` until the job is ready; every `job_state` seen, and the last body."""
    seen: list[str] = []

    def ready() -> Any:
        body = client.get(f"/jobs/{job_id}").get_json()
        if not seen or seen[-1] != body["job_state"]:
            seen.append(body["job_state"])
        return body if body["ready"] else None

    return seen, wait_until(ready, timeout=timeout, interval=0.05, what=f"job {job_id}")


def in_lifecycle_order(seen: list[str]) -> bool:
    """`seen` moves forward through STATES, except started <-> retrying."""
    order = {s: i for i, s in enumerate(STATES)}
    steps = zip(seen, seen[1:], strict=False)
    return all(order[b] > order[a] or (a, b) == ("retrying", "started") for a, b in steps)


def test_a_job_that_succeeds_records_each_step_and_its_value(
    stack: Stack, client: FlaskClient
) -> None:
    n = 9_001
    job_id = enqueue_test_task(stack, "tests.effect", n)
    seen, body = watch(client, job_id)
    assert body["state"] == "success" and body["job_state"] == "succeeded", body
    assert body["value"] == n and body["result_summary"] == {"value": n}
    assert body["attempts"] == 1 and body["error"] is None
    created, queued, started, finished = (
        datetime.fromisoformat(body[k]) for k in ("created_at", "queued_at", "started_at",
                                                   "finished_at")
    )  # fmt: skip
    # the worker may start the job before the publisher has marked it queued: both follow
    # its recording, and its end follows its start
    assert created <= min(queued, started) and started <= finished, body
    assert in_lifecycle_order(seen) and seen[-1] == "succeeded", seen
    assert stack.effects()[n] == 1


def test_a_finished_job_never_reads_pending_once_its_result_is_gone(
    stack: Stack, client: FlaskClient
) -> None:
    job_id = enqueue_test_task(stack, "tests.sleep", 0)
    watch(client, job_id)
    stack.results().flushdb()  # every stored result expired
    body = client.get(f"/jobs/{job_id}").get_json()
    assert body["state"] == "success" and body["job_state"] == "succeeded", body
    assert isinstance(body["value"], float)


def test_a_transient_failure_is_retried_and_the_row_counts_both_attempts(
    stack: Stack, client: FlaskClient
) -> None:
    job_id = enqueue_test_task(stack, "tests.flaky", 7)
    seen, body = watch(client, job_id)
    assert body["job_state"] == "succeeded" and body["value"] == 7, body
    assert body["attempts"] == 2
    assert body["error"] is None  # answered for failed and retrying jobs only
    # the retry waits at least a second (RETRY_BACKOFF_BASE / 2): polled every 50 ms, it shows
    assert "retrying" in seen and in_lifecycle_order(seen), seen
    with stack.app.app_context():
        job = db.session.get(Job, job_id)
        assert job is not None and job.last_error == "TransientError: tests.flaky 7: first attempt"
        db.session.remove()


def test_only_a_job_message_moves_a_row_and_one_without_the_mark_still_does(
    stack: Stack,
) -> None:
    """A task that is no job does no job-row write (its message says so), and a message from a
    publisher older than the mark is still treated as a possible job: its row moves."""
    not_a_job, unmarked = (queued_row(stack, "tests.effect", n) for n in (9_101, 9_102))
    broker = stack.broker()
    # this code's publish of a task that is not a job (held in a queue no worker here reads):
    # a row with its id must stay as it is
    sent = stack.celery.send_task("tests.effect", args=(9_101,), task_id=not_a_job, queue="exports")
    assert sent.id == not_a_job
    # the same task published as an older publisher did: no mark at all
    stack.celery.send_task("tests.effect", args=(9_102,), task_id=unmarked, queue="exports")
    messages = [json.loads(m) for m in broker.lrange("exports", 0, -1)]
    assert [m["headers"][JOB_HEADER] for m in messages] == [False, False]
    for message in messages:
        if message["headers"]["id"] == unmarked:
            del message["headers"][JOB_HEADER]
        message["properties"]["delivery_info"]["routing_key"] = "default"
        broker.lpush("default", json.dumps(message))
    broker.delete("exports")

    wait_until(lambda: stack.effects()[9_101] == stack.effects()[9_102] == 1, timeout=30)
    # acknowledged once every receiver in the child has run (acks_late)
    wait_until(lambda: not broker.llen("default") and not broker.hlen("unacked"), timeout=30)
    assert row_state(stack, not_a_job) == ("queued", 0)
    assert row_state(stack, unmarked) == ("succeeded", 1)


def test_a_permanent_failure_is_dead_lettered_and_says_why(
    stack: Stack, client: FlaskClient
) -> None:
    job_id = enqueue_test_task(stack, "tests.fail", 3)
    seen, body = watch(client, job_id)
    assert body["state"] == "failure" and body["job_state"] == "dead_lettered", body
    assert body["error"] == "PermanentError: tests.fail 3"
    assert body["attempts"] == 1 and body["finished_at"] is not None
    assert in_lifecycle_order(seen), seen
    with stack.app.app_context():
        letters = db.session.scalars(sa.select(DeadLetter).filter_by(task_id=job_id)).all()
        assert len(letters) == 1
        db.session.remove()


def test_jobs_are_listed_newest_first_by_cursor_and_only_to_their_owner(
    stack: Stack, client: FlaskClient
) -> None:
    mine, theirs = (
        authorized(stack.app.test_client(), CLIENT_KEY),
        authorized(stack.app.test_client(), OTHER_CLIENT_KEY),
    )
    since = datetime.now(UTC) - timedelta(milliseconds=1)
    kind = f"add-{uuid4().hex[:6]}"
    accepted = []
    for i in range(5):
        response = mine.post("/jobs/add", json={"a": i, "b": 1})
        assert response.status_code == 202
        accepted.append(response.get_json()["job_id"])
        time.sleep(0.002)  # distinct creation times
    other = theirs.post("/jobs/add", json={"a": 1, "b": 1}).get_json()["job_id"]
    with stack.app.app_context():  # a kind of its own, to filter on
        db.session.execute(sa.update(Job).where(Job.id.in_(accepted[:3])).values(kind=kind))
        db.session.commit()
        db.session.remove()

    pages, cursor = [], None
    while True:
        query = {"since": since.isoformat(), "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = mine.get("/jobs", query_string=query).get_json()
        pages.append([item["job_id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [j for p in pages for j in p] == accepted[::-1]  # newest first, each once, not theirs

    everyone = client.get("/jobs", query_string={"since": since.isoformat()}).get_json()
    assert {item["job_id"] for item in everyone["items"]} == {*accepted, other}
    assert theirs.get(f"/jobs/{accepted[0]}").status_code == 404
    assert [i["job_id"] for i in theirs.get("/jobs").get_json()["items"]] == [other]

    by_kind = mine.get("/jobs", query_string={"kind": kind}).get_json()["items"]
    assert [item["job_id"] for item in by_kind] == accepted[:3][::-1]
    wait_until(
        lambda: len(mine.get("/jobs", query_string={"kind": kind, "state": "succeeded"})
                    .get_json()["items"]) == 3,
        timeout=30,
        what="three succeeded add jobs",
    )  # fmt: skip
    api_state = mine.get("/jobs", query_string={"kind": kind, "state": "success"}).get_json()
    assert len(api_state["items"]) == 3
    assert mine.get("/jobs", query_string={"kind": kind, "state": "queued"}).get_json() == {
        "items": [],
        "next_cursor": None,
    }


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"state": "done"}, "state"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_a_bad_listing_query_is_400_naming_the_field(
    client: FlaskClient, query: dict[str, str], field: str
) -> None:
    response = client.get("/jobs", query_string=query)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["field"] == field


def test_a_failed_job_whose_dead_letter_is_stored_late_becomes_dead_lettered(
    stack: Stack,
) -> None:
    late, lost = str(uuid4()), str(uuid4())
    with stack.app.app_context():
        for job_id in (late, lost):
            db.session.add(Job(id=job_id, kind="test", task_name="tests.fail", queue="default",
                               request_fingerprint="-", state="failed"))  # fmt: skip
        db.session.add(
            DeadLetter(task_id=late, task_name="tests.fail", args=[1], kwargs={},
                       exception_type="PermanentError", exception_message="m", attempts=1)
        )  # fmt: skip
        db.session.commit()
        db.session.remove()
    assert settle_dead_letters(stack.app) == 1
    states = {job_id: job_row_state(stack, job_id) for job_id in (late, lost)}
    assert states == {late: "dead_lettered", lost: "failed"}


def job_row_state(stack: Stack, job_id: str) -> str:
    with stack.app.app_context():
        state = db.session.scalar(sa.select(Job.state).where(Job.id == job_id))
        db.session.remove()
    return str(state)
