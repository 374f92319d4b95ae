"""``moeopt validate``: run a fixed set of plans on the local backend and hold every predicted
cost and latency to its measurement (docs/runtime.md, "Validate").

Exit status: 0 every median error within ``--tolerance``; 5 some error over it (the table says
which); 2 a user mistake; 1 anything else.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from lambda_runtime.commands.common import (
    RuntimeInputError,
    local_backend,
    network_options,
    one_line_errors,
)
from moeopt.jsonout import dumps

EXIT_OVER_TOLERANCE = 5


def table(report: dict[str, Any]) -> list[str]:
    lines = [
        f"profile: {report['profile']}; network model: "
        + ("on" if report["emulation"] else "OFF (loopback)")
        + f"; host vCPUs: {report['host_vcpus']}",
        f"{'plan':18}{'method':19}{'tokens':>7}{'MB':>6}  {'GB-s pred':>10}{'meas':>9}{'(iqr)':>8}"
        f"{'err':>8}  {'lat s pred':>10}{'meas':>8}{'(iqr)':>8}{'err':>8}",
    ]
    for r in report["plans"]:
        p, m, e = r["predicted"], r["measured"], r["error"]
        lines.append(
            f"{r['name']:18}{r['method']:19}{r['tokens']:>7}{r['memory_mb']:>6}  "
            f"{p['cost_gb_s']:>10.3f}{m['cost_gb_s']:>9.3f}{m['cost_gb_s_iqr']:>8.3f}{e['cost']:>+8.1%}  "
            f"{p['latency_s']:>10.3f}{m['latency_s']:>8.3f}{m['latency_s_iqr']:>8.3f}{e['latency']:>+8.1%}"
        )
    ratio = report.get("pipelined_over_storage")
    if ratio is not None:
        lines.append(
            f"pipelined storage over storage, throughput at 2,560 tokens: predicted "
            f"{ratio['predicted']:.2f}x, measured {ratio['measured']:.2f}x ({ratio['error']:+.1%})"
        )
    return lines


@click.command("validate")
@click.option("--backend", type=click.Choice(["local"]), default="local", show_default=True)
@click.option("--profile", default=None, metavar="NAME|FILE",
              help="Cost-model profile of this machine (`moeopt calibrate -o FILE`); without it "
              "the built-in (Lambda's) constants are held to the local backend.")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=0.15,
              show_default=True, help="Largest median error allowed (a fraction).")
@click.option("--requests", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Measured requests per plan.")
@click.option("--warmup", type=click.IntRange(0, 10), default=1, show_default=True)
@click.option("--plans", "plan_names", default=None,
              help="Comma-separated subset of the validation plans (default: all).")
@network_options
@click.option("--json", "as_json", is_flag=True)
@one_line_errors("validate")
def validate_command(backend: str, profile: str | None, tolerance: float, requests: int,
                     warmup: int, plan_names: str | None, no_network: bool,
                     host_vcpus: float | None, as_json: bool) -> None:
    """Run a fixed set of plans (direct, storage, pipelined; 256 and 2,560 tokens; several memory
    sizes; replicas; a grouped function) and compare predicted with measured billed GB-s and
    latency; exit 5 when any median error is over --tolerance."""
    from lambda_runtime.validate import PLANS, failures, validate
    from moeopt.profiles import read_profile

    plans = PLANS
    if plan_names:
        wanted = [n.strip() for n in plan_names.split(",") if n.strip()]
        known = {p.name: p for p in PLANS}
        unknown = [n for n in wanted if n not in known]
        if unknown or not wanted:
            raise RuntimeInputError(f"--plans: {unknown or plan_names!r}; allowed: {', '.join(known)}")
        plans = tuple(known[n] for n in wanted)
    if profile is not None:
        read_profile(profile)  # a bad profile is a user error before anything starts

    def progress(row: dict[str, Any]) -> None:
        if not as_json:
            click.echo(f"  {row['name']}: cost {row['error']['cost']:+.1%}, "
                       f"latency {row['error']['latency']:+.1%}", err=True)

    with local_backend(no_network, host_vcpus) as b:
        report = validate(b, profile, requests, warmup, plans, progress)
    report["tolerance"] = tolerance
    bad = failures(report, tolerance)
    report["within_tolerance"] = not bad
    if as_json:
        click.echo(dumps(report))
    else:
        for line in table(report):
            click.echo(line)
        click.echo("all within tolerance" if not bad else "OVER TOLERANCE: " + "; ".join(bad))
    if bad:
        sys.stdout.flush()
        click.get_current_context().exit(EXIT_OVER_TOLERANCE)
