"""Grafana dashboards and Prometheus alert rules for flask-celery, generated from code.

`metrics` lists the metric families they may use, `panels` and `dashboards` build the two
dashboards with Grafana's Python SDK, `alerts` holds the one table of alert rules with their
default thresholds. `python -m monitoring --write` regenerates the files the chart ships
(`ARTEFACTS`); `--check` fails naming any that is stale.
"""
