"""Heatmap of expert popularity per MoE layer (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def popularity_heatmap(loads: np.ndarray, path: str | Path, title: str = "") -> None:
    """Share of each layer's token assignments per expert, averaged over batches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = np.asarray(loads, dtype=float)
    mean = loads.mean(axis=0) if loads.ndim == 3 else loads
    share = mean / np.maximum(mean.sum(axis=1, keepdims=True), 1e-12)
    layers, experts = share.shape
    fig, ax = plt.subplots(figsize=(max(6.5, min(16.0, 0.35 * experts + 2)), 0.45 * layers + 1.8))
    im = ax.imshow(share, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel("expert")
    ax.set_ylabel("MoE layer")
    ax.set_yticks(range(layers))
    ax.set_title(title or "expert popularity (share of the layer's tokens)", fontsize=9)
    fig.colorbar(im, ax=ax, label="share of tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
