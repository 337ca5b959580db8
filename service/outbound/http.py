"""A webhook's HTTP POST to a vetted destination: pinned, verified, bounded, classified.

The connection goes to the addresses `egress.vet_url` vetted, tried in order, and to nothing
else: the client resolves no name of its own. The request still names the host (the Host
header, TLS SNI), and the receiver's certificate is verified for that name, against the system's
CAs or `ca_file`. No proxy is taken from the environment, and redirects are not followed.

The answer's status is all a delivery needs: its body is read up to a limit and dropped, and a
receiver cannot hold the worker past the deadline. 408/425/429/5xx raise `TransientError` (with
the receiver's `Retry-After`, when it gave one in seconds); network errors are httpx's transport
errors, which the retry classification also treats as transient. A certificate that does not
verify is permanent: retrying cannot fix it, and the dead letter can be re-driven once the
receiver has.
"""

from __future__ import annotations

import ssl
import time
import typing

import httpcore
import httpx

from ..reliability.retry import PermanentError, TransientError, is_transient_status
from .egress import Destination
from .tls import client_context


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the destination's vetted addresses instead of resolving the host."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if (host, port) != (self.destination.host, self.destination.port):
            raise httpcore.ConnectError(f"{host}:{port} was not vetted")
        failure: Exception = httpcore.ConnectError(f"{host}: no address")
        for ip in self.destination.addresses:
            try:
                return super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure


class _PinnedTransport(httpx.HTTPTransport):
    """httpx's transport on a connection pool whose only way out is `_PinnedBackend`.

    httpx takes no network backend of its own, so the pool it builds is replaced by one that has
    ours; everything else (request and response mapping, httpcore's exceptions turned into
    httpx's) stays httpx's.
    """

    def __init__(self, destination: Destination, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=1,
            network_backend=_PinnedBackend(destination),
        )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def post(
    destination: Destination,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    max_response_bytes: int,
    ca_file: str | None = None,
) -> int:
    """POST `body` to the vetted `destination` and return the answer's status."""
    started = time.monotonic()
    transport = _PinnedTransport(destination, client_context(ca_file))
    client = httpx.Client(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    )
    try:
        with client, client.stream("POST", destination.url, content=body, headers=headers) as r:
            received = 0
            for chunk in r.iter_raw():
                received += len(chunk)
                if received > max_response_bytes or time.monotonic() - started > timeout:
                    break  # the status is all we need; never let a receiver hold us
    except httpx.ConnectError as exc:
        unverified = _certificate_error(exc)
        if unverified is None:
            raise
        raise PermanentError(
            f"{destination.host}: TLS certificate not verified ({unverified.verify_message})"
        ) from exc
    if is_transient_status(r.status_code):
        raise TransientError(f"receiver answered HTTP {r.status_code}", _retry_after(r))
    return r.status_code
