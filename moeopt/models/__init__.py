"""Real MoE models converted from packaged dense transformers (no hub downloads)."""

from __future__ import annotations

from moeopt.models.bert_moe import (
    MODEL_NAME,
    BertMoE,
    ExpertWeights,
    MoELayerWeights,
    Routing,
    convert,
    load_dense,
    sentence_embeddings,
    tokenize,
    windows,
)

__all__ = [
    "MODEL_NAME",
    "BertMoE",
    "ExpertWeights",
    "MoELayerWeights",
    "Routing",
    "convert",
    "load_dense",
    "sentence_embeddings",
    "tokenize",
    "windows",
]
