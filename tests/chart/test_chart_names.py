"""Object names fit Kubernetes' limits and stay unique for every release name helm accepts (1 to
53 characters) and for nameOverride / fullnameOverride: StatefulSets within 52 characters (their
pods' controller-revision-hash label adds 11), Services DNS-1035 labels, everything else DNS-1123
labels within 63, label values within 63. A cut name keeps its component whole and cuts the
release prefix; what cannot be named is refused at render, naming the limit.

The release names are rendered in one module-scoped batch, with one helm: the names come from
the chart's templates alone, identical under every helm.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from tests.support.chart import HelmRenderError, process_helm, render, render_releases

#: Release name lengths: the short ones and each length where a limit used to be crossed.
LENGTHS = (1, 8, 17, 28, 29, 30, 31, 36, 41, 42, 48, 49, 52, 53)
#: Group names of the longest allowed length (20), differing only in their last character.
GROUPS = [
    {"name": "worker-pool-number-1", "queues": ["default", "email"]},
    {"name": "worker-pool-number-2", "queues": ["pdf", "exports"]},
    {"name": "worker-pool-number-3", "queues": ["webhooks"]},
]
COMMON = {
    "workers": {"groups": GROUPS},
    "networkPolicy": {
        "enabled": True,
        "internet": {"groups": ["worker-pool-number-3"]},
    },
    "metrics": {
        "enabled": True,
        "serviceMonitor": {"enabled": True},
        "dashboards": {"enabled": True},
        # Cut names may lose the chart name that the default jobRegex looks for.
        "prometheusRule": {"enabled": True, "jobRegex": ".*"},
    },
    "storage": {"persistence": {"enabled": True}},
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    # Bundled PostgreSQL and Redis StatefulSets, KEDA ScaledObjects, web HPA and Ingress.
    "bundled": {
        **COMMON,
        "web": {
            "autoscaling": {"enabled": True},
            "ingress": {"enabled": True},
        },
    },
    # An external database (the migration hook Job), worker HPAs instead of KEDA.
    "external": {
        **COMMON,
        "database": {"existingSecret": "db"},
        "keda": {"enabled": False},
        "workers": {"groups": GROUPS, "defaults": {"autoscaling": {"enabled": True}}},
    },
}

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LIMITS = {"StatefulSet": 52}


def release_name(length: int) -> str:
    """A valid release name of this length, starting with a letter."""
    name = ("relabcdefg-" * 6)[:length]
    return name[:-1] + "z" if name.endswith("-") else name


RELEASES = [release_name(n) for n in LENGTHS] + [
    # Names that already contain the chart name are used as the prefix as they are.
    "flask-celery",
    "prod-flask-celery-" + "x" * 35,
]
OVERRIDES: dict[str, dict[str, Any]] = {
    "name-override": {"nameOverride": "n" * 63},
    "fullname-override-63": {"fullnameOverride": "f" * 63},
    "fullname-override-long": {"fullnameOverride": "g" * 120},
}


#: The external value set under fewer names: its extra objects (the migration hook Job, worker
#: HPAs) are named by the same helper.
EXTERNAL_RELEASES = [release_name(n) for n in (1, 29, 42, 49, 53)]
OVERRIDE_RELEASE = release_name(41)


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], list[dict[str, Any]] | HelmRenderError]:
    """(value set, release name or override) -> documents."""
    helm = process_helm()
    out: dict[tuple[str, str], list[dict[str, Any]] | HelmRenderError] = {}
    for set_name, releases in (("bundled", RELEASES), ("external", EXTERNAL_RELEASES)):
        batch = render_releases(helm, VALUE_SETS[set_name], releases)
        out.update({(set_name, release): docs for release, docs in batch.items()})
    for override, extra in OVERRIDES.items():
        batch = render_releases(helm, {**VALUE_SETS["bundled"], **extra}, [OVERRIDE_RELEASE])
        out[("bundled", override)] = batch[OVERRIDE_RELEASE]
    return out


def label_maps(doc: dict[str, Any]) -> list[dict[str, str]]:
    """Every label map of an object: its own, its pod template's, its selectors' and claims'."""
    spec = doc.get("spec", {})
    maps = [doc["metadata"].get("labels", {})]
    maps.append(spec.get("template", {}).get("metadata", {}).get("labels", {}))
    selector = spec.get("selector", {})
    maps.append(selector.get("matchLabels", selector) if doc["kind"] != "Service" else selector)
    maps.append(spec.get("podSelector", {}).get("matchLabels", {}))
    maps += [c["metadata"].get("labels", {}) for c in spec.get("volumeClaimTemplates", [])]
    return [m for m in maps if isinstance(m, dict)]


def name_problems(docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    names = Counter((d["kind"], d["metadata"]["name"]) for d in docs)
    problems += [f"{kind}/{name} rendered {n} times" for (kind, name), n in names.items() if n > 1]
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        limit = LIMITS.get(kind, 63)
        pattern = DNS1035_LABEL if kind == "Service" else DNS1123_LABEL
        if len(name) > limit or not pattern.match(name):
            problems.append(f"{kind}/{name}: over {limit} characters or not a {pattern.pattern}")
        for labels in label_maps(d):
            for key, value in labels.items():
                if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
                    problems.append(f"{kind}/{name}: label {key}={value!r} is no label value")
    return problems


def references(docs: list[dict[str, Any]]) -> list[str]:
    """Names that point at other objects and must find them: a StatefulSet's Service, the
    target of a ScaledObject or HPA (the same worker group), a TriggerAuthentication's Secret."""
    have = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    problems = []
    for d in docs:
        spec, name = d.get("spec", {}), d["metadata"]["name"]
        if d["kind"] == "StatefulSet" and ("Service", spec["serviceName"]) not in have:
            problems.append(f"StatefulSet/{name}: no Service {spec['serviceName']}")
        if d["kind"] in ("ScaledObject", "HorizontalPodAutoscaler"):
            target = have.get(
                (spec["scaleTargetRef"].get("kind", "Deployment"), spec["scaleTargetRef"]["name"])
            )
            group = "flask-celery.io/worker-group"
            if target is None or target["metadata"]["labels"].get(group) != d["metadata"][
                "labels"
            ].get(group):
                problems.append(f"{d['kind']}/{name}: targets another group or nothing")
        if d["kind"] == "TriggerAuthentication":
            for ref in spec.get("secretTargetRef", []):
                if ("Secret", ref["name"]) not in have:
                    problems.append(f"TriggerAuthentication/{name}: no Secret {ref['name']}")
    return problems


def suffixes(docs: list[dict[str, Any]], prefix: str) -> Counter[tuple[str, str]]:
    return Counter((d["kind"], d["metadata"]["name"].removeprefix(prefix)) for d in docs)


@pytest.mark.parametrize("set_name", sorted(VALUE_SETS))
def test_every_release_name_gives_valid_unique_names(rendered, set_name) -> None:
    failures = {}
    for (s, release), docs in rendered.items():
        if s != set_name:
            continue
        assert not isinstance(docs, HelmRenderError), f"{release!r} refused: {docs}"
        problems = name_problems(docs) + references(docs)
        if problems:
            failures[release] = problems
    assert failures == {}


@pytest.mark.parametrize("set_name", sorted(VALUE_SETS))
def test_cut_names_keep_their_component(rendered, set_name) -> None:
    """Every object of the shortest release exists under every release, its component part
    (what follows the release prefix) whole at the end of its name."""
    reference = rendered[(set_name, "r")]
    assert not isinstance(reference, HelmRenderError)
    parts = suffixes(reference, "r-flask-celery")
    lost = {}
    for (s, release), docs in rendered.items():
        if s != set_name or isinstance(docs, HelmRenderError) or release in OVERRIDES:
            continue
        names = [(d["kind"], d["metadata"]["name"]) for d in docs]
        missing = [
            f"{kind} ...{part}"
            for (kind, part) in parts
            if part and sum(1 for k, n in names if k == kind and n.endswith(part)) != 1
        ]
        if missing:
            lost[release] = missing
    assert lost == {}
    # The long-release objects are distinct from the short ones' names, but as many per kind.
    longest = rendered[(set_name, RELEASES[LENGTHS.index(53)])]
    assert not isinstance(longest, HelmRenderError)
    assert Counter(d["kind"] for d in longest) == Counter(d["kind"] for d in reference)


def test_names_that_fit_are_not_changed() -> None:
    docs = render(process_helm(), {}, release="rel")
    names = {d["metadata"]["name"] for d in docs}
    assert {
        "rel-flask-celery-postgresql",
        "rel-flask-celery-redis-headless",
        "rel-flask-celery-worker-general",
    } <= names


def test_cut_names_differ_by_release() -> None:
    """Two long releases that share their first characters get different names."""
    helm = process_helm()
    a, b = ("x" * 50 + "-a", "x" * 50 + "-b")
    out = render_releases(helm, {}, [a, b])
    names = [
        {d["metadata"]["name"] for d in docs}
        for docs in out.values()
        if not isinstance(docs, HelmRenderError)
    ]
    assert len(names) == 2 and not names[0] & names[1]


@pytest.mark.parametrize(
    ("release", "values", "message"),
    [
        ("1st-release", {}, "Service names must be DNS-1035 labels"),
        ("rel.example", {}, "Service names must be DNS-1035 labels"),
        ("rel", {"fullnameOverride": "Prod"}, "Service names must be DNS-1035 labels"),
        ("rel", {"nameOverride": "Flask_Celery"}, 'nameOverride "Flask_Celery"'),
    ],
    ids=["leading-digit", "dot", "uppercase-fullname", "bad-name-override"],
)
def test_names_kubernetes_refuses_are_refused_at_render(release, values, message) -> None:
    with pytest.raises(HelmRenderError) as info:
        render(process_helm(), values, release=release)
    assert message in str(info.value)


def test_a_component_name_that_cannot_fit_is_refused_naming_the_limit() -> None:
    """A group name the schema would refuse (over 20 characters), rendered without the schema:
    the chart's own validation names the limit."""
    group = "g" * 60
    values = {"workers": {"groups": [{"name": group, "queues": ["default"]}]}}
    with pytest.raises(HelmRenderError) as info:
        render(process_helm(), values, extra_args=("--skip-schema-validation",))
    assert "workers.groups[0].name" in str(info.value)
    assert "cannot fit the 63-character limit" in str(info.value)
