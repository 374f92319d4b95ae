"""Regenerate the kept fuzz corpus: one file per failure class the issue-14 fuzzer found.

    python tests/fuzz_corpus/make_corpus.py

writes the files beside this script and ``cases.json``: for each file, the command that reads
it (``{file}`` and ``{dir}`` are filled in by the test), the exit status it must give and a
piece of the one ``error:`` line (the field). ``tests/test_fuzz_inputs.py`` runs every case.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

TINY: dict[str, Any] = {
    "name": "tiny",
    "model": {"moe_layers": 2, "experts_per_layer": 2, "top_k": 1, "hidden_size": 100,
              "expert_ffn_size": 1000, "sequence_length": 10},
    "workload": {"tokens_per_batch": 1000},
    "slo": {"time_limit_s": 100.0},
    "popularity": {"source": "loads", "loads": [[[600, 400], [1000, 0]], [[500, 500], [700, 300]]]},
    "deployment": {"memory_menu": [1769, 3538], "max_replicas": 4},
}
ZIPF = dict(copy.deepcopy(TINY), popularity={"source": "zipf", "exponent": 1.0, "batches": 2})
HEADER = {"format": "moeopt-routing-trace", "schema_version": 1, "model": "corpus", "experts": 4,
          "top_k": 1, "moe_layers": 2, "tokens": 2, "gate": "topk"}
RECORD = {"seq": 0, "pos": 0, "token": 7, "experts": [[1], [2]], "gate": [[0.5], [0.25]],
          "attn": [7, 7]}
PLAN_LAYER = {"layer": 0, "method": "storage", "pipeline_degree": 1,
              "functions": [{"experts": [0], "memory_mb": 1769, "replicas": 1},
                            {"experts": [1], "memory_mb": 1769, "replicas": 1}]}

SHOW = ["problems", "show", "{file}"]
IMPORT = ["popularity", "import", "{file}"]
TRACE = ["problems", "show", "{dir}/tiny-4x2.json", "--trace", "{file}"]
EVALUATE = ["evaluate", "{file}", "--problem", "{dir}/tiny.json"]


def _with(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


def _plan(**layer_changes: Any) -> dict[str, Any]:
    second = dict(PLAN_LAYER, layer=1)
    first = dict(PLAN_LAYER, **layer_changes)
    return {"schema": "moeopt.plan/1", "problem": {"name": "tiny", "fingerprint": "sha256:corpus"},
            "layers": [first, second]}


def _jsonl(*records: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def cases() -> list[tuple[str, str | bytes, list[str], int, str]]:
    """(file name, content, command, exit status, a piece of the error line)."""
    tiny = json.dumps(TINY)
    latin = json.dumps(dict(TINY, description="café"), ensure_ascii=False).encode("latin-1")
    out: list[tuple[str, str | bytes, list[str], int, str]] = [
        # encodings
        ("utf16-bom.json", tiny.encode("utf-16"), SHOW, 2, "UTF-16"),
        ("utf16-nobom.json", tiny.encode("utf-16-le"), SHOW, 2, "UTF-16"),
        ("latin1.json", latin, SHOW, 2, "latin-1"),
        ("utf8-bom.json", b"\xef\xbb\xbf" + tiny.encode(), SHOW, 0, ""),
        # nesting
        ("deep.json", "[" * 100_000 + "]" * 100_000, SHOW, 2, "nested"),
        ("deep-object.json", '{"a":' * 5000 + "1" + "}" * 5000, SHOW, 2, "nested"),
        ("deep.toml", "a = " + "[" * 5000 + "]" * 5000 + "\n", SHOW, 2, "nested"),
        ("deep-dotted.toml", "a" + ".a" * 3000 + " = 1\n", SHOW, 2, "nested"),
        # numbers and ranges
        ("tokens-1e30.json", json.dumps(_with(TINY, "workload.tokens_per_batch", 10**30)), SHOW, 2,
         "workload.tokens_per_batch"),
        ("exponent-1e30.json", json.dumps(_with(ZIPF, "popularity.exponent", 1e30)), SHOW, 2,
         "popularity.exponent"),
        ("exponent-nan.json", json.dumps(_with(ZIPF, "popularity.exponent", float("nan"))), SHOW,
         2, "popularity.exponent"),
        ("exponent-infinity.json",
         json.dumps(_with(ZIPF, "popularity.exponent", float("inf"))), SHOW, 2,
         "popularity.exponent"),
        ("exponent-overflow.json",
         json.dumps(_with(ZIPF, "popularity.exponent", 1.0)).replace('"exponent": 1.0',
                                                                      '"exponent": 1e999'),
         SHOW, 2, "popularity.exponent"),
        ("seed-negative.json", json.dumps(_with(ZIPF, "popularity.seed", -5)), SHOW, 2,
         "popularity.seed"),
        ("experts-1e30.json", json.dumps(_with(ZIPF, "model.experts_per_layer", 10**30)), SHOW, 2,
         "model.experts_per_layer"),
        ("experts-1e6.json", json.dumps(_with(ZIPF, "model.experts_per_layer", 10**6)), SHOW, 2,
         "model.experts_per_layer"),
        ("moe-layers-1e6.json", json.dumps(_with(ZIPF, "model.moe_layers", 10**6)), SHOW, 2,
         "model.moe_layers"),
        ("moe-layers-1e30.json", json.dumps(_with(ZIPF, "model.moe_layers", 10**30)), SHOW, 2,
         "model.moe_layers"),
        ("cells-over-limit.json",
         json.dumps(_with(_with(ZIPF, "model.moe_layers", 1024), "model.experts_per_layer", 4096)),
         SHOW, 2, "model.experts_per_layer"),
        ("options-over-limit.json",
         json.dumps(_with(_with(_with(_with(ZIPF, "model.moe_layers", 58), "model.experts_per_layer",
                                      256), "deployment.memory_menu", "full"), "popularity.batches", 4)),
         SHOW, 2, "options to price"),
        ("batches-1e7.json", json.dumps(_with(ZIPF, "popularity.batches", 10**7)), SHOW, 2,
         "popularity.batches"),
        ("max-replicas-1e9.json", json.dumps(_with(TINY, "deployment.max_replicas", 10**9)), SHOW,
         2, "deployment.max_replicas"),
        ("max-replicas-1e30.json", json.dumps(_with(TINY, "deployment.max_replicas", 10**30)),
         SHOW, 2, "deployment.max_replicas"),
        ("hidden-1e30.json", json.dumps(_with(TINY, "model.hidden_size", 10**30)), SHOW, 2,
         "model.hidden_size"),
        ("embedding-1e30.json", json.dumps(_with(TINY, "model.embedding_params", 10**30)), SHOW,
         2, "model.embedding_params"),
        ("ffn-float.json", json.dumps(_with(TINY, "model.expert_ffn_size", 1e30)), SHOW, 2,
         "model.expert_ffn_size"),
        ("throughput-zero.toml",
         "name = \"tiny\"\n[model]\nmoe_layers = 2\nexperts_per_layer = 2\ntop_k = 1\n"
         "hidden_size = 100\nexpert_ffn_size = 1000\n[slo]\nthroughput_tokens_per_s = 0.0\n"
         "[popularity]\nsource = \"zipf\"\n", SHOW, 2, "slo.throughput_tokens_per_s"),
        ("throughput-nan.toml",
         "name = \"tiny\"\n[model]\nmoe_layers = 2\nexperts_per_layer = 2\ntop_k = 1\n"
         "hidden_size = 100\nexpert_ffn_size = 1000\n[slo]\nthroughput_tokens_per_s = nan\n"
         "[popularity]\nsource = \"zipf\"\n", SHOW, 2, "slo.throughput_tokens_per_s"),
        ("methods-dict.json", json.dumps(_with(TINY, "deployment.methods", {"a": 1})), SHOW, 2,
         "deployment.methods"),
        ("model-list.json", json.dumps(_with(TINY, "model", [1, 2])), SHOW, 2, "model"),
        ("loads-list-of-dicts.json", json.dumps(_with(TINY, "popularity.loads", [{"a": 1}])),
         SHOW, 2, "popularity.loads"),
        ("loads-1e30.json",
         json.dumps(_with(TINY, "popularity.loads", [[[1e30, 0], [1, 0]], [[1, 0], [1, 0]]])), SHOW,
         2, "popularity.loads"),
        ("loads-over-batch.json",
         json.dumps(_with(TINY, "popularity.loads", [[[5000, 0], [1, 0]], [[1, 0], [1, 0]]])), SHOW,
         2, "popularity.loads[0][0]"),
        ("flops-zero.json",
         json.dumps(_with(TINY, "cost_model.constants", {"flops_per_second_per_vcpu": 0})), SHOW,
         2, "cost_model.constants.flops_per_second_per_vcpu"),
        ("bandwidth-zero.json",
         json.dumps(_with(TINY, "cost_model.constants", {"storage_bandwidth_bytes_per_s": 0})),
         SHOW, 2, "cost_model.constants.storage_bandwidth_bytes_per_s"),
        ("profile-flops-zero.json", json.dumps({"constants": {"flops_per_second_per_vcpu": 0}}),
         ["problems", "show", "{dir}/uses-profile-flops-zero.json"], 2,
         "profile-flops-zero.json: constants.flops_per_second_per_vcpu"),
        ("profile-option-flops-zero.json",
         json.dumps({"constants": {"flops_per_second_per_vcpu": 0}}),
         ["problems", "show", "{dir}/tiny.json", "--profile", "{file}"], 2,
         "profile-option-flops-zero.json: constants.flops_per_second_per_vcpu"),
        ("profile-utf16.json", json.dumps({"constants": {"warm_start_s": 0.1}}).encode("utf-16"),
         ["problems", "show", "{dir}/tiny.json", "--profile", "{file}"], 2, "UTF-16"),
        ("profile-nan.json", '{"constants": {"warm_start_s": NaN}}',
         ["problems", "show", "{dir}/tiny.json", "--profile", "{file}"], 2,
         "constants.warm_start_s"),
        ("uses-profile-flops-zero.json",
         json.dumps(_with(TINY, "cost_model.profile", "profile-flops-zero.json")), SHOW, 2,
         "flops_per_second_per_vcpu"),
        ("time-limit-huge.json", json.dumps(_with(TINY, "slo.time_limit_s", 1e300)), SHOW, 2,
         "slo.time_limit_s"),
        ("name-empty.json", json.dumps(_with(TINY, "name", "")), SHOW, 2, "name"),
        # counts files (as a problem's popularity and through popularity import)
        ("counts-nan.json", '{"counts": [[1, NaN], [2, 3]]}', IMPORT, 2, "counts[0][1]"),
        ("counts-infinity.json", '{"counts": [[1, Infinity], [2, 3]]}', IMPORT, 2, "counts[0][1]"),
        ("counts-empty-rows.json", '{"counts": [[], []]}', IMPORT, 2, "counts"),
        ("counts-1e30.json", '{"counts": [[1e30, 1], [2, 3]]}', IMPORT, 2, "counts[0][0]"),
        ("counts-int-1e30.json", '{"counts": [[1000000000000000000000000000000, 1], [2, 3]]}',
         IMPORT, 2, "counts[0][0]"),
        ("counts-all-zero.json", '{"counts": [[0, 0], [2, 3]]}', IMPORT, 2, "counts[0]"),
        ("counts-strings.json", '{"counts": [["1", 2], [2, 3]]}', IMPORT, 2, "counts[0][0]"),
        ("counts-usage-bad-layer.json", '{"expert_usage_by_layer": {"x": {"0": 1}}}', IMPORT, 2,
         "expert_usage_by_layer.x"),
        ("counts-usage-experts-1e12.json",
         '{"expert_usage_by_layer": {"0": {"0": 1}}, "num_experts": 1000000000000}', IMPORT, 2,
         "num_experts"),
        ("uses-counts-nan.json",
         json.dumps(_with(TINY, "popularity", {"source": "counts", "file": "counts-nan.json"})),
         SHOW, 2, "counts[0][1]"),
        # moeopt traces
        ("trace-header-only.jsonl", _jsonl(HEADER), IMPORT, 2, "records"),
        ("trace-gate-1.5.jsonl", _jsonl(HEADER, dict(RECORD, gate=[[1.5], [0.25]])), IMPORT, 2,
         "gate[0]"),
        ("trace-gate-negative.jsonl", _jsonl(HEADER, dict(RECORD, gate=[[-0.5], [0.25]])),
         IMPORT, 2, "gate[0]"),
        ("trace-gate-nan.jsonl",
         _jsonl(HEADER, json.dumps(RECORD).replace("0.5", "NaN")), IMPORT, 2, "gate[0][0]"),
        ("trace-gate-infinity.jsonl",
         _jsonl(HEADER, json.dumps(RECORD).replace("0.5", "Infinity")), IMPORT, 2, "gate[0][0]"),
        ("trace-header-gate-bogus.jsonl", _jsonl(dict(HEADER, gate="bogus"), RECORD), IMPORT, 2,
         "gate"),
        ("trace-token-negative.jsonl", _jsonl(HEADER, dict(RECORD, token=-2)), IMPORT, 2,
         "token"),
        ("trace-experts-1e12.jsonl", _jsonl(dict(HEADER, experts=10**12), RECORD), IMPORT, 2,
         "experts"),
        ("trace-layers-1e12.jsonl", _jsonl(dict(HEADER, moe_layers=10**12), RECORD), IMPORT, 2,
         "moe_layers"),
        ("trace-expert-bool.jsonl", _jsonl(HEADER, dict(RECORD, experts=[[True], [2]])), IMPORT,
         2, "experts"),
        ("trace-header-gate-bogus-as-problem.jsonl", _jsonl(dict(HEADER, gate="bogus"), RECORD),
         TRACE, 2, "gate"),
        ("trace-gate-1.5-as-problem.jsonl", _jsonl(HEADER, dict(RECORD, gate=[[1.5], [0.25]])),
         TRACE, 2, "gate[0]"),
        # per-token JSONL from other tools
        ("routing-gate-nan.jsonl",
         _jsonl('{"layer": 0, "experts": [1], "gate": [NaN]}'), IMPORT, 2, "gate"),
        ("routing-expert-1e12.jsonl", _jsonl({"layer": 0, "experts": [10**12]}), IMPORT, 2,
         "experts"),
        ("routing-index-1e30.jsonl",
         _jsonl({"layer": 0, "experts": [1], "token_index": 10**30}), IMPORT, 2, "token_index"),
        ("routing-layers-dict.jsonl", _jsonl({"layer": {"a": 1}, "experts": [1]}), IMPORT, 2,
         "layer"),
        # plans (parse-level mistakes: found before the problem is compared)
        ("plan-layer-nan.json", json.dumps(_plan(layer=float("nan"))), EVALUATE, 2,
         "layers[0].layer"),
        ("plan-layer-string.json", json.dumps(_plan(layer="12")), EVALUATE, 2, "layers[0].layer"),
        ("plan-layer-negative.json", json.dumps(_plan(layer=-1)), EVALUATE, 2, "layers[0].layer"),
        ("plan-layer-list.json", json.dumps(_plan(layer=[0])), EVALUATE, 2, "layers[0].layer"),
        ("plan-layer-bool.json", json.dumps(_plan(layer=True)), EVALUATE, 2, "layers[0].layer"),
        ("plan-layer-1e30.json", json.dumps(_plan(layer=1e30)), EVALUATE, 2, "layers[0].layer"),
        ("plan-layer-duplicate.json", json.dumps(_plan(layer=1)), EVALUATE, 2, "layer"),
        ("plan-layer-missing.json",
         json.dumps({**_plan(), "layers": [{k: v for k, v in PLAN_LAYER.items() if k != "layer"},
                                           dict(PLAN_LAYER, layer=1)]}), EVALUATE, 2,
         "layers[0].layer"),
        ("plan-fingerprint-empty.json",
         json.dumps({**_plan(), "problem": {"name": "tiny", "fingerprint": ""}}), EVALUATE, 2,
         "problem.fingerprint"),
        ("plan-replicas-1e30.json",
         json.dumps({**_plan(), "layers": [dict(PLAN_LAYER, functions=[
             {"experts": [0, 1], "memory_mb": 1769, "replicas": 10**30}]), dict(PLAN_LAYER, layer=1)]}),
         EVALUATE, 2, "replicas"),
        ("plan-beta-nan.json", json.dumps(_plan(pipeline_degree=float("nan"))), EVALUATE, 2,
         "pipeline_degree"),
        ("plan-expert-string.json",
         json.dumps({**_plan(), "layers": [dict(PLAN_LAYER, functions=[
             {"experts": ["0", 1], "memory_mb": 1769}]), dict(PLAN_LAYER, layer=1)]}),
         EVALUATE, 2, "experts[0]"),
        ("plan-memory-nan.json",
         json.dumps({**_plan(), "layers": [dict(PLAN_LAYER, functions=[
             {"experts": [0, 1], "memory_mb": float("nan")}]), dict(PLAN_LAYER, layer=1)]}),
         EVALUATE, 2, "memory_mb"),
        ("plan-utf16.json", json.dumps(_plan()).encode("utf-16"), EVALUATE, 2, "UTF-16"),
        ("plan-deep.json", "[" * 50_000, EVALUATE, 2, "nested"),
        ("plan-functions-dict.json", json.dumps(_plan(functions={"a": 1})), EVALUATE, 2,
         "functions"),
    ]
    return out


def extra_files() -> dict[str, str]:
    """Valid files the cases point at."""
    return {
        "tiny.json": json.dumps(TINY, indent=1),
        "tiny-4x2.json": json.dumps(_with(_with(ZIPF, "model.experts_per_layer", 4), "name", "tiny4")),
    }


def main() -> None:
    manifest = []
    for name, content, command, status, needle in cases():
        data = content if isinstance(content, bytes) else content.encode()
        (HERE / name).write_bytes(data)
        manifest.append({"file": name, "command": command, "exit": status, "error": needle})
    for name, content in extra_files().items():
        (HERE / name).write_text(content + "\n")
    (HERE / "cases.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(manifest)} cases to {HERE}")


if __name__ == "__main__":
    main()
