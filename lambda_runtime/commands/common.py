"""What the runtime commands share: user errors, plan and problem loading, the model to serve,
the local backend's options."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import click

from lambda_runtime.deploy import NonMoe, PlanError, plan_dict

BUCKET = "moeopt-local"


class RuntimeInputError(click.ClickException):
    """A user mistake in a runtime command: one ``error:`` line, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class RuntimeFailure(RuntimeInputError):
    """The backend or the run broke (not the user's input): one ``error:`` line, exit 1."""

    exit_code = 1


def quiet_cli_threads() -> None:
    """A background thread that fails prints one ``warning:`` line, never a traceback."""
    from lambda_runtime.local.logs import quiet_threads

    quiet_threads("warning")


@contextlib.contextmanager
def one_line_errors(command: str) -> Iterator[None]:
    """Run a command's body so that nothing it raises prints a traceback: user errors keep
    their exit 2, anything unexpected becomes ``error: <command>: Type: message`` and exit 1."""
    from lambda_runtime.local.logs import one_line

    quiet_cli_threads()
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the one place where a run's failure is reported
        from moeopt.errors import InfeasibleError, InputError

        if isinstance(exc, InputError | InfeasibleError):
            raise
        raise RuntimeFailure(f"{command}: {one_line(exc)}") from None


def load_plan_file(path: str) -> dict[str, Any]:
    """A plan file read as every user file is (``moeopt.files``: regular file, size cap, UTF-8,
    nesting, finite numbers): a device or FIFO is refused, never read without end."""
    from moeopt.errors import InputError
    from moeopt.files import read_json
    from moeopt.plan import plan_from_dict

    try:
        data = plan_dict(read_json(path))
        plan_from_dict(data, path)  # every field as docs/plan-format.md has it (unknown ones too)
        return data
    except InputError as exc:
        raise RuntimeInputError(str(exc)) from None
    except PlanError as exc:
        raise RuntimeInputError(f"{path}: not a plan: {exc}") from None


def plan_problem(plan: dict[str, Any], problem: str | None, profile: str | None) -> Any:
    """The problem a plan runs against (``--problem`` or the one it names), with ``profile``;
    None when the plan's own problem is not loadable here (then the plan's shape is used)."""
    from moeopt.errors import InputError
    from moeopt.problem import load_problem

    name = problem or str((plan.get("problem") or {}).get("name") or "").split("@")[0]
    if not name:
        return None
    try:
        return load_problem(name, profile=profile)
    except InputError as exc:
        if problem or profile:
            raise RuntimeInputError(f"--problem/--profile: {exc}") from None
        click.echo(f"note: plan's problem not loadable ({exc}); using the plan's shape", err=True)
        return None


def model_shape(plan: dict[str, Any], p: Any, hidden: int, ffn: int, top_k: int) -> dict[str, Any]:
    """The problem's model shape, else the plan's own with ``hidden``/``ffn``/``top_k``."""
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
    from moeopt import limits

    layers = plan.get("layers") or []
    ids = [e for la in layers if isinstance(la, dict) for f in la.get("functions") or []
           if isinstance(f, dict) for e in f.get("experts") or []] if isinstance(layers, list) else []
    if (not isinstance(layers, list) or not 1 <= len(layers) <= limits.MAX_MOE_LAYERS
            or not all(isinstance(e, int) and not isinstance(e, bool)
                       and 0 <= e < limits.MAX_EXPERTS for e in ids)):
        # the model is built from this shape: bound it before anything is allocated
        raise RuntimeInputError(
            f"plan: layers: need 1 to {limits.MAX_MOE_LAYERS:,} layers whose functions host "
            f"expert ids 0..{limits.MAX_EXPERTS - 1} (or name the problem with --problem)"
        )
    experts = 1 + max(ids, default=0)
    return {"layers": len(layers), "experts": experts, "top_k": top_k, "hidden": hidden,
            "ffn": ffn, "tokens": 256}


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


def nonmoe_of(problem: Any, network: Any) -> NonMoe | None:
    """How the coordinator plays the problem's non-MoE functions under the network model
    (None without a network model or a problem: the coordinator then just computes)."""
    if problem is None or network is None:
        return None
    m = problem.model
    return NonMoe(
        start_s=network.warm_start_s,
        head_bytes=int(m.embedding_params * m.dtype_bytes + m.nonmoe_param_bytes),
        layer_bytes=int(m.nonmoe_param_bytes),
        fetch_weights=problem.fetch_weights,
    )


def network_options(f: Any) -> Any:
    """``--no-network`` and ``--host-vcpus``: the local backend's emulation switches."""
    f = click.option(
        "--host-vcpus", type=click.FloatRange(min=0.1), default=None,
        help="Local backend: vCPUs functions may use at once (default: this machine's cores); "
        "invocations beyond it wait, unbilled, as the prediction assumes.",
    )(f)
    return click.option(
        "--no-network", is_flag=True,
        help="Local backend: no network model (S3 and payloads at loopback speed; predictions "
        "made for Lambda's network will not hold).",
    )(f)


def local_backend(no_network: bool, host_vcpus: float | None, **kw: Any) -> Any:
    from lambda_runtime.local import LocalBackend

    return LocalBackend(
        network=None if no_network else "lambda",
        host_vcpus="host" if host_vcpus is None else host_vcpus,
        **kw,
    )


