"""Beat's scheduler: the default setting names redbeat's scheduler that records its ticks."""

from __future__ import annotations

from celery.utils.imports import symbol_by_name
from redbeat import RedBeatScheduler

from service.beat import TickRecordingScheduler
from service.config import DEFAULTS


def test_the_default_scheduler_is_redbeat_recording_its_ticks() -> None:
    scheduler = symbol_by_name(DEFAULTS["CELERY"]["beat_scheduler"])
    assert scheduler is TickRecordingScheduler
    assert issubclass(scheduler, RedBeatScheduler)
