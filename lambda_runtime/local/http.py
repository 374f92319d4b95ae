"""The HTTP server class of the local backend's APIs: threaded, loopback only, one log line
(never a traceback) when a client drops its connection."""

from __future__ import annotations

import logging
import sys
from http.server import ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


class LoopbackHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` on 127.0.0.1 with daemon threads, a backlog that absorbs bursts
    of connections, and a one-line report of a failed request."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, handler: Any, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError | BrokenPipeError):
            log.debug("client %s dropped its connection: %s", client_address, exc)
            return
        log.warning("request from %s failed: %s: %s", client_address, type(exc).__name__, exc)
