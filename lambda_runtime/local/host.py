"""The host's CPU as a shared budget of vCPUs, so functions never run over-committed.

Lambda gives every function its own vCPUs; this machine has a few cores for all of them. When
the functions running at once ask for more vCPUs than the host has, each gets less than its
share and a measurement stops meaning anything. So an invocation is admitted (first come, first
served) only when its vCPUs fit in what is left; it waits, unbilled, as an invocation waits for
a free slot on Lambda. The model predicts that queueing (``lambda_runtime.hostmodel``). A single
function that asks for more than the whole host runs alone and is counted as over-committed:
its measurement is reported as such, never silently mixed with the rest.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass


def default_host_vcpus() -> float:
    """The cores this process may use (its CPU affinity) but one, at least one: that core stays
    for the coordinator (the non-MoE functions) and the S3 server. With every core given to
    functions, those two were starved and a 4 x 0.5-vCPU layer ran 30 % slower than predicted
    on 2 cores (8 % once functions had 1 vCPU)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return float(max(1, cores - 1))


@dataclass(frozen=True)
class HostStatus:
    vcpus: float
    admitted: int
    queued: int  # invocations that waited for vCPUs
    queue_wait_s: float
    over_committed: int  # invocations that asked for more than the whole host


class HostCpu:
    """A first-come, first-served budget of ``vcpus`` (None: unlimited, no admission)."""

    def __init__(self, vcpus: float | None) -> None:
        self.vcpus = vcpus
        self._used = 0.0
        self._running = 0
        self._tickets = itertools.count()
        self._serving = 0  # the ticket allowed to be admitted next
        self._cond = threading.Condition()
        self._admitted = self._queued = self._over = 0
        self._wait_s = 0.0

    def acquire(self, vcpu: float) -> tuple[float, bool]:
        """Wait until ``vcpu`` fits; returns (seconds waited, over-committed)."""
        if self.vcpus is None:
            return 0.0, False
        t0 = time.monotonic()
        over = vcpu > self.vcpus + 1e-9
        with self._cond:
            ticket = next(self._tickets)
            while not (
                ticket == self._serving
                and (self._used + vcpu <= self.vcpus + 1e-9 or (over and self._running == 0))
            ):
                self._cond.wait()
            self._serving += 1
            self._used += vcpu
            self._running += 1
            waited = time.monotonic() - t0
            self._admitted += 1
            self._queued += waited > 1e-3
            self._wait_s += waited
            self._over += over
            self._cond.notify_all()
        return waited, over

    def release(self, vcpu: float) -> None:
        if self.vcpus is None:
            return
        with self._cond:
            self._used = max(0.0, self._used - vcpu)
            self._running -= 1
            self._cond.notify_all()

    def status(self) -> HostStatus:
        with self._cond:
            return HostStatus(
                self.vcpus or 0.0, self._admitted, self._queued, self._wait_s, self._over
            )
