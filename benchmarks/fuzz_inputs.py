"""Stand-alone input fuzzer (issue 14): mutate valid files, run every reading command on them.

    python benchmarks/fuzz_inputs.py [--files 600] [--seed 0] [--jobs 2] [--subprocess]
                                     [--keep DIR] [--slow 10]

Generates ``--files`` mutated files from valid specs: problem files (JSON and TOML: the tiny
test problem with inline loads, Zipf, counts and trace popularity, and the ``bert-moe-4``
built-in), plans, counts files, per-token JSONL, moeopt traces and profiles (``--profile``). Each mutation either makes
the file *certainly invalid* (a field set to a value outside its documented range, a required
key removed, an unknown key added, another encoding, deep nesting, truncation...) or leaves its
validity *unknown* (a byte flipped, a value set inside its range). Every file goes through every
command that reads that kind of file (``problems show``, ``solve``, ``baselines``, ``evaluate``,
``run --backend aws --dry-run``,
``popularity import|predict|evaluate``, ``--trace`` on a problem).

It prints how many runs ended in a traceback (an exception escaped the command, or exit
status other than 0/2, or an exit 2 without exactly one ``error:`` line), how many took longer
than ``--slow`` seconds (runs are killed at 3x that), and how many certainly-invalid files
some command accepted (exit 0). Target: 0 / 0 / 0. Runs go through a pool of worker processes
that import moeopt once and call the CLI in-process (click's runner), each under a 4 GB
address-space limit, and are killed at the timeout; ``--subprocess`` runs each as
``python -m moeopt.cli`` instead (slower, what a user runs).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INVALID, UNKNOWN = "invalid", "unknown"

# ---- valid bases --------------------------------------------------------------------------------

TINY: dict[str, Any] = {
    "name": "tiny",
    "model": {"moe_layers": 2, "experts_per_layer": 4, "top_k": 1, "hidden_size": 100,
              "expert_ffn_size": 1000, "sequence_length": 10},
    "workload": {"tokens_per_batch": 1000},
    "slo": {"time_limit_s": 100.0},
    "popularity": {"source": "loads",
                   "loads": [[[600, 200, 100, 100], [1000, 0, 0, 0]],
                             [[500, 300, 100, 100], [700, 100, 100, 100]]]},
    "deployment": {"memory_menu": [1769, 3538], "max_replicas": 4},
}
COUNTS = {"counts": [[5, 1, 0, 2], [3, 3, 3, 3]]}
USAGE = {"expert_usage_by_layer": {"0": {"0": 5, "3": 1}, "1": {"2": 6}}, "num_experts": 4}
PROFILE = {"schema": "moeopt.profile/1",
           "constants": {"warm_start_s": 0.1, "flops_per_second_per_vcpu": 2.0e10},
           "fits": {"compute": {"residual": 0.01}}}
HEADER = {"format": "moeopt-routing-trace", "schema_version": 1, "model": "fuzz", "experts": 4,
          "top_k": 1, "moe_layers": 2, "tokens": 6, "gate": "topk"}


def trace_records(n: int = 6) -> list[dict[str, Any]]:
    return [{"seq": t // 3, "pos": t % 3, "token": 100 + t % 5,
             "experts": [[t % 4], [(t * 3 + 1) % 4]], "gate": [[0.5], [0.25]],
             "attn": [100, 101]} for t in range(n)]


def routing_records(n: int = 6) -> list[dict[str, Any]]:
    return [{"layer": layer, "experts": [(t + layer) % 4], "gate": [0.5], "token_index": t % 3,
             "token_id": 100 + t, "sequence": f"s{t // 3}"} for t in range(n) for layer in (1, 3)]


# ---- field rules: values certainly outside each field's documented range -----------------------

NOT_INT = [None, True, "12", 1.5, math.nan, math.inf, [], {}, 1e30]
HUGE = [10**30, -(10**30), 10**12]


def int_rule(low: int, high: int) -> list[Any]:
    return NOT_INT + [low - 1, -5, high + 1, 10**30]


def real_rule(low: float, open_low: bool = True) -> list[Any]:
    return [None, True, "1.0", math.nan, math.inf, -math.inf, [], {}, low - 1.0] + (
        [low] if open_low else []
    )


PROBLEM_RULES: dict[str, list[Any]] = {
    "name": [None, 5, "", [], {}],
    "model": [None, 5, "x", [1, 2]],
    "model.moe_layers": int_rule(1, 1024),
    "model.experts_per_layer": int_rule(1, 4096),
    "model.top_k": int_rule(1, 4) + [5],
    "model.hidden_size": int_rule(1, 65536),
    "model.expert_ffn_size": int_rule(1, 1 << 20),
    "model.sequence_length": int_rule(1, 1 << 20),
    "model.dtype": ["float64", 4, None, ""],
    "model.ffn_matrices": int_rule(2, 3),
    "model.nonmoe_params_per_layer": int_rule(0, 10**12),
    "model.embedding_params": int_rule(0, 10**12),
    "workload": [5, [1], "x"],
    "workload.tokens_per_batch": int_rule(1, 1 << 20),
    "slo": [None, 5, []],
    "slo.time_limit_s": real_rule(0.0) + [1e30],
    "popularity.source": ["nope", 3, None],
    "popularity.loads": [[], [[[]]], [[[1, 2]]], [[["1", 2, 3, 4]]], 5, {"a": 1},
                         [[[1e30, 0, 0, 0], [1, 0, 0, 0]]], [[[-1, 0, 0, 0], [1, 0, 0, 0]]],
                         [[[5000, 0, 0, 0], [1, 0, 0, 0]]]],
    "popularity.exponent": real_rule(0.0, open_low=False) + [17.0, 1e30],
    "popularity.batches": int_rule(1, 1000) + [10**7],
    "popularity.seed": int_rule(0, 2**32 - 1),
    "deployment": [5, [1]],
    "deployment.memory_menu": ["medium", [], [64], [20000], [1769, "x"], [True], 5, {}, [1.5]],
    "deployment.max_replicas": int_rule(1, 64) + [10**9],
    "deployment.methods": [[], ["fax"], "storage", {"a": 1}, [1]],
    "deployment.architectures": [[], ["sparc"], "x86_64", {"a": 1}],
    "deployment.cost_scope": ["cheap", 1, None],
    "deployment.start": ["hot", 1, None],
    "deployment.weights": ["sometimes", 1],
    "cost_model.constants.flops_per_second_per_vcpu": [0, -1, math.nan, "1", True, None],
    "cost_model.constants.storage_bandwidth_bytes_per_s": [0, -5, math.inf],
    "cost_model.constants.lambda_price_x86_64_usd_per_gb_s": [0, -1],
    "cost_model.constants.lambda_memory_max_mb": [0, 64, 10**12],
    "cost_model.constants.speed_of_light": [1],
    "cost_model.profile": [5, "", "no-such-profile.json"],
}
REQUIRED_PROBLEM = ("name", "model", "model.moe_layers", "model.experts_per_layer", "model.top_k",
                    "model.hidden_size", "model.expert_ffn_size", "slo", "popularity")

PLAN_RULES: dict[str, list[Any]] = {
    "schema": ["moeopt.plan/2", 1],
    "problem": [None, 5, [], {"name": "tiny"}],
    "problem.fingerprint": ["", None, 5, "sha256:0000000000000000"],
    "layers": [[], {}, 5, None],
    "layers.0": [5, None, []],
    "layers.0.layer": [math.nan, "0", -1, 2, [0], True, 1e30, None, 1],
    "layers.0.method": ["fax", 1, None],
    "layers.0.pipeline_degree": int_rule(1, 1 << 20),
    "layers.0.functions": [[], {}, 5, None],
    "layers.0.functions.0.experts": [[], [9], [-1], ["0"], [True], [0, 0], 5, None, [1.5]],
    "layers.0.functions.0.memory_mb": [1000, 0, -1, math.nan, "1769", True, 10**30, None, 20000],
    "layers.0.functions.0.replicas": [0, -1, 5, math.nan, "1", True, 10**30, 1.5],
    "layers.0.functions.0.architecture": ["sparc", "arm64", 1],
    "predicted": [5, "x", {"cost_usd": "cheap"}],
}

COUNTS_RULES: dict[str, list[Any]] = {
    "counts": [[], [[]], [[], []], [[1, 2], [1]], 5, {}, [[math.nan, 1, 1, 1], [1, 1, 1, 1]],
               [[math.inf, 1, 1, 1], [1, 1, 1, 1]], [[-1, 1, 1, 1], [1, 1, 1, 1]],
               [[1e30, 1, 1, 1], [1, 1, 1, 1]], [[0, 0, 0, 0], [1, 1, 1, 1]],
               [["1", 1, 1, 1], [1, 1, 1, 1]], [[True, 1, 1, 1], [1, 1, 1, 1]],
               [[0.5, 1, 1, 1], [1, 1, 1, 1]]],
    "counts.0.0": [math.nan, math.inf, -1, 1e30, 10**30, "1", True, None, 0.5, [], {}],
}
USAGE_RULES: dict[str, list[Any]] = {
    "expert_usage_by_layer": [[], 5, {}, {"x": {"0": 1}}, {"0": 5}],
    "expert_usage_by_layer.0.0": [math.nan, -1, 1e30, "1", None, True],
    "num_experts": [0, -1, 10**12, "4", 2, math.nan],
}
PROFILE_RULES: dict[str, list[Any]] = {
    "constants": [5, [], None, "x"],
    "constants.flops_per_second_per_vcpu": [0, -1, math.nan, math.inf, "1", True, None, 0.0],
    "constants.storage_bandwidth_bytes_per_s": [0, -1e9, math.nan],
    "constants.lambda_memory_max_mb": [0, 64, 10**12],
    "constants.speed_of_light": [1],
    "constants.warm_start_s": [-1, math.nan, "0.1", [0.1]],
}
HEADER_RULES: dict[str, list[Any]] = {
    "format": ["other", None, 1],
    "schema_version": [2, "1", None, True],
    "experts": [0, -1, 10**12, "4", math.nan, 2, None],
    "top_k": [0, 5, -1, "1", None],
    "moe_layers": [0, 10**12, "2", None, 3, 1],
    "gate": ["bogus", 1],
    "tokens": [-1, "6", math.nan],
}
TRACE_RECORD_RULES: dict[str, list[Any]] = {
    "experts": [None, [[1]], [[4], [1]], [[-1], [1]], [["1"], [1]], [[True], [1]], [[1.5], [1]],
                [[1, 2], [1, 2]], 5],
    "gate": [[[1.5], [0.5]], [[-0.5], [0.5]], [[math.nan], [0.5]], [[math.inf], [0.5]],
             [["0.5"], [0.5]], [[True], [0.5]], [[0.5]], 5],
    "token": [-2, 1.5, "7", True, 10**30],
    "pos": [-2, 1.5, "0"],
    "seq": [-2, "0", math.nan],
    "attn": [[-2, 1], [1], "x", [True, 1]],
}
ROUTING_RULES: dict[str, list[Any]] = {
    "layer": [-1, "0", math.nan, 1.5, True, {}, None, 10**30],
    "experts": [[], [-1], [4096], [10**12], ["1"], [True], [1, 1], None, 1.5],
    "gate": [[1.5], [-0.5], [math.nan], [math.inf], ["0.5"], [0.5, 0.5]],
    "token_index": [-1, 1.5, "0", True, 10**30],
    "token_id": [-1, 1.5, "7", True],
    "sequence": [True, 1.5, {}, [1], math.nan],
}

NASTY = [None, True, 0, -1, 1, 10**30, 1e30, math.nan, math.inf, "", "x", [], [[]], {}, {"a": 1}]


# ---- mutation -----------------------------------------------------------------------------------


def _get(doc: Any, path: str) -> Any:
    node = doc
    for key in path.split("."):
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def _set(doc: Any, path: str, value: Any, delete: bool = False) -> bool:
    keys = path.split(".")
    node = doc
    for key in keys[:-1]:
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                return False
            node = node[int(key)]
        elif isinstance(node, dict):
            node = node.setdefault(key, {})
        else:
            return False
    last = keys[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            return False
        node[int(last)] = value
    elif isinstance(node, dict):
        if delete:
            node.pop(last, None)
        else:
            node[last] = value
    else:
        return False
    return True


def _paths(doc: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            p = f"{prefix}.{k}" if prefix else str(k)
            out += [p, *_paths(v, p)]
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:2]):
            p = f"{prefix}.{i}" if prefix else str(i)
            out += [p, *_paths(v, p)]
    return out


def mutate_doc(rng: random.Random, doc: Any, rules: dict[str, list[Any]],
               required: tuple[str, ...] = (), strict_keys: bool = True) -> tuple[Any, str, str]:
    """(mutated doc, validity, what was done)."""
    doc = copy.deepcopy(doc)
    op = rng.choice(["rule", "rule", "rule", "delete", "unknown-key", "nasty"])
    if op == "rule":
        path = rng.choice(list(rules))
        value = rng.choice(rules[path])
        if _set(doc, path, value):
            return doc, INVALID, f"{path} = {value!r}"
    if op == "delete":
        path = rng.choice(_paths(doc) or [""])
        if path and _set(doc, path, None, delete=True):
            return doc, INVALID if path in required else UNKNOWN, f"del {path}"
    if op == "unknown-key":
        tables = [p for p in [""] + _paths(doc) if isinstance(_get(doc, p) if p else doc, dict)]
        table = rng.choice(tables)
        node = _get(doc, table) if table else doc
        node["bogus_field"] = 1
        return doc, INVALID if strict_keys else UNKNOWN, f"{table or '<top>'}.bogus_field = 1"
    path = rng.choice(_paths(doc) or ["x"])
    value = rng.choice(NASTY)
    _set(doc, path, value)
    return doc, UNKNOWN, f"{path} = {value!r} (nasty)"


def to_json(doc: Any) -> bytes:
    return json.dumps(doc).encode()  # NaN/Infinity as the literals other tools write


def to_toml(doc: Any) -> bytes | None:
    import tomli_w

    try:
        return tomli_w.dumps(doc).encode()
    except (TypeError, ValueError):
        return None


def damage(
    rng: random.Random, data: bytes, jsonl: bool, toml: bool = False
) -> tuple[bytes, str, str] | None:
    """Byte-level damage; None to leave the bytes alone."""
    op = rng.choice(["none"] * 6 + ["utf16", "utf16le", "utf32", "latin1", "nul", "truncate",
                                    "flip", "deep", "bom8"])
    if op == "utf16":
        return data.decode("utf-8", "replace").encode("utf-16"), INVALID, "UTF-16"
    if op == "utf16le":
        return data.decode("utf-8", "replace").encode("utf-16-le"), INVALID, "UTF-16-LE, no BOM"
    if op == "utf32":
        return data.decode("utf-8", "replace").encode("utf-32"), INVALID, "UTF-32"
    if op == "latin1":
        text = data.decode("utf-8", "replace")
        if '"' not in text:
            return None
        i = text.index('"') + 1
        return (text[:i] + "é" + text[i:]).encode("latin-1", "replace"), INVALID, "latin-1"
    if op == "nul":
        return data + b"\x00", INVALID, "NUL byte"
    if op == "truncate" and len(data) > 4:
        cut = rng.randrange(1, len(data) - 2)
        # a prefix of JSON Lines or TOML can be valid; a prefix of one JSON object never is
        return data[:cut], UNKNOWN if jsonl or toml else INVALID, f"truncated at {cut}"
    if op == "flip" and data:
        i = rng.randrange(len(data))
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :], UNKNOWN, f"byte {i} flipped"
    if op == "deep":
        depth = rng.choice([100, 5_000, 200_000])
        bomb = ("[" * depth + "]" * depth).encode()
        if jsonl:
            return data + b'{"layer": 0, "experts": ' + bomb + b"}\n", INVALID, f"nested {depth}"
        return b'{"a": ' + bomb + b"}", INVALID, f"nested {depth}"
    if op == "bom8":
        return b"\xef\xbb\xbf" + data, UNKNOWN, "UTF-8 BOM"
    return None


# ---- the file set -------------------------------------------------------------------------------


def build(folder: Path, count: int, seed: int) -> list[dict[str, Any]]:
    """Write ``count`` mutated files (and the valid files they refer to); one entry per file."""
    from moeopt.builtin_problems import builtin_spec
    from moeopt.plan import DeploymentPlan
    from moeopt.problem import load_problem

    rng = random.Random(seed)
    (folder / "counts-valid.json").write_text(json.dumps(COUNTS))
    trace_text = "".join(json.dumps(x) + "\n" for x in [HEADER, *trace_records()])
    (folder / "trace-valid.jsonl").write_text(trace_text)
    tiny4 = copy.deepcopy(TINY)
    tiny4["popularity"] = {"source": "zipf", "batches": 2}
    (folder / "tiny4.json").write_text(json.dumps(tiny4))
    (folder / "tiny.json").write_text(json.dumps(TINY))
    problem = load_problem(folder / "tiny.json")
    plan = DeploymentPlan.uniform(problem, 1769, 1, "storage").to_dict()
    bases = {
        "problem-loads": TINY,
        "problem-zipf": tiny4,
        "problem-counts": dict(copy.deepcopy(TINY), popularity={"source": "counts",
                                                               "file": "counts-valid.json"}),
        "problem-trace": dict(copy.deepcopy(TINY), popularity={"source": "trace",
                                                              "file": "trace-valid.jsonl"}),
        "problem-bert": builtin_spec("bert-moe-4"),
    }
    kinds = (["problem"] * 4 + ["plan"] * 2 + ["counts"] * 2 + ["trace"] * 2 + ["routing"] * 2
             + ["profile"])
    entries = []
    for n in range(count):
        kind = kinds[n % len(kinds)]
        jsonl = kind in ("trace", "routing")
        if kind == "problem":
            base_name = rng.choice(list(bases))
            doc, validity, what = mutate_doc(rng, bases[base_name], PROBLEM_RULES, REQUIRED_PROBLEM)
            as_toml = rng.random() < 0.4
            data = to_toml(doc) if as_toml else None
            suffix = ".toml" if data is not None else ".json"
            data = data if data is not None else to_json(doc)
            what = f"{base_name}{suffix}: {what}"
        elif kind == "plan":
            doc, validity, what = mutate_doc(rng, plan, PLAN_RULES)
            data, suffix = to_json(doc), ".json"
        elif kind == "profile":
            doc, validity, what = mutate_doc(rng, PROFILE, PROFILE_RULES, strict_keys=False)
            as_toml = rng.random() < 0.4
            data = to_toml(doc) if as_toml else None
            suffix = ".toml" if data is not None else ".json"
            data = data if data is not None else to_json(doc)
        elif kind == "counts":
            usage = rng.random() < 0.3
            doc, validity, what = mutate_doc(rng, USAGE if usage else COUNTS,
                                             USAGE_RULES if usage else COUNTS_RULES)
            if validity == INVALID and what.startswith("<top>.bogus"):
                validity = UNKNOWN  # counts files may carry other keys
            data, suffix = to_json(doc), ".json"
        else:
            lines: list[Any] = [HEADER, *trace_records()] if kind == "trace" else routing_records()
            index = rng.randrange(len(lines))
            if kind == "trace":
                rules = HEADER_RULES if index == 0 else TRACE_RECORD_RULES
            else:
                rules = ROUTING_RULES
            line, validity, what = mutate_doc(rng, lines[index], rules, strict_keys=False)
            lines[index] = line
            what = f"line {index + 1}: {what}"
            data, suffix = "".join(json.dumps(x) + "\n" for x in lines).encode(), ".jsonl"
        damaged = damage(rng, data, jsonl, suffix == ".toml")
        if damaged is not None:
            data, how, hurt = damaged
            validity = INVALID if INVALID in (validity, how) else UNKNOWN
            what = f"{what}; {hurt}"
        path = folder / f"{n:04d}-{kind}{suffix}"
        path.write_bytes(data)
        entries.append({"file": str(path), "kind": kind, "validity": validity, "mutation": what})
    return entries


def commands(entry: dict[str, Any], folder: Path) -> list[list[str]]:
    f, kind = entry["file"], entry["kind"]
    tiny, tiny4 = str(folder / "tiny.json"), str(folder / "tiny4.json")
    if kind == "problem":
        return [["problems", "show", f, "--json"],
                ["solve", "--problem", f, "--solver", "greedy", "--budget-evals", "200", "--json"],
                ["baselines", "--problem", f, "--json"]]
    if kind == "plan":
        return [["evaluate", f, "--problem", tiny, "--json"],
                ["run", f, "--problem", tiny, "--backend", "aws", "--dry-run", "--json"]]
    if kind == "profile":
        return [["problems", "show", tiny, "--profile", f, "--json"],
                ["baselines", "--problem", tiny, "--profile", f, "--json"]]
    if kind == "counts":
        return [["popularity", "import", f, "--json"],
                ["problems", "show", tiny4, "--trace", f, "--json"],
                ["solve", "--problem", tiny4, "--trace", f, "--solver", "greedy",
                 "--budget-evals", "100", "--json"]]
    mapping = ["--field", "layer=layer"] if kind == "routing" else []
    return [["popularity", "import", f, *mapping, "--json"],
            ["problems", "show", tiny4, "--trace", f, *mapping, "--json"],
            ["popularity", "evaluate", "--trace", f, *mapping, "--folds", "2", "--batch-size", "2",
             "--predictor", "frequency", "--json"],
            ["popularity", "predict", "--trace", f, *mapping, "--predictor", "frequency",
             "--tokens-from", f, "--batch-size", "2", "--json"]]


# ---- running ------------------------------------------------------------------------------------


def _judge(code: int, err: str, crashed: str | None) -> str:
    """ok | traceback (an exception escaped, exit not 0/2, or a malformed error report)."""
    if crashed or "Traceback" in err or code not in (0, 2):
        return "traceback"
    if code == 2 and sum(line.startswith("error: ") for line in err.splitlines()) != 1:
        return "traceback"
    return "ok"


def _worker(conn: Any) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    from click.testing import CliRunner

    from moeopt.cli import cli

    while True:
        args = conn.recv()
        if args is None:
            return
        t = time.perf_counter()
        result = CliRunner().invoke(cli, args)
        crashed = None
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            crashed = f"{type(result.exception).__name__}: {result.exception}"[:300]
        conn.send((result.exit_code, result.stderr[-2000:], crashed, time.perf_counter() - t))


class Worker:
    """A process that runs CLI invocations in-process; killed and replaced on a timeout."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("fork").Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()

    def run(self, args: list[str], timeout: float) -> tuple[int, str, str | None, float]:
        t = time.perf_counter()
        self.conn.send(args)
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except EOFError:
                pass
        self.proc.kill()
        self.proc.join()
        self.start()
        return -9, "", "killed at the timeout or died", time.perf_counter() - t


def run_subprocess(args: list[str], timeout: float) -> tuple[int, str, str | None, float]:
    t = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-m", "moeopt.cli", *args], capture_output=True,
                             text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return -9, "", "killed at the timeout", time.perf_counter() - t
    return out.returncode, out.stderr[-2000:], None, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--slow", type=float, default=10.0, help="seconds; killed at 3x")
    parser.add_argument("--subprocess", action="store_true")
    parser.add_argument("--keep", type=Path, default=None, help="write the files here")
    parser.add_argument("--show", type=int, default=10, help="findings to print per class")
    opts = parser.parse_args()

    folder = opts.keep or Path(tempfile.mkdtemp(prefix="moeopt-fuzz-"))
    folder.mkdir(parents=True, exist_ok=True)
    entries = build(folder, opts.files, opts.seed)
    runs = [(e, args) for e in entries for args in commands(e, folder)]
    timeout = 3 * opts.slow
    t0 = time.perf_counter()
    results: list[tuple[dict[str, Any], list[str], tuple[int, str, str | None, float]]] = []
    if opts.subprocess:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(opts.jobs) as pool:
            outs = list(pool.map(lambda r: run_subprocess(r[1], timeout), runs))
        results = [(e, a, o) for (e, a), o in zip(runs, outs, strict=True)]
    else:
        from concurrent.futures import ThreadPoolExecutor
        from queue import Queue

        workers: Queue[Worker] = Queue()
        for _ in range(opts.jobs):
            workers.put(Worker())

        def one(run: tuple[dict[str, Any], list[str]]) -> tuple[int, str, str | None, float]:
            w = workers.get()
            try:
                return w.run(run[1], timeout)
            finally:
                workers.put(w)

        with ThreadPoolExecutor(opts.jobs) as pool:
            outs = list(pool.map(one, runs))
        results = [(e, a, o) for (e, a), o in zip(runs, outs, strict=True)]
    wall = time.perf_counter() - t0

    tracebacks, slow, accepted = [], [], {}
    exits: Counter[int] = Counter()
    for entry, args, (code, err, crashed, seconds) in results:
        exits[code] += 1
        if _judge(code, err, crashed) == "traceback":
            tracebacks.append((entry, args, code, crashed or err.strip().splitlines()[-1:]))
        if seconds > opts.slow:
            slow.append((entry, args, seconds))
        if entry["validity"] == INVALID and code == 0:
            accepted.setdefault(entry["file"], (entry, args))
    kinds = Counter(e["kind"] for e in entries)
    invalid = sum(e["validity"] == INVALID for e in entries)
    print(f"files: {len(entries)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}); "
          f"certainly invalid: {invalid}; in {folder}")
    print(f"runs: {len(results)} in {wall:.0f} s ({'subprocesses' if opts.subprocess else 'workers'}"
          f", {opts.jobs} jobs); exit codes: {dict(sorted(exits.items()))}")
    print(f"tracebacks: {len(tracebacks)}")
    for entry, args, code, what in tracebacks[: opts.show]:
        print(f"  {entry['mutation']} | moeopt {' '.join(args)} -> {code}: {what}")
    print(f"runs over {opts.slow:g} s: {len(slow)}")
    for entry, args, seconds in slow[: opts.show]:
        print(f"  {entry['mutation']} | moeopt {' '.join(args)}: {seconds:.1f} s")
    print(f"invalid files accepted: {len(accepted)}")
    for entry, args in list(accepted.values())[: opts.show]:
        print(f"  {entry['mutation']} | moeopt {' '.join(args)} -> 0")
    sys.exit(1 if tracebacks or slow or accepted else 0)


if __name__ == "__main__":
    main()
