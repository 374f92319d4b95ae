"""Expert popularity: measured, imported, synthetic or predicted per-batch expert loads."""

from __future__ import annotations

from moeopt.popularity.loads import Popularity, read_layer_counts


def traces_to_popularity(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - see importers
    """Popularity of a problem with ``source = "trace"`` (imports torch-free trace readers lazily)."""
    from moeopt.popularity.importers import traces_to_popularity as impl

    return impl(*args, **kwargs)


__all__ = ["Popularity", "read_layer_counts", "traces_to_popularity"]
