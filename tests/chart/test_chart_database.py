"""The database: the bundled development PostgreSQL by default, an external one through
database.existingSecret, and how the migrations run for each."""

from __future__ import annotations

import base64

import jmespath
from sqlalchemy.engine import make_url

from tests.support.chart import NAME, by_kind, container, env_of, one

PG = NAME.format("postgresql")
MIGRATE = ["flask", "--app", "service.wsgi", "db", "upgrade"]
#: Pods that run the application and migrate the bundled database before they start.
MIGRATING = ("web", "worker-general", "worker-reports", "worker-webhooks", "beat")
EXTERNAL = {"database": {"existingSecret": "db", "secretKey": "url"}}


def pod_of(docs, kind, name):
    return one(docs, kind, name)["spec"]["template"]["spec"]


def secret_data(docs, name):
    return {k: base64.b64decode(v).decode() for k, v in one(docs, "Secret", name)["data"].items()}


def database_ref(docs, component):
    env = env_of(container(one(docs, "Deployment", NAME.format(component))))
    return env["FLASK_SQLALCHEMY_DATABASE_URI"]


def to_postgresql(docs):
    """The egress rule that opens the bundled PostgreSQL's pods on 5432."""
    labels = jmespath.search("spec.selector.matchLabels", one(docs, "StatefulSet", PG))
    return {
        "to": [{"podSelector": {"matchLabels": labels}}],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    }


# -- the bundled PostgreSQL ----------------------------------------------------------------------


def test_bundled_postgresql_is_the_default_database(render):
    docs = render({})
    sts = one(docs, "StatefulSet", PG)
    assert sts["spec"]["replicas"] == 1 and sts["spec"]["serviceName"] == f"{PG}-headless"
    c = container(sts)
    assert c["image"].startswith("postgres:16.")
    assert c["command"] == ["docker-entrypoint.sh"] and c["args"] == ["postgres"]
    assert c["ports"] == [{"name": "postgresql", "containerPort": 5432, "protocol": "TCP"}]
    assert one(docs, "Service", PG)["spec"]["ports"] == [
        {"name": "postgresql", "port": 5432, "targetPort": "postgresql", "protocol": "TCP"}
    ]
    assert one(docs, "Service", f"{PG}-headless")["spec"]["clusterIP"] == "None"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    for component in (*MIGRATING, "flower"):
        assert database_ref(docs, component) == {
            "name": "FLASK_SQLALCHEMY_DATABASE_URI",
            "valueFrom": {"secretKeyRef": {"name": PG, "key": "database-url"}},
        }, component


def test_bundled_postgresql_secret_holds_the_password_and_the_apps_url(render):
    data = secret_data(render({}), PG)
    password = data["postgres-password"]
    assert len(password) == 32
    assert data["database-url"] == (
        f"postgresql+psycopg://flask_celery:{password}@{PG}:5432/flask_celery"
    )


def test_a_given_password_is_escaped_in_the_url(render):
    password = "p@ss word/+:%?"
    values = {"postgresql": {"auth": {"password": password, "username": "jobs"}}}
    url = make_url(secret_data(render(values), PG)["database-url"])
    assert (url.username, url.password, url.host, url.port) == ("jobs", password, PG, 5432)


def test_postgresql_reads_its_password_from_a_file_and_probes_with_pg_isready(render):
    docs = render({})
    pod = pod_of(docs, "StatefulSet", PG)
    c = container(one(docs, "StatefulSet", PG))
    env = env_of(c)
    assert not [e for e in c["env"] if "valueFrom" in e], "no secret in the environment"
    assert env["POSTGRES_USER"]["value"] == env["POSTGRES_DB"]["value"] == "flask_celery"
    assert env["POSTGRES_PASSWORD_FILE"]["value"] == "/run/secrets/postgresql/password"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["password"]["secret"]["secretName"] == PG
    assert volumes["password"]["secret"]["items"] == [
        {"key": "postgres-password", "path": "password"}
    ]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["password"] == "/run/secrets/postgresql"
    # PGDATA is a subdirectory of the volume, whose root may hold lost+found
    assert env["PGDATA"]["value"].startswith(mounts["data"] + "/")
    ready = ["pg_isready", "--host", "127.0.0.1", "--port", "5432"]
    ready += ["--username", "flask_celery", "--dbname", "flask_celery"]
    for kind in ("startup", "liveness", "readiness"):
        assert c[f"{kind}Probe"]["exec"]["command"] == ready, kind


def test_postgresql_runs_as_the_images_postgres_user_on_a_read_only_root(render):
    docs = render({})
    pod = pod_of(docs, "StatefulSet", PG)
    assert {pod["securityContext"][k] for k in ("runAsUser", "runAsGroup", "fsGroup")} == {999}
    c = container(one(docs, "StatefulSet", PG))
    sc = c["securityContext"]
    assert (
        sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    )
    assert sc["capabilities"] == {"drop": ["ALL"]}
    writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/postgresql/data", "/var/run/postgresql", "/tmp"}
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    assert {
        m["name"] for m in c["volumeMounts"] if m["mountPath"] != "/var/lib/postgresql/data"
    } - {"password"} <= empty
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert pod["automountServiceAccountToken"] is False


def test_postgresql_objects_are_labelled_and_selected_as_its_component(render):
    docs = render({})
    objects = [d for d in docs if d["metadata"]["name"].startswith(PG)]
    kinds = sorted(d["kind"] for d in objects)
    assert kinds == ["Secret", "Service", "Service", "StatefulSet"]
    for d in objects:
        assert d["metadata"]["labels"]["app.kubernetes.io/component"] == "postgresql"
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "flask-celery"
    sts = one(docs, "StatefulSet", PG)
    selector = sts["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "postgresql"
    assert one(docs, "Service", PG)["spec"]["selector"] == selector
    assert (
        sts["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"]["app.kubernetes.io/component"]
        == "postgresql"
    )


def test_postgresql_options_size_the_claim_or_use_an_emptydir(render):
    sts = one(
        render({"postgresql": {"persistence": {"size": "2Gi", "storageClass": "fast"}}}),
        "StatefulSet",
        PG,
    )
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert (
        claim["storageClassName"] == "fast" and claim["resources"]["requests"]["storage"] == "2Gi"
    )
    sts = one(render({"postgresql": {"persistence": {"enabled": False}}}), "StatefulSet", PG)
    assert "volumeClaimTemplates" not in sts["spec"]
    assert {"name": "data", "emptyDir": {}} in sts["spec"]["template"]["spec"]["volumes"]


def test_an_existing_postgresql_secret_replaces_the_charts(render):
    docs = render({"postgresql": {"auth": {"existingSecret": "pg"}}})
    assert not [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == PG]
    assert database_ref(docs, "web")["valueFrom"]["secretKeyRef"] == {
        "name": "pg",
        "key": "database-url",
    }
    volumes = pod_of(docs, "StatefulSet", PG)["volumes"]
    assert {"name": "pg", "key": "postgres-password"} == {
        "name": volumes[0]["secret"]["secretName"],
        "key": volumes[0]["secret"]["items"][0]["key"],
    }


# -- an external database -------------------------------------------------------------------------


def test_an_existing_database_secret_wins_over_the_bundled_postgresql(render):
    docs = render(EXTERNAL)  # postgresql.enabled keeps its default, true
    assert not [d for d in docs if d["metadata"]["name"].startswith(PG)]
    for component in (*MIGRATING, "flower"):
        assert database_ref(docs, component)["valueFrom"]["secretKeyRef"] == {
            "name": "db",
            "key": "url",
        }


# -- migrations -----------------------------------------------------------------------------------


def test_with_the_bundled_postgresql_pods_migrate_in_an_init_container(render):
    docs = render({})
    assert not by_kind(docs, "Job"), "a pre-install hook would run before PostgreSQL exists"
    for component in MIGRATING:
        pod = pod_of(docs, "Deployment", NAME.format(component))
        (init,) = pod["initContainers"]
        assert init["name"] == "migrate" and init["command"] == MIGRATE
        assert init["volumeMounts"] == pod["containers"][0]["volumeMounts"]
        env = env_of(init)
        assert env["FLASK_SQLALCHEMY_DATABASE_URI"] == database_ref(docs, component)
        assert "FLASK_CELERY__BROKER_URL" not in env
    assert "initContainers" not in pod_of(docs, "Deployment", NAME.format("flower"))


def test_with_an_external_database_a_hook_job_migrates_before_install_and_upgrade(render):
    docs = render(EXTERNAL)
    job = one(docs, "Job", NAME.format("migrations"))
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    c = container(job)
    assert c["command"] == MIGRATE
    env = env_of(c)
    assert env["FLASK_SQLALCHEMY_DATABASE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "db"
    # Hooks run before the chart's own Secrets and ServiceAccount exist on first install.
    assert "FLASK_CELERY__BROKER_URL" not in env and "FLASK_SECRET_KEY" not in env
    sa = one(docs, "ServiceAccount", NAME.format("migrations"))
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert (
        sa["metadata"]["annotations"]["helm.sh/hook-weight"]
        < job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    for dep in by_kind(docs, "Deployment"):
        assert "initContainers" not in dep["spec"]["template"]["spec"], dep["metadata"]["name"]


def test_migrations_disabled_runs_neither_hook_nor_init_containers(render):
    for values in ({}, EXTERNAL):
        docs = render({**values, "migrations": {"enabled": False}})
        assert not by_kind(docs, "Job")
        for dep in by_kind(docs, "Deployment"):
            assert "initContainers" not in dep["spec"]["template"]["spec"]


# -- network policies -----------------------------------------------------------------------------


def test_network_policies_open_the_bundled_postgresql_to_web_workers_and_beat_only(render):
    docs = render({"networkPolicy": {"enabled": True}})
    policy = one(docs, "NetworkPolicy", PG)
    (ingress,) = policy["spec"]["ingress"]
    assert {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in ingress["from"]
    } == {
        "web",
        "worker",
        "beat",
    }
    assert ingress["ports"] == [{"port": 5432, "protocol": "TCP"}]
    assert policy["spec"]["egress"] == []
    for component in ("web", "worker", "beat"):
        egress = one(docs, "NetworkPolicy", NAME.format(component))["spec"]["egress"]
        assert to_postgresql(docs) in egress, component
    assert (
        to_postgresql(docs)
        not in one(docs, "NetworkPolicy", NAME.format("flower"))["spec"]["egress"]
    )
    assert not [
        p for p in by_kind(docs, "NetworkPolicy") if "ipBlock" in repr(p) and "5432" in repr(p)
    ]


def test_network_policies_reach_an_external_database_and_no_bundled_one(render):
    docs = render(
        {**EXTERNAL, "networkPolicy": {"enabled": True, "database": {"cidrs": ["10.20.0.0/16"]}}}
    )
    assert not [p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == PG]
    external = {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    }
    for component in ("web", "worker", "migrations"):
        assert external in one(docs, "NetworkPolicy", NAME.format(component))["spec"]["egress"]
    beat = one(docs, "NetworkPolicy", NAME.format("beat"))["spec"]["egress"]
    assert external not in beat and "postgresql" not in repr(beat)
