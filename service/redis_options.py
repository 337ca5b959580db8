"""How the service reaches Redis: credentials and TLS for every connection, built in one place.

The broker (kombu), the result store, beat's schedule and lock (celery-redbeat) and the clients
the service opens itself (in-flight sets and the worker registry, the dead-letter fallback, the
broker exporter, beat's liveness probe) all take their URL and TLS options from here.

Credentials. `REDIS_USERNAME` (a Redis 6 ACL user) and `REDIS_PASSWORD` are written into every
Redis URL that carries none, percent-encoded, so a password may hold `@:/#%`; a URL that carries
other credentials is refused, so the app and KEDA cannot drift apart silently.

TLS. A `rediss://` URL always verifies the server: certificate required, host name checked,
against `REDIS_CA_FILE` when set, else the system's CAs. kombu alone would connect to a
`rediss://` broker without verifying (it only logs a warning), so the broker, the result store
and beat get their options explicitly, and anything that would turn verification off (an
`ssl_*` option in a URL, `ssl_cert_reqs` other than required in a Celery setting) is refused.
`REDIS_CA_FILE` or `REDIS_REQUIRE_TLS` with a plain `redis://` URL is refused too: TLS would be
off without anyone having asked for it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import redis

from .budget import ConfigError

__all__ = ["RedisAccess", "client", "database_index", "is_redis", "verifying"]

#: Celery settings holding a Redis URL, each with the setting that carries its TLS options.
URL_SETTINGS = {
    "broker_url": "broker_use_ssl",
    "result_backend": "redis_backend_use_ssl",
    "redbeat_redis_url": "redbeat_redis_use_ssl",
}
#: Celery settings whose dicts reach redis-py as connection arguments.
OPTION_SETTINGS = (
    "broker_use_ssl",
    "redis_backend_use_ssl",
    "redbeat_redis_use_ssl",
    "broker_transport_options",
    "result_backend_transport_options",
    "redbeat_redis_options",
)
_REQUIRED = {ssl.CERT_REQUIRED, "CERT_REQUIRED", "required"}


def is_redis(url: Any) -> bool:
    """True for a redis:// or rediss:// URL."""
    return isinstance(url, str) and url.startswith(("redis://", "rediss://"))


def verifying(ca_file: str | None = None) -> dict[str, Any]:
    """redis-py's TLS options that verify the server: against `ca_file` alone when given."""
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
    if ca_file:
        options["ssl_ca_certs"] = ca_file
    return options


def database_index(url: str) -> int | None:
    """The database a redis:// URL selects (its path, 0 when empty), as kombu reads it; None for
    another kind of URL or a path that is no number."""
    if not is_redis(url):
        return None
    path = urlsplit(url).path.strip("/")
    try:
        return int(path) if path else 0
    except ValueError:
        return None


def client(url: str, tls: Mapping[str, Any] | None = None, **kwargs: Any) -> redis.Redis:
    """A redis-py client of `url`; a rediss:// URL verifies the server with `tls` (the options
    `RedisAccess.secure` derived for it) or, without them, against the system's CAs."""
    if url.startswith("rediss://"):
        kwargs = {**(tls or verifying()), **kwargs}
    return redis.Redis.from_url(url, **kwargs)


@dataclass(frozen=True)
class RedisAccess:
    """The credentials and TLS trust every Redis connection uses, from the app's settings."""

    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    require_tls: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RedisAccess:
        """From the app's `REDIS_*` settings."""
        return cls(
            config.get("REDIS_USERNAME"),
            config.get("REDIS_PASSWORD"),
            config.get("REDIS_CA_FILE"),
            bool(config.get("REDIS_REQUIRE_TLS")),
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> RedisAccess:
        """From the `FLASK_REDIS_*` variables, for a process that builds no app (a probe)."""
        require = environ.get("FLASK_REDIS_REQUIRE_TLS", "").strip().lower()
        return cls(
            environ.get("FLASK_REDIS_USERNAME") or None,
            environ.get("FLASK_REDIS_PASSWORD") or None,
            environ.get("FLASK_REDIS_CA_FILE") or None,
            require in ("1", "true", "yes", "on"),
        )

    def url(self, url: str, variable: str) -> str:
        """`url` with the credentials filled in, after refusing what would weaken it; `variable`
        names where it came from in the messages."""
        parts = urlsplit(url)
        self._check_tls(parts.scheme, parts.query, variable)
        # the one ssl_* option allowed, kept out of the URL: kombu would let the URL's TLS
        # options replace broker_use_ssl, CA file and all
        query = "&".join(i for i in parts.query.split("&") if not i.startswith("ssl_cert_reqs="))
        if query != parts.query:
            parts = parts._replace(query=query)
            url = urlunsplit(parts)
        if self.username is None and self.password is None:
            return url
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if user is None and password is None:
            host = parts.netloc.rpartition("@")[2]
            auth = quote(self.username or "", safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            return urlunsplit(parts._replace(netloc=f"{auth}@{host}"))
        if (user or None, password) != (self.username, self.password):
            raise ConfigError(
                f"{variable} carries Redis credentials other than FLASK_REDIS_USERNAME and "
                "FLASK_REDIS_PASSWORD: keep them in one place (drop them from the URL, or unset "
                "the two variables)"
            )
        return url

    def _check_tls(self, scheme: str, query: str, variable: str) -> None:
        if scheme == "redis" and (self.ca_file or self.require_tls):
            why = "FLASK_REDIS_CA_FILE is set" if self.ca_file else "FLASK_REDIS_REQUIRE_TLS is on"
            raise ConfigError(
                f"{variable} is a plain redis:// URL but {why}: the connection would not use TLS "
                "at all; use rediss://"
            )
        for item in filter(None, query.split("&")):
            key, _, value = item.partition("=")
            if key.startswith("ssl_") and not (key == "ssl_cert_reqs" and value in _REQUIRED):
                raise ConfigError(
                    f"{variable} sets {key} in its query: TLS options of Redis connections come "
                    "from FLASK_REDIS_CA_FILE (the server is always verified); remove it"
                )

    def secure(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Celery's `settings` with credentials in every Redis URL and verifying TLS options for
        every rediss:// one; raises ConfigError for anything that would not verify."""
        out = dict(settings)
        for name in OPTION_SETTINGS:
            _refuse_unverified(name, out.get(name))
        for name, tls_setting in URL_SETTINGS.items():
            url = out.get(name)
            if not isinstance(url, str) or not is_redis(url):
                continue
            out[name] = self.url(url, f"FLASK_CELERY__{name.upper()}")
            if url.startswith("rediss://"):
                given = out.get(tls_setting)
                given = given if isinstance(given, Mapping) else {}
                out[tls_setting] = {**verifying(self.ca_file), **given}
        return out


def _refuse_unverified(name: str, options: Any) -> None:
    if not isinstance(options, Mapping):
        return
    reqs = options.get("ssl_cert_reqs", ssl.CERT_REQUIRED)
    if reqs not in _REQUIRED or options.get("ssl_check_hostname", True) is not True:
        raise ConfigError(
            f"FLASK_CELERY__{name.upper()} turns off verification of the Redis server's "
            f"certificate or name ({dict(options)!r}); the server is always verified: remove "
            "ssl_cert_reqs and ssl_check_hostname, and set FLASK_REDIS_CA_FILE for a private CA"
        )


def reuse_one_client(channel: Any) -> None:
    """Make a kombu Redis channel run its commands through one client instead of a new one
    each time.

    kombu builds a client for every command it sends outside its BRPOP loop
    (`Channel.conn_or_acquire`: a publish, the probe before it, the worker's acknowledgement and
    its record of a delivered message), and a redis-py client registers some 170 response
    callbacks when it is made: that costs more CPU than the rest of a publish, and 8% of a
    worker's main process. A client holds no connection of its own (it takes one from the
    channel's pool per command), so one per channel does the same; the channel lives as long as
    its connection. Channels of other transports are left alone.
    """
    if getattr(channel, _ONE_CLIENT, False) or not hasattr(channel, "_create_client"):
        return
    client = channel._create_client()

    @contextmanager
    def conn_or_acquire(given: Any = None) -> Iterator[Any]:
        yield given or client

    channel.conn_or_acquire = conn_or_acquire
    setattr(channel, _ONE_CLIENT, True)


_ONE_CLIENT = "_flask_celery_one_client"
