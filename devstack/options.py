"""The options of `python -m devstack`: each flag, the DEVSTACK_* variable that sets it instead,
and its default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

#: The webhook receiver checks signatures on this path with this secret (README's example).
DEMO_WEBHOOK_PATH, DEMO_WEBHOOK_SECRET = "/hooks/demo", "devstack-demo-secret"


def parse_args(
    argv: Sequence[str] | None = None, description: str | None = None
) -> argparse.Namespace:
    """Every option defaults to the environment variable DEVSTACK_<OPTION>, then to a value."""

    def env(name: str, default: str) -> str:
        return os.environ.get(f"DEVSTACK_{name.upper()}", default)

    p = argparse.ArgumentParser("python -m devstack", description=description)
    p.add_argument("--state-dir", type=Path, default=Path(env("state_dir", "var")))
    p.add_argument("--web-port", type=int, default=int(env("web_port", "8000")))
    p.add_argument("--flower-port", type=int, default=int(env("flower_port", "5555")))
    p.add_argument("--smtp-port", type=int, default=int(env("smtp_port", "8025")))
    p.add_argument("--webhook-port", type=int, default=int(env("webhook_port", "8090")))
    secret = env("webhook_secret", f"{DEMO_WEBHOOK_PATH}={DEMO_WEBHOOK_SECRET}")
    p.add_argument("--webhook-secret", action="append", default=[secret], metavar="PATH=SECRET")
    p.add_argument("--no-flower", action="store_true", default=bool(env("no_flower", "")))
    grace = float(env("grace", "30"))
    p.add_argument("--grace", type=float, default=grace, help="seconds tasks get to finish")
    p.add_argument("--start-timeout", type=float, default=float(env("start_timeout", "120")))
    return p.parse_args(argv)
