"""The integration tests' session stacks: one per database a test asks for, each a migrated
database, an environment, and its workers and gunicorn started when first asked for."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devstack.sinks import SmtpSink, WebhookSink
from harness.postgres import Database
from harness.processes import stop
from harness.redis_server import RedisServer
from harness.stack import migrate, stack_environment, start_web, start_worker
from service.routing import WORKER_GROUPS

#: The databases a test marked `databases` may name; the chart's default is PostgreSQL.
DATABASES = ("sqlite", "postgresql")
#: The session redis-server's databases (broker, result backend) of each database's stack:
#: 0 and 1 are the locally run chart's (tests/chart).
REDIS_DATABASES = {"sqlite": (2, 3), "postgresql": (4, 5)}


@dataclass
class SessionStack:
    """One database's session stack: its environment, and its processes once asked for."""

    env: dict[str, str]
    directory: Path
    workers: dict[str, str] | None = None
    web: str | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


@dataclass
class SessionStacks:
    """The session stacks, one per database a test asked for, each built when first needed."""

    tmp: pytest.TempPathFactory
    redis: RedisServer
    smtp: SmtpSink
    hooks: WebhookSink
    stacks: dict[str, SessionStack] = field(default_factory=dict)

    def get(self, database: Database) -> SessionStack:
        if database.name not in self.stacks:
            state = self.tmp.mktemp(f"state-{database.name}")
            extra = {
                "FLASK_SMTP_HOST": "127.0.0.1",
                "FLASK_SMTP_PORT": str(self.smtp.port),
                "PROMETHEUS_MULTIPROC_DIR": str(state / "prometheus"),
                "PYTHONUNBUFFERED": "1",
                # loopback is refused by default: allow the webhook receiver's port there only
                "FLASK_WEBHOOK_ALLOWED_NETWORKS": json.dumps([f"127.0.0.1:{self.hooks.port}"]),
            }
            broker, results = REDIS_DATABASES[database.name]
            env = stack_environment(
                state,
                self.redis.url(broker),
                self.redis.url(results),
                extra,
                database.fresh_url(state),
            )
            (state / "prometheus").mkdir()
            migrate(env)
            self.stacks[database.name] = SessionStack(env, state)
        return self.stacks[database.name]

    def workers(self, database: Database) -> dict[str, str]:
        """One real worker per worker group of the routing table; group name -> node name."""
        stack = self.get(database)
        if stack.workers is None:
            logs = self.tmp.mktemp(f"worker-logs-{database.name}")
            started = {
                group: start_worker(stack.env, queues, logs / f"{group}.log")
                for group, queues in WORKER_GROUPS.items()
            }
            stack.procs += [proc for proc, _ in started.values()]
            stack.workers = {group: node for group, (_, node) in started.items()}
        return stack.workers

    def web(self, database: Database) -> str:
        """gunicorn serving the app on a free port; its base URL."""
        stack = self.get(database)
        if stack.web is None:
            log = self.tmp.mktemp(f"web-{database.name}") / "gunicorn.log"
            proc, stack.web = start_web(stack.env, log)
            stack.procs.append(proc)
        return stack.web

    def close(self) -> None:
        for stack in self.stacks.values():
            for proc in stack.procs:
                stop(proc, timeout=30)
