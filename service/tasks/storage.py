"""Files the tasks write under STORAGE_DIR, each replaced whole or not at all.

A reader (the download endpoints) sees the old file or the whole new one, never half of it;
a task that fails or is killed midway leaves no partial file in place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from flask import current_app


def storage_path(*parts: str) -> Path:
    """A path under STORAGE_DIR; its folder is created on first use."""
    path = Path(current_app.config["STORAGE_DIR"], *parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_file(target: Path, mode: str = "wb", **open_args: Any) -> Iterator[IO[Any]]:
    """Write `target` through a temporary file beside it, moved into place once complete."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(target: Path, data: bytes) -> None:
    """Write `data` to `target` in one piece."""
    with atomic_file(target) as f:
        f.write(data)
