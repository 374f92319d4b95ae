"""The coordinator: gate → scatter → expert functions → gather → combine, layer by layer.

Scatter follows the plan: a function's tokens are grouped by expert and split evenly over its
replicas; each layer's method moves them by invoke payload (``direct``), one object per replica
(``storage``) or minibatches of β tokens (``pipelined_storage``). Invocations run concurrently
in threads and are retried with exponential backoff on function errors, timeouts and throttles.
Every (token, top-k slot) pair is counted when its output is combined, so a test can prove that
no token was lost or counted twice; a shard that fails after all retries is reported per request.
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lambda_runtime.codec import array_from_bytes, array_to_bytes, decode_tensor, encode_tensor
from lambda_runtime.deploy import Deployment, FunctionSpec, LayerSpec, delete_prefix
from lambda_runtime.model import MoEExport, gate_topk

REPORT_RE = re.compile(
    r"REPORT RequestId: (?P<id>\S+)\s+Duration: (?P<dur>[\d.]+) ms\s+Billed Duration: (?P<billed>\d+) ms\s+"
    r"Memory Size: (?P<mem>\d+) MB\s+Max Memory Used: (?P<used>\d+) MB(?:\s+Init Duration: (?P<init>[\d.]+) ms)?"
)
RETRYABLE_CLIENT_ERRORS = {
    "TooManyRequestsException",
    "ServiceException",
    "EC2ThrottledException",
    "ResourceNotReadyException",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter (why: throttles clear with time)."""

    max_attempts: int = 4
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)) * random.uniform(
            0.5, 1.0
        )


@dataclass(frozen=True)
class InvocationReport:
    """One attempt of one shard, with the billing fields of its REPORT line (if any)."""

    layer: int
    function: str
    replica: int
    attempt: int
    tokens: int
    error: str | None
    request_id: str = ""
    duration_ms: float = 0.0
    billed_ms: int = 0
    memory_mb: int = 0
    max_memory_mb: int = 0
    init_ms: float | None = None
    wall_s: float = 0.0

    @property
    def billed_gb_s(self) -> float:
        return self.billed_ms / 1000.0 * self.memory_mb / 1024.0

    @property
    def cold(self) -> bool:
        return self.init_ms is not None


@dataclass(frozen=True)
class ShardFailure:
    layer: int
    function: str
    replica: int
    attempts: int
    tokens: int
    error: str


@dataclass(frozen=True)
class ForwardResult:
    """One request: output (None when a shard failed), per-attempt reports, token accounting."""

    request_id: str
    output: np.ndarray | None
    invocations: tuple[InvocationReport, ...]
    failures: tuple[ShardFailure, ...]
    latency_s: float
    layer_latency_s: tuple[float, ...]
    served: tuple[np.ndarray, ...] = field(repr=False)  # per layer: (tokens, top_k) combine counts
    loads: tuple[np.ndarray, ...] = field(default=(), repr=False)  # per layer: tokens per expert

    @property
    def ok(self) -> bool:
        return not self.failures and all(bool((s == 1).all()) for s in self.served)

    @property
    def billed_gb_s(self) -> float:
        return sum(r.billed_gb_s for r in self.invocations)

    @property
    def cold_starts(self) -> int:
        return sum(r.cold for r in self.invocations)

    @property
    def retries(self) -> int:
        return sum(r.attempt > 1 for r in self.invocations)


@dataclass
class _Shard:
    spec: FunctionSpec
    replica: int
    pairs: np.ndarray  # (n, 3): token, slot, expert; sorted by expert
    output: np.ndarray | None = None


def parse_report(log_tail_b64: str | None) -> dict[str, Any]:
    """Billing fields of the REPORT line in a ``LogResult`` tail (empty when absent)."""
    if not log_tail_b64:
        return {}
    m = REPORT_RE.search(base64.b64decode(log_tail_b64).decode("utf-8", "replace"))
    if not m:
        return {}
    return {
        "request_id": m["id"],
        "duration_ms": float(m["dur"]),
        "billed_ms": int(m["billed"]),
        "memory_mb": int(m["mem"]),
        "max_memory_mb": int(m["used"]),
        "init_ms": float(m["init"]) if m["init"] else None,
    }


class _SendOrder:
    """Invocations of a layer leave in plan order (function by function, replica by replica):
    each first attempt waits for its turn and hands the turn on once botocore sends it. A
    platform with a budget of vCPUs admits them first come, first served, so the order decides
    who waits; the prediction (``moeopt.hostsim``) assumes plan order (a race between threads
    gave a 0.6 s spread in a layer's latency on 2 cores)."""

    _local = threading.local()

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0

    def restart(self) -> None:
        with self._cond:
            self._next = 0
            self._cond.notify_all()

    def wait(self, ticket: int) -> None:
        with self._cond:
            while self._next < ticket:
                self._cond.wait(timeout=1.0)
        _SendOrder._local.current = (self, ticket)

    def done(self, ticket: int) -> None:
        _SendOrder._local.current = None
        with self._cond:
            if self._next <= ticket:
                self._next = ticket + 1
                self._cond.notify_all()

    @staticmethod
    def on_send(**_: Any) -> None:
        """botocore's before-send hook: this thread's request is on its way."""
        current = getattr(_SendOrder._local, "current", None)
        if current is not None:
            order, ticket = current
            order.done(ticket)


def segments_of(experts: np.ndarray) -> list[list[int]]:
    """``[[expert, count], ...]`` of a sorted expert column."""
    if experts.size == 0:
        return []
    values, counts = np.unique(experts, return_counts=True)
    return [[int(v), int(c)] for v, c in zip(values, counts, strict=True)]


class Coordinator:
    """Runs requests through a deployed plan with a boto3 Lambda client and S3 client."""

    def __init__(
        self,
        deployment: Deployment,
        export: MoEExport,
        lambda_client: Any,
        s3_client: Any,
        retry: RetryPolicy | None = None,
        max_workers: int = 512,
        cleanup: bool = True,
        input_wait_s: float = 30.0,
    ) -> None:
        self.deployment = deployment
        self.input_wait_s = input_wait_s
        self.export = export
        self.lambda_client = lambda_client
        self.s3 = s3_client
        self.retry = retry or RetryPolicy()
        self.cleanup = cleanup
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="scatter")
        self._lock = threading.Lock()
        self._order = _SendOrder()
        events = getattr(getattr(lambda_client, "meta", None), "events", None)
        if events is not None:
            events.register("before-send.lambda.Invoke", _SendOrder.on_send,
                            unique_id="moeopt-send-order")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def prewarm(self) -> None:
        """Start an execution environment for every replica of every function (one empty
        invocation per replica, a function's all at once), as provisioned concurrency keeps
        them: a measured request then meets warm functions only, as the model assumes, even
        those its warm-up request sent no token to."""
        empty = {"schema": "moeopt.invoke/1", "method": "direct", "layer": 0, "attempt": 0,
                 "tokens": encode_tensor(np.zeros((0, self.export.hidden_size), np.float32)),
                 "segments": []}
        jobs = [
            self._pool.submit(self._invoke, f.name, {**empty, "layer": f.layer})
            for f in self.deployment.functions
            for _ in range(f.replicas)
        ]
        for job in jobs:
            job.result()

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- one request --------------------------------------------------------------------------
    def forward(
        self,
        x: np.ndarray | Callable[[], np.ndarray],
        request_id: str | None = None,
        between: Callable[[int, np.ndarray], np.ndarray] | None = None,
    ) -> ForwardResult:
        """The distributed forward of one batch of hidden states ``x`` (n, h), or of the rows
        that ``x()`` computes (the model's head, run as the first non-MoE function would).

        ``between(layer, h)`` is the model's non-MoE step after MoE layer ``layer`` (attention,
        norms), run here on the coordinator as the paper's non-MoE functions would.
        """
        rid = request_id or uuid.uuid4().hex[:12]
        reports: list[InvocationReport] = []
        failures: list[ShardFailure] = []
        served: list[np.ndarray] = []
        loads: list[np.ndarray] = []
        layer_times: list[float] = []
        start = time.perf_counter()
        try:
            self._head()  # the first non-MoE function starts and fetches its weights
            h = np.ascontiguousarray(x() if callable(x) else x, dtype=np.float32)
            for layer in self.deployment.layers:
                t = time.perf_counter()
                h_next, counts, layer_failures = self._layer(layer, h, rid, reports, loads)
                layer_times.append(time.perf_counter() - t)
                served.append(counts)
                failures.extend(layer_failures)
                if layer_failures:
                    h = None
                    break
                h = h_next if between is None else between(layer.layer, h_next)
        finally:
            latency = time.perf_counter() - start  # served: the cleanup below is not serving
            if self.cleanup and self.deployment.bucket:
                delete_prefix(self.s3, self.deployment.bucket, self._request_prefix(rid))
        return ForwardResult(
            rid,
            h,
            tuple(reports),
            tuple(failures),
            latency,
            tuple(layer_times),
            tuple(served),
            tuple(loads),
        )

    def _request_prefix(self, rid: str) -> str:
        return f"{self.deployment.prefix}/requests/{rid}/"

    def scatter(self, layer: LayerSpec, experts: np.ndarray) -> list[_Shard]:
        """Tokens of each function, grouped by expert, split evenly over its replicas."""
        n, k = experts.shape
        tokens = np.repeat(np.arange(n), k)
        slots = np.tile(np.arange(k), n)
        flat = experts.reshape(-1)
        shards = []
        for spec in layer.functions:
            mask = np.isin(flat, spec.experts)
            pairs = np.stack([tokens[mask], slots[mask], flat[mask]], axis=1)
            pairs = pairs[np.argsort(pairs[:, 2], kind="stable")]
            if len(pairs) == 0:
                continue
            # contiguous even chunks keep each replica's rows grouped by expert (few segments)
            for r, chunk in enumerate(np.array_split(pairs, min(spec.replicas, len(pairs)))):
                shards.append(_Shard(spec, r, chunk))
        return shards

    # ---- the non-MoE functions the coordinator plays ------------------------------------------
    def _head(self) -> None:
        """The first non-MoE function starts and fetches its weights (embeddings too)."""
        nm = self.deployment.nonmoe
        if nm is None:
            return
        time.sleep(nm.start_s)
        if nm.head_key:
            self._fetch(nm.head_key)

    def _fetch(self, key: str) -> None:
        self.s3.get_object(Bucket=self.deployment.bucket, Key=key)["Body"].read()

    def _next_function(self) -> threading.Event:
        """Start the next non-MoE function (T_load) in the background; set when it is up."""
        ready = threading.Event()
        nm = self.deployment.nonmoe
        if nm is None:
            ready.set()
            return ready

        def load() -> None:
            try:
                time.sleep(nm.start_s)
                if nm.layer_key:
                    self._fetch(nm.layer_key)
            finally:
                ready.set()

        threading.Thread(target=load, daemon=True, name="next-function").start()
        return ready

    def _layer(
        self, layer: LayerSpec, h: np.ndarray, rid: str, reports: list[InvocationReport],
        loads: list[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, list[ShardFailure]]:
        ex = self.export
        experts, weights = gate_topk(h, ex.gates[layer.layer], ex.top_k, ex.gate_bias(layer.layer))
        if loads is not None:
            loads.append(np.bincount(experts.reshape(-1), minlength=ex.experts_per_layer))
        shards = self.scatter(layer, experts)
        # The storage methods start the next non-MoE function with the layer (Eqs. 7, 9); direct
        # invocation starts it with the experts' outputs (Eq. 11).
        ready = self._next_function() if layer.method != "direct" else None
        self._order.restart()
        futures = [
            self._pool.submit(self._run_shard, layer, s, h, rid, reports, ready, k)
            for k, s in enumerate(shards)
        ]
        failures = [f for fut in futures if (f := fut.result()) is not None]
        if ready is None and not failures:
            self._next_function().wait()
        counts = np.zeros(experts.shape, dtype=np.int64)
        out = torch.from_numpy(h.copy())
        for shard in shards:  # combine in plan order: deterministic sums
            if shard.output is None:
                continue
            tok, slot = shard.pairs[:, 0], shard.pairs[:, 1]
            np.add.at(counts, (tok, slot), 1)
            y = torch.from_numpy(shard.output)
            if ex.combine == "gate":
                y = y * torch.from_numpy(weights[tok, slot])[:, None]
            out.index_add_(0, torch.from_numpy(tok), y)
        return out.numpy(), counts, failures

    # ---- one shard, with retries ----------------------------------------------------------------
    def _run_shard(
        self,
        layer: LayerSpec,
        shard: _Shard,
        h: np.ndarray,
        rid: str,
        reports: list[InvocationReport],
        ready: threading.Event | None = None,
        ticket: int | None = None,
    ) -> ShardFailure | None:
        """Put the shard's inputs (storage methods: while the function starts and fetches its
        weights), invoke with retries, and gather the outputs once the next function is up."""
        x = h[shard.pairs[:, 0]]
        base = f"{self._request_prefix(rid)}l{layer.layer}/f{shard.spec.index}/r{shard.replica}"
        inputs = self._minibatches(layer, shard, base)
        upload_errors: list[str] = []
        uploader = None
        if inputs:  # the gate puts the inputs while the function starts (waits: it reads them)
            uploader = threading.Thread(
                target=self._upload, args=(inputs, x, upload_errors), daemon=True
            )
            uploader.start()
        error = ""
        attempt = 0
        for attempt in range(1, self.retry.max_attempts + 1):
            if upload_errors:
                break
            event = self._event(layer, shard, x, inputs, base, attempt)
            gather = _Gather(self, layer, event, len(x), ready)
            ordered = ticket is not None and attempt == 1
            if ordered:
                self._order.wait(ticket)
            t = time.perf_counter()
            try:
                report, payload, error = self._invoke(shard.spec.name, event)
            finally:
                if ordered:
                    self._order.done(ticket)
            output = None
            if not error:
                try:
                    output = gather.result(payload)
                except Exception as exc:  # noqa: BLE001 - a bad response is retried like an error
                    error = f"BadResponse: {exc}"
            else:
                gather.cancel()
            rec = InvocationReport(
                layer.layer,
                shard.spec.name,
                shard.replica,
                attempt,
                len(x),
                error or None,
                wall_s=time.perf_counter() - t,
                **report,
            )
            with self._lock:
                reports.append(rec)
            if output is not None:
                shard.output = output
                break
            if error.startswith(("RequestEntityTooLargeException", "ResourceNotFoundException")):
                break  # a retry cannot succeed
            if attempt < self.retry.max_attempts:
                time.sleep(self.retry.delay(attempt))
        if uploader is not None:
            uploader.join()
        if shard.output is not None:
            return None
        if upload_errors:
            error = f"StageInputs: {upload_errors[0]}"
        return ShardFailure(layer.layer, shard.spec.name, shard.replica, attempt, len(x), error)

    def _minibatches(self, layer: LayerSpec, shard: _Shard, base: str) -> list[dict[str, Any]]:
        """Input objects of a shard: one (storage) or one per β tokens (pipelined); none for direct."""
        if layer.method == "direct":
            return []
        n = len(shard.pairs)
        beta = layer.pipeline_degree if layer.method == "pipelined_storage" else n
        return [
            {
                "key": f"{base}/in-{k}.npy",
                "segments": segments_of(shard.pairs[lo : lo + beta, 2]),
                "rows": [lo, lo + beta],
            }
            for k, lo in enumerate(range(0, n, beta))
        ]

    def _upload(self, inputs: list[dict[str, Any]], x: np.ndarray, errors: list[str]) -> None:
        """Write the inputs in order (once; retries reuse them); errors are the shard's failure."""
        try:
            for mb in inputs:
                lo, hi = mb["rows"]
                self.s3.put_object(
                    Bucket=self.deployment.bucket, Key=mb["key"], Body=array_to_bytes(x[lo:hi])
                )
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc}")

    def _event(
        self,
        layer: LayerSpec,
        shard: _Shard,
        x: np.ndarray,
        inputs: list[dict[str, Any]],
        base: str,
        attempt: int,
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "schema": "moeopt.invoke/1",
            "method": layer.method,
            "layer": layer.layer,
            "attempt": attempt,
        }
        if layer.method == "direct":
            event.update(tokens=encode_tensor(x), segments=segments_of(shard.pairs[:, 2]))
        else:  # each attempt writes its own output keys: a late earlier attempt cannot mix in
            batches = [
                {
                    "key": b["key"],
                    "segments": b["segments"],
                    "output_key": f"{base}/out-a{attempt}-{k}.npy",
                }
                for k, b in enumerate(inputs)
            ]
            event.update(bucket=self.deployment.bucket, minibatches=batches)
            event["input_wait_s"] = self.input_wait_s  # invoked before its inputs land
        event["weights_fetch"] = self.deployment.weights_fetch
        return event

    def _invoke(
        self, name: str, event: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(report fields, response payload, error text or '')."""
        try:
            resp = self.lambda_client.invoke(
                FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail"
            )
        except self.lambda_client.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            return {}, {}, f"{code}: {exc.response.get('Error', {}).get('Message', '')}"
        except Exception as exc:  # noqa: BLE001 - connection/read timeouts are retried
            return {}, {}, f"{type(exc).__name__}: {exc}"
        report = parse_report(resp.get("LogResult"))
        body = resp["Payload"].read()
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return report, {}, "BadResponse: payload is not JSON"
        if resp.get("FunctionError"):
            if isinstance(payload, dict):
                return (
                    report,
                    {},
                    f"{payload.get('errorType', 'Unhandled')}: {payload.get('errorMessage', '')}",
                )
            return report, {}, "Unhandled"
        return report, payload, ""

    def _check(self, y: np.ndarray, rows: int) -> np.ndarray:
        if y.shape != (rows, self.export.hidden_size):
            raise ValueError(f"outputs shape {y.shape}, expected {(rows, self.export.hidden_size)}")
        return np.array(y, dtype=np.float32)  # writable: torch refuses read-only buffers


class _Gather:
    """The next non-MoE function's download of one invocation's outputs: after the function
    returns (storage), block by block as each lands (pipelined storage: a GET waits for its
    object), or from the response payload (direct). Starts only once the next function is up."""

    def __init__(
        self, coord: Coordinator, layer: LayerSpec, event: dict[str, Any], rows: int,
        ready: threading.Event | None,
    ) -> None:
        self.coord, self.layer, self.rows, self.ready = coord, layer, rows, ready
        self.keys = [mb["output_key"] for mb in event.get("minibatches", [])]
        self._parts: list[np.ndarray] = []
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = None
        if layer.method == "pipelined_storage":
            self._thread = threading.Thread(target=self._run, daemon=True, name="gather")
            self._thread.start()

    def _wait_ready(self) -> None:
        if self.ready is not None:
            self.ready.wait()

    def _get(self, key: str) -> np.ndarray:
        """One output object; until it lands, poll (the local backend's S3 holds the GET
        instead, so the first attempt waits there)."""
        s3, deadline, delay = self.coord.s3, time.monotonic() + self.coord.input_wait_s, 0.002
        while True:
            try:
                body = s3.get_object(Bucket=self.coord.deployment.bucket, Key=key)["Body"]
                return array_from_bytes(body.read())
            except s3.exceptions.NoSuchKey:
                if self._stop.is_set() or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 0.05)

    def _run(self) -> None:
        try:
            self._wait_ready()
            for key in self.keys:
                if self._stop.is_set():
                    return
                self._parts.append(self._get(key))
        except BaseException as exc:  # noqa: BLE001 - reported by result()
            self._error = exc

    def cancel(self) -> None:
        self._stop.set()

    def result(self, payload: dict[str, Any]) -> np.ndarray:
        if self.layer.method == "direct":
            return self.coord._check(decode_tensor(payload.get("outputs"), "outputs"), self.rows)
        keys = payload.get("output_keys")
        if keys != self.keys:
            self.cancel()
            raise ValueError(f"output_keys: {keys!r}, expected {self.keys!r}")
        if self._thread is None:  # storage: fetch after the function is done
            self._wait_ready()
            self._parts = [self._get(k) for k in self.keys]
        else:
            self._thread.join()
            if self._error is not None:
                raise self._error
        y = (
            np.concatenate(self._parts)
            if self._parts
            else np.zeros((0, self.coord.export.hidden_size), np.float32)
        )
        return self.coord._check(y, self.rows)
