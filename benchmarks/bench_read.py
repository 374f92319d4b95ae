"""What the checked reading layer costs: trace readers against plain ``json.loads`` per line.

    python benchmarks/bench_read.py [--tokens 63000] [--layers 6] [--top-k 2] [--repeat 3]

Writes a moeopt trace and the same routing as per-token JSONL, then times (best of
``--repeat``) the baseline every reader pays (``json.loads`` of each line, nothing else) and
moeopt's readers (``read_trace``, ``read_routing_jsonl``: size cap, UTF-8, nesting, finite
numbers, every field checked, arrays built). Prints seconds and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moeopt.popularity.routing_jsonl import read_routing_jsonl  # noqa: E402
from moeopt.popularity.traces import RoutingTrace, read_trace, write_trace  # noqa: E402


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def plain_json(path: Path) -> None:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=63_000)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    n, layers, k, e = opts.tokens, opts.layers, opts.top_k, opts.experts
    rng = np.random.default_rng(0)
    experts = np.argsort(rng.random((n, layers, e)), axis=2)[:, :, :k]
    trace = RoutingTrace(
        experts=experts, gate=rng.random((n, layers, k)).astype(np.float32),
        token_ids=rng.integers(0, 30_000, n), position_ids=np.arange(n) % 128,
        sequence_ids=np.arange(n) // 128, attention_ids=rng.integers(0, 30_000, (n, layers)),
        num_experts=e,
    )
    folder = Path(tempfile.mkdtemp(prefix="moeopt-bench-read-"))
    moeopt_trace, routing = folder / "trace.jsonl", folder / "routing.jsonl"
    write_trace(trace, moeopt_trace)
    with open(routing, "w") as f:
        for t in range(n):
            for layer in range(layers):
                f.write(json.dumps({"layer": layer, "experts": experts[t, layer].tolist(),
                                    "token_index": t % 128, "sequence": t // 128,
                                    "token_id": int(trace.token_ids[t])}) + "\n")
    assert (read_trace(moeopt_trace).experts == experts).all()
    assert (read_routing_jsonl(routing).experts == experts).all()
    print(f"{n:,} tokens x {layers} layers, top-{k} of {e}; best of {opts.repeat}")
    for name, path, reader in (("moeopt trace", moeopt_trace, read_trace),
                               ("per-token JSONL", routing, read_routing_jsonl)):
        base = best(lambda p=path: plain_json(p), opts.repeat)
        ours = best(lambda p=path, r=reader: r(p), opts.repeat)
        size = path.stat().st_size / 2**20
        print(f"{name:16} {size:7.1f} MiB  json.loads per line {base:6.2f} s   "
              f"checked reader {ours:6.2f} s   ratio {ours / base:4.2f}x")


if __name__ == "__main__":
    main()
