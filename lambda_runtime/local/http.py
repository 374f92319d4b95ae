"""The HTTP server of the local backend's APIs (Lambda API, Runtime API): loopback only, and
robust against clients that stall, lie about their body or never finish sending it.

- A new connection must start its request within ``FIRST_REQUEST_S``; a kept-alive one may idle
  ``keepalive_idle_s`` between requests (the Runtime API: the function's timeout and a minute,
  as a worker's connection idles while its handler runs). Once a request has started, every read waits at most
  ``READ_TIMEOUT_S`` and the whole request (line, headers, body) must arrive within
  ``REQUEST_DEADLINE_S``: a reaper thread shuts the socket of one that does not (a client that
  trickles a byte at a time cannot hold a thread either).
- ``Content-Length`` is checked before anything is read: a non-negative decimal integer, one
  value, at most the route's limit (413 at once, the body never read). A body announced with
  ``Transfer-Encoding`` (chunked) is refused with 411. A body that ends early (the client shut its
  write side) is answered 400 and the request never reaches the service.
- ``Expect: 100-continue`` is answered only once the body is wanted, so a refused body is not sent.
- ``admit(socket)`` (optional) decides who may connect at all: the Runtime API serves only its
  own worker process (``peers.py``); anyone else's connection is closed unread.
- At most ``max_connections`` connections are served at once (one thread each); beyond that a
  connection gets a 503 and is closed. The listen backlog is 128.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

FIRST_REQUEST_S = 5.0
KEEPALIVE_IDLE_S = 60.0
READ_TIMEOUT_S = 5.0
REQUEST_DEADLINE_S = 30.0
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_CHUNK = 1 << 16


class RequestError(Exception):
    """A request the server refuses before it reaches the service: HTTP status, an error type for
    the API's error shape, a message; the connection is closed after the answer."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


class _Reaper:
    """Shuts the sockets of requests that are past their deadline (one thread per server)."""

    def __init__(self) -> None:
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="http-reaper").start()

    def arm(self, sock: socket.socket, seconds: float) -> None:
        with self._lock:
            self._deadlines[sock] = time.monotonic() + seconds

    def disarm(self, sock: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(sock, None)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [s for s, t in self._deadlines.items() if t <= now]
                for s in late:
                    del self._deadlines[s]
            for s in late:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


class LoopbackHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` on 127.0.0.1: daemon threads, a backlog that absorbs bursts of
    connections, a bounded number of connections, request deadlines, and a one-line report (never
    a traceback) of a failed request."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, handler: Any, port: int = 0, max_connections: int = 512,
                 keepalive_idle_s: float = KEEPALIVE_IDLE_S,
                 admit: Callable[[socket.socket], bool] | None = None) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.admit = admit  # who may connect (the Runtime API: its worker only); None: anyone
        self.max_connections = max_connections
        self.keepalive_idle_s = keepalive_idle_s
        self.reaper = _Reaper()
        self._active = 0
        self._active_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            full = self._active >= self.max_connections
            if not full:
                self._active += 1
        if full:  # answer without a thread: the client learns why, the server stays bounded
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if self.admit is not None and not self.admit(request):
                self.shutdown_request(request)  # closed unread: not this server's client
                return
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active -= 1

    def server_close(self) -> None:
        self.reaper.stop()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError | BrokenPipeError):
            log.debug("client %s dropped its connection: %s", client_address, exc)
            return
        log.warning("request from %s failed: %s: %s", client_address, type(exc).__name__, exc)


class BoundedHandler(BaseHTTPRequestHandler):
    """A request handler that reads requests within bounds (see the module docstring).

    Subclasses implement ``handle_request()`` (called for every method) and read a body only
    through ``read_body(limit)``; ``refuse(error)`` answers a ``RequestError`` in the API's shape.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # header and body go out as separate writes
    server: LoopbackHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def handle(self) -> None:
        self._served = 0
        super().handle()

    def handle_one_request(self) -> None:
        sock = self.connection
        reaper = self.server.reaper
        idle = self.server.keepalive_idle_s if self._served else FIRST_REQUEST_S
        try:
            sock.settimeout(idle)
            reaper.arm(sock, idle + REQUEST_DEADLINE_S)  # a request line trickled in counts too
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            reaper.arm(sock, REQUEST_DEADLINE_S)
            sock.settimeout(READ_TIMEOUT_S)
            self._expect_continue = False
            self._body_read = False
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(414)
                return
            if not self.parse_request():  # it answered (400, 431, ...)
                return
            if not self.announces_body():  # the request is in: serving may take long
                reaper.disarm(sock)
            self._served += 1
            self.handle_request()
            self.wfile.flush()
        except OSError:  # stalled (timeout), reaped or reset: drop the connection
            self.close_connection = True
        finally:
            reaper.disarm(sock)

    def parse_request(self) -> bool:
        """Only HTTP/1.x request lines (an HTTP/0.9 one would get an answer without a status)."""
        words = self.raw_requestline.decode("iso-8859-1", "replace").rstrip("\r\n").split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self.command, self.requestline = "", ""
            self.request_version = "HTTP/1.1"
            self.close_connection = True
            self.send_error(400, "Bad request line")
            return False
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        """Defer ``100 Continue`` until the body is wanted (``read_body``)."""
        self._expect_continue = True
        return True

    def handle_request(self) -> None:  # pragma: no cover - subclasses implement it
        raise NotImplementedError

    def content_length(self, limit: int, too_large: RequestError) -> int:
        """The announced body length, checked before anything is read."""
        if self.headers.get_all("Transfer-Encoding"):
            raise RequestError(411, "LengthRequiredException",
                               "Transfer-Encoding is not supported: send the body with Content-Length")
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not values:
            return 0
        if len(values) > 1:
            raise RequestError(400, "InvalidRequestContentException",
                               "Content-Length: conflicting values")
        (raw,) = values
        if not _CONTENT_LENGTH.fullmatch(raw):
            raise RequestError(400, "InvalidRequestContentException",
                               f"Content-Length: {raw[:40]!r} is not a non-negative integer")
        n = int(raw)
        if n > limit:
            raise too_large
        return n

    def read_body(self, limit: int, too_large: RequestError | None = None) -> bytes:
        """The request body, at most ``limit`` bytes, read whole or not at all."""
        too_large = too_large or RequestError(
            413, "RequestEntityTooLargeException", f"Request must be smaller than {limit + 1} bytes")
        n = self.content_length(limit, too_large)
        if self._expect_continue and n:
            self.send_response_only(100)
            self.end_headers()
        chunks, left = [], n
        while left:
            chunk = self.rfile.read(min(left, _CHUNK))
            if not chunk:
                raise RequestError(400, "InvalidRequestContentException",
                                   f"the body ended after {n - left} of {n} bytes")
            chunks.append(chunk)
            left -= len(chunk)
        self._body_read = True
        self.server.reaper.disarm(self.connection)  # the request is in: serving may take long
        return b"".join(chunks)

    def announces_body(self) -> bool:
        return bool(self.headers.get_all("Transfer-Encoding")) or any(
            v.strip() not in ("", "0") for v in self.headers.get_all("Content-Length") or [])

    def discard_unread_body(self) -> None:
        """Close the connection after this answer when a body was announced but not read."""
        if not self._body_read and self.announces_body():
            self.close_connection = True

    def send_body(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """One response with a body; ``Connection: close`` when this connection ends with it."""
        self.discard_unread_body()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
