"""A real Prometheus server for tests: found where `scripts/ensure-prometheus.sh` puts it, run on
a free loopback port with its data in a temporary folder, queried over its HTTP API.

Scrape and rule evaluation intervals are short (one second by default) so that a test sees a
workload's series within seconds; every target of a job gets the same static labels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from harness.processes import free_port, stop, wait_until

#: One series of a query's answer: its labels and its value at the evaluation time.
Series = tuple[dict[str, str], float]
#: What scripts/ensure-prometheus.sh makes sure of: both binaries, in one directory.
_BINARIES = ("prometheus", "promtool")


class PromQLError(AssertionError):
    """Prometheus refused a query (a parse error, an unknown function, a bad matcher)."""


def prometheus_bin_dir() -> Path:
    """The directory holding `prometheus` and `promtool`, looked for in the order of
    scripts/ensure-prometheus.sh ($PROMETHEUS_BIN, promtool's directory on PATH, /usr/bin)."""
    on_path = shutil.which("promtool")
    candidates = [os.environ.get("PROMETHEUS_BIN"), on_path and str(Path(on_path).parent)]
    for candidate in [*candidates, "/usr/bin"]:
        if candidate and all(os.access(Path(candidate, b), os.X_OK) for b in _BINARIES):
            return Path(candidate)
    pytest.fail(
        "prometheus and promtool are not installed: run `make test`, which installs them with "
        "scripts/ensure-prometheus.sh (or set PROMETHEUS_BIN to their directory)"
    )


class PrometheusServer:
    """A Prometheus process on a free loopback port, data and config under `directory`.

    Args:
        jobs: job name -> the `host:port` targets it scrapes at `/metrics`.
        labels: static labels put on every target.
        rule_files: rule files it loads and evaluates.
    """

    def __init__(
        self,
        directory: Path,
        jobs: Mapping[str, Sequence[str]],
        labels: Mapping[str, str] | None = None,
        rule_files: Sequence[Path] = (),
        interval: str = "1s",
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config: dict[str, Any] = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {
                    "job_name": job,
                    "static_configs": [{"targets": list(targets), "labels": dict(labels or {})}],
                }
                for job, targets in jobs.items()
            ],
        }
        self.log = directory / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def start(self) -> PrometheusServer:
        """Start it; return once it answers ready (its rule files and config loaded)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config, sort_keys=False))
        cmd = [
            str(prometheus_bin_dir() / "prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        wait_until(
            lambda: (
                self.proc is not None
                and self.proc.poll() is None
                and self.http.get("/-/ready").status_code == 200
            ),
            timeout=30,
            what=f"prometheus ready (log: {self.log})",
        )
        return self

    def stop(self) -> None:
        self.http.close()
        if self.proc is not None:
            stop(self.proc)

    def api(self, path: str, **params: Any) -> Any:
        """The `data` of a GET to `/api/v1/<path>`; PromQLError when Prometheus says error."""
        body = self.http.get(f"/api/v1/{path}", params=params).json()
        if body["status"] != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')} ({params})")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        """An instant query's series at `at` (epoch seconds; None: now)."""
        params = {"query": expr} if at is None else {"query": expr, "time": repr(at)}
        data = self.api("query", **params)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PromQLError(f"{expr!r} is a {data['resultType']}, not an instant vector")
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def samples(self, selector: str, window: str, at: float | None = None) -> list[Any]:
        """The raw samples of a range selector `selector[window]`: each series' `metric` and
        its `values`, [[timestamp, "value"], ...], as scraped."""
        params: dict[str, Any] = {"query": f"{selector}[{window}]"}
        if at is not None:
            params["time"] = repr(at)
        data = self.api("query", **params)
        return list(data["result"])

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The value of a query that answers one series; None when it answers none."""
        result = self.query(expr, at)
        assert len(result) <= 1, f"{expr!r} answered {len(result)} series: {result}"
        return result[0][1] if result else None
