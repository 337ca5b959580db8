"""The Kubernetes definitions that values.schema.json `$ref`s, vendored into its `definitions`.

Values that are passed through to a pod spec as they are (tolerations, affinity, extra
containers and volumes, egress rules, ...) are checked by helm against the Kubernetes types
themselves, as Airflow's chart does; helm resolves no URL offline, so the definitions live in the
schema. They are taken, with every definition they refer to, from the strict schema of the
chart's minimum Kubernetes version that kubernetes-validate ships. Run
`python -m tests.support.k8s_definitions --write` after `$ref`ing a new type; the chart tests
fail while the schema's definitions differ from what this module generates.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate

from tests.support.chart import CHART, KUBE_VERSION

SCHEMA = CHART / "values.schema.json"
REF = re.compile(r'"#/definitions/([\w.\-]+)"')


def _source() -> dict[str, Any]:
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = base / f"v{KUBE_VERSION}.0-local-strict" / "_definitions.json"
    text = path.read_text().replace('"#/$defs/', '"#/definitions/')
    defs: dict[str, Any] = json.loads(text)["$defs"]
    return defs


def definitions(schema: dict[str, Any]) -> dict[str, Any]:
    """The definitions the schema's own properties refer to, and theirs, sorted by name."""
    source = _source()
    wanted = set(REF.findall(json.dumps(schema["properties"])))
    seen: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name not in seen:
            seen.add(name)
            wanted |= set(REF.findall(json.dumps(source[name])))
    return {name: source[name] for name in sorted(seen)}


def write() -> None:
    schema = json.loads(SCHEMA.read_text())
    schema["definitions"] = definitions(schema)
    SCHEMA.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.support.k8s_definitions --write")
    write()
