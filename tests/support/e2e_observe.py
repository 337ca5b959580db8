"""What the cluster tests conclude from what they read off the cluster, as pure functions.

tests/e2e/test_cluster.py reads pods, Deployments, the task ledger and the result backend
through the kubernetes client; these functions decide what that means (did a data store pod
change, did a tick run twice, did only one worker group scale), so each verdict is tested
offline in tests/unit/test_e2e_observe.py, where no cluster exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: The result a run of a tick returns when the ledger already holds its key (its effect ran).
DUPLICATE = "duplicate"


def skip_reason(context: str, image: str, helm: str | None, client: bool) -> str | None:
    """Why the cluster tests cannot run here, or None when they can."""
    if not context or not image:
        return (
            "opt-in: set FLASK_CELERY_E2E_CONTEXT to a kube context (k8s-dev/bootstrap.sh makes "
            "kind-flask-celery) and FLASK_CELERY_E2E_IMAGE to an image it can pull"
        )
    if not client:
        return "the kubernetes Python client is missing: run `make venv`"
    if helm is None:
        return "FLASK_CELERY_E2E_CONTEXT is set but helm is missing: run `make helm`"
    return None


def image_values(image: str) -> list[str]:
    """helm --set flags for image.repository and image.tag or image.digest of a reference."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return ["--set", f"image.repository={repository}", "--set", f"image.digest={digest}"]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = image.rsplit(":", 1)
        return ["--set", f"image.repository={repository}", "--set", f"image.tag={tag}"]
    return ["--set", f"image.repository={image}"]


def rolled_out(workload: Mapping[str, Any]) -> bool:
    """Whether a Deployment or StatefulSet (as the API serialises it) has finished rolling out:
    its controller saw the latest spec, and every wanted replica is updated and available, with
    no old one left."""
    meta, spec, status = workload["metadata"], workload["spec"], workload.get("status") or {}
    if (status.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return False
    wanted = spec.get("replicas")
    wanted = 1 if wanted is None else int(wanted)
    if workload.get("kind") == "StatefulSet":
        return (
            status.get("updateRevision") == status.get("currentRevision")
            and (status.get("updatedReplicas") or 0) == wanted
            and (status.get("readyReplicas") or 0) == wanted
        )
    return (
        (status.get("updatedReplicas") or 0) == wanted
        and (status.get("replicas") or 0) == wanted
        and (status.get("availableReplicas") or 0) == wanted
    )


@dataclass(frozen=True)
class PodState:
    """What shows that a pod was replaced or restarted: its uid and its containers' restarts."""

    uid: str
    restarts: int


def pod_state(pod: Mapping[str, Any]) -> PodState:
    """The PodState of a pod as the API serialises it."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return PodState(pod["metadata"]["uid"], sum(int(s.get("restartCount", 0)) for s in statuses))


def pod_changes(before: Mapping[str, PodState], after: Mapping[str, PodState]) -> list[str]:
    """Every pod, by name, that is gone, new, replaced (another uid) or restarted (more
    container restarts) between two snapshots; empty when none changed."""
    changes = [f"{name}: gone" for name in sorted(before.keys() - after.keys())]
    changes += [f"{name}: new" for name in sorted(after.keys() - before.keys())]
    for name in sorted(before.keys() & after.keys()):
        old, new = before[name], after[name]
        if old.uid != new.uid:
            changes.append(f"{name}: replaced (uid {old.uid} -> {new.uid})")
        elif new.restarts != old.restarts:
            changes.append(f"{name}: restarted ({old.restarts} -> {new.restarts} restarts)")
    return changes


def ledger_due_times(keys: Iterable[str], entry: str) -> list[datetime]:
    """The due times of `entry`'s runs in the task ledger (keys `beat:<entry>:<due time>`),
    oldest first; other keys are ignored."""
    prefix = f"beat:{entry}:"
    return sorted(datetime.fromisoformat(k[len(prefix) :]) for k in keys if k.startswith(prefix))


def ticks_run_twice(due_times: Sequence[datetime], interval: float) -> list[tuple[str, str]]:
    """Consecutive effects of one entry closer than half its interval: one tick whose effect
    ran under two keys (its due time computed twice, differently). Each pair as ISO strings."""
    ordered = sorted(due_times)
    return [
        (a.isoformat(), b.isoformat())
        for a, b in zip(ordered, ordered[1:], strict=False)
        if (b - a).total_seconds() < interval / 2
    ]


def tick_runs(metas: Iterable[Mapping[str, Any]], entry: str) -> dict[str, list[Any]]:
    """The results of every finished run of `entry`, by the due time it was sent for, from the
    result backend's extended task metas (name, kwargs and result)."""
    runs: dict[str, list[Any]] = {}
    for meta in metas:
        kwargs = meta.get("kwargs") or {}
        if meta.get("status") != "SUCCESS" or kwargs.get("schedule_entry") != entry:
            continue
        runs.setdefault(str(kwargs.get("scheduled_at")), []).append(meta.get("result"))
    return runs


def effective_more_than_once(runs: Mapping[str, Sequence[Any]]) -> dict[str, int]:
    """Due times whose tick ran with effect more than once (a repeated send is fine when every
    run after the first returned the ledger's duplicate result), with how many times."""
    twice = {}
    for due, results in runs.items():
        effective = [
            r for r in results if not (isinstance(r, dict) and r.get("status") == DUPLICATE)
        ]
        if len(effective) > 1:
            twice[due] = len(effective)
    return twice


def replicas_moved(
    history: Sequence[Mapping[str, int]], keep: Iterable[str]
) -> dict[str, list[int]]:
    """The workloads named in `keep` whose replica count changed over the snapshots, with the
    counts seen in order (repeats folded); a workload missing from a snapshot counts as moved."""
    moved = {}
    for name in keep:
        seen: list[int] = []
        for snapshot in history:
            count = snapshot.get(name, -1)
            if not seen or seen[-1] != count:
                seen.append(count)
        if len(seen) > 1:
            moved[name] = seen
    return moved


def rose_and_fell(history: Sequence[Mapping[str, int]], name: str) -> bool:
    """Whether `name`'s replica count rose above its first value and came back to it at last."""
    counts = [snapshot[name] for snapshot in history if name in snapshot]
    return len(counts) > 2 and max(counts) > counts[0] == counts[-1]
