"""What is deployed: the MoE model's shape, the workload and the service level."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class ServiceLevel:
    """End-to-end time limit of one batch; a throughput target is tokens / time limit."""

    time_limit_s: float

    @classmethod
    def from_throughput(cls, tokens_per_s: float, tokens_per_batch: int) -> ServiceLevel:
        return cls(time_limit_s=tokens_per_batch / tokens_per_s)

    def throughput_target(self, tokens_per_batch: int) -> float:
        return tokens_per_batch / self.time_limit_s
