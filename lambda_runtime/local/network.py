"""The network model of the local backend: Lambda's transfer times on loopback.

On loopback an S3 request costs CPU, not wire time, so a plan that overlaps transfers
(pipelined storage) cannot win and predictions made with Lambda's constants cannot hold. Here
every object-storage request and every invoke payload takes the wall time the cost model gives
it (docs/cost-model.md, "Network"), from the same constants (``cost_models/data/constants.toml``):

- S3: a request waits ``Tdl`` (first-byte latency), then its body at ``Bs``. Each execution
  environment has its own link per direction (its credentials name it), so two requests of one
  function in the same direction share its rate, while two functions never share; the
  coordinator (playing the non-MoE functions) moves each object on a stream of its own. A GET
  may ask to wait for an object that is not there yet (header ``x-moeopt-wait-s``): it is then
  served as soon as the object lands, with the same latency and rate.
- Invoke: the request payload takes ``bytes/Bf`` before the function starts (not billed), the
  response ``bytes/Bf`` before the invocation ends (billed, as in the paper's Eq. 10), and every
  invocation starts ``Tstart`` after it arrives (Lambda's warm-start latency, not billed).

The shaping sits in front of moto's S3 server as a WSGI middleware (in moto's process) and in
the local Lambda service. The app's own processing overlaps the emulated time: a request takes
``max(processing, model time)``, so the overhead of moto and boto3 on loopback is not added on
top of the model (what is left of it, calibration measures).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

WAIT_HEADER = "x-moeopt-wait-s"
#: Credentials whose access key starts with this move each object on a stream of its own.
COORDINATOR_KEY_PREFIX = "MOEOPTCOORD"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_MAX_WAIT_S = 300.0


@dataclass(frozen=True)
class NetworkModel:
    """The emulated network: the cost model's constants of the same names."""

    storage_bandwidth_bytes_per_s: float
    storage_delay_s: float
    function_bandwidth_bytes_per_s: float
    warm_start_s: float

    @classmethod
    def from_constants(cls, c: Any) -> NetworkModel:
        return cls(
            float(c.storage_bandwidth_bytes_per_s),
            float(c.storage_delay_s),
            float(c.function_bandwidth_bytes_per_s),
            float(c.warm_start_s),
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def storage_request_s(self, nbytes: int) -> float:
        """Model time of one S3 request carrying ``nbytes`` (a lower bound of what it takes)."""
        return self.storage_delay_s + nbytes / self.storage_bandwidth_bytes_per_s

    def payload_s(self, nbytes: int) -> float:
        """Model time of an invoke payload of ``nbytes`` (request or response)."""
        return nbytes / self.function_bandwidth_bytes_per_s


def sleep_until(deadline: float) -> None:
    """Sleep to a ``time.monotonic()`` deadline (no-op when it has passed)."""
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(left)


class Links:
    """Per-identity links, one per direction: a transfer on a busy link starts when the link is
    free (a first-come reservation), so one function's concurrent transfers share its rate."""

    def __init__(self) -> None:
        self._free_at: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def reserve(self, identity: str, direction: str, start: float, seconds: float) -> float:
        """End time of a transfer of ``seconds`` on ``identity``'s ``direction`` link that may
        start at ``start``; coordinator identities never queue."""
        if identity.startswith(COORDINATOR_KEY_PREFIX) or not identity:
            return start + seconds
        with self._lock:
            key = (identity, direction)
            begin = max(start, self._free_at.get(key, 0.0))
            end = begin + seconds
            self._free_at[key] = end
            return end


class ObjectArrivals:
    """Which objects have landed, so a GET can wait for one (a notification, not polling).

    moto stores a PUT's object as soon as it has the body, while the model's upload still runs;
    until the upload's time is over the object is *pending*: a GET of it waits for it to land,
    as a GET on S3 cannot see an object whose PUT has not completed."""

    def __init__(self) -> None:
        self._version: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._cond = threading.Condition()

    def version(self, path: str) -> int:
        with self._cond:
            return self._version.get(path, 0)

    def uploading(self, path: str) -> None:
        with self._cond:
            self._pending[path] = self._pending.get(path, 0) + 1

    def landed(self, path: str, ok: bool = True) -> None:
        with self._cond:
            left = self._pending.get(path, 1) - 1
            if left > 0:
                self._pending[path] = left
            else:
                self._pending.pop(path, None)
            if ok:
                self._version[path] = self._version.get(path, 0) + 1
            self._cond.notify_all()

    def wait_landed(self, path: str, timeout_s: float) -> None:
        """Until no upload of ``path`` is in flight (at most ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while path in self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def wait_newer(self, path: str, seen: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._version.get(path, 0) <= seen or path in self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True


class ShapingMiddleware:
    """WSGI middleware in front of moto's S3 app that gives each request its model time."""

    def __init__(self, app: Callable[..., Iterable[bytes]], model: NetworkModel | None) -> None:
        self.app = app
        self.model = model
        self.links = Links()
        self.arrivals = ObjectArrivals()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.model is None:
            return self.app(environ, start_response)
        arrived = time.monotonic()
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        identity = environ.get("moeopt.identity") or _identity(environ.get("HTTP_AUTHORIZATION", ""))
        if method == "PUT":
            return self._put(environ, start_response, arrived, path, identity)
        if method == "GET":
            return self._get(environ, start_response, arrived, path, identity)
        status, headers, body = _call(self.app, environ)
        sleep_until(arrived + self.model.storage_delay_s)
        start_response(status, headers)
        return body

    def _put(self, environ: dict[str, Any], start_response: Callable[..., Any], arrived: float,
             path: str, identity: str) -> Iterable[bytes]:
        assert self.model is not None
        size = _request_size(environ)
        end = self.links.reserve(
            identity, "up", arrived + self.model.storage_delay_s,
            size / self.model.storage_bandwidth_bytes_per_s,
        )
        self.arrivals.uploading(path)  # GETs of it wait until the upload's time is over
        ok = False
        try:
            status, headers, body = _call(self.app, environ)  # stores while the clock runs
            ok = status.startswith("200")
            sleep_until(end)
        finally:
            self.arrivals.landed(path, ok)  # visible when the upload ends, as on S3
        start_response(status, headers)
        return body

    def _get(self, environ: dict[str, Any], start_response: Callable[..., Any], arrived: float,
             path: str, identity: str) -> Iterable[bytes]:
        assert self.model is not None
        wait_s = _wait_seconds(environ)
        self.arrivals.wait_landed(path, _MAX_WAIT_S)  # an object still uploading is not there
        arrived = max(arrived, time.monotonic()) if wait_s > 0 else arrived
        seen = self.arrivals.version(path)
        status, headers, body = _call(self.app, environ)
        if wait_s > 0 and status.startswith("404") and self.arrivals.wait_newer(path, seen, wait_s):
            arrived = time.monotonic()  # notified: the read starts now
            status, headers, body = _call(self.app, environ)
        size = sum(len(chunk) for chunk in body)
        end = self.links.reserve(
            identity, "down", arrived + self.model.storage_delay_s,
            size / self.model.storage_bandwidth_bytes_per_s,
        )
        sleep_until(end)
        start_response(status, headers)
        return body


def _call(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> tuple[str, list, list[bytes]]:
    """Run the app to completion: (status, headers, body chunks)."""
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = [bytes(chunk) for chunk in result]
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return captured["status"], captured["headers"], body


def _identity(authorization: str) -> str:
    m = _CREDENTIAL.search(authorization)
    return m[1] if m else ""


def _request_size(environ: dict[str, Any]) -> int:
    for key in ("HTTP_X_AMZ_DECODED_CONTENT_LENGTH", "CONTENT_LENGTH"):
        raw = environ.get(key)
        if raw:
            try:
                return max(0, int(raw))
            except ValueError:
                return 0
    return 0


def _wait_seconds(environ: dict[str, Any]) -> float:
    raw = environ.get("HTTP_" + WAIT_HEADER.upper().replace("-", "_"), "")
    try:
        return min(max(float(raw), 0.0), _MAX_WAIT_S)
    except ValueError:
        return 0.0


#: botocore settings for S3 clients on the local backend: no SigV4 payload hash (botocore skips
#: it on HTTPS, as a function on AWS uses; over loopback HTTP it would hash every body) and no
#: flexible checksums (moto would recompute them on its one core). Measured on a 5 MB PUT: the
#: client's CPU 8.3 -> 3.4 ms.
LOCAL_S3_CONFIG: dict[str, Any] = {
    "s3": {"payload_signing_enabled": False},
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}


def add_wait_header(s3_client: Any, seconds: float) -> None:
    """Make ``s3_client``'s GETs wait up to ``seconds`` for an object that has not landed yet
    (the local backend's S3 only; real S3 ignores the header, so callers poll there)."""

    def add(request: Any, **_: Any) -> None:
        request.headers[WAIT_HEADER] = f"{seconds:g}"

    s3_client.meta.events.register("before-sign.s3.GetObject", add)
