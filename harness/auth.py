"""The API keys the test stacks accept, and the headers that present them.

Every stack a test starts (harness/stack.py's environment, the locally run chart, the
image) accepts these keys through `FLASK_API_KEYS`, which holds only their SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Every scope: the key most tests use.
API_KEY = "fck_test-all-scopes-0123456789abcdefghijklmnopqrstuvwx"
#: Only `enqueue` and `read`: a client of the API, not its operator.
CLIENT_KEY = "fck_test-client-0123456789abcdefghijklmnopqrstuvwxyzAB"
#: Another client with the same scopes, to show one caller cannot see another's jobs.
OTHER_CLIENT_KEY = "fck_test-other-client-0123456789abcdefghijklmnopqrstu"

KEYS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("tests-all", API_KEY, ("enqueue", "read", "operate")),
    ("tests-client", CLIENT_KEY, ("enqueue", "read")),
    ("tests-other-client", OTHER_CLIENT_KEY, ("enqueue", "read")),
)


def digest(token: str) -> str:
    """The SHA-256 of a token, as `FLASK_API_KEYS` holds it."""
    return hashlib.sha256(token.encode()).hexdigest()


def api_keys_setting() -> list[dict[str, Any]]:
    """The value of the `API_KEYS` setting that accepts every key above."""
    return [{"name": n, "scopes": list(s), "sha256": digest(t)} for n, t, s in KEYS]


def api_keys_env() -> str:
    """`FLASK_API_KEYS` for a process that should accept every key above."""
    return json.dumps(api_keys_setting())


def bearer(token: str = API_KEY) -> dict[str, str]:
    """The Authorization header that presents `token`."""
    return {"Authorization": f"Bearer {token}"}


def authorized(client: Any, token: str = API_KEY) -> Any:
    """`client` (a Flask test client) with `token` sent on every request; returned for chaining."""
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client
