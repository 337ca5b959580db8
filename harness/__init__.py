"""Local servers and service processes for the tests and the benchmarks; no fixtures, no tests.

- auth: the API keys a local stack accepts (API_KEY, CLIENT_KEY, ...), as setting and env.
- keda: what KEDA would compute for a rendered ScaledObject (metric, desired replicas).
- faults: an isolated Stack for fault injection, killing workers, counting effects.
- postgres: a throwaway PostgreSQL cluster (initdb + pg_ctl) on a free port.
- processes: free ports, polling with a deadline, stopping processes.
- rabbitmq: the local RabbitMQ (AMQP_URL) and why it is unavailable.
- redis_server: a throwaway redis-server process (RedisServer).
- stack: the service's processes: environment, spawn, start_worker, the stack's Flask app.
- tasks: Celery tasks that exist only for tests and benchmarks (tests.sleep, tests.effect,
  tests.fail, tests.flaky).

Nothing here imports `tests`; `tests` and `bench` import from here.
"""
