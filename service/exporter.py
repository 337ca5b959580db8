"""Entry point of the broker exporter: `python -m service.exporter`.

Builds the app, then serves the broker-level gauges (`service.observability.exporter`) on
`/metrics` at `METRICS_ADDRESS`:`EXPORTER_PORT`, from a registry of their own: never the
multiprocess one, whose task counts belong to the web and worker endpoints. Runs until SIGTERM
or SIGINT, then closes the port and exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from . import create_app
from .observability.exporter import BrokerCollector

log = logging.getLogger("service.exporter")


def main() -> int:
    app = create_app()
    registry = CollectorRegistry()
    registry.register(BrokerCollector(app))
    address, port = app.config["METRICS_ADDRESS"], app.config["EXPORTER_PORT"]
    server, thread = start_http_server(port, addr=address, registry=registry)

    received: list[int] = []
    stopping = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        received.append(signum)
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("serving broker metrics at http://%s:%d/metrics", address, port)
    stopping.wait()
    log.info("%s received, stopping", signal.Signals(received[0]).name)
    server.shutdown()
    server.server_close()
    thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
