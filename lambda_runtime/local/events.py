"""Asynchronous invocation (``InvocationType=Event``) as Lambda does it, on a scaled clock.

Lambda queues an event and runs it; when the function returns an error it retries twice, one
minute and then two minutes later. A throttled event (429) stays queued and is retried with
backoff (1 s doubling to 5 min) until it is six hours old. Locally the same schedule runs on
``time_scale`` (default 1/60: retries 1 s and 2 s later, events dropped after 6 min), so a run
or a test sees Lambda's behaviour without waiting Lambda's minutes. The queue is bounded in bytes;
beyond it an Event invoke is throttled (429) at once.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lambda_runtime.local.errors import ApiError

log = logging.getLogger(__name__)

#: Lambda's delays before the second and the third attempt of a failed event (seconds).
RETRY_DELAYS_S = (60.0, 120.0)
THROTTLE_BACKOFF_S = (1.0, 300.0)  # first and largest delay of a throttled event
MAX_EVENT_AGE_S = 6 * 3600.0
DEFAULT_TIME_SCALE = 1.0 / 60.0
MAX_QUEUED_BYTES = 256 * 1024 * 1024


@dataclass
class _Event:
    function: str
    payload: bytes
    queued_at: float
    request_id: str  # one for every attempt, as Lambda's retries keep the event's request id
    attempts: int = 0  # runs that reached the function
    throttles: int = 0


@dataclass(frozen=True)
class EventStatus:
    queued: int
    attempts: int
    retries: int
    succeeded: int
    failed: int  # every attempt returned an error
    dropped: int  # too old, or the function was deleted


class EventQueue:
    """Runs events with ``run(function, payload, request_id) -> function error or None`` (raises
    ``ApiError`` 429 when throttled, 404 when the function is gone)."""

    def __init__(self, run: Callable[[str, bytes, str], str | None],
                 time_scale: float = DEFAULT_TIME_SCALE,
                 workers: int = 8) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale: {time_scale}; allowed: > 0")
        self._run = run
        self.scale = time_scale
        self._heap: list[tuple[float, int, _Event]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._bytes = 0
        self._stopped = False
        self._counts = {"attempts": 0, "retries": 0, "succeeded": 0, "failed": 0, "dropped": 0}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda-event")
        threading.Thread(target=self._dispatch, daemon=True, name="lambda-events").start()

    def submit(self, function: str, payload: bytes, request_id: str | None = None) -> str:
        """Queue an event; its request id (the 202's, and the function's on every attempt)."""
        request_id = request_id or str(uuid.uuid4())
        with self._cond:
            if self._bytes + len(payload) > MAX_QUEUED_BYTES:
                raise ApiError(429, "TooManyRequestsException", "Rate Exceeded.",
                               Reason="EventQueueFull")
            self._bytes += len(payload)
            self._push(time.monotonic(), _Event(function, payload, time.monotonic(), request_id))
        return request_id

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def status(self) -> EventStatus:
        with self._cond:
            return EventStatus(len(self._heap), self._counts["attempts"], self._counts["retries"],
                               self._counts["succeeded"], self._counts["failed"],
                               self._counts["dropped"])

    def _push(self, due: float, event: _Event) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), event))
        self._cond.notify_all()

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, event = heapq.heappop(self._heap)
            try:
                self._pool.submit(self._attempt, event)
            except RuntimeError:  # the pool is shut down
                return

    def _attempt(self, event: _Event) -> None:
        now = time.monotonic()
        if now - event.queued_at > MAX_EVENT_AGE_S * self.scale:
            return self._finish(event, "dropped", "older than the maximum event age")
        try:
            error = self._run(event.function, event.payload, event.request_id)
        except ApiError as err:
            if err.status == 429:  # stays queued, with backoff
                event.throttles += 1
                first, largest = THROTTLE_BACKOFF_S
                delay = min(largest, first * 2 ** (event.throttles - 1)) * self.scale
                with self._cond:
                    self._push(now + delay, event)
                return None
            return self._finish(event, "dropped", err.message)
        except Exception as exc:  # noqa: BLE001 - an event must not take the service down
            return self._finish(event, "dropped", f"{type(exc).__name__}: {exc}")
        with self._cond:
            self._counts["attempts"] += 1
            self._counts["retries"] += event.attempts > 0
        event.attempts += 1
        if error is None:
            return self._finish(event, "succeeded", "")
        if event.attempts > len(RETRY_DELAYS_S):
            return self._finish(event, "failed", error)
        with self._cond:
            self._push(time.monotonic() + RETRY_DELAYS_S[event.attempts - 1] * self.scale, event)
        return None

    def _finish(self, event: _Event, outcome: str, why: str) -> None:
        with self._cond:
            self._counts[outcome] += 1
            self._bytes -= len(event.payload)
        if outcome != "succeeded":
            log.info("event for %s %s after %d attempts: %s", event.function, outcome,
                     event.attempts, why)
