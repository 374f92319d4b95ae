"""What is deployed: the MoE model's shape, the workload and the service level.

Each dataclass checks its values on construction (``moeopt.limits``), so a problem built in
code and one read from a file are validated by the same lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from moeopt import limits
from moeopt.errors import FieldError

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8": 1, "int8": 1}


@dataclass(frozen=True)
class ModelSpec:
    """Shape of an MoE model: enough to size experts, tokens and compute.

    ``ffn_matrices`` is 2 for a GELU MLP (W1, W2) and 3 for a SwiGLU MLP (W1, W2, W3).
    Non-MoE parameters per layer (attention, norms) size the non-MoE functions.
    """

    name: str
    moe_layers: int
    experts_per_layer: int
    top_k: int
    hidden_size: int
    expert_ffn_size: int
    dtype: str = "float32"
    ffn_matrices: int = 2
    sequence_length: int = 128
    nonmoe_params_per_layer: int = 0
    embedding_params: int = 0

    def __post_init__(self) -> None:
        own = "ModelSpec"
        values = {
            "name": limits.text(self.name, own, "name"),
            "moe_layers": limits.whole(self.moe_layers, own, "moe_layers", 1, limits.MAX_MOE_LAYERS),
            "experts_per_layer": limits.whole(
                self.experts_per_layer, own, "experts_per_layer", 1, limits.MAX_EXPERTS
            ),
            "hidden_size": limits.whole(self.hidden_size, own, "hidden_size", 1, limits.MAX_HIDDEN),
            "expert_ffn_size": limits.whole(
                self.expert_ffn_size, own, "expert_ffn_size", 1, limits.MAX_FFN
            ),
            "dtype": limits.choice(self.dtype, own, "dtype", tuple(DTYPE_BYTES)),
            "ffn_matrices": limits.whole(
                self.ffn_matrices, own, "ffn_matrices", 2, 3, " (2: GELU MLP, 3: SwiGLU)"
            ),
            "sequence_length": limits.whole(
                self.sequence_length, own, "sequence_length", 1, limits.MAX_SEQUENCE
            ),
            "nonmoe_params_per_layer": limits.whole(
                self.nonmoe_params_per_layer, own, "nonmoe_params_per_layer", 0, limits.MAX_PARAMS
            ),
            "embedding_params": limits.whole(
                self.embedding_params, own, "embedding_params", 0, limits.MAX_PARAMS
            ),
        }
        cells = values["moe_layers"] * values["experts_per_layer"]
        if cells > limits.MAX_CELLS:
            raise FieldError(
                own, "experts_per_layer",
                f"moe_layers x experts_per_layer = {cells:,}; allowed: at most {limits.MAX_CELLS:,}",
            )
        top = min(values["experts_per_layer"], limits.MAX_TOP_K)
        values["top_k"] = limits.whole(
            self.top_k, own, "top_k", 1, top, f" (at most experts_per_layer and {limits.MAX_TOP_K})"
        )
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def expert_params(self) -> int:
        """Weights and biases of one expert."""
        h, f, mats = self.hidden_size, self.expert_ffn_size, self.ffn_matrices
        return mats * h * f + (mats - 1) * f + h

    @property
    def expert_param_bytes(self) -> int:
        return self.expert_params * self.dtype_bytes

    @property
    def token_bytes(self) -> int:
        """One token's hidden state, in and out of an expert (D^in = D^o)."""
        return self.hidden_size * self.dtype_bytes

    @property
    def expert_flops_per_token(self) -> float:
        """Multiply-adds of one token through one expert, counted as 2 FLOPs each."""
        return 2.0 * self.ffn_matrices * self.hidden_size * self.expert_ffn_size

    @property
    def intermediate_bytes_per_token(self) -> int:
        """The FFN's hidden activation of one token, held while the expert runs."""
        return (self.ffn_matrices - 1) * self.expert_ffn_size * self.dtype_bytes

    @property
    def nonmoe_param_bytes(self) -> int:
        return self.nonmoe_params_per_layer * self.dtype_bytes

    @property
    def nonmoe_flops_per_token(self) -> float:
        """Attention block per token: projections plus scores against the sequence."""
        return 2.0 * self.nonmoe_params_per_layer + 4.0 * self.sequence_length * self.hidden_size


@dataclass(frozen=True)
class Workload:
    """A request is one batch of tokens (the paper: 10,240)."""

    tokens_per_batch: int = 10_240

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "tokens_per_batch",
            limits.whole(
                self.tokens_per_batch, "Workload", "tokens_per_batch", 1,
                limits.MAX_TOKENS_PER_BATCH,
            ),
        )


@dataclass(frozen=True)
class ServiceLevel:
    """End-to-end time limit of one batch; a throughput target is tokens / time limit."""

    time_limit_s: float

    def __post_init__(self) -> None:
        value = limits.real(
            self.time_limit_s, "ServiceLevel", "time_limit_s", 0.0, limits.MAX_TIME_LIMIT_S,
            low_open=True, why=" (seconds)",
        )
        object.__setattr__(self, "time_limit_s", value)

    @classmethod
    def from_throughput(cls, tokens_per_s: float, tokens_per_batch: int) -> ServiceLevel:
        """The time limit that serves ``tokens_per_s``: tokens_per_batch / tokens_per_s."""
        tokens = Workload(tokens_per_batch).tokens_per_batch
        rate = limits.real(
            tokens_per_s, "ServiceLevel", "throughput_tokens_per_s",
            tokens / limits.MAX_TIME_LIMIT_S, 1e300,
            why=f" (a time limit of at most {limits.MAX_TIME_LIMIT_S:g} s for {tokens:,} tokens)",
        )
        return cls(time_limit_s=min(tokens / rate, limits.MAX_TIME_LIMIT_S))

    def throughput_target(self, tokens_per_batch: int) -> float:
        return tokens_per_batch / self.time_limit_s
