"""Ranges of every size a user can give, checked before anything is allocated from them.

Each limit is far above any real model or workload (reasons beside each; the table is in
docs/problem-format.md, "Limits"), and low enough that no array a solver or reader builds from
it can exhaust a few GB of memory. The checks raise :class:`~moeopt.errors.FieldError`; file
readers re-label it with the file and the field's full path.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

from moeopt.errors import FieldError

#: MoE layers of one model (DeepSeek-V3: 58; the deepest released MoE models have < 100).
MAX_MOE_LAYERS = 1_024
#: Experts per MoE layer (DeepSeek-V3: 256; Kimi K2: 384).
MAX_EXPERTS = 4_096
#: Experts each token is routed to (DeepSeek-V3: 8).
MAX_TOP_K = 64
#: layers x experts: every solver holds arrays of (candidate plans x layers x experts); at
#: 65,536 cells (4.4x DeepSeek-V3) a batch of 1,000 candidates is 0.5 GB per float array.
MAX_CELLS = 65_536
#: Tokens per batch (the paper: 10,240): 100x the paper; bounds per-batch sampling work.
MAX_TOKENS_PER_BATCH = 1_048_576
#: Batches of a popularity (built-ins use 2 to 8; every plan is priced on every batch).
MAX_BATCHES = 1_000
#: batches x layers x experts of a popularity: the loads array, 32 MB as int64.
MAX_LOAD_CELLS = 4_194_304
#: Replicas per function, G (the paper: 8); solvers enumerate 1..G per expert.
MAX_REPLICAS = 64
#: Sizes on a memory menu (the 'full' 64 MB grid has 160); solvers enumerate each per expert.
MAX_MENU = 256
#: batches x layers x experts x memory options x G: solvers price every (memory, replicas)
#: option of every expert on every batch. 2**25 (33.5 million) is 10x the largest built-in
#: (DeepSeek-V3: 3.3 million); greedy already needs ~40 s at that size on 2 cores.
MAX_OPTIONS = 1 << 25
#: Hidden size (the largest released models use < 20,000).
MAX_HIDDEN = 65_536
#: FFN width of one expert (dense FFNs of released models are < 100,000).
MAX_FFN = 1_048_576
#: Tokens per sequence for attention FLOPs (the longest contexts are ~1 million tokens).
MAX_SEQUENCE = 1_048_576
#: Non-MoE parameters per layer, and embedding parameters (a trillion each).
MAX_PARAMS = 10**12
#: Seeds: what numpy and every other tool accept.
MAX_SEED = 2**32 - 1
#: Zipf exponent: at s = 16 the second expert already gets 0.002 % of the first's share.
MAX_ZIPF_EXPONENT = 16.0
#: End-to-end time limit of one batch: above 0 and at most 1e9 s (31 years: a limit that long
#: is no limit; larger values are typos). Tiny limits are allowed: they make a problem
#: infeasible, which solvers report with the binding constraint.
MAX_TIME_LIMIT_S = 1e9
#: Pipeline degree beta (tokens per minibatch): at most a whole batch.
MAX_PIPELINE_DEGREE = MAX_TOKENS_PER_BATCH
#: Token counts are whole numbers; float64 holds every integer up to 2**53 exactly.
MAX_COUNT = 2**53
#: tokens x layers x (top-k or gate width) of a routing trace held in memory (1 GB float32).
MAX_TRACE_CELLS = 1 << 28
#: Characters of a name or label.
MAX_NAME = 256


def shown(value: Any) -> str:
    """A value as an error message quotes it (long values cut)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def whole(value: Any, owner: str, field: str, low: int, high: int, why: str = "") -> int:
    """``value`` as an int in [low, high]; bools, floats, strings and NaN are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
        low <= value <= high
    ):
        raise FieldError(
            owner, field, f"must be an integer from {low:,} to {high:,}{why}, got {shown(value)}"
        )
    return int(value)


def real(
    value: Any,
    owner: str,
    field: str,
    low: float,
    high: float,
    low_open: bool = False,
    why: str = "",
) -> float:
    """``value`` as a finite float in [low, high] (or (low, high] with ``low_open``)."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and value <= high
    )
    if not ok:
        lower = f"> {low:g}" if low_open else f">= {low:g}"
        raise FieldError(
            owner, field, f"must be a finite number {lower} and <= {high:g}{why}, got {shown(value)}"
        )
    return float(value)


#: Control characters (C0, DEL, C1) and lone surrogates: a name holding them rewrites the
#: terminal it is printed on (escape sequences, a line that reads ``error: ...``) or cannot be
#: printed at all. Longer texts (descriptions) may hold tabs and line breaks.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def text(value: Any, owner: str, field: str, empty: bool = False, limit: int = MAX_NAME) -> str:
    """A string of at most ``limit`` characters (non-empty unless ``empty``), without control
    characters (names: none at all; longer texts: tabs and line breaks only)."""
    if not isinstance(value, str) or len(value) > limit or (not empty and not value.strip()):
        what = "a string" if empty else "a non-empty string"
        raise FieldError(owner, field, f"must be {what} of at most {limit:,} characters, got {shown(value)}")
    bad = (_CONTROL if limit <= MAX_NAME else _CONTROL_IN_TEXT).search(value)
    if bad is not None:
        raise FieldError(
            owner, field, f"holds the control character {bad.group()!a} at {bad.start()}; allowed: "
            + ("printable characters" if limit <= MAX_NAME else "printable characters, tabs and "
               "line breaks"),
        )
    return value


def choice(value: Any, owner: str, field: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise FieldError(owner, field, f"{shown(value)} not allowed; allowed: {', '.join(allowed)}")
    return value
