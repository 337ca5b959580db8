"""Helpers shared by the test folders and the benchmarks; no fixtures, no tests.

- api: calls to a running stack's HTTP API (new_user, wait_for_job).
- chart: the chart rendered with each helm binary, validated; queries (by_kind, one, env_of).
- chart_docs: the chart README's values table, generated from values.schema.json.
- config_docs: the README's configuration tables, generated from the settings table.
- chart_processes: the rendered pods run as local processes (LocalCluster, LocalContainer).
- faults: an isolated Stack for fault injection, killing workers, counting effects.
- keda: what KEDA would compute for a rendered ScaledObject (metric, desired replicas).
- markdown: generated blocks in Markdown files.
- processes: free ports, polling with a deadline, stopping processes.
- rabbitmq: the local RabbitMQ (AMQP_URL) and why it is unavailable.
- redis_server: a throwaway redis-server process (RedisServer).
- stack: the service's processes: environment, spawn, start_worker, the stack's Flask app.
- tasks: Celery tasks that exist only for tests (tests.sleep, tests.effect, tests.fail,
  tests.flaky).
- tiltcheck: the Tiltfile checked offline against stubs of Tilt's builtins.
"""
