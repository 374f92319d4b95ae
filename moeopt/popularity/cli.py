"""``moeopt popularity profile|import|predict|evaluate``: measure, bring and predict popularity.

User mistakes raise ``InputError``; the top-level ``moeopt`` group prints them as one line.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import numpy as np

from moeopt.errors import InputError

EXPERT_CHOICES = click.Choice(["4", "8", "16"])
INCOMPLETE_CHOICE = click.Choice(["error", "drop"])
#: Input files are plain strings: moeopt.files reads them, so a folder, device or missing file
#: gets the same one-line ``error:`` as any other bad input.
INPUT_FILE = click.STRING


def _mapping_options(f):
    """--field NAME=COLUMN (repeat), --fields FILE and --incomplete: how to read per-token JSONL."""
    f = click.option(
        "--incomplete", "incomplete", type=INCOMPLETE_CHOICE, default="error", show_default=True,
        help="Per-token JSONL: a token missing a layer is an error, or is dropped (and counted).",
    )(f)
    f = click.option(
        "--fields", "fields_file", type=INPUT_FILE, default=None,
        help='Per-token JSONL: a JSON/TOML file mapping NAME to the records\' field, e.g. '
        '{"layer": "layer_id", "sequence": "request_id"}.',
    )(f)
    f = click.option(
        "--field", "fields", multiple=True, metavar="NAME=FIELD",
        help="Per-token JSONL: where NAME is in the records, e.g. layer=layer_id, "
        "sequence=request_id (repeat; names: layer, experts, gate, token_id, token_index, "
        "position, sequence).",
    )(f)
    return f


def trace_source(path: str | None, fields: tuple[str, ...], fields_file: str | None, incomplete: str):
    """The ``TraceSource`` of ``--trace`` and its mapping options (None without ``--trace``)."""
    from moeopt.popularity.importers import TraceSource, parse_field_map

    if path is None:
        if fields or fields_file or incomplete != "error":
            option = "--field" if fields else "--fields" if fields_file else "--incomplete"
            raise InputError(option, "trace", "says how to read a trace; give --trace FILE too")
        return None
    mapping = parse_field_map(fields, fields_file)
    return TraceSource(Path(path), tuple(mapping.items()), incomplete)


def trace_options(f):
    """``--trace FILE`` and how to read it, for every command that names a problem.

    The command receives ``trace`` as a :class:`~moeopt.popularity.importers.TraceSource`
    (or None), ready for :func:`moeopt.problem.load_problem`.
    """

    @functools.wraps(f)
    def wrapper(*args, trace=None, fields=(), fields_file=None, incomplete="error", **kwargs):
        return f(*args, trace=trace_source(trace, fields, fields_file, incomplete), **kwargs)

    wrapper = _mapping_options(wrapper)
    return click.option(
        "--trace", "trace", type=INPUT_FILE, default=None,
        help="Routing trace (moeopt JSONL, per-token JSONL or counts JSON): the problem's "
        "popularity.",
    )(wrapper)


def note_popularity(problem: Any) -> None:
    """State on stderr how a problem's popularity was made, where it matters (resampled, tokens
    dropped): every command that builds a problem from a trace calls this."""
    for note in problem.popularity.notes:
        click.echo(f"note: {problem.name}: popularity: {note}", err=True)


def _json(data: Any) -> str:
    return json.dumps(
        data, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)
    )


def build_trace(
    experts: int,
    top_k: int,
    corpus: str | None,
    tokens: int,
    calibration: int,
    seed: int,
    full_gate: bool = False,
    progress: bool = True,
):
    """Convert the built-in model and profile it on a corpus (gate calibrated on other text).

    The first ``calibration`` tokens of the corpus fit the gates; the next ``tokens`` are
    profiled.
    """
    from moeopt.models import convert
    from moeopt.popularity.corpus import load_corpus
    from moeopt.popularity.traces import capture

    if top_k > experts:
        raise InputError("--top-k", str(top_k), f"allowed 1..{experts} for {experts} experts")
    c = load_corpus(corpus)
    if len(c.token_ids) < calibration + 2 * 128:
        raise InputError(
            corpus or c.name,
            "corpus",
            f"{len(c.token_ids)} tokens; need more than the {calibration} calibration tokens",
        )
    stream = c.token_ids[calibration : calibration + tokens]
    model = convert(experts, top_k, c.token_ids[:calibration], seed=seed)
    name = f"{c.name}[{calibration}:{calibration + len(stream)}]"
    progress = progress and sys.stderr.isatty()  # no bar frames in a redirected stderr
    return capture(model, stream, corpus=name, full_gate=full_gate, progress=progress)


def model_options(f):
    f = click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
                     help="Clustering seed.")(f)
    f = click.option(
        "--calibration-tokens",
        default=8000,
        show_default=True,
        type=click.IntRange(1, 10_000_000),
        help="Leading corpus tokens that fit the gates (never profiled).",
    )(f)
    f = click.option(
        "--corpus", default=None, help="UTF-8 text file; default: the bundled sample."
    )(f)
    f = click.option("--top-k", "top_k", default=1, show_default=True, type=click.IntRange(1, 16))(
        f
    )
    f = click.option("--experts", default="4", show_default=True, type=EXPERT_CHOICES)(f)
    return f


@click.group()
def popularity() -> None:
    """Measure, import and predict expert popularity (tokens per expert per batch)."""


@popularity.command()
@model_options
@click.option("--tokens", default=50_000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Tokens to profile.")
@click.option("--full-gate", is_flag=True, help="Store all E gate probabilities, not only top-k.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Trace JSONL.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a popularity heatmap PNG.")
@click.option("--json", "as_json", is_flag=True)
def profile(
    experts, top_k, corpus, calibration_tokens, seed, tokens, full_gate, out, plot, as_json
):
    """Run the converted all-MiniLM-L6-v2 MoE on a corpus and write its routing trace."""
    from moeopt.popularity.traces import trace_loads, write_trace

    t0 = time.perf_counter()
    trace = build_trace(int(experts), top_k, corpus, tokens, calibration_tokens, seed, full_gate)
    write_trace(trace, out)
    summary = {"trace": out, **trace.header(), "seconds": round(time.perf_counter() - t0, 1)}
    if plot:
        from moeopt.popularity.plot import popularity_heatmap

        popularity_heatmap(trace_loads(trace, partial=True), plot, trace.model)
        summary["plot"] = plot
    click.echo(
        _json(summary)
        if as_json
        else f"wrote {trace.tokens} tokens x {trace.layers} layers to {out}"
    )


@popularity.command("import")
@click.argument("path", type=INPUT_FILE)
@_mapping_options
@click.option("--experts", "num_experts", type=click.IntRange(1, 4096), default=None,
              help="Experts per layer.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write a moeopt trace JSONL.")
@click.option("--batch-size", default=10_240, show_default=True, type=click.IntRange(1, 1_048_576))
@click.option("--plot", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def import_(path, fields, fields_file, incomplete, num_experts, out, batch_size, plot, as_json):
    """Read a counts file, a moeopt trace or per-token routing JSONL from another tool."""
    from moeopt.popularity.importers import LayerCounts, load_any, parse_field_map
    from moeopt.popularity.traces import trace_loads, write_trace

    data = load_any(path, parse_field_map(fields, fields_file), num_experts, incomplete)
    if isinstance(data, LayerCounts):
        totals = data.counts
        summary: dict[str, Any] = {
            "kind": "layer-counts",
            "layers": totals.shape[0],
            "experts": totals.shape[1],
        }
        if out:
            raise InputError("--out", out, "a counts file has no per-token records to write")
    else:
        totals = trace_loads(data, batch_size, partial=True).sum(axis=0)
        summary = {
            "kind": "routing-trace",
            "tokens": data.tokens,
            "layers": data.layers,
            "experts": data.num_experts,
            "top_k": data.top_k,
            **({"sequences": data.extra["sequences"]} if "sequences" in data.extra else {}),
            "dropped_tokens": int(data.extra.get("dropped_tokens", 0)),
        }
        if out:
            write_trace(data, out)
            summary["trace"] = out
    share = totals / np.maximum(totals.sum(axis=1, keepdims=True), 1)
    summary["hottest_share_per_layer"] = [round(float(s), 4) for s in share.max(axis=1)]
    summary["idle_experts_per_layer"] = [int(n) for n in (totals == 0).sum(axis=1)]
    if plot:
        from moeopt.popularity.plot import popularity_heatmap

        popularity_heatmap(totals, plot, Path(path).name)
        summary["plot"] = plot
    click.echo(_json(summary) if as_json else "\n".join(f"{k}: {v}" for k, v in summary.items()))


def _routing_trace(path: str, fields: tuple[str, ...], fields_file: str | None, incomplete: str):
    """A per-token routing trace (moeopt JSONL, or another tool's with the field mapping)."""
    from moeopt.popularity.importers import LayerCounts, load_any, parse_field_map

    found = load_any(path, parse_field_map(fields, fields_file), None, incomplete)
    if isinstance(found, LayerCounts):
        raise InputError(
            path, "file", "a counts file holds per-layer totals, no per-token records; need a "
            "routing trace (moeopt JSONL or per-token JSONL)",
        )
    dropped = int(found.extra.get("dropped_tokens", 0) or 0)
    if dropped:  # said wherever the trace is used, as when it builds a problem
        click.echo(f"note: {path}: {dropped:,} tokens missed a layer and were dropped "
                   "(--incomplete drop)", err=True)
    return found


def _check_token_ids(trace: Any, names: tuple[str, ...], source: str) -> None:
    """Predictors keyed by token id cannot be fitted on a trace without token ids."""
    from moeopt.popularity.predictors import PREDICTORS

    needs = [n for n in names if PREDICTORS[n].needs_token_ids]
    if needs and np.any(trace.token_ids < 0):
        missing = int((trace.token_ids < 0).sum())
        raise InputError(
            source, "token_id",
            f"predictor {', '.join(needs)} needs a token id on every record; {missing:,} of "
            f"{trace.tokens:,} tokens have none (map them with --field token_id=NAME, or use "
            "--predictor frequency or moving-average)",
        )


@popularity.command()
@click.option(
    "--trace",
    "trace_path",
    required=True,
    type=INPUT_FILE,
    help="Profiled trace (moeopt JSONL, or per-token JSONL with --field) to fit on.",
)
@_mapping_options
@click.option("--predictor", default="bayes", show_default=True)
@click.option(
    "--tokens-from",
    type=INPUT_FILE,
    help="Trace whose token ids to predict; default: the bundled corpus tail.",
)
@click.option("--batch-size", default=10_240, show_default=True, type=click.IntRange(1, 1_048_576))
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write the loads as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def predict(trace_path, fields, fields_file, incomplete, predictor, tokens_from, batch_size, out,
            plot, as_json):
    """Predict per-batch expert loads d[e,i] for new tokens from a profiled trace."""
    from moeopt.popularity.predictors import PREDICTORS, make_predictor

    if predictor not in PREDICTORS:
        raise InputError("--predictor", predictor, f"allowed: {', '.join(PREDICTORS)}")
    trace = _routing_trace(trace_path, fields, fields_file, incomplete)
    _check_token_ids(trace, (predictor,), trace_path)
    try:
        p = make_predictor(predictor).fit(trace)
    except ValueError as exc:
        raise InputError(trace_path, "token", str(exc)) from None
    if tokens_from:
        tokens = _routing_trace(tokens_from, fields, fields_file, incomplete).token_ids
    else:
        from moeopt.popularity.corpus import load_corpus

        tokens = load_corpus().token_ids[-batch_size:]
    if len(tokens) == 0:
        raise InputError(tokens_from or "--tokens-from", "tokens", "no tokens to predict")
    loads = p.predict_loads(tokens, batch_size)
    doc = {
        "format": "moeopt-loads",
        "schema_version": 1,
        "predictor": predictor,
        "fitted_on": trace_path,
        "batch_size": batch_size,
        "loads": loads.tolist(),
    }
    if out:
        Path(out).write_text(json.dumps(doc))
    if plot:
        from moeopt.popularity.plot import popularity_heatmap

        popularity_heatmap(loads, plot, f"predicted by {predictor}")
    if as_json:
        click.echo(_json(doc))
    else:
        click.echo(
            f"{loads.shape[0]} batches x {loads.shape[1]} layers x {loads.shape[2]} experts"
            + (f" -> {out}" if out else "")
        )
        for layer, row in enumerate(loads.mean(axis=0)):
            click.echo(f"layer {layer}: " + " ".join(f"{v:.0f}" for v in row))


@popularity.command()
@click.option(
    "--trace",
    "trace_path",
    type=INPUT_FILE,
    help="Evaluate on this trace (moeopt JSONL, or per-token JSONL with --field) instead of "
    "profiling the built-in model.",
)
@_mapping_options
@model_options
@click.option("--tokens", default=41_000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Tokens to profile.")
@click.option("--folds", default=4, show_default=True, type=click.IntRange(2, 20))
@click.option(
    "--batch-size", default=10_240, show_default=True, type=click.IntRange(1, 1_048_576),
    help="Tokens per batch (paper: 10,240).",
)
@click.option("--predictor", "predictors", multiple=True, help="Repeat; default: all.")
@click.option("--plot", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def evaluate(
    trace_path,
    fields,
    fields_file,
    incomplete,
    experts,
    top_k,
    corpus,
    calibration_tokens,
    seed,
    tokens,
    folds,
    batch_size,
    predictors,
    plot,
    as_json,
):
    """Compare the predictors' error on held-out batches (cross-validated)."""
    from moeopt.popularity.evaluation import DEFAULT_PREDICTORS, evaluate_predictors, format_table
    from moeopt.popularity.predictors import PREDICTORS
    from moeopt.popularity.traces import trace_loads

    for name in predictors:
        if name not in PREDICTORS:
            raise InputError("--predictor", name, f"allowed: {', '.join(PREDICTORS)}")
    if trace_path:
        trace = _routing_trace(trace_path, fields, fields_file, incomplete)
    else:
        trace_source(None, fields, fields_file, incomplete)  # mapping options need --trace
        trace = build_trace(
            int(experts), top_k, corpus, tokens, calibration_tokens, seed, progress=not as_json
        )
    if trace.tokens < 2 * folds:
        raise InputError(trace_path or "--tokens", "tokens", f"need at least {2 * folds} tokens")
    if predictors:
        _check_token_ids(trace, tuple(predictors), trace_path or "--trace")
    elif np.any(trace.token_ids < 0):
        predictors = tuple(p for p in DEFAULT_PREDICTORS if not PREDICTORS[p].needs_token_ids)
        click.echo(
            f"note: {trace_path}: records without token ids; scoring {', '.join(predictors)} only",
            err=True,
        )
    held_out = trace.tokens // folds
    if held_out < batch_size:  # a short trace: each held-out block is one smaller batch
        click.echo(
            f"note: {trace_path or 'the profiled trace'}: {trace.tokens:,} tokens in {folds} "
            f"folds: each held-out batch has about {held_out:,} tokens, not --batch-size "
            f"{batch_size:,} (errors are per batch of that size)", err=True,
        )
    report = evaluate_predictors(trace, tuple(predictors) or DEFAULT_PREDICTORS, folds, batch_size)
    if plot:
        from moeopt.popularity.plot import popularity_heatmap

        popularity_heatmap(trace_loads(trace, batch_size, partial=True), plot, trace.model)
    if as_json:
        click.echo(_json(asdict(report)))
    else:
        click.echo(
            f"{report.model} on {report.corpus}: {report.tokens} tokens, "
            f"{report.folds}-fold, batches of {report.batch_size}"
        )
        click.echo(format_table([report]))
