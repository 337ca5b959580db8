"""values.schema.json is strict and complete; values.yaml and the README agree with it."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.chart import CHART
from tests.support.chart_docs import readme_with_table

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
#: Objects whose keys are free (Kubernetes maps and pass-through types), by schema path.
OPEN_OBJECTS = {"affinity"}


def walk(node: dict[str, Any], path: str = ""):
    """Yield (path, sub-schema) for every property and array item in the schema."""
    for key, sub in node.get("properties", {}).items():
        p = f"{path}.{key}" if path else key
        yield p, sub
        yield from walk(sub, p)
    if isinstance(node.get("items"), dict):
        yield f"{path}[]", node["items"]
        yield from walk(node["items"], f"{path}[]")


def test_values_yaml_validates_against_the_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)


def test_every_property_has_a_description_and_a_type():
    for path, sub in walk(SCHEMA):
        if path.endswith("[]") and "properties" not in sub:
            continue
        assert sub.get("description"), f"{path} has no description"
        assert sub.get("type"), f"{path} has no type"


def test_closed_objects_reject_unknown_keys():
    assert SCHEMA["additionalProperties"] is False
    for path, sub in walk(SCHEMA):
        if sub.get("type") != "object" or path in OPEN_OBJECTS or path.endswith("extraEnv[]"):
            continue  # extraEnv items are Kubernetes EnvVars, passed through as they are
        if "$ref" in sub:
            continue  # a Kubernetes type, closed by its definition (tests.support.k8s_definitions)
        extra = sub.get("additionalProperties")
        if "properties" in sub:
            assert extra is False, f"{path} accepts unknown keys"
        elif path.endswith("[]"):
            continue  # Kubernetes objects (EnvVar, peers, tolerations) passed through as they are
        else:
            assert extra == {"type": "string"}, f"{path} is an open object"


def test_unknown_key_is_rejected_by_the_schema_validator():
    bad = {**VALUES, "web": {**VALUES["web"], "replica": 3}}
    with pytest.raises(jsonschema.ValidationError, match="'replica' was unexpected"):
        jsonschema.validate(bad, SCHEMA)


def test_every_param_comment_names_a_schema_property_with_the_same_description():
    params = dict(re.findall(r"^## @param (\S+) (.*)$", VALUES_TEXT, flags=re.M))
    documented = {p: s for p, s in walk(SCHEMA) if "[]" not in p}
    for path, description in params.items():
        assert path in documented, f"@param {path} is not in the schema"
        assert documented[path]["description"] == description, path

    def covered(path: str) -> bool:
        parts = path.split(".")
        return any(".".join(parts[:i]) in params for i in range(1, len(parts) + 1))

    sections = {
        p for p, s in documented.items() if s.get("type") == "object" and s.get("properties")
    }
    undocumented = sorted(p for p in documented if p not in sections and not covered(p))
    assert not undocumented, f"values without @param: {undocumented}"


def test_readme_values_table_matches_the_schema():
    readme = (CHART / "README.md").read_text()
    assert readme == readme_with_table(readme), "run `python -m tests.support.chart_docs --write`"


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "flask-celery"
    assert chart["version"] == "0.1.0" and chart["appVersion"] == "0.1.0"
    assert chart["kubeVersion"] == ">=1.27.0-0"
