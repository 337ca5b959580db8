"""Secrets out of text: what logs, job errors, dead letters and `make run` may show.

`redact(text)` replaces with `***` the password of a URL of any scheme, the value of a query
parameter or of a ``name=value`` / ``"name": "value"`` pair whose name says it is a secret
(token, key, password, signature...), the credentials of an Authorization header or a Bearer
token, a JSON Web Token, and our API keys (``fck_...``). What tells an operator which server was
meant stays: the scheme, the user name, the host, the port and the path.

It runs on every log record, so most text costs a few substring tests (`_TRIGGERS`), and only
text that may carry a secret goes through the one precompiled regex. It lives below every layer
(it imports nothing of the service), so that the dead-letter store, the job state, the API,
logging and the development stack all share the same rules.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

#: Names whose value is a secret wherever they appear as ``name=value`` or ``name: value``.
_SECRET_NAMES = (
    r"password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|credentials?"
)
#: Names that are secrets only as a URL's query parameter (``?key=``, ``&sig=``): in prose,
#: "key" or "code" mean other things.
_QUERY_NAMES = _SECRET_NAMES + r"|key|sig|signature|auth|code|session|jwt"

_PATTERN = re.compile(
    rf"""
    # scheme://user:password@host -> scheme://user:***@host. The password runs to the last @
    # before the path (an unencoded @ in it is hidden too); or else, since SQLAlchemy takes an
    # unencoded / in a password, to the first @ after it, unless what precedes the / is a port.
    (?P<url>://[^\s:@/?#'"<>]*:)(?:[^\s/'"<>]*(?=@)|(?![0-9]*/)[^\s'"<>@]*(?=@))
    # ?token=... &api_key=... ;X-Amz-Signature=...
    | (?<=[?&;])(?P<query>(?:[\w.-]*[_.-])?(?:{_QUERY_NAMES})=)[^&#\s'"<>]*
    # Authorization: Bearer abc; 'authorization': 'Basic abc'
    | (?P<header>(?<![\w-])(?:proxy-)?authorization["']?\s*[:=]\s*["']?
        (?:(?:bearer|basic|digest|token|negotiate)\s+)?)[^\s"',;}}]+
    | (?P<bearer>(?<!\w)bearer\s+)[A-Za-z0-9._~+/=-]+
    # password=abc, "client_secret": "a b c", X-Api-Key: abc (a prefix joined by _ - or .)
    | (?P<pair>(?<![^\W_])(?:{_SECRET_NAMES})["']?\s*[:=]\s*)
        (?:"[^"]*"|'[^']*'|[^\s"'&;,)}}\]]+)
    # our API keys, and JSON Web Tokens
    | (?P<apikey>(?<!\w)fck_)[A-Za-z0-9_-]+
    | (?<!\w)(?-i:eyJ)[\w-]+\.(?-i:eyJ)[\w-]+\.[\w-]*
    """,
    re.IGNORECASE | re.VERBOSE,
)

#: Every match of `_PATTERN` contains one of these (in lower case): text without any of them is
#: returned as it is, at the cost of a few substring tests instead of the regex.
_TRIGGERS = (
    "://", "?", "&", ";", "authorization", "bearer",
    "pass", "pwd", "secret", "token", "key", "credential", "fck_", "eyj",
)  # fmt: skip


def _mask(match: re.Match[str]) -> str:
    kept = match.group(match.lastgroup) if match.lastgroup else ""
    quote = match.group(0)[len(kept) : len(kept) + 1]
    if match.lastgroup == "pair" and quote in ("'", '"'):
        return f"{kept}{quote}{MASK}{quote}"
    return f"{kept}{MASK}"


def redact(text: str) -> str:
    """`text` with every secret it carries replaced by `***`."""
    lowered = text.lower()
    if not any(trigger in lowered for trigger in _TRIGGERS):
        return text
    return _PATTERN.sub(_mask, text)


_SECRET_KEY = re.compile(rf"(?:[\w.-]*[_.-])?(?:{_SECRET_NAMES})", re.IGNORECASE)


def redact_json(value: Any) -> Any:
    """`value` (dicts, lists, strings, numbers) with every string redacted, and the value of
    every key named like a secret (``password``, ``api_key``...) replaced by `***`."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            key: MASK if _SECRET_KEY.fullmatch(str(key)) else redact_json(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_json(item) for item in value]
    return value
