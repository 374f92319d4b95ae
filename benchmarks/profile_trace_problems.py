"""Fill the ``full`` suite's ``traces/`` slot: profile the converted all-MiniLM-L6-v2 MoE and
write one problem per (experts, top-k) with its measured per-batch loads.

    python benchmarks/profile_trace_problems.py [--out benchmarks/suites/traces]

Each instance: ``moeopt popularity profile --experts E --top-k K --tokens 41000`` (bundled
corpus, seed 0, gates fitted on the first 8,000 tokens) cut into 4 batches of 10,240 tokens;
the per-token trace (7 MB) is not kept, only the loads (batches x layers x experts). The time
limit is the one of the built-in ``minilm-moe-8`` (1,600 tokens/s), halved in throughput for
top-2 (every token visits two experts). A few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moeopt.builtin_problems import minilm_spec
from moeopt.popularity.cli import build_trace
from moeopt.popularity.traces import trace_loads

INSTANCES = ((4, 2), (8, 1), (16, 1))  # (experts, top-k)
TOKENS, CALIBRATION, SEED = 41_000, 8_000, 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parent / "suites" / "traces"))
    out = Path(ap.parse_args().out)
    for experts, top_k in INSTANCES:
        trace = build_trace(experts, top_k, None, TOKENS, CALIBRATION, SEED, progress=False)
        loads = trace_loads(trace)
        stem = f"minilm-moe-e{experts}-top{top_k}"
        # Loads live in a subfolder: the suite reads every top-level *.json as a problem.
        (out / "loads").mkdir(parents=True, exist_ok=True)
        loads_file = out / "loads" / f"{stem}-loads.json"
        loads_file.write_text(json.dumps({
            "format": "moeopt-loads",
            "source": f"moeopt popularity profile --experts {experts} --top-k {top_k} "
                      f"--tokens {TOKENS} (bundled corpus, seed {SEED})",
            "model": trace.model,
            "corpus": trace.corpus,
            "tokens_per_batch": 10_240,
            "loads": loads.tolist(),
        }) + "\n")
        spec = minilm_spec(experts, top_k, {"source": "loads", "file": f"loads/{loads_file.name}"},
                           1600.0 / top_k)
        spec["name"] = f"trace-{stem}"
        (out / f"trace-{stem}.json").write_text(json.dumps(spec, indent=1) + "\n")
        print(f"{stem}: {loads.shape[0]} batches, max expert load {loads.max()}, "
              f"wrote loads/{loads_file.name} and trace-{stem}.json")


if __name__ == "__main__":
    main()
