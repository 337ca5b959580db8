"""The local stack behind `make run`: Redis, migrations, gunicorn, one worker per group, beat,
Flower, and the SMTP and webhook sinks, each process's log lines behind its own prefix.

All state (Redis AOF, SQLite, storage, received mails and webhooks, the Flower password) lives
in one directory, `var/` by default. A process that exits on its own (a crashed role, or Redis
itself) is started again after a growing delay (`devstack.supervise`), so the stack rides out a
broker outage. Children run in sessions of their own, so a terminal's Ctrl-C reaches only this
process, which sends each child one SIGTERM: workers finish their running tasks (warm shutdown),
and Redis, stopped last, flushes its AOF. A worker still running a task when the grace period is
over gets a cold shutdown, which puts the task's message back in its queue for the next start,
and the stack then exits 1 naming it.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.utils.nodenames import host_format

from service.auth.api_keys import digest
from service.redact import redact
from service.routing import WORKER_GROUPS
from service.worker.inflight import inflight_key

from . import broker
from .console import Console
from .logged_sinks import LoggedSmtpSink, LoggedWebhookSink
from .options import PROG, OptionError, Options, parse_options
from .ports import HOST, metrics_ports, port_clash
from .sinks import SmtpSink, WebhookSink
from .state import API_KEY_FILE, metrics_env, prepare_state
from .supervise import Backoff

BIN = Path(sys.executable).parent
#: Seconds a worker gets, after the grace period, to cancel its tasks and requeue their messages.
COLD_SHUTDOWN_WAIT = 10.0
#: The leak guard of each worker group, as the chart's default groups set it: a pool process is
#: replaced after this many tasks, or once its resident memory has crossed this many MiB (after
#: its task finished). PDF rendering leaks the most, a webhook call the least.
WORKER_RECYCLING = {"general": (1000, 200), "reports": (50, 200), "webhooks": (10000, 150)}


class DevstackError(RuntimeError):
    """The stack cannot start or keep running; the message says what to do."""


class Stopped(Exception):
    """A stop was requested while the stack was starting."""


def serves_metrics(port: int) -> bool:
    """True when `/metrics` on `port` answers 200."""
    return http_status(f"http://{HOST}:{port}/metrics") == 200


def http_status(url: str) -> int:
    """The status `url` answers a GET with; OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    reader: threading.Thread
    #: What started it, to start it again the same way.
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    backoff: Backoff = field(default_factory=Backoff)
    #: When it is due to be started again (monotonic); None while it runs.
    restart_at: float | None = None


class Stack:
    """The processes of one local stack: started in order, stopped in reverse."""

    def __init__(self, options: Options) -> None:
        self.options, self.state = options, options.state_dir.resolve()
        self.groups = {f"worker-{g}": (g, queues) for g, queues in WORKER_GROUPS.items()}
        names = ["devstack", "redis", "migrate", "web", "exporter", *self.groups, "beat", "flower"]
        names += ["smtp"]
        tty = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        self.console = Console([*names, "webhooks"], colour=tty)
        self.children: list[Child] = []
        self.redis: Child | None = None
        self.sinks: list[SmtpSink | WebhookSink] = []
        self.stopping, self.forced = threading.Event(), threading.Event()
        self.env: dict[str, str] = {}
        self.webhook_url = ""

    @property
    def everyone(self) -> list[Child]:
        return [*self.children, *([self.redis] if self.redis else [])]

    def say(self, line: str) -> None:
        self.console.say("devstack", line)

    def request_stop(self, signum: int, _frame: Any) -> None:
        if self.stopping.is_set():
            self.say("second signal: killing what is left")
            self.forced.set()
            return
        self.say(f"{signal.Signals(signum).name}: stopping (press Ctrl-C again to kill)")
        self.stopping.set()

    def spawn(self, name: str, *cmd: str | Path, env: dict[str, str] | None = None) -> Child:
        argv, full_env = tuple(str(c) for c in cmd), {**self.env, **(env or {})}
        proc, reader = self.popen(name, argv, full_env)
        return Child(name, proc, reader, argv, full_env)

    def popen(
        self, name: str, argv: tuple[str, ...], env: dict[str, str]
    ) -> tuple[subprocess.Popen[bytes], threading.Thread]:
        # A session of its own: a terminal's Ctrl-C reaches only us, and we forward one SIGTERM.
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        return proc, self.console.pump(name, proc.stdout)

    def wait(self, check: Callable[[], object], what: str) -> None:
        """Poll `check` until truthy; fail as soon as a child dies, or at the start timeout."""
        deadline, last = time.monotonic() + self.options.start_timeout, "no answer"
        while not self.stopping.wait(0.1):
            for child in self.everyone:
                if child.proc.poll() is not None:
                    code = child.proc.returncode
                    raise DevstackError(f"{child.name} exited ({code}) while starting; see above")
            try:
                if check():
                    return
            except Exception as exc:  # noqa: BLE001 - a failing check only means "not yet"
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise DevstackError(
                    f"{what} not ready in {self.options.start_timeout:.0f}s: {last}"
                )
        raise Stopped

    def start(self) -> None:
        """Redis first, then the migration, the sinks and the rest; return once all answer."""
        o = self.options
        self.env = prepare_state(self.state, o.smtp_port, o.webhook_port)
        clash = port_clash(o, starting_redis=broker.named_broker(self.env) is None)
        if clash:
            raise DevstackError(clash)
        self.start_broker()
        self.migrate()
        smtp = LoggedSmtpSink(self.state / "mail", HOST, o.smtp_port)
        hooks = LoggedWebhookSink(self.state / "webhooks", HOST, o.webhook_port)
        smtp.say = lambda line: self.console.say("smtp", line)
        hooks.say = lambda line: self.console.say("webhooks", line)
        hooks.secrets.update(o.webhook_secret)
        self.sinks, self.webhook_url = [smtp.start(), hooks.start()], hooks.url
        self.start_processes()
        self.wait(lambda: http_status(f"http://{HOST}:{o.web_port}/readyz") == 200, "web")
        self.wait(self.workers_answer, "workers")
        # the exporter, then each worker's main process, which serves once it is ready
        for port in metrics_ports(o.metrics_port):
            self.wait(functools.partial(serves_metrics, port), f"metrics on port {port}")
        if not o.no_flower:
            self.wait(lambda: http_status(f"http://{HOST}:{o.flower_port}/") == 401, "flower")

    def start_processes(self) -> None:
        o, celery = self.options, (BIN / "celery", "-A", "service.make_celery")
        web: list[str | Path] = [BIN / "gunicorn", "--bind", f"{HOST}:{o.web_port}"]
        if tuple(map(int, version("gunicorn").split(".")[:2])) >= (25, 1):
            web.append("--no-control-socket")  # else every local gunicorn shares ~/.gunicorn
        web += ["-c", "python:service.gunicorn_conf", "--workers", "2", "--access-logfile", "-"]
        web.append("service.wsgi:app")
        self.children.append(self.spawn("web", *web, env=metrics_env(self.state, "web")))
        exporter_port, *worker_ports = metrics_ports(o.metrics_port)
        exporter = metrics_env(self.state, "exporter", exporter_port)
        self.children.append(self.spawn("exporter", sys.executable, "-m", "service.exporter",
                                        env=exporter))  # fmt: skip
        for (name, (group, queues)), port in zip(self.groups.items(), worker_ports, strict=True):
            worker = ("worker", "--queues", ",".join(queues), "--hostname", f"{group}@%h")
            max_tasks, max_mib = WORKER_RECYCLING[group]
            opts = ("--concurrency", "2", "--loglevel", "INFO", "--max-tasks-per-child",
                    str(max_tasks), "--max-memory-per-child", str(max_mib * 1024))  # fmt: skip
            env = metrics_env(self.state, name, port)
            self.children.append(self.spawn(name, *celery, *worker, *opts, env=env))
        # RedBeat keeps the schedule in Redis; a file-based scheduler would write this file.
        beat = ("beat", "--loglevel", "INFO", "--schedule", self.state / "celerybeat-schedule")
        self.children.append(self.spawn("beat", *celery, *beat))
        if not o.no_flower:
            flower = ("flower", f"--address={HOST}", f"--port={o.flower_port}")
            self.children.append(self.spawn("flower", *celery, *flower))

    def start_broker(self) -> None:
        """Use the broker named in the environment, or start our own Redis and wait for PING."""
        given = broker.named_broker(self.env)
        if given:
            broker.use_named_broker(self.env, given)
            unused = "" if self.options.redis_port is None else f" on {self.options.redis_port}"
            self.say(f"using the broker in FLASK_CELERY__BROKER_URL; starting no Redis{unused}")
            return
        binary = broker.redis_server()
        if binary is None:
            raise DevstackError("no redis-server (see above), and FLASK_CELERY__BROKER_URL unset")
        port = broker.redis_port(self.state, self.options.redis_port)
        self.redis = self.spawn("redis", *broker.redis_command(binary, port, self.state / "redis"))
        self.env |= broker.redis_urls(port)
        self.wait(lambda: redis.Redis(host=HOST, port=port).ping(), "redis")
        requeued = broker.requeue_unacknowledged(self.env["FLASK_CELERY__BROKER_URL"])
        if requeued:
            self.say(f"{requeued} task(s) a past run left unacknowledged are back in their queues")

    def migrate(self) -> None:
        # Its own session like every child: a Ctrl-C now stops the stack once it is done.
        child = self.spawn(
            "migrate", sys.executable, "-m", "flask", "--app", "service.wsgi", "db", "upgrade"
        )
        code = child.proc.wait()
        child.reader.join()
        if self.stopping.is_set():
            raise Stopped
        if code:
            raise DevstackError(f"database migration failed (exit {code}); see above")

    def workers_answer(self) -> bool:
        nodes = {host_format(f"{group}@%h") for group, _ in self.groups.values()}
        app = Celery(broker=self.env["FLASK_CELERY__BROKER_URL"])
        try:
            replies = app.control.ping(destination=sorted(nodes), timeout=0.5)
        finally:
            app.close()
        return nodes <= {node for reply in replies for node in reply}

    def summary(self, seconds: float) -> str:
        """What runs where. URLs are redacted (a broker the environment names may carry a
        password); Flower's generated password is printed as the login it is, never in a URL."""
        o, env, web = self.options, self.env, f"http://{HOST}:{self.options.web_port}"
        password = env["FLOWER_BASIC_AUTH"].split(":", 1)[1]
        flower = f"http://{HOST}:{o.flower_port}   user admin, password {password}"
        rows = {
            "API": f"{web}   (OpenAPI document: {web}/openapi.json)",
            "API key": self.api_key_row(),
            "Flower": "off (--no-flower)" if o.no_flower else flower,
            "Mail": f"{self.state / 'mail'}/*.eml   (SMTP sink on {HOST}:{o.smtp_port})",
            "Webhooks": f"{self.webhook_url}/hooks/<name>   (kept in {self.state / 'webhooks'}/)",
            "Redis": f"{redact(env['FLASK_CELERY__BROKER_URL'])}   (results in "
            f"{redact(env['FLASK_CELERY__RESULT_BACKEND'])})",
            "Database": redact(env["FLASK_SQLALCHEMY_DATABASE_URI"]),
            "Workers": ", ".join(f"{g} ({','.join(q)})" for g, q in self.groups.values()),
            "Metrics": self.metrics_urls(),
        }
        bar = "-" * 78
        body = [f"  {key:<9} {value}" for key, value in rows.items()]
        return "\n".join(
            [bar, f"flask-celery is up ({seconds:.1f}s)", *body, bar, "Press Ctrl-C to stop."]
        )

    def api_key_row(self) -> str:
        """The development key and how to send it; none when the environment brings its own."""
        key_file = self.state / API_KEY_FILE
        if digest(key_file.read_text().strip()) not in self.env["FLASK_API_KEYS"]:
            return "the keys in FLASK_API_KEYS (the development key is not in use)"
        return (
            f"{key_file.read_text().strip()}   (in {key_file}: "
            f'curl -H "Authorization: Bearer $(cat {key_file})" ...)'
        )

    def metrics_urls(self) -> str:
        """Where each process group serves its Prometheus metrics."""
        exporter, *workers = metrics_ports(self.options.metrics_port)
        urls = [f"web http://{HOST}:{self.options.web_port}/metrics",
                f"exporter http://{HOST}:{exporter}/metrics"]  # fmt: skip
        urls += [f"{g} :{port}" for (g, _), port in zip(self.groups.values(), workers, strict=True)]
        return ", ".join(urls)

    def watch(self) -> int:
        """Supervise until a stop is requested (then 0): a child that exits on its own is
        started again once its backoff delay has passed, with a line saying so."""
        while not self.stopping.wait(0.2):
            now = time.monotonic()
            for child in self.everyone:
                if child.restart_at is None and child.proc.poll() is not None:
                    uptime = now - child.started
                    delay = child.backoff.delay(uptime)
                    child.restart_at = now + delay
                    self.say(
                        f"{child.name} exited ({child.proc.returncode}) after {uptime:.1f}s; "
                        f"restarting it in {delay:g}s"
                    )
                elif child.restart_at is not None and now >= child.restart_at:
                    self.restart(child)
        return 0

    def restart(self, child: Child) -> None:
        """Start `child` again as it was started, once what was left of it is gone."""
        self.kill_session(child)  # a dead leader's pool processes or orphans
        child.reader.join(1)
        child.proc, child.reader = self.popen(child.name, child.cmd, child.env)
        child.started, child.restart_at = time.monotonic(), None
        self.say(f"restarted {child.name} (pid {child.proc.pid})")

    def stop(self) -> list[str]:
        """SIGTERM every child and wait up to the grace period; a worker still running then
        gets a cold shutdown (SIGQUIT: Celery cancels its tasks and puts their messages back in
        the queue), and what is left after that is killed; then sinks, then Redis.

        Returns one line per child whose work was cut short: a worker that was still running
        tasks when the grace period ended, a process that had to be killed.
        """
        self.stopping.set()
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)  # the leader only: a warm shutdown
        self.wait_for_children(self.options.grace)
        grace, cut_short = f"{self.options.grace:g}s", []
        workers = [c for c in self.children if c.name in self.groups and c.proc.poll() is None]
        if workers and not self.forced.is_set():
            running = self.tasks_in_flight(workers)
            self.say(f"grace period ({grace}) over: cold shutdown of "
                     f"{', '.join(c.name for c in workers)}")  # fmt: skip
            for child in workers:
                child.proc.send_signal(signal.SIGQUIT)
                if running[child.name]:
                    cut_short.append(
                        f"{child.name} was still running {', '.join(running[child.name])} when "
                        f"the grace period ({grace}) ended: back in its queue for the next start"
                    )
            self.wait_for_children(COLD_SHUTDOWN_WAIT)
        for child in self.children:
            if child.proc.poll() is None:
                cut_short.append(f"{child.name} was killed: still running after the grace "
                                 f"period ({grace})")  # fmt: skip
            self.kill_session(child)
        if self.children:
            codes = ", ".join(f"{c.name} ({c.proc.returncode})" for c in self.children)
            self.say(f"stopped {codes}")
        for sink in self.sinks:
            sink.stop()
        if self.redis:
            try:  # SHUTDOWN fsyncs the AOF before Redis exits
                redis.Redis.from_url(self.env["FLASK_CELERY__BROKER_URL"]).shutdown()
                self.redis.proc.wait(10)
            except (redis.RedisError, subprocess.TimeoutExpired) as exc:
                self.say(f"Redis did not shut down ({exc!r}); killing it")
            self.kill_session(self.redis)
        for child in self.everyone:
            child.reader.join(2)
        return cut_short

    def tasks_in_flight(self, workers: list[Child]) -> dict[str, list[str]]:
        """The ids of the tasks each worker still runs, from the in-flight sets on a Redis
        broker (`service.worker.inflight`); when they cannot be read, "unknown tasks"."""
        url, now = self.env["FLASK_CELERY__BROKER_URL"], time.time()
        unknown = {c.name: ["unknown tasks"] for c in workers}
        if not url.startswith(("redis://", "rediss://")):
            return unknown
        client = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=2, decode_responses=True
        )
        running: dict[str, list[str]] = {c.name: [] for c in workers}
        try:
            for name in running:
                for queue in self.groups[name][1]:
                    ids = client.zrangebyscore(inflight_key(queue), now, "+inf")
                    running[name] += [f"task {task_id!s}" for task_id in ids]
            return running
        except redis.RedisError:
            return unknown
        finally:
            client.close()

    def wait_for_children(self, seconds: float) -> None:
        """Wait until every child has exited, `seconds` have passed, or a second signal came."""
        deadline = time.monotonic() + seconds
        while any(c.proc.poll() is None for c in self.children):
            if self.forced.is_set() or time.monotonic() > deadline:
                return
            time.sleep(0.1)

    def kill_session(self, child: Child) -> None:
        """SIGKILL whatever is left in the child's session: a straggler and its orphans."""
        try:
            os.killpg(child.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    try:
        options = parse_options(argv, description=__doc__)
    except OptionError as exc:
        print(f"{PROG}: error: {redact(str(exc))}", file=sys.stderr)
        return 2  # argparse's status for a bad command line; nothing has started
    stack = Stack(options)
    signal.signal(signal.SIGINT, stack.request_stop)
    signal.signal(signal.SIGTERM, stack.request_stop)
    code = 0
    try:
        stack.start()
        print(stack.summary(time.monotonic() - started), flush=True)
        code = stack.watch()
    except Stopped:
        pass
    except DevstackError as exc:
        stack.say(f"error: {exc}")
        code = 1
    finally:
        cut_short = stack.stop()
    for line in cut_short:
        stack.say(line)
    if cut_short:
        code = code or 1
    stack.say(f"exit {code}")
    return code
