"""What KEDA would compute for a rendered ScaledObject: its metric and its desired replicas.

KEDA's `redis` (lists) scaler runs one Lua script per trigger, in the trigger's
`databaseIndex`: the key's TYPE picks the count, LLEN for a list (and for a missing key),
SCARD for a set, ZCARD for a sorted set, HLEN for a hash; any other type makes the script, and
so the scaler, fail (kedacore/keda, pkg/scalers/redis_scaler.go). With
`advanced.scalingModifiers` the trigger values, by trigger name, feed the formula, and the HPA
aims the composite metric at `target` as an AverageValue: desired = ceil(metric / target),
within minReplicaCount..maxReplicaCount, and 0 when the metric is not above `activationTarget`
and minReplicaCount is 0 (KEDA deactivates the group).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import redis

#: The scaler's script, restated: count the key by its type; other types raise an error.
LENGTH_SCRIPT = """
local counts = {list = 'LLEN', none = 'LLEN', set = 'SCARD', zset = 'ZCARD', hash = 'HLEN'}
local command = counts[redis.call('TYPE', KEYS[1]).ok]
if not command then
  return redis.error_reply('unsupported key type for ' .. KEYS[1])
end
return redis.call(command, KEYS[1])
"""
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def trigger_values(
    scaled_object: dict[str, Any], connect: Callable[[int], redis.Redis]
) -> dict[str, int]:
    """Each trigger's value by trigger name; `connect(db)` opens the Redis the triggers name."""
    values = {}
    for trigger in scaled_object["spec"]["triggers"]:
        assert trigger["type"] == "redis", trigger
        meta = trigger["metadata"]
        client = connect(int(meta.get("databaseIndex", "0")))
        values[trigger["name"]] = int(client.eval(LENGTH_SCRIPT, 1, meta["listName"]))
    return values


def evaluate(formula: str, values: dict[str, int]) -> float:
    """A sum of trigger names, the only formula shape the chart renders; anything else fails."""
    terms = [t.strip() for t in formula.split("+")]
    unknown = [t for t in terms if not NAME.match(t) or t not in values]
    assert not unknown, f"formula {formula!r}: not a sum of trigger names ({unknown})"
    return float(sum(values[t] for t in terms))


def metric(scaled_object: dict[str, Any], connect: Callable[[int], redis.Redis]) -> float:
    """The composite metric KEDA hands the HPA."""
    modifiers = scaled_object["spec"]["advanced"]["scalingModifiers"]
    return evaluate(modifiers["formula"], trigger_values(scaled_object, connect))


def desired_replicas(scaled_object: dict[str, Any], value: float) -> int:
    """Replicas for a metric value: AverageValue target, clamped, and 0 when inactive."""
    spec = scaled_object["spec"]
    modifiers = spec["advanced"]["scalingModifiers"]
    assert modifiers["metricType"] == "AverageValue", modifiers
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if value <= float(modifiers.get("activationTarget", "0")) and low == 0:
        return 0
    return min(high, max(low, 1, math.ceil(value / float(modifiers["target"]))))
