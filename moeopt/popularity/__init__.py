"""Expert popularity: measured, imported, synthetic or predicted per-batch expert loads."""

from __future__ import annotations

from moeopt.popularity.loads import Popularity, read_layer_counts

__all__ = ["Popularity", "read_layer_counts"]
