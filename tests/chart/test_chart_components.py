"""Web, beat, Flower, Redis, shared environment and NetworkPolicies (the database and its
migrations are in test_chart_database)."""

from __future__ import annotations

import json

import jmespath

from tests.support.chart import EXTERNAL_REDIS, by_kind, container, env_of, one, render_error

NAME = "rel-flask-celery-{}"


def test_web_runs_gunicorn_with_health_and_readiness_probes(render):
    docs = render({"web": {"workers": 3, "timeoutSeconds": 60, "gracefulTimeoutSeconds": 20}})
    dep = one(docs, "Deployment", NAME.format("web"))
    c = container(dep)
    assert c["command"] == [
        "gunicorn",
        "--config",
        "python:service.gunicorn_conf",
        "--bind",
        "0.0.0.0:8000",
        "--workers",
        "3",
        "--graceful-timeout",
        "20",
        "--timeout",
        "60",
        "--access-logfile",
        "-",
        "service.wsgi:app",
    ]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45
    svc = one(docs, "Service", NAME.format("web"))
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_web_pdb_ingress_and_hpa(render):
    docs = render(
        {
            "web": {
                "ingress": {"enabled": True, "className": "nginx"},
                "autoscaling": {"enabled": True},
            }
        }
    )
    assert one(docs, "PodDisruptionBudget", NAME.format("web"))["spec"]["maxUnavailable"] == 1
    ing = one(docs, "Ingress", NAME.format("web"))
    assert jmespath.search("spec.rules[0].http.paths[0].backend.service", ing) == {
        "name": NAME.format("web"),
        "port": {"name": "http"},
    }
    assert one(docs, "HorizontalPodAutoscaler", NAME.format("web"))["spec"]["minReplicas"] == 2
    assert "replicas" not in one(docs, "Deployment", NAME.format("web"))["spec"]


def test_shared_environment_comes_from_secrets_and_values(render):
    docs = render(
        {
            "database": {"existingSecret": "db", "secretKey": "url"},
            "smtp": {
                "host": "smtp.example.com",
                "port": 2525,
                "username": "mailer",
                "existingSecret": "smtp",
            },
            "celery": {"visibilityTimeoutSeconds": 7200},
        }
    )
    for component in ("web", "worker-general", "beat", "flower"):
        env = env_of(container(one(docs, "Deployment", NAME.format(component))))
        assert env["FLASK_SQLALCHEMY_DATABASE_URI"]["valueFrom"]["secretKeyRef"] == {
            "name": "db",
            "key": "url",
        }
        assert env["FLASK_CELERY__BROKER_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": NAME.format("redis"),
            "key": "broker-url",
        }
        assert (
            env["FLASK_CELERY__RESULT_BACKEND"]["valueFrom"]["secretKeyRef"]["key"]
            == "result-backend-url"
        )
        assert env["FLASK_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": NAME.format("app"),
            "key": "secret-key",
        }
        assert env["FLASK_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "smtp",
            "key": "smtp-password",
        }
        assert (
            env["FLASK_SMTP_HOST"]["value"] == "smtp.example.com"
            and env["FLASK_SMTP_PORT"]["value"] == "2525"
        )
        assert env["FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout"]["value"] == "7200"
        assert env["FLASK_LOG_FORMAT"]["value"] == "json"
        assert env["FLASK_STORAGE_DIR"]["value"] == "/data/storage"


def test_webhook_allowed_networks_reach_every_app_container_as_json(render):
    assert (
        env_of(container(one(render({}), "Deployment", NAME.format("worker-webhooks"))))[
            "FLASK_WEBHOOK_ALLOWED_NETWORKS"
        ]["value"]
        == "[]"
    )
    networks = ["10.1.0.0/16", "fd00:1::/64"]
    docs = render({"webhooks": {"allowedNetworks": networks}})
    for component in ("web", "worker-general", "worker-webhooks", "beat", "flower"):
        env = env_of(container(one(docs, "Deployment", NAME.format(component))))
        assert json.loads(env["FLASK_WEBHOOK_ALLOWED_NETWORKS"]["value"]) == networks


def test_webhook_allowed_networks_are_opened_to_internet_groups(render):
    docs = render(
        {"networkPolicy": {"enabled": True}, "webhooks": {"allowedNetworks": ["10.1.0.0/16"]}}
    )
    internet = one(docs, "NetworkPolicy", NAME.format("worker-webhooks-internet"))
    peers = internet["spec"]["egress"][0]["to"]
    assert peers[1:] == [{"ipBlock": {"cidr": "10.1.0.0/16"}}]
    assert "10.0.0.0/8" in peers[0]["ipBlock"]["except"]


def test_extra_env_is_appended(render):
    docs = render(
        {
            "app": {"extraEnv": [{"name": "FLASK_A", "value": "1"}]},
            "web": {"extraEnv": [{"name": "FLASK_B", "value": "2"}]},
        }
    )
    env = [e["name"] for e in container(one(docs, "Deployment", NAME.format("web")))["env"]]
    assert env[-2:] == ["FLASK_A", "FLASK_B"]
    assert "FLASK_A" in env_of(container(one(docs, "Deployment", NAME.format("beat"))))


def test_storage_claim_is_shared_by_web_and_workers(render):
    docs = render({"storage": {"persistence": {"enabled": True}}})
    pvc = one(docs, "PersistentVolumeClaim", NAME.format("storage"))
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for component in ("web", "worker-reports"):
        volumes = one(docs, "Deployment", NAME.format(component))["spec"]["template"]["spec"][
            "volumes"
        ]
        assert {
            "name": "storage",
            "persistentVolumeClaim": {"claimName": NAME.format("storage")},
        } in volumes


def test_beat_is_a_single_recreated_replica_with_lock_settings(render):
    docs = render({"beat": {"lockTimeoutSeconds": 40, "maxLoopIntervalSeconds": 10}})
    dep = one(docs, "Deployment", NAME.format("beat"))
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    c = container(dep)
    assert c["command"] == ["celery", "-A", "service.make_celery", "beat", "--loglevel", "INFO"]
    env = env_of(c)
    assert env["FLASK_CELERY__REDBEAT_LOCK_TIMEOUT"]["value"] == "40"
    assert env["FLASK_CELERY__BEAT_MAX_LOOP_INTERVAL"]["value"] == "10"


def test_flower_requires_basic_auth_from_a_secret(render):
    docs = render({"flower": {"urlPrefix": "/flower/"}})
    c = container(one(docs, "Deployment", NAME.format("flower")))
    assert c["command"] == [
        "celery",
        "-A",
        "service.make_celery",
        "flower",
        "--port=5555",
        "--url_prefix=flower",
        "--enable_events=False",
    ]
    assert env_of(c)["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": NAME.format("flower"),
        "key": "basic-auth",
    }
    assert c["readinessProbe"]["httpGet"]["path"] == "/flower/healthcheck"
    assert set(one(docs, "Secret", NAME.format("flower"))["data"]) == {"password", "basic-auth"}


def test_flower_turns_task_events_on_in_workers_only_when_asked(render):
    # workers send no task events (FLASK_CELERY__WORKER_SEND_TASK_EVENTS) and Flower would turn
    # them on in each every 5 s: it does only with flower.taskEvents
    default = container(one(render(), "Deployment", NAME.format("flower")))["command"]
    assert "--enable_events=False" in default
    docs = render({"flower": {"taskEvents": True}})
    asked = container(one(docs, "Deployment", NAME.format("flower")))["command"]
    assert not any(arg.startswith("--enable_events") for arg in asked)


def test_flower_oauth_settings_come_from_an_existing_secret(render):
    docs = render(
        {
            "flower": {
                "auth": {"existingSecret": "flower-auth"},
                "oauth": {
                    "enabled": True,
                    "provider": "flower.views.auth.GoogleAuth",
                    "allowedEmails": ".*@example\\.com",
                    "existingSecret": "flower-oauth",
                },
            }
        }
    )
    env = env_of(container(one(docs, "Deployment", NAME.format("flower"))))
    assert env["FLOWER_AUTH_PROVIDER"]["value"] == "flower.views.auth.GoogleAuth"
    assert env["FLOWER_OAUTH2_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "flower-oauth",
        "key": "oauth2-key",
    }
    assert env["FLOWER_OAUTH2_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "flower-oauth",
        "key": "oauth2-secret",
    }
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == "flower-auth"
    assert not [
        s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == NAME.format("flower")
    ]


def test_redis_runs_aof_noeviction_with_password_from_the_secret(render):
    docs = render({})
    conf = one(docs, "ConfigMap", NAME.format("redis"))["data"]["redis.conf"].splitlines()
    assert {"appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"} <= set(conf)
    sts = one(docs, "StatefulSet", NAME.format("redis"))
    c = container(sts)
    assert c["command"] == ["redis-server"]
    assert c["args"] == ["/etc/redis/redis.conf", "--requirepass", "$(REDIS_PASSWORD)"]
    env = env_of(c)
    assert env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": NAME.format("redis"),
        "key": "redis-password",
    }
    assert c["livenessProbe"]["exec"]["command"] == [
        "redis-cli",
        "-h",
        "127.0.0.1",
        "-p",
        "6379",
        "ping",
    ]
    assert c["ports"] == [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}]
    assert sts["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 999
    assert (
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"
    )


def test_redis_secret_urls_use_the_broker_and_result_databases(render):
    import base64

    data = one(render({}), "Secret", NAME.format("redis"))["data"]
    password = base64.b64decode(data["redis-password"]).decode()
    assert len(password) == 32
    assert (
        base64.b64decode(data["broker-url"]).decode()
        == f"redis://:{password}@{NAME.format('redis')}:6379/0"
    )
    assert base64.b64decode(data["result-backend-url"]).decode().endswith("/1")


def redis_conf(docs):
    conf = one(docs, "ConfigMap", NAME.format("redis"))["data"]["redis.conf"].splitlines()
    return dict(line.split(" ", 1) for line in conf if line and not line.startswith("#"))


def test_redis_maxmemory_sits_under_its_memory_limit_so_noeviction_refuses_writes(render):
    # 70 % of the 1Gi limit: a full broker answers OOM errors instead of being OOM-killed
    assert redis_conf(render({}))["maxmemory"] == str(1024**3 * 70 // 100)
    limits = {"resources": {"limits": {"memory": "1.5G"}}}
    assert redis_conf(render({"redis": {**limits, "maxmemoryPercent": 50}}))["maxmemory"] == str(
        750_000_000
    )
    assert redis_conf(render({"redis": {"maxmemory": "300mb"}}))["maxmemory"] == "300mb"
    unlimited = redis_conf(render({"redis": {"resources": {"limits": {"memory": None}}}}))
    assert "maxmemory" not in unlimited and unlimited["maxmemory-policy"] == "noeviction"


def test_redis_memory_limit_the_chart_cannot_read_is_refused(helm):
    message = render_error(helm, {"redis": {"resources": {"limits": {"memory": "1.5X"}}}})
    assert 'redis.resources.limits.memory: "1.5X" is not a memory quantity' in message


def test_redis_password_is_url_escaped_so_clients_read_it_back(render):
    import base64

    import redis
    from kombu.utils.url import url_to_parts

    password = "p@ss:w/o#r%d ?+&x"
    docs = render({"redis": {"auth": {"password": password}}})
    data = one(docs, "Secret", NAME.format("redis"))["data"]
    assert base64.b64decode(data["redis-password"]).decode() == password
    for key, db in (("broker-url", 0), ("result-backend-url", 1)):
        url = base64.b64decode(data[key]).decode()
        parts = url_to_parts(url)
        assert (parts.password, parts.hostname, parts.port) == (
            password,
            NAME.format("redis"),
            6379,
        )
        kwargs = redis.connection.parse_url(url)
        assert (kwargs["password"], kwargs["host"], kwargs["db"]) == (
            password,
            NAME.format("redis"),
            db,
        )


def test_external_redis_with_tls_uses_the_existing_secret(render):
    docs = render(EXTERNAL_REDIS)
    assert not [
        s for s in by_kind(docs, "StatefulSet") if s["metadata"]["name"] == NAME.format("redis")
    ]
    assert not [s for s in by_kind(docs, "Secret") if "redis" in s["metadata"]["name"]]
    env = env_of(container(one(docs, "Deployment", NAME.format("web"))))
    assert env["FLASK_CELERY__BROKER_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "ext-redis",
        "key": "broker-url",
    }
    so = one(docs, "ScaledObject", NAME.format("worker-general"))
    assert set(jmespath.search("spec.triggers[*].metadata.enableTLS", so)) == {"true"}
    assert jmespath.search("spec.triggers[0].metadata.address", so) == "redis.example.internal:6380"
    auth = one(docs, "TriggerAuthentication", NAME.format("redis-keda"))
    assert auth["spec"]["secretTargetRef"][0]["name"] == "ext-redis"


def test_network_policies_are_off_by_default(render):
    assert not by_kind(render({}), "NetworkPolicy")


def test_network_policies_deny_by_default_and_open_exactly_the_needed_flows(render):
    docs = render(
        {
            "networkPolicy": {"enabled": True},
            "database": {"existingSecret": "db"},
            "smtp": {"host": "smtp.example.com"},
            "metrics": {"enabled": True},
        }
    )
    deny = one(docs, "NetworkPolicy", NAME.format("default-deny"))
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"]
    dns = one(docs, "NetworkPolicy", NAME.format("dns"))
    assert {p["port"] for p in dns["spec"]["egress"][0]["ports"]} == {53}
    redis = one(docs, "NetworkPolicy", NAME.format("redis"))
    sources = redis["spec"]["ingress"][0]["from"]
    assert {
        s["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for s in sources
        if "podSelector" in s
    } == {"web", "worker", "beat", "flower", "exporter"}
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}
    } in sources
    worker = one(docs, "NetworkPolicy", NAME.format("worker"))
    assert jmespath.search("spec.ingress[0].from[0].namespaceSelector.matchLabels", worker) == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert jmespath.search("spec.egress[*].ports[0].port", worker) == [6379, 5432, 587]
    internet = one(docs, "NetworkPolicy", NAME.format("worker-webhooks-internet"))
    assert (
        internet["spec"]["podSelector"]["matchLabels"]["flask-celery.io/worker-group"] == "webhooks"
    )
    block = internet["spec"]["egress"][0]["to"][0]["ipBlock"]
    assert block["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in block["except"]
    assert [p["port"] for p in internet["spec"]["egress"][0]["ports"]] == [80, 443]
    beat = one(docs, "NetworkPolicy", NAME.format("beat"))
    assert beat["spec"]["ingress"] == [] and len(beat["spec"]["egress"]) == 1
    flower = one(docs, "NetworkPolicy", NAME.format("flower"))
    assert flower["spec"]["ingress"] == []
    migrations = one(docs, "NetworkPolicy", NAME.format("migrations"))
    assert jmespath.search("spec.egress[0].ports[0].port", migrations) == 5432


def test_network_policy_for_external_redis_targets_its_ranges(render):
    docs = render(
        {
            "networkPolicy": {"enabled": True, "externalRedis": {"cidrs": ["10.9.0.0/24"]}},
            "redis": {"enabled": False},
            "externalRedis": {"host": "r", "existingSecret": "ext"},
        }
    )
    web = one(docs, "NetworkPolicy", NAME.format("web"))
    assert web["spec"]["egress"][0] == {
        "to": [{"ipBlock": {"cidr": "10.9.0.0/24"}}],
        "ports": [{"port": 6379, "protocol": "TCP"}],
    }
    assert not [
        p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == NAME.format("redis")
    ]


def test_service_account_is_shared_and_mounts_no_token(render):
    docs = render({})
    sa = one(docs, "ServiceAccount", "rel-flask-celery")
    assert sa["automountServiceAccountToken"] is False
    for kind in ("Deployment", "StatefulSet"):
        for d in by_kind(docs, kind):
            assert d["spec"]["template"]["spec"]["serviceAccountName"] == "rel-flask-celery"
