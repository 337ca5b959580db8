"""A job answered 202 runs exactly once in effect, whatever happens between its commit and its
publish; a broker that hangs gets a 503 within the enqueue's bound, and holds no web worker.

One stack for the module per database (SQLite, PostgreSQL): a Redis, a database, one worker, a beat
(whose leader runs the outbox relay, here for rows recorded more than a second ago) and gunicorn
with three sync workers. Jobs are exports of the `users` table through the real HTTP API: each has
its own row (`exports`), its own ledger key (`export:<id>`) and ends `done` once its effect
happened.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from uuid import uuid4

import httpx
import pytest
import sqlalchemy as sa

from harness.auth import bearer
from harness.faults import Stack
from harness.postgres import Database
from harness.processes import stop, wait_until
from harness.stack import BIN, start_web
from service.data.db import db, utcnow
from service.data.models import Export, Job, LedgerEntry

#: The guarantees hold on both databases the service supports (the chart's is PostgreSQL).
pytestmark = pytest.mark.databases("sqlite", "postgresql")

#: Seconds after which beat looks for a queued job whose message the broker lost (here: short).
RESCUE_AFTER = 2

#: The enqueue's bound on a sick broker: connect + 2 x socket timeout (service/config.py).
BOUND = 3.0


@dataclass
class Outbox:
    stack: Stack
    web: subprocess.Popen[bytes]
    api: httpx.Client


@pytest.fixture(scope="module")
def outbox(tmp_path_factory: pytest.TempPathFactory, database: Database) -> Iterator[Outbox]:
    """The stack above; the API client sends the all-scopes key."""
    directory = tmp_path_factory.mktemp("outbox")
    stack = Stack.start(
        directory,
        env={"FLASK_OUTBOX_RELAY_AFTER": "1", "FLASK_OUTBOX_RESCUE_AFTER": str(RESCUE_AFTER)},
        database_url=database.fresh_url(directory),
    )
    try:
        stack.worker("w1", queues=("default", "exports"))
        stack.spawn(
            "beat", [str(BIN / "celery"), "-A", "service.make_celery", "beat", "-l", "INFO"]
        )
        web, url = start_web(stack.env, stack.directory / "web.log", workers=3)
        with httpx.Client(base_url=url, headers=bearer(), timeout=30) as api:
            yield Outbox(stack, web, api)
        stop(web, timeout=5)
    finally:
        stack.close()


def export(api: httpx.Client, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return api.post("/jobs/export", json={"table": "users"}, headers=headers)


def job_row(stack: Stack, job_id: str) -> Job | None:
    with stack.app.app_context():
        job = db.session.get(Job, job_id)
        db.session.expunge_all()
        db.session.remove()
    return job


def count(stack: Stack, query: sa.Select[tuple[int]]) -> int:
    with stack.app.app_context():
        n = int(db.session.scalar(query) or 0)
        db.session.remove()
    return n


def exports_of(stack: Stack, job_id: str) -> list[tuple[str, int]]:
    """(status, times its ledger key is there) of every export row of the job."""
    with stack.app.app_context():
        rows = db.session.scalars(sa.select(Export).filter_by(job_id=job_id)).all()
        keys = sa.select(sa.func.count()).select_from(LedgerEntry)
        out = [(e.status, db.session.scalar(keys.where(LedgerEntry.key == f"export:{e.id}")))
               for e in rows]  # fmt: skip
        db.session.remove()
    return out


def ran_once(outbox: Outbox, job_id: str, timeout: float = 30) -> None:
    """The job succeeds, its one export is done, and its ledger key is there once."""
    wait_until(
        lambda: outbox.api.get(f"/jobs/{job_id}").json()["job_state"] == "succeeded",
        timeout=timeout,
        what=f"job {job_id} succeeded (logs in {outbox.stack.directory})",
    )
    assert exports_of(outbox.stack, job_id) == [("done", 1)]


def test_a_job_recorded_but_never_published_is_published_by_the_relay(outbox: Outbox) -> None:
    # what a web worker that died between its commit and its publish leaves behind
    stack, job_id = outbox.stack, str(uuid4())
    with stack.app.app_context():
        row = Export(table_name="users", job_id=job_id)
        db.session.add(row)
        db.session.flush()
        db.session.add(
            Job(id=job_id, kind="export", task_name="exports.export_table", queue="exports",
                owner="tests-all", request_fingerprint="-", state="recorded",
                task_args=[row.id], created_at=utcnow() - timedelta(seconds=2))
        )  # fmt: skip
        db.session.commit()
        db.session.remove()
    ran_once(outbox, job_id)
    job = job_row(stack, job_id)
    assert job is not None and job.queued_at is not None
    assert f"outbox relay published job {job_id}" in (stack.directory / "beat.log").read_text()


def queued_export(stack: Stack, queue: str, age: float) -> str:
    """A job row `queued` `age` seconds ago (its export row with it); no message is sent."""
    job_id = str(uuid4())
    with stack.app.app_context():
        row = Export(table_name="users", job_id=job_id)
        db.session.add(row)
        db.session.flush()
        ago = utcnow() - timedelta(seconds=age)
        db.session.add(
            Job(id=job_id, kind="export", task_name="exports.export_table", queue=queue,
                owner="tests-all", request_fingerprint="-", state="queued", task_args=[row.id],
                created_at=ago, queued_at=ago)
        )  # fmt: skip
        db.session.commit()
        export_id = row.id
        db.session.remove()
    return f"{job_id}:{export_id}"


def test_a_queued_job_whose_message_a_killed_worker_took_is_published_again(
    outbox: Outbox,
) -> None:
    # what kombu's BRPOP-then-record window leaves when a worker dies in it (kombu#305): a row
    # `queued`, and its message in no queue and in no worker's unacknowledged set
    stack = outbox.stack
    job_id, _ = queued_export(stack, "exports", age=RESCUE_AFTER + 1).split(":")
    ran_once(outbox, job_id)
    assert f"outbox rescue published job {job_id}" in (stack.directory / "beat.log").read_text()


def test_a_queued_job_whose_message_waits_in_its_queue_is_not_published_again(
    outbox: Outbox,
) -> None:
    # the `pdf` queue has no consumer in this stack: its message waits there, as in a backlog
    stack = outbox.stack
    job_id, export_id = queued_export(stack, "pdf", age=RESCUE_AFTER + 1).split(":")
    stack.celery.send_task("exports.export_table", (int(export_id),), task_id=job_id, queue="pdf")
    broker = stack.broker()
    assert broker.llen("pdf") == 1
    # several of beat's looks (one every RESCUE_AFTER seconds) go by
    time.sleep(4 * RESCUE_AFTER)
    assert broker.llen("pdf") == 1
    assert f"outbox rescue published job {job_id}" not in (stack.directory / "beat.log").read_text()
    broker.delete("pdf")
    with stack.app.app_context():  # no message left behind for the rescue to find missing
        db.session.execute(sa.update(Job).where(Job.id == job_id).values(state="failed"))
        db.session.commit()
        db.session.remove()


def test_an_ambiguous_publish_is_accepted_and_runs_once(
    outbox: Outbox, record_property: pytest.RecordProperty
) -> None:
    stack = outbox.stack
    # Writes wait, reads do not: the probe's PING answers, the message's LPUSH hangs past the
    # socket timeout, and reaches the queue once the pause ends: an ambiguous publish.
    stack.broker().execute_command("CLIENT", "PAUSE", "2500", "WRITE")
    started = time.monotonic()
    response = export(outbox.api)
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert elapsed < 2 * BOUND, elapsed
    job_id = response.json()["job_id"]
    job = job_row(stack, job_id)
    assert job is not None and job.state == "recorded"  # the relay's to publish, if need be
    ran_once(outbox, job_id)
    record_property("summary", f"publish hung 2.5 s: 202 in {elapsed:.1f}s, ran once")


def test_a_hung_broker_is_a_503_within_the_bound_and_holds_no_web_worker(
    outbox: Outbox, record_property: pytest.RecordProperty
) -> None:
    stack = outbox.stack
    jobs_before = count(stack, sa.select(sa.func.count()).select_from(Job))
    assert stack.redis.proc is not None
    os.kill(stack.redis.proc.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(3) as pool:  # as many requests as gunicorn has workers
            timed = list(pool.map(lambda _: _timed(lambda: export(outbox.api)), range(3)))
        health = _timed(lambda: outbox.api.get("/healthz"))
    finally:
        os.kill(stack.redis.proc.pid, signal.SIGCONT)
    for response, elapsed in timed:
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "broker_unavailable"
        assert elapsed < 2 * BOUND, elapsed
    assert health[0].status_code == 200 and health[1] < BOUND  # every worker is free again
    # nothing was sent, so nothing was kept
    assert count(stack, sa.select(sa.func.count()).select_from(Job)) == jobs_before
    assert export(outbox.api).status_code == 202  # and Redis is used again once it is back
    slowest = max(elapsed for _, elapsed in timed)
    record_property("summary", f"3 requests, 3 x 503 within {slowest:.1f}s, 0 rows kept")


def test_concurrent_requests_with_one_key_make_one_job_that_runs_once(
    outbox: Outbox, record_property: pytest.RecordProperty
) -> None:
    key, barrier = f"same-{uuid4().hex}", threading.Barrier(8)

    def post(_: int) -> httpx.Response:
        barrier.wait()
        return export(outbox.api, key)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(8)))
    assert [r.status_code for r in responses] == [202] * 8
    ids = {r.json()["job_id"] for r in responses}
    assert len(ids) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 7
    ran_once(outbox, ids.pop())
    record_property("summary", "8 requests: 8 x 202, 1 job, 7 replays, 1 effect")


def test_sigkilled_web_workers_lose_no_accepted_job(
    outbox: Outbox, record_property: pytest.RecordProperty
) -> None:
    seed = int(os.environ.get("FAULT_SEED") or time.time_ns() % 10**6)
    rng, accepted, done = random.Random(seed), [], threading.Event()
    cut = 0

    def flow() -> None:
        while not done.is_set():
            try:
                response = export(outbox.api)
            except httpx.HTTPError:
                nonlocal cut
                cut += 1
                continue  # the worker serving it was killed: not accepted
            if response.status_code == 202:
                accepted.append(response.json()["job_id"])

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(flow)
        for _ in range(4):
            time.sleep(rng.uniform(0.2, 0.6))
            _kill_a_web_worker(outbox.web, rng)
        time.sleep(0.5)
        done.set()
    assert len(accepted) >= 10, f"only {len(accepted)} accepted (seed {seed})"
    for job_id in accepted:
        ran_once(outbox, job_id, timeout=60)
    wait_until(
        lambda: count(outbox.stack, sa.select(sa.func.count()).select_from(Job)
                      .where(Job.state == "recorded")) == 0,
        timeout=30,
        what="the relay publishing every recorded job",
    )  # fmt: skip
    record_property(
        "summary",
        f"4 gunicorn worker kills under 4 request threads: {len(accepted)} accepted, "
        f"{len(accepted)} ran once, {cut} requests cut (no answer), 0 left recorded "
        f"(seed {seed})",
    )


def _timed(call: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()  # type: ignore[operator]
    return response, time.monotonic() - started


def _kill_a_web_worker(master: subprocess.Popen[bytes], rng: random.Random) -> None:
    """SIGKILL one of gunicorn's workers (the master starts another)."""
    found = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(master.pid)], capture_output=True, text=True
    ).stdout.split()
    if found:
        os.kill(int(rng.choice(found)), signal.SIGKILL)
