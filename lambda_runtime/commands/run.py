"""``moeopt run PLAN.json``: deploy, serve N requests, report measured against predicted.

Exit status (docs/runtime.md): 0 every request served and checked; 2 a user mistake (one
``error:`` line); 4 a request failed (after its retries, or its output differs from the
monolithic forward): each failure is one ``FAILED`` line, the JSON is still printed; 1 the run
itself broke (the backend did not start or went away): one ``error:`` line. Never a traceback.
"""

from __future__ import annotations

from typing import Any

import click

from lambda_runtime.commands.common import (
    BUCKET,
    RuntimeInputError,
    load_plan_file,
    local_backend,
    model_shape,
    network_options,
    nonmoe_of,
    one_line_errors,
    plan_problem,
    runtime_model,
)
from lambda_runtime.deploy import PlanError
from moeopt.jsonout import dumps

EXIT_FAILED_REQUESTS = 4


class WrongOutput(RuntimeInputError):
    """A request's output differs from the monolithic forward: a failed request (exit 4)."""

    exit_code = EXIT_FAILED_REQUESTS


def comparison(summary: Any, prediction: Any) -> dict[str, Any]:
    """Measured against predicted for the loads served: median latency, mean billed GB-s,
    signed relative errors (None where a figure does not exist)."""
    measured = {"cost_gb_s": summary.billed_gb_s_per_request, "latency_s": summary.latency_p50_s}
    predicted = {"cost_gb_s": prediction.cost_gb_s, "latency_s": prediction.latency_s}
    error = {
        k: (measured[k] - predicted[k]) / predicted[k]
        if measured[k] is not None and predicted[k]
        else None
        for k in measured
    }
    return {"predicted": predicted, "measured": measured, "error": error}


def human(summary: Any, versus: dict[str, Any] | None, prediction: Any) -> str:
    s = summary
    lat = (
        f"p50 {s.latency_p50_s:.3f} s  p95 {s.latency_p95_s:.3f} s  p99 {s.latency_p99_s:.3f} s"
        if s.latency_p50_s is not None
        else "n/a (no request succeeded)"
    )
    throughput = f"{s.throughput_tokens_per_s:.1f} tokens/s" if s.ok_requests else "n/a"
    lines = [
        f"requests: {s.requests} ({s.ok_requests} ok), {s.tokens_per_request} tokens each",
        f"latency: {lat}",
        f"throughput: {throughput}",
        f"billed: {s.billed_gb_s_per_request:.4f} GB-s per request = ${s.usd_per_request:.8f} "
        f"(${s.usd_per_request_with_fees:.8f} with request fees, {s.invocations_per_request:.1f} invocations)",
        f"cold starts: {s.cold_starts}, retries: {s.retries}",
    ]
    if versus is not None:
        host = prediction.host_vcpus
        where = f"on this host's {host:g} vCPUs" if host is not None else "on Lambda"
        lines.append(
            f"predicted for the loads served, {where} (profile {prediction.profile}):"
        )
        lines.append(f"  {'':12}{'predicted':>12}{'measured':>12}{'error':>9}")
        for key, label in (("cost_gb_s", "GB-s"), ("latency_s", "latency s")):
            p, m, e = versus["predicted"][key], versus["measured"][key], versus["error"][key]
            lines.append(
                f"  {label:12}{p:>12.4g}{(f'{m:.4g}' if m is not None else '-'):>12}"
                f"{(f'{e:+.1%}' if e is not None else '-'):>9}"
            )
        if prediction.queued_replicas:
            lines.append(
                f"  ({prediction.queued_replicas} replica invocations waited for the host's vCPUs; "
                "the prediction includes that wait)"
            )
        if prediction.over_committed:
            lines.append(
                f"  OVER-COMMITTED: {prediction.over_committed} invocations asked for more vCPUs "
                "than the host has: their times are not Lambda's"
            )
    if s.predicted:
        lines.append("the plan's own prediction (the problem's sample batches, no host limit):")
        for key in ("cost_gb_s", "latency_s", "throughput_tokens_per_s"):
            value = s.predicted.get(key)
            if isinstance(value, int | float):
                lines.append(f"  {key:24}{value:>12.6g}")
    lines.extend(f"FAILED {f}" for f in s.failures)
    return "\n".join(lines)


@click.command("run")
@click.argument("plan_path", metavar="PLAN.json", type=click.Path(dir_okay=False))
@click.option("--backend", type=click.Choice(["local", "aws"]), default="local", show_default=True)
@click.option("--problem", "problem_name", default=None, help="Override the problem the plan names.")
@click.option("--profile", default=None, metavar="NAME|FILE",
              help="Cost-model profile the prediction uses (a calibration of this machine for the "
              "local backend: `moeopt calibrate`).")
@click.option("--requests", type=click.IntRange(1), default=3, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=1, show_default=True,
              help="Unmeasured requests first (cold starts, weight downloads).")
@click.option("--no-prewarm", is_flag=True,
              help="Do not start every replica's environment before the requests (then a request "
              "meets cold functions, which the warm-start prediction leaves out).")
@click.option("--max-environments", type=click.IntRange(1), default=64, show_default=True,
              help="Local backend: warm environments kept; below the plan's total replicas every "
              "request starts cold.")
@click.option("--tokens", type=click.IntRange(1), default=None,
              help="Tokens per request (default: the problem's tokens_per_batch).")
@network_options
@click.option("--region", default="us-east-1", show_default=True, help="AWS region (--backend aws).")
@click.option("--bucket", default=None, help="S3 bucket (--backend aws; created if absent).")
@click.option("--image-uri", default=None, help="Expert function image in ECR (--backend aws).")
@click.option("--role-arn", default=None, help="Execution role (--backend aws).")
@click.option("--prefix", default="moeopt", show_default=True,
              help="--backend aws: name prefix of functions and S3 keys (the role's policy is scoped to it).")
@click.option("--hidden", type=click.IntRange(1), default=64, show_default=True,
              help="Hidden size when the plan's problem is not loadable.")
@click.option("--ffn", type=click.IntRange(1), default=128, show_default=True,
              help="Expert FFN size when the plan's problem is not loadable.")
@click.option("--top-k", type=click.IntRange(1), default=1, show_default=True,
              help="Experts per token when the plan's problem is not loadable.")
@click.option("--dry-run", is_flag=True,
              help="Print every AWS resource the run would create and the cost per 1,000 requests; create nothing.")
@click.option("--model", "model_choice", type=click.Choice(["auto", "converted", "seeded"]),
              default="auto", show_default=True,
              help="converted: the real all-MiniLM-L6-v2 MoE (minilm-moe-* problems); seeded: random "
              "weights of the problem's shape, routed like its popularity; auto: converted when it fits.")
@click.option("--no-check", is_flag=True, help="Skip the comparison with the monolithic forward.")
@click.option("--json", "as_json", is_flag=True)
@one_line_errors("run")
def run_command(
    plan_path: str, backend: str, problem_name: str | None, profile: str | None, requests: int,
    warmup: int, no_prewarm: bool, max_environments: int, tokens: int | None, no_network: bool,
    host_vcpus: float | None, region: str, bucket: str | None, image_uri: str | None,
    role_arn: str | None, prefix: str, hidden: int, ffn: int, top_k: int, dry_run: bool,
    model_choice: str, no_check: bool, as_json: bool,
) -> None:
    """Run PLAN.json on the local backend or AWS; report measured against predicted."""
    plan = load_plan_file(plan_path)
    problem = plan_problem(plan, problem_name, profile)
    shape = model_shape(plan, problem, hidden, ffn, top_k)
    n_tokens = tokens or shape["tokens"]
    if dry_run:
        _fits_problem(plan, plan_path, problem if problem_name else None)
        _dry_run(plan, plan_path, shape, n_tokens, region, bucket or "moeopt-<account>-<region>", as_json)
        return
    moe = runtime_model(shape, model_choice)
    _fits_problem(plan, plan_path, problem if problem_name else None)
    if not as_json:
        click.echo(f"model: {moe.description}", err=True)
    outcome = execute(plan, plan_path, problem, moe, backend, requests=requests, warmup=warmup,
                      tokens=n_tokens, max_environments=max_environments, no_network=no_network,
                      host_vcpus=host_vcpus, check=not no_check, region=region, bucket=bucket,
                      image_uri=image_uri, role_arn=role_arn, prefix=prefix, prewarm=not no_prewarm)
    summary, prediction, versus, status = outcome
    notes = []
    if n_tokens != shape["tokens"]:
        notes.append(f"note: ran {n_tokens} tokens per request; the plan was solved for {shape['tokens']}")
    replicas = sum(f.get("replicas", 1) for la in plan.get("layers", []) for f in la.get("functions", []))
    if backend == "local" and replicas > max_environments:
        notes.append(
            f"note: the plan has {replicas} function replicas but --max-environments is "
            f"{max_environments}: environments were evicted and restarted cold"
        )
    if as_json:
        out = {**summary.to_dict(), "model": moe.description, "notes": notes,
               "backend": status, "prediction": prediction.to_dict() if prediction else None,
               **(versus or {})}
        if not summary.ok_requests:  # no request served: no throughput to state
            out["throughput_tokens_per_s"] = None
        click.echo(dumps(out))
    else:
        click.echo(human(summary, versus, prediction))
        for n in notes:
            click.echo(n)
    if summary.ok_requests < summary.requests:
        click.echo(f"error: {summary.requests - summary.ok_requests} of {summary.requests} "
                   "requests failed (each is a FAILED line)", err=True)
        click.get_current_context().exit(EXIT_FAILED_REQUESTS)


def _fits_problem(plan: dict[str, Any], plan_path: str, problem: Any) -> None:
    """A plan run against ``--problem`` uses only that problem's options (memory menu,
    replicas, architectures, methods), as ``evaluate`` requires."""
    if problem is None:
        return
    from moeopt.errors import InputError
    from moeopt.plan import check_plan, plan_from_dict

    try:
        check_plan(plan_from_dict(plan, plan_path), problem, plan_path, fingerprint=False)
    except InputError as exc:
        raise RuntimeInputError(str(exc)) from None


def execute(
    plan: dict[str, Any], plan_path: str, problem: Any, moe: Any, backend: str, *, requests: int,
    warmup: int, tokens: int, max_environments: int = 64, no_network: bool = False,
    host_vcpus: float | None = None, check: bool = True, region: str = "us-east-1",
    bucket: str | None = None, image_uri: str | None = None, role_arn: str | None = None,
    prefix: str = "moeopt", prewarm: bool = True,
) -> tuple[Any, Any, dict[str, Any] | None, dict[str, Any]]:
    """Run the plan; (summary, prediction for the loads served, comparison, backend status)."""
    from lambda_runtime.predict import predict_run, served_loads
    from lambda_runtime.run import run_plan

    if problem is not None:
        from moeopt.errors import InputError
        from moeopt.plan import check_plan, plan_from_dict

        try:
            check_plan(plan_from_dict(plan, plan_path), problem, plan_path)
        except InputError as exc:
            hint = "" if "fingerprint" not in str(exc) else (
                " (a plan solved with --profile runs with the same --profile)")
            raise RuntimeInputError(f"{exc}{hint}") from None
    weights = "per_invocation" if problem is not None and problem.fetch_weights else "cached"
    host: float | None = None
    try:
        if backend == "local":
            with local_backend(no_network, host_vcpus, max_environments=max_environments) as b:
                summary, results = run_plan(
                    plan, moe, b.lambda_client(), b.s3_client(), b.code(), BUCKET,
                    requests=requests, tokens=tokens, check=check, warmup=warmup,
                    nonmoe=nonmoe_of(problem, b.network), weights_fetch=weights, prewarm=prewarm,
                )
                status = b.status()
                host = b.host_vcpus
        else:
            from lambda_runtime.aws import AwsBackend

            if not (bucket and image_uri and role_arn):
                raise RuntimeInputError(
                    "--backend aws needs --bucket, --image-uri and --role-arn "
                    "(create them with `moeopt runtime aws-provision`)"
                )
            aws = AwsBackend(region=region, prefix=prefix)
            summary, results = run_plan(
                plan, moe, aws.lambda_client(), aws.s3_client(),
                {"PackageType": "Image", "Code": {"ImageUri": image_uri}}, bucket,
                requests=requests, tokens=tokens, check=check, role=role_arn, warmup=warmup,
                prefix=prefix, weights_fetch=weights, prewarm=prewarm,
            )
            status = {"backend": "aws", "region": region}
    except PlanError as exc:
        raise RuntimeInputError(f"{plan_path}: {exc}") from None
    except AssertionError as exc:  # run_plan's check against the monolithic forward
        raise WrongOutput(f"a request's output is wrong: {exc}") from None
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if backend == "aws" and isinstance(exc, BotoCoreError | ClientError):
            raise RuntimeInputError(f"aws: {exc}") from None  # e.g. no credentials, access denied
        raise
    prediction = versus = None
    loads = served_loads(results)
    if problem is not None and loads is not None:
        prediction = predict_run(plan, problem, loads, host)
        versus = comparison(summary, prediction)
    return summary, prediction, versus, status


def _dry_run(plan: dict[str, Any], plan_path: str, shape: dict[str, Any], tokens: int, region: str,
             bucket: str, as_json: bool) -> None:
    from lambda_runtime.aws import AwsBackend, AwsResource

    try:
        out = AwsBackend(region=region).dry_run(plan, shape["layers"], shape["experts"], bucket, tokens)
    except PlanError as exc:
        raise RuntimeInputError(f"{plan_path}: {exc}") from None
    if as_json:
        click.echo(dumps(out))
        return
    click.echo(f"dry run: would create in {region} (nothing created):")
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

