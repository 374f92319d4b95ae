"""Built-in problems: the paper's settings, real Switch-base-128 counts, and scale instances.

Each is the same dict a user would write in a problem file, so built-ins and files take one path.
The paper's models have no public routing traces: their popularity is synthetic Zipf (seeded),
stated in each description. Time limits are chosen so the SLO binds: the cheapest plan ignoring
the SLO is too slow (see docs/problems.md for how each was set).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from moeopt.deployment_problem import DeploymentProblem
from moeopt.problem_file import problem_from_dict

# Attention block parameters per layer (Q, K, V, O projections + biases + 2 LayerNorms).
_BERT_ATTN = 4 * 768 * 768 + 4 * 768 + 4 * 768
_BERT_EMB = (30_522 + 512 + 2) * 768
_GPT2_EMB = (50_257 + 1_024) * 768


def _paper(
    name: str, layers: int, experts: int, nonmoe: int, emb: int, tps: float, what: str, seed: int
) -> dict[str, Any]:
    return {
        "name": name,
        "description": (
            f"{what}: {layers} MoE layers x {experts} experts, top-1, 10,240 tokens per batch "
            f"(the paper's setting). Experts are copies of the dense 768x3072 FFN. Popularity: "
            f"synthetic Zipf(s=1.0), 8 batches, seed {seed} (the paper's traces are not public)."
        ),
        "model": {
            "name": name,
            "moe_layers": layers,
            "experts_per_layer": experts,
            "top_k": 1,
            "hidden_size": 768,
            "expert_ffn_size": 3072,
            "dtype": "float32",
            "sequence_length": 128,
            "nonmoe_params_per_layer": nonmoe,
            "embedding_params": emb,
        },
        "workload": {"tokens_per_batch": 10_240},
        "slo": {"throughput_tokens_per_s": tps},
        "popularity": {"source": "zipf", "exponent": 1.0, "batches": 8, "seed": seed},
        "deployment": {"memory_menu": "paper", "max_replicas": 8, "cost_scope": "paper"},
    }


_MINILM_ATTN = 4 * 384 * 384 + 4 * 384 + 4 * 384
_MINILM_EMB = (30_522 + 512 + 2) * 384


def minilm_spec(experts: int, top_k: int, popularity: dict[str, Any], tps: float) -> dict[str, Any]:
    """Our converted all-MiniLM-L6-v2 MoE (docs/popularity.md): 6 MoE layers, hidden 384,
    the 1,536-neuron FFN split into ``experts`` experts."""
    name = f"minilm-moe-{experts}" + ("" if top_k == 1 else f"-top{top_k}")
    return {
        "name": name,
        "description": (
            f"moeopt's converted all-MiniLM-L6-v2 MoE: 6 MoE layers x {experts} experts "
            f"(FFN split by co-activation clustering), top-{top_k}, 10,240 tokens per batch. "
            "Popularity measured by profiling the model on the bundled corpus."
        ),
        "model": {
            "name": name,
            "moe_layers": 6,
            "experts_per_layer": experts,
            "top_k": top_k,
            "hidden_size": 384,
            "expert_ffn_size": 1536 // experts,
            "dtype": "float32",
            "sequence_length": 128,
            "nonmoe_params_per_layer": _MINILM_ATTN,
            "embedding_params": _MINILM_EMB,
        },
        "workload": {"tokens_per_batch": 10_240},
        "slo": {"throughput_tokens_per_s": tps},
        "popularity": popularity,
        "deployment": {"memory_menu": "paper", "max_replicas": 8, "cost_scope": "paper"},
    }


_SPECS: dict[str, dict[str, Any]] = {
    "bert-moe-4": _paper("bert-moe-4", 12, 4, _BERT_ATTN, _BERT_EMB, 300.0, "BERT-MoE (basic)", 4),
    "bert-moe-8": _paper("bert-moe-8", 12, 8, _BERT_ATTN, _BERT_EMB, 300.0, "BERT-MoE", 8),
    "bert-moe-16": _paper("bert-moe-16", 12, 16, _BERT_ATTN, _BERT_EMB, 330.0, "BERT-MoE", 16),
    "gpt2-moe-4": _paper("gpt2-moe-4", 12, 4, _BERT_ATTN, _GPT2_EMB, 300.0, "GPT-2 MoE (12-layer)", 2),
    "bert2bert-moe-4": _paper(
        "bert2bert-moe-4", 24, 4, int(1.5 * _BERT_ATTN), _BERT_EMB, 140.0,
        "Bert2Bert MoE (12 encoder + 12 decoder FFNs; decoder layers add cross-attention)", 24,
    ),
    "switch-base-128": {
        "name": "switch-base-128",
        "description": (
            "google/switch-base-128 shape (6 MoE encoder layers x 128 experts, top-1) with its real "
            "measured expert counts (moeopt/data/traces, MIT, from cyanmishra92/specMoE). The file "
            "holds per-layer totals only: each 10,240-token batch is a seeded multinomial draw with "
            "those frequencies (8 batches, seed 0)."
        ),
        "model": {
            "name": "switch-base-128",
            "moe_layers": 6,
            "experts_per_layer": 128,
            "top_k": 1,
            "hidden_size": 768,
            "expert_ffn_size": 3072,
            "dtype": "float32",
            "sequence_length": 128,
            # Between two MoE layers: two attention blocks and one dense FFN.
            "nonmoe_params_per_layer": 2 * _BERT_ATTN + 2 * 768 * 3072 + 3072 + 768,
            "embedding_params": 32_128 * 768,
        },
        "workload": {"tokens_per_batch": 10_240},
        "slo": {"throughput_tokens_per_s": 300.0},
        "popularity": {
            "source": "counts",
            "file": "traces/switch-base-128-expert-counts.json",
            "batches": 8,
            "seed": 0,
        },
        "deployment": {"memory_menu": "paper", "max_replicas": 8, "cost_scope": "paper"},
    },
    "minilm-moe-8": minilm_spec(
        8, 1, {"source": "loads", "file": "traces/minilm-moe-e8-top1-loads.json"}, 1600.0
    ),
    "mixtral-8x7b": {
        "name": "mixtral-8x7b",
        "description": (
            "Scale instance shaped like Mixtral-8x7B: 32 MoE layers x 8 SwiGLU experts (4096x14336, "
            "bf16), top-2, 10,240 tokens. Full Lambda memory range (128..10,240 MB), non-MoE "
            "functions at 10,240 MB. Popularity: synthetic Zipf(s=0.6), 4 batches, seed 7."
        ),
        "model": {
            "name": "mixtral-8x7b",
            "moe_layers": 32,
            "experts_per_layer": 8,
            "top_k": 2,
            "hidden_size": 4096,
            "expert_ffn_size": 14_336,
            "dtype": "bfloat16",
            "ffn_matrices": 3,
            "sequence_length": 512,
            "nonmoe_params_per_layer": 2 * 4096 * 4096 + 2 * 4096 * 1024 + 2 * 4096,
            "embedding_params": 32_000 * 4096,
        },
        "workload": {"tokens_per_batch": 10_240},
        "slo": {"throughput_tokens_per_s": 10.0},
        "popularity": {"source": "zipf", "exponent": 0.6, "batches": 4, "seed": 7},
        "deployment": {"memory_menu": "full", "max_replicas": 8, "cost_scope": "paper"},
        "cost_model": {"constants": {"nonmoe_memory_mb": 10_240}},
    },
    "deepseek-v3": {
        "name": "deepseek-v3",
        "description": (
            "Scale instance shaped like DeepSeek-V3: 58 MoE layers x 256 routed SwiGLU experts "
            "(7168x2048, bf16), top-8, 10,240 tokens; MLA attention and the shared expert count as "
            "non-MoE. Paper memory menu, non-MoE functions at 10,240 MB. Popularity: synthetic "
            "Zipf(s=1.1), 2 batches, seed 3."
        ),
        "model": {
            "name": "deepseek-v3",
            "moe_layers": 58,
            "experts_per_layer": 256,
            "top_k": 8,
            "hidden_size": 7168,
            "expert_ffn_size": 2048,
            "dtype": "bfloat16",
            "ffn_matrices": 3,
            "sequence_length": 512,
            "nonmoe_params_per_layer": 187_000_000 + 3 * 7168 * 2048,
            "embedding_params": 129_280 * 7168,
        },
        "workload": {"tokens_per_batch": 10_240},
        "slo": {"throughput_tokens_per_s": 2.4},
        "popularity": {"source": "zipf", "exponent": 1.1, "batches": 2, "seed": 3},
        "deployment": {"memory_menu": "paper", "max_replicas": 8, "cost_scope": "paper"},
        "cost_model": {"constants": {"nonmoe_memory_mb": 10_240}},
    },
}

BUILTIN_PROBLEMS: tuple[str, ...] = tuple(_SPECS)
DEFAULT_PROBLEM = "minilm-moe-8"  # measured on our own model, and small enough to run here
PAPER_PROBLEMS = ("bert-moe-4", "bert-moe-8", "bert-moe-16", "gpt2-moe-4", "bert2bert-moe-4")


def builtin_spec(name: str) -> dict[str, Any]:
    """The problem-file form of a built-in (``moeopt problems show NAME --spec``)."""
    import copy

    return copy.deepcopy(_SPECS[name])


@cache
def builtin_problem(name: str) -> DeploymentProblem:
    return problem_from_dict(builtin_spec(name), f"built-in:{name}")
