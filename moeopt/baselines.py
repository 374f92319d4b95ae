"""Reference deployments priced on a problem: the paper's baselines, before any search."""

from __future__ import annotations

from dataclasses import dataclass

from cost_models.cpu_cluster import ClusterRun, cluster_run
from moeopt.evaluate import Evaluation, evaluate
from moeopt.plan import DeploymentPlan
from moeopt.problem import DeploymentProblem

LAMBDAML_MEMORY_MB = 3008


def nearest_memory_option(problem: DeploymentProblem, memory_mb: int) -> int:
    """The problem's memory option closest to ``memory_mb`` (the smaller one on a tie): plans
    may only use the problem's options."""
    return min(problem.memory_options, key=lambda m: (abs(m - memory_mb), m))


def lambdaml_memory_mb(problem: DeploymentProblem) -> int:
    """LambdaML's 3,008 MB (the paper's Lambda maximum), or the nearest memory option where
    3,008 is not one: 3,072 MB on the paper's menu, whose top option is above its own maximum."""
    return nearest_memory_option(problem, LAMBDAML_MEMORY_MB)


def lambdaml_plan(problem: DeploymentProblem, method: str = "storage") -> DeploymentPlan:
    """LambdaML-style: every expert its own function at :func:`lambdaml_memory_mb`, no
    replicas, no prediction."""
    methods = [method] if method in problem.methods else list(problem.methods)
    return DeploymentPlan.uniform(problem, lambdaml_memory_mb(problem), 1, methods[0])


#: The request rate the CPU-cluster baseline is priced at unless one is given: one batch a
#: minute. The paper states none; ``moeopt breakeven`` sweeps it.
DEFAULT_CLUSTER_REQUESTS_PER_HOUR = 60.0


def cpu_cluster(
    problem: DeploymentProblem, requests_per_hour: float = DEFAULT_CLUSTER_REQUESTS_PER_HOUR
) -> ClusterRun:
    """The problem's batches on the paper's CPU cluster, always on at ``requests_per_hour``
    (cost_models.cpu_cluster; the instance and its price come from the problem's constants)."""
    c = problem.constants
    inst = c.cpu_cluster()
    return cluster_run(
        problem.model,
        problem.popularity.loads,
        problem.workload.tokens_per_batch,
        inst.usd_per_hour,
        inst.physical_cores,
        c.cpu_cluster_flops_per_second_per_core,
        inst.name,
        requests_per_hour,
    )


def cluster_started_per_batch_usd(problem: DeploymentProblem, run: ClusterRun) -> float:
    """A cluster started for each batch instead (EC2 bills per second, with its minimum;
    its boot time is not counted): the other way to pay for a rarely used cluster."""
    c = problem.constants
    return max(run.wall_time_s, c.cpu_cluster_min_billed_s) * run.usd_per_hour / 3600.0


@dataclass(frozen=True)
class BaselineRow:
    name: str
    evaluation: Evaluation | None
    cluster: ClusterRun | None = None


def baseline_rows(problem: DeploymentProblem) -> list[BaselineRow]:
    """LambdaML under each method, the largest uniform plan, and the CPU cluster."""
    rows = [
        BaselineRow(f"lambdaml-{m}", evaluate(problem, lambdaml_plan(problem, m)))
        for m in problem.methods
    ]
    top = max(problem.memory_options)
    biggest = DeploymentPlan.uniform(problem, top, problem.max_replicas, "storage")
    rows.append(BaselineRow(f"uniform-{top}mb-x{problem.max_replicas}", evaluate(problem, biggest)))
    rows.append(BaselineRow("cpu-cluster", None, cpu_cluster(problem)))
    return rows
