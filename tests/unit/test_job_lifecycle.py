"""What a job's row keeps of a task's outcome: a small value whole, a redacted, bounded error."""

from __future__ import annotations

from service.jobs.lifecycle import MAX_ERROR, MAX_VALUE_BYTES, describe, summarize


def test_a_small_json_value_is_kept_whole() -> None:
    assert summarize({"export_id": 3, "rows": 10}) == {"value": {"export_id": 3, "rows": 10}}
    assert summarize(None) == {"value": None}


def test_a_large_or_non_json_value_is_kept_as_its_type_and_size() -> None:
    big = "x" * MAX_VALUE_BYTES
    assert summarize(big) == {"type": "str", "bytes": MAX_VALUE_BYTES + 2}
    assert summarize({1, 2}) == {"type": "set", "bytes": None}
    assert summarize(float("nan")) == {"type": "float", "bytes": None}


def test_an_error_is_redacted_and_truncated() -> None:
    error = describe(ConnectionError("redis://:hunter2@cache:6379/0 refused " + "y" * 5000))
    assert error.startswith("ConnectionError: redis://")
    assert "hunter2" not in error
    assert len(error) == MAX_ERROR
