"""Turn a plan (``moeopt.plan/1`` JSON dict) into functions on a Lambda API, and back.

Works with any boto3 Lambda client (the local backend's or AWS's): weights go to object storage
under ``{prefix}/weights/``, each plan function becomes one Lambda function hosting its experts.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lambda_runtime.codec import arrays_to_npz

if TYPE_CHECKING:  # torch loads only when a model is built, not for the CLI's start-up
    from lambda_runtime.model import MoEExport

METHODS = ("pipelined_storage", "storage", "direct")
ARCHITECTURES = ("x86_64", "arm64")
MEMORY_RANGE = (128, 10_240)
HANDLER = "lambda_runtime.handler.handler"
#: The plan rules of moeopt (docs/problem-format.md, limits): a plan from anywhere is held to them.
MAX_REPLICAS = 64
MAX_PIPELINE_DEGREE = 1_048_576


class PlanError(ValueError):
    """A plan that does not fit the model or the runtime; the message names the field."""


@dataclass(frozen=True)
class FunctionSpec:
    """One plan function of one layer, with the Lambda name it is deployed under."""

    layer: int
    index: int
    experts: tuple[int, ...]
    memory_mb: int
    replicas: int
    architecture: str
    name: str = ""


@dataclass(frozen=True)
class LayerSpec:
    layer: int
    method: str
    pipeline_degree: int
    functions: tuple[FunctionSpec, ...]


@dataclass(frozen=True)
class NonMoe:
    """The paper's non-MoE functions, which the coordinator plays: their start latency and,
    when they fetch weights on every invocation, where their weights lie (the head function's
    holds the embeddings too). Sizes come from the problem's model, so a run pays what the
    cost model charges (docs/runtime.md)."""

    start_s: float
    head_bytes: int
    layer_bytes: int
    fetch_weights: bool = True
    head_key: str = ""
    layer_key: str = ""


@dataclass(frozen=True)
class Deployment:
    """What is deployed: functions by layer, and where weights and intermediates live."""

    layers: tuple[LayerSpec, ...]
    bucket: str
    prefix: str
    plan: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    nonmoe: NonMoe | None = None
    weights_fetch: str = "cached"  # "per_invocation": experts fetch their weights every time

    @property
    def functions(self) -> tuple[FunctionSpec, ...]:
        return tuple(f for layer in self.layers for f in layer.functions)


def plan_dict(plan: Any) -> dict[str, Any]:
    """Accept a JSON dict or any object with ``to_dict()`` (the lead's ``DeploymentPlan``)."""
    if hasattr(plan, "to_dict"):
        plan = plan.to_dict()
    if not isinstance(plan, dict):
        raise PlanError("plan: must be a JSON object (moeopt.plan/1)")
    return plan


def parse_plan(plan: Any, layers: int, experts: int) -> tuple[LayerSpec, ...]:
    """Check a plan against the model's shape; every expert of a layer in exactly one function."""
    data = plan_dict(plan)
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list) or len(raw_layers) != layers:
        raise PlanError(
            f"layers: need one entry per MoE layer ({layers}), got "
            f"{len(raw_layers) if isinstance(raw_layers, list) else _cut(raw_layers)}"
        )
    if not all(isinstance(raw, dict) for raw in raw_layers):
        raise PlanError("layers: each entry must be an object")
    ids = [raw.get("layer", li) for li, raw in enumerate(raw_layers)]
    if not all(_is_int(i) for i in ids) or sorted(ids) != list(range(layers)):
        raise PlanError(f"layers[].layer: {_cut(ids)}; allowed: each of 0..{layers - 1} once")
    out = []
    for li, raw in sorted(enumerate(raw_layers), key=lambda item: ids[item[0]]):
        where = f"layers[{li}]"
        li = ids[li]  # the layer it is for: a plan's layers may come in any order
        method = raw.get("method")
        if method not in METHODS:
            raise PlanError(f"{where}.method: {_cut(method)}; allowed: {', '.join(METHODS)}")
        beta = raw.get("pipeline_degree", 1)
        if not _is_int(beta) or not 1 <= beta <= MAX_PIPELINE_DEGREE:
            raise PlanError(f"{where}.pipeline_degree: {_cut(beta)}; allowed: an integer "
                            f"1..{MAX_PIPELINE_DEGREE}")
        functions = raw.get("functions") or []
        if not isinstance(functions, list) or not all(isinstance(f, dict) for f in functions):
            raise PlanError(f"{where}.functions: must be a list of objects")
        funcs, seen = [], []
        for fi, f in enumerate(functions):
            fw = f"{where}.functions[{fi}]"
            raw_exp = f.get("experts") or []
            if not isinstance(raw_exp, list) or not raw_exp or not all(
                _is_int(e) and 0 <= e < experts for e in raw_exp
            ):
                raise PlanError(
                    f"{fw}.experts: {_cut(raw_exp)}; allowed: a non-empty list of 0..{experts - 1}"
                )
            exp = tuple(raw_exp)
            mem = f.get("memory_mb")
            if not _is_int(mem) or not MEMORY_RANGE[0] <= mem <= MEMORY_RANGE[1]:
                raise PlanError(f"{fw}.memory_mb: {_cut(mem)}; allowed: an integer 128..10240")
            reps = f.get("replicas", 1)
            if not _is_int(reps) or not 1 <= reps <= MAX_REPLICAS:
                raise PlanError(f"{fw}.replicas: {_cut(reps)}; allowed: an integer 1..{MAX_REPLICAS}")
            arch = f.get("architecture", "x86_64")
            if arch not in ARCHITECTURES:
                raise PlanError(f"{fw}.architecture: {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
            funcs.append(FunctionSpec(li, fi, exp, mem, reps, arch))
            seen.extend(exp)
        if sorted(seen) != list(range(experts)):
            raise PlanError(
                f"{where}.functions: every expert 0..{experts - 1} must appear exactly once"
            )
        out.append(LayerSpec(li, method, beta, tuple(funcs)))
    return tuple(out)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _cut(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def function_name(prefix: str, layer: int, index: int) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{prefix}-l{layer}-f{index}")[:64]


def weight_key(prefix: str, layer: int, expert: int) -> str:
    return f"{prefix}/weights/layer{layer}/expert{expert}.npz"


def upload_weights(s3: Any, bucket: str, prefix: str, export: MoEExport) -> None:
    for layer, experts in enumerate(export.experts):
        for e, w in enumerate(experts):
            s3.put_object(
                Bucket=bucket, Key=weight_key(prefix, layer, e), Body=arrays_to_npz(w.arrays())
            )


def deploy_plan(
    plan: Any,
    export: MoEExport,
    lambda_client: Any,
    s3_client: Any,
    bucket: str,
    code: dict[str, Any],
    prefix: str = "moeopt",
    role: str = "arn:aws:iam::123456789012:role/moeopt-local",
    timeout_s: int = 60,
    extra_env: dict[tuple[int, int], dict[str, str]] | None = None,
    tags: dict[str, str] | None = None,
    create_bucket: bool = True,
    nonmoe: NonMoe | None = None,
    weights_fetch: str = "cached",
) -> Deployment:
    """Upload weights and create one function per plan function (``code``: CreateFunction code
    args). With ``nonmoe``, also store the non-MoE functions' weights (as opaque bytes of their
    size: the coordinator fetches them as those functions would, and computes with its own copy)."""
    if weights_fetch not in ("cached", "per_invocation"):
        raise PlanError(f"weights_fetch: {weights_fetch!r}; allowed: cached, per_invocation")
    layers = parse_plan(plan, export.layers, export.experts_per_layer)
    if create_bucket:
        existing = {b["Name"] for b in s3_client.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            s3_client.create_bucket(Bucket=bucket)
    upload_weights(s3_client, bucket, prefix, export)
    if nonmoe is not None and nonmoe.fetch_weights:
        head_key, layer_key = f"{prefix}/nonmoe/head.bin", f"{prefix}/nonmoe/layer.bin"
        s3_client.put_object(Bucket=bucket, Key=head_key, Body=bytes(nonmoe.head_bytes))
        s3_client.put_object(Bucket=bucket, Key=layer_key, Body=bytes(nonmoe.layer_bytes))
        nonmoe = replace(nonmoe, head_key=head_key, layer_key=layer_key)
    named = []
    for layer in layers:
        funcs = []
        for f in layer.functions:
            name = function_name(prefix, f.layer, f.index)
            weights = {str(e): f"s3://{bucket}/{weight_key(prefix, f.layer, e)}" for e in f.experts}
            env = {
                "MOEOPT_WEIGHTS": json.dumps(weights),
                **(extra_env or {}).get((f.layer, f.index), {}),
            }
            lambda_client.create_function(
                FunctionName=name,
                Role=role,
                MemorySize=f.memory_mb,
                Timeout=timeout_s,
                Architectures=[f.architecture],
                Environment={"Variables": env},
                Tags={"moeopt:prefix": prefix, **(tags or {})},
                **code,
            )
            funcs.append(
                FunctionSpec(
                    f.layer, f.index, f.experts, f.memory_mb, f.replicas, f.architecture, name
                )
            )
        named.append(LayerSpec(layer.layer, layer.method, layer.pipeline_degree, tuple(funcs)))
    return Deployment(tuple(named), bucket, prefix, plan_dict(plan), nonmoe, weights_fetch)


def teardown(deployment: Deployment, lambda_client: Any, s3_client: Any | None = None) -> None:
    """Delete the functions and (with ``s3_client``) every object under the deployment's prefix."""
    for f in deployment.functions:
        with contextlib.suppress(lambda_client.exceptions.ResourceNotFoundException):
            lambda_client.delete_function(FunctionName=f.name)
    if s3_client is not None:
        delete_prefix(s3_client, deployment.bucket, deployment.prefix + "/")


def delete_prefix(s3: Any, bucket: str, prefix: str) -> None:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
