"""The expert function: a standard Lambda Python handler, ``lambda_runtime.handler.handler``.

It hosts one or more experts of one MoE layer (a *group*). Weights come from object storage
(``s3://bucket/key``) or the function's package (``file:///path`` or a path), named by the
``MOEOPT_WEIGHTS`` environment variable (JSON ``{"expert": "uri"}``) or the event's ``weights``
(which may name only objects in the deployment's bucket or files inside the package).
With the event's ``weights_fetch = "per_invocation"`` (the paper's model: every invocation
downloads its parameters) they are fetched on every invocation; with ``"cached"`` (the default)
once per execution environment, kept while it stays warm.

Event (``moeopt.invoke/1``), tokens grouped by expert as ``segments = [[expert, count], ...]``:

- ``direct``: ``tokens`` is a base64 tensor (see :mod:`lambda_runtime.codec`); outputs return
  in the response's ``outputs``.
- ``storage`` / ``pipelined_storage``: ``bucket`` and ``minibatches = [{"key", "segments",
  "output_key"}]``; each input is an ``.npy`` object, each output is written to ``output_key``.
  ``input_wait_s`` lets the function start while the gate is still uploading its inputs (on the
  local backend the GET itself waits for the object; on AWS the function polls).
  ``pipelined_storage`` overlaps download of minibatch k+1, compute of k and upload of k-1
  (the paper's pipelined design, PAPER.md 2.5(1)); ``storage`` runs them one after another.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from typing import Any

import numpy as np
import torch

from lambda_runtime.codec import (
    PayloadError,
    array_from_bytes,
    array_to_bytes,
    arrays_from_npz,
    decode_tensor,
    encode_tensor,
)
from lambda_runtime.model import expert_forward

SCHEMA = "moeopt.invoke/1"
METHODS = ("direct", "storage", "pipelined_storage")
WEIGHT_KEYS = ("w1", "b1", "w2", "b2")

_experts: dict[str, dict[str, torch.Tensor]] = {}
_s3_client: Any = None
_lock = threading.Lock()


def _threads() -> int:
    """Lambda's vCPU share of the memory size (1 vCPU per 1,769 MB, at most 6), as torch threads."""
    memory = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769"))
    vcpu = min(6.0, memory / 1769.0)
    return max(1, min(os.cpu_count() or 1, math.ceil(vcpu)))


torch.set_num_threads(_threads())


def _s3() -> Any:
    global _s3_client
    with _lock:
        if _s3_client is None:
            import boto3  # endpoint from AWS_ENDPOINT_URL_S3 when set (local backend)
            from botocore.config import Config

            if os.environ.get("MOEOPT_S3_WAIT"):  # the local S3 holds a GET until the object lands
                from lambda_runtime.local.network import LOCAL_S3_CONFIG, add_wait_header

                _s3_client = boto3.client("s3", config=Config(read_timeout=360, **LOCAL_S3_CONFIG))
                add_wait_header(_s3_client, 300.0)
            else:
                _s3_client = boto3.client("s3", config=Config(read_timeout=360))
        return _s3_client


if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and "s3://" in os.environ.get("MOEOPT_WEIGHTS", ""):
    _s3()  # init code, as Lambda's guidance has it: the first invocation does not pay the client


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _load_expert(uri: str, cached: bool = True) -> dict[str, torch.Tensor]:
    """Weights of one expert from ``s3://`` or a local path (``.npz``, no pickle); kept for the
    next invocations of this environment when ``cached``."""
    if cached and uri in _experts:
        return _experts[uri]
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri)
        body = _s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    else:
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        if not os.path.isabs(path):
            path = os.path.join(os.environ.get("LAMBDA_TASK_ROOT", "."), path)
        with open(path, "rb") as fh:
            body = fh.read()
    arrays = arrays_from_npz(body)
    missing = [k for k in WEIGHT_KEYS if k not in arrays]
    if missing:
        raise PayloadError(f"weights {uri}: missing arrays {missing}; needs {list(WEIGHT_KEYS)}")
    tensors = {k: torch.from_numpy(arrays[k].astype(np.float32)) for k in WEIGHT_KEYS}
    if cached:
        _experts[uri] = tensors
    return tensors


def _configured_weights() -> dict[str, Any]:
    return json.loads(os.environ.get("MOEOPT_WEIGHTS", "{}"))


def _weights_map(event: dict[str, Any]) -> dict[int, str]:
    """Expert -> weights URI: the event's ``weights`` (checked by ``_event_weight``) or the
    function's configured ``MOEOPT_WEIGHTS`` (set by whoever deployed it)."""
    raw = event.get("weights")
    if raw is None:
        raw = _configured_weights()
        return {int(k): v for k, v in raw.items()}
    if not isinstance(raw, dict) or len(raw) > 4096:
        raise PayloadError("weights: must be an object {expert: uri} (at most 4096 experts)")
    out = {}
    for k, uri in raw.items():
        try:
            expert = int(k)
        except (TypeError, ValueError):
            raise PayloadError(f"weights: key {str(k)[:40]!r} is not an expert number") from None
        out[expert] = _event_weight(uri)
    return out


def _event_weight(uri: Any) -> str:
    """An invoker may name weights only in the deployment's bucket (the buckets of the function's
    configured ``MOEOPT_WEIGHTS``) or files inside the function's package (``LAMBDA_TASK_ROOT``,
    symlinks resolved, regular files only): an event never opens an arbitrary path."""
    if not isinstance(uri, str) or not uri:
        raise PayloadError("weights: each value must be a non-empty string URI")
    buckets = sorted({_split_s3(u)[0] for u in _configured_weights().values()
                      if isinstance(u, str) and u.startswith("s3://")})
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri)
        if bucket not in buckets or not key:
            raise PayloadError(f"weights: {uri[:200]!r} is outside the deployment's bucket; "
                               f"allowed: s3://{{{','.join(buckets) or 'none configured'}}}/<key> "
                               "or a file inside the function's package")
        return uri
    root = os.path.realpath(os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd())
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    real = os.path.realpath(os.path.join(root, path))
    if os.path.commonpath([root, real]) != root or not os.path.isfile(real):
        raise PayloadError(f"weights: {uri[:200]!r} is not a file inside the function's package "
                           f"({root}); allowed: such a file, or s3:// in the deployment's bucket")
    return "file://" + real


def _segments(raw: Any, rows: int, field: str) -> list[tuple[int, int]]:
    if not isinstance(raw, list) or not all(isinstance(s, list) and len(s) == 2 for s in raw):
        raise PayloadError(f"{field}: must be a list of [expert, count] pairs")
    segs = [(int(e), int(n)) for e, n in raw]
    if sum(n for _, n in segs) != rows or any(n < 0 for _, n in segs):
        raise PayloadError(f"{field}: counts sum to {sum(n for _, n in segs)}, tokens are {rows}")
    return segs


def run_experts(
    x: np.ndarray, segments: list[tuple[int, int]], weights: dict[int, Any]
) -> np.ndarray:
    """Each segment's rows through its expert (``weights``: expert -> loaded tensors, or the
    weights' URI); output rows in input order."""
    out = np.empty_like(x, dtype=np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    start = 0
    with torch.no_grad():
        for expert, count in segments:
            if expert not in weights:
                raise PayloadError(
                    f"segments: expert {expert} not hosted here; hosted: {sorted(weights)}"
                )
            if count:
                w = weights[expert]
                w = _load_expert(w) if isinstance(w, str) else w
                out[start : start + count] = expert_forward(xt[start : start + count], w).numpy()
            start += count
    return out


def _inject_fault(event: dict[str, Any], phase: str = "before") -> None:
    """Test hook: ``MOEOPT_FAULTS`` may make given attempts sleep (to force a timeout) or raise,
    before the work (``raise_on_attempts``) or after outputs are stored (``raise_after_on_attempts``)."""
    spec = os.environ.get("MOEOPT_FAULTS")
    if not spec:
        return
    faults, attempt = json.loads(spec), int(event.get("attempt", 1))

    def hit(key: str) -> bool:
        chosen = faults.get(key, [])
        return chosen == "all" or attempt in chosen

    if phase == "after":
        if hit("raise_after_on_attempts"):
            raise RuntimeError(f"injected fault after outputs, attempt {attempt}")
        return
    if hit("sleep_on_attempts"):
        time.sleep(float(faults.get("sleep_s", 60)))
    if hit("raise_on_attempts"):
        raise RuntimeError(f"injected fault on attempt {attempt}")


def _direct(
    event: dict[str, Any], weights: dict[int, Any], timing: dict[str, float]
) -> dict[str, Any]:
    x = decode_tensor(event.get("tokens"), "tokens")
    segs = _segments(event.get("segments"), x.shape[0], "segments")
    t = time.perf_counter()
    y = run_experts(x, segs, weights)
    timing["compute_s"] = time.perf_counter() - t
    return {"outputs": encode_tensor(y), "tokens": int(x.shape[0])}


def _storage(
    event: dict[str, Any], weights: dict[int, Any], timing: dict[str, float], pipelined: bool
) -> dict[str, Any]:
    bucket = event.get("bucket")
    batches = event.get("minibatches")
    if not isinstance(bucket, str) or not isinstance(batches, list) or not batches:
        raise PayloadError(
            "bucket/minibatches: storage methods need a bucket and a non-empty minibatch list"
        )
    s3 = _s3()  # weights are already loaded by the handler: the head time H of the paper
    totals = {"download_s": 0.0, "compute_s": 0.0, "upload_s": 0.0}
    tokens = 0

    wait_s = float(event.get("input_wait_s", 0.0))

    def download(mb: dict[str, Any]) -> np.ndarray:
        """Fetch one minibatch; with ``input_wait_s`` wait for the gate that is still uploading."""
        t = time.perf_counter()
        deadline, delay = time.monotonic() + wait_s, 0.002
        while True:
            try:
                body = s3.get_object(Bucket=bucket, Key=mb["key"])["Body"].read()
                break
            except s3.exceptions.NoSuchKey:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 0.05)
        x = array_from_bytes(body)
        totals["download_s"] += time.perf_counter() - t
        return x

    def compute(mb: dict[str, Any], x: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        y = run_experts(
            x, _segments(mb.get("segments"), x.shape[0], "minibatches.segments"), weights
        )
        totals["compute_s"] += time.perf_counter() - t
        return y

    def upload(mb: dict[str, Any], y: np.ndarray) -> None:
        t = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=mb["output_key"], Body=array_to_bytes(y))
        totals["upload_s"] += time.perf_counter() - t

    if not pipelined:
        for mb in batches:
            y = compute(mb, download(mb))
            upload(mb, y)
            tokens += y.shape[0]
    else:
        tokens = _pipeline(batches, download, compute, upload)
    timing.update(totals)
    return {"bucket": bucket, "output_keys": [mb["output_key"] for mb in batches], "tokens": tokens}


_DONE = object()


def _pipeline(batches: list[dict[str, Any]], download: Any, compute: Any, upload: Any) -> int:
    """Three stages in threads joined by bounded queues: download k+1, compute k, upload k-1."""
    inbox: queue.Queue[Any] = queue.Queue(maxsize=1)
    outbox: queue.Queue[Any] = queue.Queue(maxsize=1)
    errors: list[BaseException] = []
    stop = threading.Event()

    def downloader() -> None:
        try:
            for mb in batches:
                if stop.is_set():
                    break
                inbox.put((mb, download(mb)))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the handler thread
            errors.append(exc)
        finally:
            inbox.put(_DONE)

    def uploader() -> None:
        while (item := outbox.get()) is not _DONE:
            try:
                if not errors:
                    upload(*item)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                stop.set()

    threads = [
        threading.Thread(target=downloader, daemon=True),
        threading.Thread(target=uploader, daemon=True),
    ]
    for t in threads:
        t.start()
    tokens = 0
    try:
        while (item := inbox.get()) is not _DONE:
            if errors:
                continue
            mb, x = item
            outbox.put((mb, compute(mb, x)))
            tokens += x.shape[0]
    except BaseException:
        stop.set()
        while inbox.get() is not _DONE:  # drain so the downloader ends
            pass
        raise
    finally:
        outbox.put(_DONE)
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return tokens


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run the event's tokens through this function's experts (Lambda entry point)."""
    start = time.perf_counter()
    if not isinstance(event, dict) or event.get("schema", SCHEMA) != SCHEMA:
        raise PayloadError(f"schema: must be {SCHEMA!r}")
    method = event.get("method")
    if method not in METHODS:
        raise PayloadError(f"method: {method!r} not allowed; allowed: {', '.join(METHODS)}")
    _inject_fault(event)
    weights = _weights_map(event)
    if not weights:
        raise PayloadError("weights: none configured (MOEOPT_WEIGHTS or the event's weights)")
    timing: dict[str, float] = {}
    t = time.perf_counter()
    cached = event.get("weights_fetch", "cached") != "per_invocation"
    loaded = {e: _load_expert(uri, cached) for e, uri in weights.items()}
    timing["load_s"] = time.perf_counter() - t
    weights = loaded
    if method == "direct":
        result = _direct(event, weights, timing)
    else:
        result = _storage(event, weights, timing, pipelined=method == "pipelined_storage")
    _inject_fault(event, "after")
    timing["handler_s"] = time.perf_counter() - start
    result.update(layer=event.get("layer"), method=method, timing=timing)
    return result
