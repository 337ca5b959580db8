"""Loading the row a task works on, by the id it was given."""

from __future__ import annotations

from typing import TypeVar

from ..data.db import db
from ..reliability.retry import PermanentError

M = TypeVar("M")


def load(model: type[M], row_id: int) -> M:
    """Return the row, or fail permanently: a missing row will not appear on retry."""
    row = db.session.get(model, row_id)
    if row is None:
        raise PermanentError(f"{model.__name__} {row_id} does not exist")
    return row
