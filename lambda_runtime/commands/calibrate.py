"""``moeopt calibrate``: measure the cost model's constants on the local backend, fit them, write
a profile that ``--profile FILE`` and ``cost_model.profile`` load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lambda_runtime.commands.common import (
    BUCKET,
    RuntimeInputError,
    local_backend,
    network_options,
    one_line_errors,
)

DEFAULT_MEMORY = "442,884,1769,3008"
DEFAULT_TOKENS = "256,1024,2560"


def _ints(raw: str, option: str, low: int, high: int) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in raw.split(","))
    except ValueError:
        values = ()
    if not values or not all(low <= v <= high for v in values):
        raise RuntimeInputError(f"{option}: {raw!r}; allowed: integers {low}..{high}, comma-separated")
    return values


def run_calibration(
    memory_sizes: tuple[int, ...], hidden: int, ffn: int, tokens: tuple[int, ...], repeats: int,
    no_network: bool = False, host_vcpus: float | None = None, start_method: str = "fork",
    nonmoe: Any = None,
) -> dict[str, Any]:
    """Start a local backend, calibrate on it, and return the profile (with what it ran on)."""
    from lambda_runtime.calibrate import calibrate

    with local_backend(no_network, host_vcpus, start_method=start_method) as b:
        profile = calibrate(b.lambda_client(), b.s3_client(), b.code(), BUCKET, memory_sizes,
                            hidden, ffn, tokens, repeats, nonmoe)
        status = b.status()
    profile["backend"] = {k: status[k] for k in ("cpu_limit", "memory_limit", "start_method", "host")}
    profile["emulation"] = status.get("network")
    return profile


def describe(profile: dict[str, Any]) -> list[str]:
    """One line per constant: its value and how well the fit explains its measurements."""
    lines = []
    fits = profile.get("fits", {})
    for name, value in profile["constants"].items():
        fit = fits.get(name)
        how = (
            f"  (fit on {fit['points']} points: residual {fit['rms_relative_residual']:.1%} rms, "
            f"{fit['max_relative_residual']:.1%} at most)" if fit else "  (median of its samples)"
        )
        lines.append(f"  {name} = {value:.6g}{how}")
    return lines


@click.command("calibrate")
@click.option("--backend", type=click.Choice(["local"]), default="local", show_default=True)
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), required=True)
@click.option("--memory", "memory_sizes", default=DEFAULT_MEMORY, show_default=True,
              help="Comma-separated memory sizes (MB) to time the expert at.")
@click.option("--hidden", type=click.IntRange(1, 65536), default=2048, show_default=True,
              help="Expert hidden size (calibrate at your model's expert size).")
@click.option("--ffn", type=click.IntRange(1, 262144), default=256, show_default=True,
              help="Expert FFN size.")
@click.option("--tokens", "token_counts", default=DEFAULT_TOKENS, show_default=True,
              help="Comma-separated token counts per invocation.")
@click.option("--repeats", type=click.IntRange(1, 20), default=3, show_default=True)
@network_options
@click.option("--start-method", type=click.Choice(["spawn", "fork"]), default="fork", show_default=True,
              help="spawn: a fresh interpreter per environment (a truer cold start); fork: faster.")
@one_line_errors("calibrate")
def calibrate_command(backend: str, output: str, memory_sizes: str, hidden: int, ffn: int,
                      token_counts: str, repeats: int, no_network: bool, host_vcpus: float | None,
                      start_method: str) -> None:
    """Measure compute, start and transfer times through the network model; fit the cost
    model's constants; write a profile (JSON)."""
    from moeopt.profiles import dumps_profile

    sizes = _ints(memory_sizes, "--memory", 128, 10240)
    tokens = _ints(token_counts, "--tokens", 1, 100_000)
    if no_network:
        click.echo("note: --no-network: the profile describes loopback, not Lambda's network", err=True)
    profile = run_calibration(sizes, hidden, ffn, tokens, repeats, no_network, host_vcpus, start_method)
    Path(output).write_text(dumps_profile(profile))
    click.echo(f"profile written to {output}")
    for line in describe(profile):
        click.echo(line)


#: Bump when what a calibration measures changes: cached profiles of older versions are redone.
CALIBRATION_VERSION = 2


def cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "moeopt"


def _nonmoe_step(problem: Any) -> Any:
    """(seconds of one non-MoE step on n tokens, its FLOPs per token) for models whose non-MoE
    part the coordinator runs for real (the converted MiniLM); None otherwise."""
    import time

    import torch

    from lambda_runtime.converted import ConvertedMiniLM, compatible

    m = problem.model
    if compatible(m.moe_layers, m.experts_per_layer, m.hidden_size, m.expert_ffn_size):
        return None
    model = ConvertedMiniLM(m.experts_per_layer, m.top_k)

    def step(n: int) -> float:
        req = model.request(n, 0)
        h = req.first_inputs()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the coordinator runs it (lambda_runtime.run)
        try:
            t = time.perf_counter()
            req.between(0, h)
            return time.perf_counter() - t
        finally:
            torch.set_num_threads(threads)

    gate = 2.0 * m.hidden_size * m.experts_per_layer
    n = problem.workload.tokens_per_batch
    return step, m.nonmoe_flops_per_token + gate, (max(n // 4, 3), n)


def machine_profile(problem: Any, refresh: bool = False, echo: Any = None) -> tuple[Path, bool]:
    """A calibration of this machine at ``problem``'s expert size, cached under
    ``~/.cache/moeopt`` and keyed by what it measured on (CPU, cores, kernel, Python, torch,
    the emulated network, the expert shape); (path, reused)."""
    import hashlib
    import json

    from lambda_runtime.calibrate import machine_key
    from lambda_runtime.local.backend import lambda_network
    from lambda_runtime.local.host import default_host_vcpus
    from moeopt.profiles import dumps_profile

    m = problem.model
    key = {
        "version": CALIBRATION_VERSION, "machine": machine_key(),
        "network": lambda_network().to_dict(), "host_vcpus": default_host_vcpus(),
        "expert": [m.hidden_size, m.expert_ffn_size, m.ffn_matrices], "model": m.name,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"calibration-{digest}.json"
    if path.exists() and not refresh:
        return path, True
    if echo is not None:
        echo(f"calibrating this machine at the problem's expert size (once; cached in {path})")
    options = sorted(problem.memory_options)
    sizes = tuple(sorted({min(options, key=lambda o: abs(o - t)) for t in (768, 1769, 3008)}))
    profile = run_calibration(sizes, m.hidden_size, m.expert_ffn_size, (256, 1024, 2560), 2,
                              nonmoe=_nonmoe_step(problem))
    profile["key"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dumps_profile(profile))
    tmp.replace(path)
    return path, False
