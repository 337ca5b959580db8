"""Bad values fail to render with a message naming the values to change: one test per rule."""

from __future__ import annotations

import pytest

from service.routing import QUEUES
from tests.support.chart import HelmRenderError
from tests.support.chart import render as render_with


def groups(*items):
    return {"workers": {"groups": list(items)}}


def error(helm, values):
    with pytest.raises(HelmRenderError) as info:
        render_with(helm, values)
    return str(info.value)


# -- _validate.tpl rules (one aggregated `fail`) -------------------------------------------------


def test_errors_are_reported_together_under_one_heading(helm):
    msg = error(
        helm,
        {"workers": {"defaults": {"softTimeLimitSeconds": 300}}, "beat": {"lockTimeoutSeconds": 5}},
    )
    assert "VALUES VALIDATION:" in msg
    assert "softTimeLimitSeconds (300) must be less than timeLimitSeconds (300)" in msg
    assert "beat.lockTimeoutSeconds (5) must be greater than beat.maxLoopIntervalSeconds (5)" in msg


def test_soft_limit_must_be_below_hard_limit(helm):
    msg = error(
        helm, groups({"name": "general", "queues": ["default"], "softTimeLimitSeconds": 400})
    )
    assert (
        "workers.groups[0] (general): softTimeLimitSeconds (400) must be less than "
        "timeLimitSeconds (300)" in msg
    )


def test_hard_limit_must_be_below_grace_period(helm):
    msg = error(
        helm,
        groups({"name": "general", "queues": ["default"], "terminationGracePeriodSeconds": 300}),
    )
    assert "timeLimitSeconds (300) must be less than terminationGracePeriodSeconds (300)" in msg
    assert "workers.groups[0].terminationGracePeriodSeconds" in msg


def test_hard_limit_must_be_below_visibility_timeout(helm):
    msg = error(helm, {"celery": {"visibilityTimeoutSeconds": 300}})
    assert "timeLimitSeconds (300) must be less than celery.visibilityTimeoutSeconds (300)" in msg


def test_longest_group_limit_counts_against_visibility_timeout(helm):
    msg = error(
        helm,
        groups(
            {"name": "general", "queues": ["default", "email", "pdf", "webhooks"]},
            {
                "name": "slow",
                "queues": ["exports"],
                "timeLimitSeconds": 4000,
                "softTimeLimitSeconds": 3900,
            },
        ),
    )
    assert (
        "workers.groups[1] (slow): timeLimitSeconds (4000) must be less than "
        "celery.visibilityTimeoutSeconds (3600)" in msg
    )
    assert "workers.groups[0]" not in msg


def test_retry_backoff_plus_hard_limit_must_be_below_visibility_timeout(helm):
    msg = error(helm, {"celery": {"retry": {"backoffMaxSeconds": 3300}}})
    assert (
        "workers.groups[0] (general): timeLimitSeconds (300) + celery.retry.backoffMaxSeconds "
        "(3300) must be less than celery.visibilityTimeoutSeconds (3600)" in msg
    )


def test_retry_first_delay_must_not_exceed_the_longest(helm):
    msg = error(helm, {"celery": {"retry": {"backoffBaseSeconds": 30, "backoffMaxSeconds": 10}}})
    assert (
        "celery.retry.backoffBaseSeconds (30) must not exceed celery.retry.backoffMaxSeconds (10)"
        in msg
    )


def test_soft_shutdown_must_fit_in_grace_period(helm):
    msg = error(helm, {"workers": {"defaults": {"softShutdownTimeoutSeconds": 330}}})
    assert (
        "softShutdownTimeoutSeconds (330) must be less than terminationGracePeriodSeconds (330)"
        in msg
    )


def test_keda_cooldown_must_exceed_grace_period(helm):
    msg = error(helm, {"workers": {"defaults": {"keda": {"cooldownPeriod": 300}}}})
    assert (
        "keda.cooldownPeriod (300) must be greater than terminationGracePeriodSeconds (330)" in msg
    )


def test_group_needs_a_queue(helm):
    msg = error(helm, groups({"name": "general", "queues": []}))
    assert "workers.groups[0] (general): a worker group needs at least one queue" in msg


def test_group_names_are_unique(helm):
    msg = error(
        helm,
        groups(
            {"name": "general", "queues": ["default"]}, {"name": "general", "queues": ["email"]}
        ),
    )
    assert 'the group name "general" is already used by workers.groups[0]' in msg


def test_queue_belongs_to_one_group(helm):
    msg = error(
        helm,
        groups(
            {"name": "general", "queues": ["default"]}, {"name": "other", "queues": ["default"]}
        ),
    )
    assert 'queue "default" is already consumed by group "general"' in msg


def test_group_on_a_queue_the_app_does_not_define_is_refused(helm):
    msg = error(
        helm,
        groups(
            {"name": "general", "queues": ["default", "email"]},
            {"name": "reports", "queues": ["pdf", "exports"]},
            {"name": "webhooks", "queues": ["webhooks"]},
            {"name": "bulk", "queues": ["bulk"]},
        ),
    )
    assert (
        f'workers.groups[3] (bulk): queue "bulk" is not one the app defines ({", ".join(QUEUES)})'
        in msg
    )
    assert "remove it from workers.groups[3].queues" in msg
    assert "consumed by no worker group" not in msg


def test_queue_no_group_consumes_is_refused(helm):
    msg = error(
        helm,
        groups(
            {"name": "general", "queues": ["default", "email"]},
            {"name": "reports", "queues": ["pdf"]},
            {"name": "webhooks", "queues": ["webhooks"]},
        ),
    )
    assert 'queue "exports" (tasks: exports.export_table) is consumed by no worker group' in msg
    assert 'add "exports" to the queues of one group in workers.groups (general, reports, ' in msg
    assert msg.count("consumed by no worker group") == 1
    assert "not one the app defines" not in msg


def test_min_replicas_must_not_exceed_max(helm):
    msg = error(helm, {"workers": {"defaults": {"minReplicas": 5, "maxReplicas": 2}}})
    assert "minReplicas (5) must not exceed maxReplicas (2)" in msg


def test_scale_to_zero_needs_keda(helm):
    msg = error(
        helm,
        {
            "keda": {"enabled": False},
            "workers": {"defaults": {"minReplicas": 0, "autoscaling": {"enabled": True}}},
        },
    )
    assert "minReplicas 0 needs KEDA" in msg


def test_web_min_replicas_must_not_exceed_max(helm):
    msg = error(
        helm, {"web": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}
    )
    assert "web.autoscaling.minReplicas must not exceed web.autoscaling.maxReplicas" in msg


def test_beat_lock_must_outlive_the_loop(helm):
    msg = error(helm, {"beat": {"lockTimeoutSeconds": 5, "maxLoopIntervalSeconds": 10}})
    assert (
        "beat.lockTimeoutSeconds (5) must be greater than beat.maxLoopIntervalSeconds (10)" in msg
    )


def test_web_graceful_timeout_must_fit_in_grace_period(helm):
    msg = error(helm, {"web": {"gracefulTimeoutSeconds": 60}})
    assert (
        "web.preStopSleepSeconds (10) + web.gracefulTimeoutSeconds (60) must be less than "
        "web.terminationGracePeriodSeconds (45)"
    ) in msg


def test_external_redis_needs_its_secret_and_host(helm):
    msg = error(helm, {"redis": {"enabled": False}})
    assert "redis.enabled=false needs externalRedis.existingSecret" in msg
    assert "needs externalRedis.host" in msg


def test_broker_and_results_use_different_databases(helm):
    msg = error(helm, {"redis": {"brokerDatabase": 2, "resultDatabase": 2}})
    assert "redis.brokerDatabase and redis.resultDatabase are both 2" in msg


def test_a_database_is_required(helm):
    msg = error(helm, {"postgresql": {"enabled": False}})
    assert "No database: set database.existingSecret" in msg
    assert "or postgresql.enabled=true for the bundled development PostgreSQL" in msg


def test_flower_oauth_needs_provider_and_secret(helm):
    msg = error(helm, {"flower": {"oauth": {"enabled": True}}})
    assert (
        "flower.oauth.enabled=true needs flower.oauth.provider and flower.oauth.existingSecret"
        in msg
    )


def test_internet_egress_names_existing_groups(helm):
    msg = error(helm, {"networkPolicy": {"enabled": True, "internet": {"groups": ["hooks"]}}})
    assert 'networkPolicy.internet.groups names "hooks", which is not a worker group' in msg


# -- values.schema.json rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"web": {"replica": 2}}, "additional properties 'replica' not allowed"),
        (
            {"workers": {"groups": [{"name": "general", "queues": ["default"], "concurency": 2}]}},
            "additional properties 'concurency' not allowed",
        ),
        ({"web": {"workers": "two"}}, "got string, want integer"),
        (
            {"workers": {"defaults": {"pool": "threads"}}},
            "value must be one of 'prefork', 'gevent'",
        ),
        ({"workers": {"defaults": {"concurrency": 0}}}, "minimum: got 0, want 1"),
        (
            {"workers": {"groups": [{"name": "general", "queues": ["Default-Queue"]}]}},
            "does not match pattern",
        ),
        (
            {"workers": {"groups": [{"name": "General_1", "queues": ["default"]}]}},
            "does not match pattern",
        ),
        ({"workers": {"groups": [{"queues": ["default"]}]}}, "missing property 'name'"),
        ({"workers": {"groups": []}}, "minItems"),
        ({"redis": {"brokerDatabase": 16}}, "maximum: got 16, want 15"),
        (
            {"redis": {"appendfsync": "sometimes"}},
            "value must be one of 'always', 'everysec', 'no'",
        ),
        ({"image": {"digest": "latest"}}, "does not match pattern"),
        (
            {"image": {"pullPolicy": "Sometimes"}},
            "value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        ({"networkPolicy": {"database": {"cidrs": ["10.0.0.1"]}}}, "does not match pattern"),
        ({"flower": {"auth": {"username": "a:b"}}}, "does not match pattern"),
        (
            {"workers": {"defaults": {"profile": "atMostOnce"}}},
            "value must be one of 'crashSafe', 'fireAndForget'",
        ),
        ({"webhooks": {"allowedNetworks": ["10.1.0.0"]}}, "does not match pattern"),
        ({"celery": {"retry": {"maxRetries": -1}}}, "minimum: got -1, want 0"),
        ({"celery": {"retry": {"backoffBaseSeconds": 0}}}, "exclusiveMinimum"),
        ({"postgresql": {"auth": {"username": "app-user"}}}, "does not match pattern"),
        ({"postgresql": {"persistence": {"size": ""}}}, "minLength"),
    ],
    ids=[
        "unknown-key",
        "unknown-group-key",
        "wrong-type",
        "pool-enum",
        "concurrency-minimum",
        "queue-pattern",
        "group-name-pattern",
        "group-name-required",
        "groups-min-items",
        "redis-db-maximum",
        "appendfsync-enum",
        "digest-pattern",
        "pull-policy-enum",
        "cidr-pattern",
        "flower-user-pattern",
        "profile-enum",
        "allowed-network-pattern",
        "max-retries-minimum",
        "backoff-base-positive",
        "postgresql-user-pattern",
        "postgresql-size-required",
    ],
)
def test_schema_rejects_bad_values(helm, values, message):
    msg = error(helm, values)
    assert "values don't meet the specifications of the schema" in msg
    assert message in msg
