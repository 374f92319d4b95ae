"""Click commands of the runtime; the lead registers them on ``moeopt`` (``moeopt/cli.py``).

- ``runtime`` group: ``moeopt runtime serve`` starts the local backend and S3, prints endpoints.
- ``run_command``: ``moeopt run PLAN.json --backend local|aws [--requests N] [--json]``.
- ``calibrate_command``: ``moeopt calibrate --backend local -o PROFILE.json``.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
from pathlib import Path
from typing import Any

import click

from lambda_runtime.deploy import PlanError, plan_dict

BUCKET = "moeopt-local"


class RuntimeInputError(click.ClickException):
    """A user mistake in a runtime command: one line, exit status 2."""

    exit_code = 2


@click.group("runtime")
def runtime() -> None:
    """The Lambda runtime: local backend (Lambda API + S3 on 127.0.0.1)."""


@runtime.command("serve")
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Account concurrency limit (429 beyond it).",
)
@click.option("--no-cpu-limits", is_flag=True, help="Do not apply cgroup vCPU quotas.")
def serve(concurrency: int, no_cpu_limits: bool) -> None:
    """Start the local backend and print its endpoints; runs until Ctrl-C."""
    from lambda_runtime.local import LocalBackend

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with LocalBackend(concurrency_limit=concurrency, cpu_limits=not no_cpu_limits) as backend:
        status = backend.status()
        click.echo(f"Lambda API: {status['lambda_endpoint']}")
        click.echo(f"S3:         {status['s3_endpoint']}")
        cpu = status["cpu_limit"]
        click.echo(
            f"vCPU share: {'enforced by ' + cpu['mechanism'] if cpu['enforced'] else 'NOT enforced'}"
            f" ({cpu['detail']})"
        )
        click.echo(
            f"client:     boto3.client('lambda', endpoint_url='{status['lambda_endpoint']}', "
            "region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')"
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        click.echo("stopping")


@runtime.command("aws-provision")
@click.option("--region", default="us-east-1", show_default=True)
@click.option(
    "--bucket", required=True, help="S3 bucket for weights and intermediates (created if absent)."
)
@click.option("--prefix", default="moeopt", show_default=True)
@click.option(
    "--context",
    "context_dir",
    type=click.Path(file_okay=False),
    default="moeopt-image",
    show_default=True,
    help="Where to write the container image build context.",
)
def aws_provision(region: str, bucket: str, prefix: str, context_dir: str) -> None:
    """Create the bucket, ECR repository and least-privilege role; build the image if Docker runs."""
    from lambda_runtime.aws import AwsBackend

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    info = AwsBackend(region=region, prefix=prefix).provision(bucket, context_dir)
    click.echo(json.dumps(info, indent=2))
    click.echo(
        f"next: moeopt run PLAN.json --backend aws --region {region} --bucket {bucket} --prefix {prefix} "
        f"--image-uri {info['image_uri']} --role-arn {info['role_arn']}"
    )


@runtime.command("aws-teardown")
@click.option("--region", default="us-east-1", show_default=True)
@click.option("--bucket", default=None)
@click.option("--prefix", default="moeopt", show_default=True)
@click.option("--delete-bucket", is_flag=True, help="Also empty and delete the bucket.")
def aws_teardown(region: str, bucket: str | None, prefix: str, delete_bucket: bool) -> None:
    """Delete the prefix's functions, role and repository (and the bucket if asked)."""
    from lambda_runtime.aws import AwsBackend

    AwsBackend(region=region, prefix=prefix).teardown(bucket=bucket, delete_bucket=delete_bucket)
    click.echo(f"torn down prefix {prefix!r} in {region}")


def _load_plan(path: str) -> dict[str, Any]:
    try:
        return plan_dict(json.loads(Path(path).read_text()))
    except OSError as exc:
        raise RuntimeInputError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, PlanError) as exc:
        raise RuntimeInputError(f"{path}: not a plan: {exc}") from None


def _model_shape(
    plan: dict[str, Any], problem: str | None, hidden: int, ffn: int, top_k: int
) -> dict[str, Any]:
    """The problem's model shape (lazy import of the core package), else the plan's own shape
    with ``hidden``/``ffn``/``top_k`` (when the plan's problem is not known here)."""
    name = problem or (plan.get("problem") or {}).get("name")
    try:
        from moeopt.problem import load_problem
    except ImportError:
        load_problem = None
    if load_problem is not None and name:
        try:
            p = load_problem(name)
        except ValueError as exc:
            if problem:
                raise RuntimeInputError(f"--problem: {exc}") from None
            click.echo(
                f"note: plan's problem not loadable ({exc}); using the plan's shape", err=True
            )
            p = None
    else:
        p = None
    if p is not None:
        m = p.model
        return {
            "layers": m.moe_layers,
            "experts": m.experts_per_layer,
            "top_k": m.top_k,
            "hidden": m.hidden_size,
            "ffn": m.expert_ffn_size,
            "tokens": p.workload.tokens_per_batch,
            "shares": p.popularity.loads.mean(axis=0),
            "model_name": m.name,
        }
    layers = plan.get("layers") or []
    experts = 1 + max(
        (e for la in layers for f in la.get("functions", []) for e in f.get("experts", [])),
        default=0,
    )
    return {
        "layers": len(layers),
        "experts": experts,
        "top_k": top_k,
        "hidden": hidden,
        "ffn": ffn,
        "tokens": 256,
    }


def _human(summary: Any) -> str:
    s = summary
    lines = [
        f"requests: {s.requests} ({s.ok_requests} ok), {s.tokens_per_request} tokens each",
        f"latency: p50 {s.latency_p50_s:.3f} s  p95 {s.latency_p95_s:.3f} s  p99 {s.latency_p99_s:.3f} s",
        f"throughput: {s.throughput_tokens_per_s:.1f} tokens/s",
        f"billed: {s.billed_gb_s_per_request:.4f} GB-s per request = ${s.usd_per_request:.8f} "
        f"(${s.usd_per_request_with_fees:.8f} with request fees, {s.invocations_per_request:.1f} invocations)",
        f"cold starts: {s.cold_starts}, retries: {s.retries}",
    ]
    if s.predicted:
        measured = {
            "cost_usd": s.usd_per_request,
            "cost_gb_s": s.billed_gb_s_per_request,
            "latency_s": s.latency_p50_s,
            "throughput_tokens_per_s": s.throughput_tokens_per_s,
        }
        lines.append(f"{'':24}{'predicted':>14}{'measured':>14}{'error':>9}")
        for key, value in s.predicted.items():
            if key in measured and isinstance(value, int | float):
                err = (measured[key] - value) / value if value else math.nan
                lines.append(f"{key:24}{value:>14.6g}{measured[key]:>14.6g}{err:>+9.1%}")
    lines.extend(f"FAILED {f}" for f in s.failures)
    return "\n".join(lines)


@click.command("run")
@click.argument("plan_path", metavar="PLAN.json", type=click.Path(dir_okay=False))
@click.option("--backend", type=click.Choice(["local", "aws"]), default="local", show_default=True)
@click.option(
    "--problem", "problem_name", default=None, help="Override the problem the plan names."
)
@click.option("--requests", type=click.IntRange(1), default=3, show_default=True)
@click.option(
    "--warmup",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="Unmeasured requests first (cold starts, weight downloads).",
)
@click.option(
    "--max-environments",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Local backend: warm environments kept; below the plan's total replicas every request starts cold.",
)
@click.option(
    "--tokens",
    type=click.IntRange(1),
    default=None,
    help="Tokens per request (default: the problem's tokens_per_batch).",
)
@click.option(
    "--region", default="us-east-1", show_default=True, help="AWS region (--backend aws)."
)
@click.option("--bucket", default=None, help="S3 bucket (--backend aws; created if absent).")
@click.option("--image-uri", default=None, help="Expert function image in ECR (--backend aws).")
@click.option("--role-arn", default=None, help="Execution role (--backend aws).")
@click.option(
    "--prefix",
    default="moeopt",
    show_default=True,
    help="--backend aws: name prefix of functions and S3 keys (the role's policy is scoped to it).",
)
@click.option(
    "--hidden",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Hidden size when the plan's problem is not loadable.",
)
@click.option(
    "--ffn",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="Expert FFN size when the plan's problem is not loadable.",
)
@click.option(
    "--top-k",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Experts per token when the plan's problem is not loadable.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print every AWS resource the run would create and the cost per 1,000 requests; create nothing.",
)
@click.option(
    "--model",
    "model_choice",
    type=click.Choice(["auto", "converted", "seeded"]),
    default="auto",
    show_default=True,
    help="converted: the real all-MiniLM-L6-v2 MoE (minilm-moe-* problems); seeded: random "
    "weights of the problem's shape, routed like its popularity; auto: converted when it fits.",
)
@click.option("--no-check", is_flag=True, help="Skip the comparison with the monolithic forward.")
@click.option("--json", "as_json", is_flag=True)
def run_command(
    plan_path: str,
    backend: str,
    problem_name: str | None,
    requests: int,
    warmup: int,
    max_environments: int,
    tokens: int | None,
    region: str,
    bucket: str | None,
    image_uri: str | None,
    role_arn: str | None,
    prefix: str,
    hidden: int,
    ffn: int,
    top_k: int,
    dry_run: bool,
    model_choice: str,
    no_check: bool,
    as_json: bool,
) -> None:
    """Run PLAN.json on the local backend or AWS; report measured against predicted."""
    from lambda_runtime.run import run_plan

    plan = _load_plan(plan_path)
    shape = _model_shape(plan, problem_name, hidden, ffn, top_k)
    n_tokens = tokens or shape["tokens"]
    if dry_run:
        _dry_run(
            plan, plan_path, shape, n_tokens, region, bucket or "moeopt-<account>-<region>", as_json
        )
        return
    moe = runtime_model(shape, model_choice)
    if not as_json:
        click.echo(f"model: {moe.description}", err=True)
    try:
        if backend == "local":
            from lambda_runtime.local import LocalBackend

            with LocalBackend(max_environments=max_environments) as b:
                summary, _ = run_plan(
                    plan,
                    moe,
                    b.lambda_client(),
                    b.s3_client(),
                    b.code(),
                    BUCKET,
                    requests=requests,
                    tokens=n_tokens,
                    check=not no_check,
                    warmup=warmup,
                )
        else:
            from lambda_runtime.aws import AwsBackend

            if not (bucket and image_uri and role_arn):
                raise RuntimeInputError(
                    "--backend aws needs --bucket, --image-uri and --role-arn "
                    "(create them with `moeopt runtime aws-provision`)"
                )
            aws = AwsBackend(region=region, prefix=prefix)
            summary, _ = run_plan(
                plan,
                moe,
                aws.lambda_client(),
                aws.s3_client(),
                {"PackageType": "Image", "Code": {"ImageUri": image_uri}},
                bucket,
                requests=requests,
                tokens=n_tokens,
                check=not no_check,
                role=role_arn,
                warmup=warmup,
                prefix=prefix,
            )
    except PlanError as exc:
        raise RuntimeInputError(f"{plan_path}: {exc}") from None
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if backend == "aws" and isinstance(exc, BotoCoreError | ClientError):
            raise RuntimeInputError(f"aws: {exc}") from None  # e.g. no credentials, access denied
        raise
    replicas = sum(
        f.get("replicas", 1) for la in plan.get("layers", []) for f in la.get("functions", [])
    )
    notes = []
    if n_tokens != shape["tokens"]:
        notes.append(
            f"note: ran {n_tokens} tokens per request; the plan was predicted for {shape['tokens']}"
        )
    if backend == "local" and replicas > max_environments:
        notes.append(
            f"note: the plan has {replicas} function replicas but --max-environments is "
            f"{max_environments}: environments were evicted and restarted cold"
        )
    if as_json:
        out = {**summary.to_dict(), "model": moe.description, "notes": notes}
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        click.echo(_human(summary))
        for n in notes:
            click.echo(n)


def runtime_model(shape: dict[str, Any], choice: str) -> Any:
    """The model to serve: the converted MiniLM for its problems, else seeded weights."""
    from lambda_runtime.converted import ConvertedMiniLM, compatible
    from lambda_runtime.model import SeededMoE

    why_not = compatible(shape["layers"], shape["experts"], shape["hidden"], shape["ffn"])
    named = str(shape.get("model_name") or "").startswith("minilm-moe-")
    if choice == "converted" and why_not:
        raise RuntimeInputError(f"--model converted: the plan's problem has {why_not}")
    if choice == "converted" or (choice == "auto" and named and not why_not):
        return ConvertedMiniLM(shape["experts"], shape["top_k"])
    moe = SeededMoE(
        shape["layers"], shape["experts"], shape["hidden"], shape["ffn"], shape["top_k"], seed=0
    )
    if shape.get("shares") is not None:  # route like the popularity the plan was sized for
        moe.match_loads(shape["shares"])
    return moe


def _dry_run(
    plan: dict[str, Any],
    plan_path: str,
    shape: dict[str, int],
    tokens: int,
    region: str,
    bucket: str,
    as_json: bool,
) -> None:
    from lambda_runtime.aws import AwsBackend

    try:
        out = AwsBackend(region=region).dry_run(
            plan, shape["layers"], shape["experts"], bucket, tokens
        )
    except PlanError as exc:
        raise RuntimeInputError(f"{plan_path}: {exc}") from None
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"dry run: would create in {region} (nothing created):")
    from lambda_runtime.aws import AwsResource

    for r in out["resources"]:
        click.echo("  " + AwsResource(**r).line())
    per = out["per_request"]
    click.echo(
        f"per request: {per['invocations']} invocations, {per['s3_puts']} S3 PUTs, {per['s3_gets']} S3 GETs"
        f" ({tokens} tokens, uniform routing estimate)"
    )
    if out["predicted_total_usd"] is None:
        click.echo(
            f"per 1,000 requests: request and storage fees ${out['request_and_storage_fees_usd']:.4f}; "
            "compute cost unknown (plan has no predicted.cost_usd)"
        )
    else:
        click.echo(
            f"per 1,000 requests: ${out['predicted_total_usd']:.4f} (compute ${out['predicted_compute_usd']:.4f}"
            f" + request and storage fees ${out['request_and_storage_fees_usd']:.4f})"
        )


@click.command("calibrate")
@click.option("--backend", type=click.Choice(["local"]), default="local", show_default=True)
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), required=True)
@click.option(
    "--memory",
    "memory_sizes",
    default="1024,1769,3538",
    show_default=True,
    help="Comma-separated memory sizes (MB) to time the expert at.",
)
@click.option("--hidden", type=click.IntRange(1), default=768, show_default=True)
@click.option("--ffn", type=click.IntRange(1), default=3072, show_default=True)
@click.option("--tokens", type=click.IntRange(1), default=256, show_default=True)
@click.option(
    "--start-method",
    type=click.Choice(["spawn", "fork"]),
    default="spawn",
    show_default=True,
    help="spawn: a fresh interpreter per environment (true cold start); fork: faster.",
)
def calibrate_command(
    backend: str,
    output: str,
    memory_sizes: str,
    hidden: int,
    ffn: int,
    tokens: int,
    start_method: str,
) -> None:
    """Measure compute, start and transfer times; write a cost-model profile (JSON)."""
    from lambda_runtime.calibrate import calibrate
    from lambda_runtime.local import LocalBackend

    try:
        sizes = tuple(int(m) for m in memory_sizes.split(","))
    except ValueError:
        raise RuntimeInputError(
            f"--memory: {memory_sizes!r}; allowed: integers 128..10240, comma-separated"
        ) from None
    if not all(128 <= m <= 10240 for m in sizes):
        raise RuntimeInputError(
            f"--memory: {memory_sizes!r}; allowed: integers 128..10240, comma-separated"
        )
    with LocalBackend(start_method=start_method) as b:
        profile = calibrate(
            b.lambda_client(), b.s3_client(), b.code(), BUCKET, sizes, hidden, ffn, tokens
        )
        profile["backend"] = {
            k: v
            for k, v in b.status().items()
            if k in ("cpu_limit", "memory_limit", "start_method")
        }
    Path(output).write_text(json.dumps(profile, indent=2) + "\n")
    click.echo(f"profile written to {output}")
    for k, v in profile["constants"].items():
        click.echo(f"  {k} = {v:.6g}")
