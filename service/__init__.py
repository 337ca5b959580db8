"""flask-celery: a Flask app whose slow work runs as Celery tasks on Redis.

`create_app` (in `service.factory`) is the only entry point; nothing runs at import time. The
package itself imports nothing heavy, so that small entry points such as the container probe
(`python -m service.worker.probes`) start in milliseconds; `create_app` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .factory import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .factory import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
