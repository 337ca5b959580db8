"""The generated dashboards and alert rules (monitoring/): up to date, valid PromQL to promtool,
built only on metrics that exist, and celery-mixin's own alert tests passing against our rules.

promtool comes from Debian's prometheus package; `make test` installs it
(scripts/ensure-prometheus.sh). The celery-mixin files are the compatibility targets in
../shared/compat/celery-mixin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from monitoring import alerts, metrics
from monitoring.__main__ import ARTEFACTS
from service.observability import metrics as service_metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts/flask-celery/files/prometheus-rules.yaml"
RULE_TESTS = ROOT / "monitoring/tests/rules_test.yaml"
DASHBOARDS = sorted((ROOT / "charts/flask-celery/dashboards").glob("*.json"))
MIXIN = ROOT.parent / "shared/compat/celery-mixin"

#: What Grafana puts in place of each variable, for promtool to parse the query.
GRAFANA_VALUES = {"__rate_interval": "5m", "__range": "1h", "__interval": "1m"}
#: A plausible value for each label of the catalogue.
SAMPLE_LABELS = {
    "name": "jobs.add",
    "hostname": "worker-1",
    "queue_name": "default",
    "exception": "ValueError",
    "endpoint": "jobs.create",
    "method": "POST",
    "status": "503",
    "outcome": "accepted",
    "dependency": "redis",
    "deployment": "rel-flask-celery-worker-general",
    "scaledObject": "rel-flask-celery-worker-general",
    "scaler": "redisScaler",
    "metric": "s0-redis-default",
    "namespace": "prod",
}
#: `by (...)` and the other clauses that list label names.
GROUPING = r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
#: Words of PromQL that are not metric names.
KEYWORDS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk "
    "limit_ratio by without on ignoring group_left group_right bool and or unless offset "
    "inf nan".split()
)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool, or fail the test saying how to install it."""
    bin_dir = os.environ.get("PROMETHEUS_BIN")
    path = shutil.which("promtool", path=bin_dir) if bin_dir else shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: run `make test`, which installs it with "
            "scripts/ensure-prometheus.sh (or set PROMETHEUS_BIN to its directory)"
        )
    return subprocess.run([path, *args], capture_output=True, text=True, cwd=cwd, check=False)


def mixin(name: str) -> Path:
    """A celery-mixin file from the project's shared compatibility targets."""
    path = MIXIN / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: the celery-mixin files come with the shared/ folder")
    return path


def generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitoring", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def load_rules(path: Path) -> dict[str, dict[str, Any]]:
    """Alert name -> rule, over every group of a rules file."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, where, expression) for every panel target and variable query."""
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                selector = re.fullmatch(r"label_values\((.*), \w+\)", variable["query"])
                assert selector, f"{path.name}: ${variable['name']}: not label_values(...)"
                yield path.name, f"variable ${variable['name']}", selector[1]
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                where = f"panel {panel['title']!r} {target['refId']}"
                yield path.name, where, target["expr"]


def without_variables(expr: str, variables: dict[str, str]) -> str:
    """The query as Prometheus receives it: each `$var` or `${var}` replaced by its "All"."""

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        assert name in variables or name in GRAFANA_VALUES, f"${name} is not a variable"
        return GRAFANA_VALUES.get(name) or variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def dashboard_variables(name: str) -> dict[str, str]:
    """A dashboard's variables, each with the value its "All" stands for."""
    board = json.loads((ROOT / "charts/flask-celery/dashboards" / name).read_text())
    return {v["name"]: v.get("allValue", ".*") for v in board["templating"]["list"]}


def prometheus_queries() -> list[tuple[str, str]]:
    """(where, expression as Prometheus receives it) for every dashboard query."""
    return [
        (f"{board}: {where}", without_variables(expr, dashboard_variables(board)))
        for board, where, expr in dashboard_queries()
    ]


def synthetic_series() -> list[dict[str, str]]:
    """A series of every catalogued family with every label set, as its exporter would set
    them: counters and histograms growing, gauges at 1."""
    out = []
    for family in metrics.FAMILIES:
        labels = {"job": f"flask-celery-{family.source}", "namespace": "prod"}
        labels |= {label: SAMPLE_LABELS[label] for label in family.labels}
        values = "1x40" if family.type == "gauge" else "0+10x40"
        for name in family.series():
            for le in ('"1"', '"+Inf"') if name.endswith("_bucket") else ("",):
                pairs = [f'{k}="{v}"' for k, v in labels.items()] + [f"le={le}"] * bool(le)
                out.append({"series": f"{name}{{{', '.join(pairs)}}}", "values": values})
    return out


def strip_strings(expr: str) -> str:
    """The expression with every string literal emptied."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def names_and_labels(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and label names a PromQL expression mentions; a `__name__=~"..."`
    matcher names the known series it matches."""
    known = metrics.series_labels()
    names = set()
    for pattern in re.findall(r'__name__=~"([^"]*)"', expr):
        names |= {name for name in known if re.fullmatch(pattern, name)} or {pattern}
    expr = strip_strings(expr)
    labels = set()
    for inside in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", inside))
    for _, listed in re.findall(GROUPING, expr):
        labels |= {label.strip() for label in listed.split(",") if label.strip()}
    expr = re.sub(GROUPING, " ", re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr))
    words = re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return names | {word for word in words if word not in KEYWORDS}, labels


# - Generated files ------------------------------------------------------------------------------


def test_generated_files_are_what_the_generator_writes() -> None:
    out = generator("--check")
    assert out.returncode == 0, out.stderr
    assert sorted(ARTEFACTS) == sorted(str(path.relative_to(ROOT)) for path in (*DASHBOARDS, RULES))


def test_check_names_the_stale_file(tmp_path: Path) -> None:
    assert generator("--write", "--root", str(tmp_path)).returncode == 0
    stale = tmp_path / "charts/flask-celery/files/prometheus-rules.yaml"
    stale.write_text(stale.read_text() + "# edited by hand\n")
    out = generator("--check", "--root", str(tmp_path))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "charts/flask-celery/files/prometheus-rules.yaml is stale: run `python -m monitoring "
        "--write`"
    ]


# - Alert rules --------------------------------------------------------------------------------


def test_rules_file_passes_promtool_check() -> None:
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts.RULES)} rules found" in out.stdout


def test_our_alerts_fire_and_stay_quiet_as_their_unit_tests_expect() -> None:
    out = promtool("test", "rules", str(RULE_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr


def test_celery_mixin_alert_tests_pass_against_our_rules(tmp_path: Path) -> None:
    # The mixin's tests.yaml reads `../prometheus_alerts.yaml`.
    shutil.copy(RULES, tmp_path / "prometheus_alerts.yaml")
    (tmp_path / "tests").mkdir()
    shutil.copy(mixin("tests.yaml"), tmp_path / "tests/tests.yaml")
    out = promtool("test", "rules", "tests.yaml", cwd=tmp_path / "tests")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mixin_alerts_are_the_mixins_word_for_word() -> None:
    ours, theirs = load_rules(RULES), load_rules(mixin("prometheus_alerts.yaml"))
    assert {name: ours[name] for name in theirs} == theirs


def test_each_of_our_alerts_has_a_unit_test_that_fires_it_and_one_that_does_not() -> None:
    checks = [
        check for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for check in test["alert_rule_test"]
    ]  # fmt: skip
    for rule in alerts.RULES:
        if rule.group == "celery":
            continue
        outcomes = {
            bool(check["exp_alerts"]) for check in checks if check["alertname"] == rule.alert
        }
        assert outcomes == {True, False}, f"{rule.alert}: needs a firing and a quiet test"


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    for name, rule in load_rules(RULES).items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        if not name.startswith("Celery"):
            assert "Runbook: " in rule["annotations"]["description"], name


@pytest.mark.parametrize("rule", alerts.RULES, ids=lambda rule: rule.alert)
def test_every_threshold_and_window_of_an_expression_comes_from_the_table(
    rule: alerts.Rule,
) -> None:
    rendered = rule.render({name: f"<{name}>" for name in {*alerts.COMMON, *rule.params}})
    assert rendered["for"] == "<for>"
    missing = {
        name for name in {"job", *rule.params} - {"for"} if f"<{name}>" not in rendered["expr"]
    }
    assert missing == set(), f"parameters the expression does not use: {missing}"
    # Left: the constants of the formulas (percent, quantile, "none in flight"), no durations.
    literals = re.findall(
        r"(?<![\w.])\d+(?:\.\d+)?[smhdwy]?(?![\w.])", strip_strings(rendered["expr"])
    )
    assert set(literals) <= {"0", "100", "0.95"}


def test_thresholds_come_from_overrides() -> None:
    groups = alerts.rule_groups(
        {"*": {"job": "rel-flask-celery-.*"}, "CeleryHighQueueLength": {"threshold": "250"}}
    )
    rules = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    queue_length = rules["CeleryHighQueueLength"]
    assert queue_length["expr"].endswith("> 250\n")
    assert queue_length["annotations"]["description"].startswith("More than 250 tasks")
    assert all('job=~"rel-flask-celery-.*"' in rule["expr"] for rule in rules.values())
    assert ".*celery.*" not in json.dumps(rules)


# - Dashboards ---------------------------------------------------------------------------------


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses expressions offline only as rules: one recording rule per query.
    found = prometheus_queries()
    records = [{"record": f"query_{i}", "expr": expr} for i, (_, expr) in enumerate(found)]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": records}]}))
    out = promtool("check", "rules", str(path))
    failed = [where for i, (where, _) in enumerate(found) if f'"query_{i}":' in out.stdout]
    assert out.returncode == 0, "\n".join([*failed, out.stdout + out.stderr])
    assert len(records) > 50


def test_every_dashboard_query_returns_data_from_series_shaped_like_ours(tmp_path: Path) -> None:
    checks = [
        {"expr": f"count({expr}) > bool 0", "eval_time": "40m", "exp_samples": [{"value": 1}]}
        for _, expr in prometheus_queries()
    ]
    test = {"interval": "1m", "input_series": synthetic_series(), "promql_expr_test": checks}
    path = tmp_path / "queries_test.yaml"
    path.write_text(yaml.safe_dump({"rule_files": [], "tests": [test]}))
    out = promtool("test", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr


def test_queries_and_rules_name_only_metrics_and_labels_that_exist() -> None:
    known = metrics.series_labels()
    expressions = [(board, where, expr) for board, where, expr in dashboard_queries()]
    expressions += [("rules", name, rule["expr"]) for name, rule in load_rules(RULES).items()]
    problems = []
    for source, where, expr in expressions:
        names, labels = names_and_labels(expr)
        unknown = names - set(known)
        allowed = {"le", "__name__"}.union(*(known[n] for n in names & set(known)))
        problems += [f"{source}: {where}: no metric {name}" for name in sorted(unknown)]
        problems += [f"{source}: {where}: no label {label}" for label in sorted(labels - allowed)]
    assert problems == []


def test_the_metric_check_catches_a_typo() -> None:
    names, labels = names_and_labels(
        'sum by (queue) (rate(celery_task_sucess_total{job=~"$job"}[5m])) / on (job) up'
    )
    assert names == {"celery_task_sucess_total", "up"}
    assert labels == {"queue", "job"}


def test_dashboards_have_stable_uids_and_the_same_filters() -> None:
    boards = {path.name: json.loads(path.read_text()) for path in DASHBOARDS}
    assert {name: board["uid"] for name, board in boards.items()} == {
        "flask-celery-overview.json": "flask-celery-overview",
        "flask-celery-tasks.json": "flask-celery-tasks",
    }
    common = ["datasource", "namespace", "job", "queue_name"]
    assert set(dashboard_variables("flask-celery-overview.json")) == {*common, "deployment"}
    assert set(dashboard_variables("flask-celery-tasks.json")) == {*common, "task"}


def test_every_panel_has_a_description_and_reads_the_chosen_datasource() -> None:
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            if panel["type"] == "row":
                continue
            assert panel.get("description"), f"{path.name}: {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_rates_use_grafanas_rate_interval_and_legends_name_grouped_labels() -> None:
    for board, where, expr in dashboard_queries():
        windows = set(re.findall(r"\[([^\]]+)\]", expr))
        assert windows <= {"$__rate_interval", "$__range"}, f"{board}: {where}: {windows}"
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                grouped = {
                    label.strip()
                    for clause, listed in re.findall(GROUPING, target["expr"])
                    if clause == "by"
                    for label in listed.split(",")
                }
                legend = set(re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")))
                assert legend <= grouped, f"{path.name}: {panel['title']}: {legend - grouped}"


def test_the_catalogue_has_the_labels_the_service_exports() -> None:
    # prometheus_client keeps a metric's label names only in a private attribute.
    exported = {
        (f"{m._name}_total" if m._type == "counter" else m._name): tuple(m._labelnames)
        for m in vars(service_metrics).values()
        if isinstance(m, MetricWrapperBase)
    }
    catalogue = {f.name: set(f.labels) for f in metrics.FAMILIES if f.source in {"tasks", "web"}}
    assert {name: set(exported.get(name, ())) for name in catalogue} == catalogue
