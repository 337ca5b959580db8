"""Small pieces every task module uses: loading a row by id, writing a file atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TypeVar

from flask import current_app

from ..db import db
from ..reliability.retry import PermanentError

M = TypeVar("M")


def load(model: type[M], row_id: int) -> M:
    """Return the row, or fail permanently: a missing row will not appear on retry."""
    row = db.session.get(model, row_id)
    if row is None:
        raise PermanentError(f"{model.__name__} {row_id} does not exist")
    return row


def storage_path(*parts: str) -> Path:
    """A path under STORAGE_DIR; its folder is created on first use."""
    path = Path(current_app.config["STORAGE_DIR"], *parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(target: Path, data: bytes) -> None:
    """Write `data` to `target` so readers see the old file or the whole new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
