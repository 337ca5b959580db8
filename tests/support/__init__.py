"""Helpers shared by the test folders; no fixtures, no tests. Servers and service processes
are in `harness` (shared with the benchmarks).

- api: calls to a running stack's HTTP API (new_user, wait_for_job).
- chart: the chart rendered with each helm binary, validated; queries (by_kind, one, env_of).
- chart_docs: the chart README's values table, generated from values.schema.json.
- e2e_observe: the cluster e2e tests' verdicts on what they read (pods changed, ticks run twice).
- e2e_relay: a loopback relay to web through the API server's port-forward.
- config_docs: the README's configuration tables, generated from the settings table.
- chart_processes: the rendered pods run as local processes (LocalCluster, LocalContainer).
- markdown: generated blocks in Markdown files.
- session_stacks: the integration tests' session stack per database (DATABASES).
- tiltcheck: the Tiltfile checked offline against stubs of Tilt's builtins.
"""
