"""Named instance sets: a folder of problem files plus a ``suite.json`` with the set's defaults.

A suite is data, not code: ``benchmarks/suites/<set>/*.json`` are ordinary problem files
(``docs/problem-format.md``), so any instance can be solved alone with ``moeopt solve
--problem FILE``. ``suite.json`` names the default budget, seeds and any other sets it
includes (the ``traces`` slot holds problems built from profiled routing traces).

``python -m moeopt.bench.suite benchmarks/suites`` regenerates the committed files.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from moeopt.errors import InputError
from moeopt.problem import DeploymentProblem, read_problem_file
from moeopt.solver import Budget

SUITE_SCHEMA = "moeopt.bench.suite/1"
MANIFEST = "suite.json"


def suites_dir() -> Path:
    """``benchmarks/suites`` of the working directory, else of the source checkout."""
    here = Path.cwd() / "benchmarks" / "suites"
    return here if here.is_dir() else Path(__file__).resolve().parents[2] / "benchmarks" / "suites"


@dataclass(frozen=True)
class Instance:
    """One problem file of a suite; the fingerprint is the problem's, so it survives renames."""

    name: str
    path: Path

    @cached_property
    def problem(self) -> DeploymentProblem:
        return read_problem_file(self.path)

    @property
    def fingerprint(self) -> str:
        return self.problem.fingerprint


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    instances: tuple[Instance, ...]
    budget: Budget
    seeds: int
    timeout_s: float | None = None


def with_profile(suite: Suite, profile: str, out_dir: Path) -> Path:
    """A copy of ``suite`` whose every instance names ``profile`` in ``cost_model.profile``
    (a built-in name, or the file's absolute path); returns the copy's folder (under
    ``out_dir``, named by suite and profile, so a resumed sweep finds it again)."""
    import hashlib

    from moeopt.files import read_document
    from moeopt.profiles import profile_names, read_profile

    read_profile(profile)  # a bad profile is an error before anything is written
    ref = profile if profile in profile_names() else str(Path(profile).resolve())
    tag = hashlib.sha256(ref.encode()).hexdigest()[:8]
    folder = out_dir / f"suite-{suite.name}-profile-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"schema": SUITE_SCHEMA, "name": f"{suite.name}+{Path(ref).stem}",
                "description": f"{suite.description} (profile {ref})",
                "budget": {"evaluations": suite.budget.evaluations, "seconds": suite.budget.seconds},
                "seeds": suite.seeds, **({"timeout_s": suite.timeout_s} if suite.timeout_s else {})}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    for inst in suite.instances:
        spec = read_document(inst.path)
        spec["cost_model"] = {**spec.get("cost_model", {}), "profile": ref}
        for key in ("file",):  # data files resolve against the original folder
            pop = spec.get("popularity", {})
            if isinstance(pop.get(key), str) and not Path(pop[key]).is_absolute():
                candidate = inst.path.parent / pop[key]
                if candidate.exists():
                    pop[key] = str(candidate.resolve())
        (folder / inst.path.name).write_text(json.dumps(spec, indent=2) + "\n")
    return folder


def load_suite(name_or_dir: str | Path) -> Suite:
    """A suite by name (a folder of ``benchmarks/suites``) or by folder path."""
    path = Path(name_or_dir)
    if not path.is_dir():
        path = suites_dir() / str(name_or_dir)
    if not path.is_dir():
        known = sorted(p.name for p in suites_dir().glob("*") if (p / MANIFEST).exists())
        raise InputError("--suite", str(name_or_dir), f"no such suite; known: {', '.join(known)}")
    manifest: dict[str, Any] = {}
    if (path / MANIFEST).exists():
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except json.JSONDecodeError as exc:
            raise InputError(str(path / MANIFEST), "file", f"not valid JSON: {exc}") from None
    if manifest.get("schema", SUITE_SCHEMA) != SUITE_SCHEMA:
        raise InputError(str(path / MANIFEST), "schema", f"allowed: {SUITE_SCHEMA}")
    folders = [path] + [(path / inc).resolve() for inc in manifest.get("include", [])]
    instances: dict[str, Instance] = {}
    for folder in folders:
        for file in sorted(folder.glob("*.json")):
            if file.name != MANIFEST and file.stem not in instances:
                instances[file.stem] = Instance(file.stem, file)
    if not instances:
        raise InputError(str(path), "instances", "the suite folder holds no problem files (*.json)")
    b = manifest.get("budget", {})
    return Suite(
        name=manifest.get("name", path.name),
        description=manifest.get("description", ""),
        instances=tuple(instances.values()),
        budget=Budget(evaluations=b.get("evaluations"), seconds=b.get("seconds")),
        seeds=int(manifest.get("seeds", 1)),
        timeout_s=manifest.get("timeout_s"),
    )


# ---- generating the committed instance files -------------------------------------------------

# A BERT-sized MoE small enough that every solver runs in seconds: 6 layers x 16 experts.
_SYNTH_MODEL = {
    "moe_layers": 6,
    "experts_per_layer": 16,
    "top_k": 1,
    "hidden_size": 768,
    "expert_ffn_size": 3072,
    "dtype": "float32",
    "sequence_length": 128,
    "nonmoe_params_per_layer": 4 * 768 * 768 + 8 * 768,
    "embedding_params": (30_522 + 512 + 2) * 768,
}
# One axis at a time around the centre (Zipf 1.0, tightness 0.6, 10,240 tokens).
SKEWS = (0.0, 1.0, 1.6)
TIGHTNESS = (0.2, 0.6, 0.9)
BATCHES = (2_560, 10_240, 30_720)
CENTRE = (1.0, 0.6, 10_240)


def synthetic_spec(skew: float, tightness: float, tokens: int, seed: int = 11) -> dict[str, Any]:
    """A synthetic instance; the time limit sits ``tightness`` of the way from the latency of
    the cheapest plan greedy finds with no SLO (tightness 0) to the fastest uniform plan:
    every expert at the top memory sizes with the most replicas (tightness 1)."""
    name = f"synth-z{skew:g}-t{tightness:g}-n{tokens}"
    spec: dict[str, Any] = {
        "name": name,
        "model": {"name": name, **_SYNTH_MODEL},
        "workload": {"tokens_per_batch": tokens},
        "slo": {"time_limit_s": 1e6},
        "popularity": {"source": "zipf", "exponent": skew, "batches": 4, "seed": seed},
        "deployment": {"memory_menu": "paper", "max_replicas": 8, "cost_scope": "paper"},
    }
    slow, fast = _latency_span(spec)
    limit = round(slow - tightness * (slow - fast), 3)
    spec["slo"] = {"time_limit_s": limit}
    spec["description"] = (
        f"Synthetic: 6 MoE layers x 16 BERT-sized experts, top-1, {tokens} tokens per batch, "
        f"Zipf(s={skew:g}) popularity (4 batches, seed {seed}). SLO tightness {tightness:g}: "
        f"time limit {limit} s between the cheapest plan's {slow:.3f} s (0) and the fastest "
        f"greedy plan's {fast:.3f} s (1)."
    )
    return spec


def _latency_span(spec: dict[str, Any]) -> tuple[float, float]:
    """(latency of greedy's cheapest plan with no SLO, fastest uniform plan that fits)."""
    from moeopt.evaluate import evaluate
    from moeopt.plan import DeploymentPlan
    from moeopt.problem import problem_from_dict
    from moeopt.registry import make_solver
    from moeopt.space import PIPELINE_DEGREES

    problem = problem_from_dict(copy.deepcopy(spec), "synthetic")
    cheap = make_solver("greedy").solve(problem, Budget(evaluations=200_000))
    assert cheap.evaluation is not None
    fastest = []
    for memory in problem.memory_options[-3:]:
        for method in problem.methods:
            for beta in PIPELINE_DEGREES if method == "pipelined_storage" else (1,):
                plan = DeploymentPlan.uniform(problem, memory, problem.max_replicas, method, beta)
                ev = evaluate(problem, plan)
                if ev.violations["memory"] <= 0 and ev.violations["payload"] <= 0:
                    fastest.append(ev.latency_s)
    return cheap.evaluation.latency_s, min(fastest)


def exact_spec(seed: int = 5) -> dict[str, Any]:
    """An instance small enough to enumerate within the full suite's 20,000-evaluation budget
    (1 layer x 3 experts, 4 memory sizes, 2 replicas: 13,824 plans), so ``exhaustive`` proves
    its optimum and every other solver's gap to it is exact."""
    name = "exact-1x3"
    spec: dict[str, Any] = {
        "name": name,
        "model": {"name": name, **_SYNTH_MODEL, "moe_layers": 1, "experts_per_layer": 3},
        "workload": {"tokens_per_batch": 4_096},
        "slo": {"time_limit_s": 1e6},
        "popularity": {"source": "zipf", "exponent": 1.0, "batches": 4, "seed": seed},
        "deployment": {"memory_menu": [768, 1536, 2304, 3008], "max_replicas": 2,
                       "cost_scope": "paper"},
    }
    slow, fast = _latency_span(spec)
    limit = round(slow - 0.9 * (slow - fast), 3)
    spec["slo"] = {"time_limit_s": limit}
    spec["description"] = (
        "Tiny exact instance: 1 MoE layer x 3 BERT-sized experts, top-1, 4,096 tokens, "
        f"Zipf(s=1) popularity (4 batches, seed {seed}), memory menu 768/1536/2304/3008 MB, at "
        f"most 2 replicas: 13,824 plans in the search space, so exhaustive search proves the "
        f"optimum. SLO tightness 0.9: time limit {limit} s (cheapest {slow:.3f} s, fastest "
        f"{fast:.3f} s)."
    )
    return spec


def suite_specs() -> dict[str, dict[str, dict[str, Any]]]:
    """set name -> instance name -> problem-file dict."""
    from moeopt.builtin_problems import PAPER_PROBLEMS, builtin_spec

    synth = {}
    for skew in SKEWS:
        synth[(skew, CENTRE[1], CENTRE[2])] = None
    for t in TIGHTNESS:
        synth[(CENTRE[0], t, CENTRE[2])] = None
    for n in BATCHES:
        synth[(CENTRE[0], CENTRE[1], n)] = None
    synthetic = {}
    for skew, t, n in synth:
        s = synthetic_spec(skew, t, n)
        synthetic[s["name"]] = s
    full = {name: builtin_spec(name) for name in (*PAPER_PROBLEMS, "switch-base-128")}
    full.update({name: builtin_spec(name) for name in ("mixtral-8x7b", "deepseek-v3")})
    full.update(synthetic)
    full["exact-1x3"] = exact_spec()
    centre = f"synth-z{CENTRE[0]:g}-t{CENTRE[1]:g}-n{CENTRE[2]}"
    smoke = {"bert-moe-4": builtin_spec("bert-moe-4"), centre: synthetic[centre],
             "gpt2-moe-4": builtin_spec("gpt2-moe-4")}
    return {"smoke": smoke, "full": full}


MANIFESTS: dict[str, dict[str, Any]] = {
    "smoke": {
        "description": "Three small instances; about a minute with the default solvers on 2 cores.",
        "budget": {"evaluations": 2000, "seconds": 5.0},
        "seeds": 2,
        "timeout_s": 60.0,
    },
    "full": {
        "description": (
            "The paper's five settings, switch-base-128 with real counts, the Mixtral-8x7B and "
            "DeepSeek-V3 scale instances, and synthetic instances across Zipf skew, SLO "
            "tightness and batch size; plus any problem files in ../traces (profiled traces)."
        ),
        "budget": {"evaluations": 20000, "seconds": 8.0},
        "seeds": 3,
        "timeout_s": 60.0,
        "include": ["../traces"],
    },
}


def write_suites(root: Path) -> None:
    """Write every set's problem files and manifest under ``root``."""
    for set_name, specs in suite_specs().items():
        folder = root / set_name
        folder.mkdir(parents=True, exist_ok=True)
        for name, spec in specs.items():
            (folder / f"{name}.json").write_text(json.dumps(spec, indent=2) + "\n")
        manifest = {"schema": SUITE_SCHEMA, "name": set_name, **MANIFESTS[set_name]}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (root / "traces").mkdir(exist_ok=True)


if __name__ == "__main__":
    write_suites(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/suites"))
