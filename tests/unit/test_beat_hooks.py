"""Beat's after-tick hooks live on their Celery app: one relay per app, run by its own beat."""

from __future__ import annotations

from typing import Any

from service import create_app
from service.beat import AFTER_TICK, after_tick, run_after_tick
from service.jobs.outbox import Relay


def test_each_app_carries_its_own_outbox_relay_and_nothing_else() -> None:
    first, second = (create_app().extensions["celery"] for _ in range(2))
    for app in (first, second):
        hooks = getattr(app, AFTER_TICK)
        assert [type(h) for h in hooks] == [Relay]
        assert hooks[0].celery_app is app
    assert getattr(first, AFTER_TICK)[0] is not getattr(second, AFTER_TICK)[0]


def test_a_tick_runs_only_its_apps_hooks_and_survives_a_failing_one() -> None:
    class App:
        pass

    ours, theirs, calls = App(), App(), []

    def broken(app: Any) -> None:
        raise RuntimeError("hook failed")

    after_tick(ours, broken)
    after_tick(ours, lambda app: calls.append(("ours", app)))
    after_tick(theirs, lambda app: calls.append(("theirs", app)))
    run_after_tick(ours)
    assert calls == [("ours", ours)]
