"""The report's figures (PNG, matplotlib Agg), each drawn from the run's results only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moeopt.breakeven import PAPER_CPU_SAVING


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    import warnings

    with warnings.catch_warnings():  # crowded panels: tight_layout does what it can
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path.name


def regime(fig_data: dict[str, Any], path: Path) -> str:
    """Saving against LambdaML over the throughput loss accepted, one panel per profile."""
    plt = _plt()
    profiles = fig_data["profiles"]
    fig, axes = plt.subplots(1, len(profiles), figsize=(6 * len(profiles), 4.2), squeeze=False)
    for ax, (label, per) in zip(axes[0], profiles.items(), strict=True):
        for name, v in per.items():
            rows = [r for r in v["rows"] if r["saving"] is not None]
            ax.plot([100 * r["throughput_loss"] for r in rows], [100 * r["saving"] for r in rows],
                    "o-", ms=4, label=name)
        ax.axhline(43.41, color="k", ls="--", lw=1)
        ax.axvline(18.76, color="k", ls=":", lw=1)
        ax.text(18.9, 2, "18.76 % loss", fontsize=8)
        ax.text(ax.get_xlim()[0], 44.5, "paper: >= 43.41 %", fontsize=8)
        ax.set_xlabel("throughput loss against LambdaML (%)")
        ax.set_ylabel("cost saving against LambdaML (%)")
        ax.set_title(f"profile {label}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def breakeven(fig_data: dict[str, Any], path: Path) -> str:
    """Cost per batch against the request rate: Lambda flat, the always-on cluster falling to
    saturation; green where the paper's 75.67 % holds, red where the cluster is cheaper."""
    plt = _plt()
    profiles = {k: v for k, v in fig_data["profiles"].items() if v and all(v.values())}
    fig, axes = plt.subplots(1, max(len(profiles), 1), figsize=(6.5 * max(len(profiles), 1), 4.4),
                             squeeze=False)
    for ax, (label, per) in zip(axes[0], profiles.items(), strict=False):
        for i, (name, be) in enumerate(per.items()):
            rates = np.asarray(be["sweep"]["rates_per_hour"])
            cost = np.asarray(be["sweep"]["cluster_cost_usd"])
            color = f"C{i}"
            ax.loglog(rates, cost, color=color, label=f"{name}: always-on {be['cluster']['instance']}")
            ax.axhline(be["lambda_cost_usd"], color=color, ls="--", lw=1, label=f"{name}: Lambda")
            if i == 0:
                lam = be["lambda_cost_usd"]
                holds = cost * (1 - PAPER_CPU_SAVING) >= lam
                wins = cost < lam
                ax.fill_between(rates, cost.min() / 3, cost.max() * 3, where=holds, color="g",
                                alpha=0.12, label=f"{name}: Lambda >= 75.67 % cheaper")
                ax.fill_between(rates, cost.min() / 3, cost.max() * 3, where=wins, color="r",
                                alpha=0.12, label=f"{name}: cluster cheaper")
        ax.axvline(be["cluster"]["requests_per_hour"], color="k", ls=":", lw=1)
        ax.set_xlabel("request rate (batches of 10,240 tokens per hour)")
        ax.set_ylabel("cost per batch (USD)")
        ax.set_title(f"profile {label}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6.5)
    return _save(fig, path)


def designs(fig_data: dict[str, Any], path: Path) -> str:
    """Cost and latency of the three designs relative to plain storage, at each batch size,
    per profile and model (the absolute figures are in the report's table)."""
    plt = _plt()
    tokens = fig_data["tokens"]
    pred = fig_data["predicted"]
    methods = ("direct", "storage", "pipelined_storage")
    series = [(f"{label}, {name}", rows) for label, per in pred.items() for name, rows in per.items()]
    fig, axes = plt.subplots(2, len(tokens), figsize=(5.5 * len(tokens), 6.5), squeeze=False)
    width = 0.8 / max(len(series), 1)
    for j, n in enumerate(tokens):
        for i, key in enumerate(("cost_usd", "latency_s")):
            ax = axes[i][j]
            for k, (title, rows) in enumerate(series):
                at = {r["method"]: r for r in rows if r["tokens"] == n}
                ref = at["storage"][key]
                vals = [at[m][key] / ref if at[m]["feasible"] else 0 for m in methods]
                x = np.arange(len(methods)) + k * width
                ax.bar(x, vals, width, label=title)
                for xi, m in zip(x, methods, strict=True):
                    if not at[m]["feasible"]:
                        ax.text(xi, 0.02, "infeasible", rotation=90, fontsize=7, va="bottom", ha="center")
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_xticks(np.arange(len(methods)) + width * (len(series) - 1) / 2, methods, fontsize=8)
            what = "cost per batch" if key == "cost_usd" else "latency"
            ax.set_title(f"{n:,} tokens: {what} / storage's", fontsize=10)
            ax.legend(fontsize=6.5)
    return _save(fig, path)


def measured(rows: list[dict[str, Any]], path: Path, title: str) -> str:
    """Predicted (this host, this machine's calibration) against measured, per run."""
    plt = _plt()
    rows = [r for r in rows if r.get("measured")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    for ax, key, unit in ((axes[0], "cost_gb_s", "billed GB-s per request"),
                          (axes[1], "latency_s", "latency per request (s)")):
        ax.bar(x - 0.2, [r["predicted"][key] for r in rows], 0.4, label="predicted")
        ax.bar(x + 0.2, [r["measured"][key] for r in rows], 0.4, label="measured (median)")
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(unit)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def algorithms(fig_data: dict[str, Any], path: Path) -> str:
    """Cost and solve seconds against the target, per algorithm (markers per profile)."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    styles = ("-", "--")
    for k, (label, p) in enumerate(fig_data["profiles"].items()):
        rows = p["rows"]
        ratios = [r["ratio"] for r in rows]
        ls = styles[k % 2]
        for key, name, color in (("ods", "ODS", "C0"), ("monolithic", "monolithic MILP", "C1")):
            a.plot(ratios, [r[key]["cost_usd"] if r[key]["cost_usd"] is not None else np.nan for r in rows],
                   "o" + ls, color=color, label=f"{name} ({label})")
            b.plot(ratios, [r[key]["seconds"] for r in rows], "o" + ls, color=color, label=f"{name} ({label})")
        a.plot(ratios, [r["random"]["cost_usd_mean"] if r["random"] and r["random"]["cost_usd_mean"] else np.nan
                        for r in rows], "s" + ls, color="C2", label=f"random method ({label})")
    a.set_xlabel("throughput target / LambdaML's")
    a.set_ylabel("cost per batch (USD)")
    a.set_yscale("log")
    a.legend(fontsize=7)
    a.grid(alpha=0.3, which="both")
    b.axhline(2.27, color="k", ls=":", lw=1, label="paper's ODS: 2.27 s")
    b.axhline(fig_data["monolithic_seconds_limit"], color="C1", ls=":", lw=1, label="monolithic limit")
    b.set_yscale("log")
    b.set_xlabel("throughput target / LambdaML's")
    b.set_ylabel("solve seconds")
    b.legend(fontsize=7)
    b.grid(alpha=0.3, which="both")
    fig.suptitle(fig_data["problem"], fontsize=10)
    return _save(fig, path)


def acquisition(fig_data: dict[str, Any], path: Path) -> str:
    plt = _plt()
    profiles = fig_data["profiles"]
    fig, axes = plt.subplots(1, len(profiles), figsize=(6 * len(profiles), 4), squeeze=False)
    for ax, (label, p) in zip(axes[0], profiles.items(), strict=True):
        s = p["summary"]
        names = list(s)
        x = np.arange(len(names))
        ax.bar(x - 0.2, [s[n].get("test_score_vs_no_bo", np.nan) for n in names], 0.4,
               label="held-out billed score / No-BO")
        ax.bar(x + 0.2, [s[n].get("test_mae_vs_no_bo") or np.nan for n in names], 0.4,
               label="held-out prediction error / No-BO")
        ax.axhline(1.0, color="k", lw=1)
        ax.set_xticks(x, names)
        lo = min(0.9, *(s[n].get("test_score_vs_no_bo", 1) for n in names))
        ax.set_ylim(lo * 0.98, None)
        ax.set_title(f"profile {label}")
        ax.legend(fontsize=8)
    return _save(fig, path)


COLORS = {"ours": "C0", "ours (BO)": "C0", "No-BO": "C4", "oracle": "C1", "lambdaml": "C2",
          "cpu_cluster": "C3"}


def overall(fig_data: dict[str, Any], path: Path, minilm: dict[str, Any] | None) -> str:
    """Cost and throughput per deployment, one column per model and profile."""
    plt = _plt()
    panels = []
    for label, per in fig_data["profiles"].items():
        for name, v in per.items():
            panels.append((f"{name} ({label})", v["rows"]))
    if minilm:
        for label, p in minilm["profiles"].items():
            s = p["summary"]
            rows = {
                "ours (BO)": {"cost_usd": s["egreedy"]["test_cost_usd"],
                              "tokens_per_s": s["egreedy"].get("test_tokens_per_s")},
                "No-BO": {"cost_usd": s["no-bo"]["test_cost_usd"],
                          "tokens_per_s": s["no-bo"].get("test_tokens_per_s")},
                "oracle": p["oracle"], "lambdaml": p["lambdaml"], "cpu_cluster": p["cluster"],
            }
            panels.append((f"MiniLM MoE ({label})", rows))
    fig, axes = plt.subplots(2, len(panels), figsize=(3.4 * len(panels), 6.5), squeeze=False)
    for j, (title, rows) in enumerate(panels):
        names = [n for n, r in rows.items() if r]
        colors = [COLORS.get(n, "C7") for n in names]
        for i, (key, unit) in enumerate((("cost_usd", "cost per batch (USD)"), ("tokens_per_s", "tokens/s"))):
            ax = axes[i][j]
            vals = np.array([rows[n].get(key) or np.nan for n in names], dtype=float)
            ax.bar(names, vals, color=colors)
            ax.set_yscale("log")
            if np.isfinite(vals).any():
                ax.set_ylim(np.nanmin(vals) / 5, np.nanmax(vals) * 2)
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
            ax.set_ylabel(unit if j == 0 else "")
            if i == 0:
                ax.set_title(title, fontsize=9)
            else:
                ax.axhline(3.3, color="k", ls=":", lw=1)
    return _save(fig, path)


def predictors(fig_data: dict[str, Any], path: Path) -> str:
    plt = _plt()
    rows = fig_data["rows"]
    settings = sorted({(r["experts"], r["top_k"]) for r in rows})
    names = list(dict.fromkeys(r["predictor"] for r in rows))
    fig, ax = plt.subplots(figsize=(2.2 * len(settings) + 3, 4))
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        vals = [next(r["mae_per_expert"] for r in rows if (r["experts"], r["top_k"]) == s and r["predictor"] == n)
                for s in settings]
        ax.bar(np.arange(len(settings)) + i * width, vals, width, label=n)
    ax.set_xticks(np.arange(len(settings)) + width * (len(names) - 1) / 2,
                  [f"E={e}, top-{k}" for e, k in settings])
    ax.set_ylabel("mean |real - predicted| tokens per expert")
    ax.legend(fontsize=8)
    return _save(fig, path)


def beyond(fig_data: dict[str, Any], path: Path) -> str:
    plt = _plt()
    profiles = fig_data["profiles"]
    fig, axes = plt.subplots(1, len(profiles), figsize=(6.5 * len(profiles), 4.5), squeeze=False)
    for ax, (label, p) in zip(axes[0], profiles.items(), strict=True):
        rows = [r for r in p["rows"] if r.get("cost_usd")]
        y = np.arange(len(rows))
        ax.barh(y, [r["cost_usd"] for r in rows],
                color=["C0" if r["feasible"] else "C3" for r in rows])
        ax.set_yticks(y, [r["variant"] for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("cost per batch (USD); red: breaks the time limit")
        ax.set_title(f"{fig_data['problem']}, profile {label}")
    return _save(fig, path)


def write_all(results: dict[str, Any], out: Path) -> dict[str, str]:
    """Every plot the figures allow; name -> file name."""
    f = results["figures"]
    made: dict[str, str] = {}
    if "regime" in f:
        made["regime"] = regime(f["regime"], out / "regime.png")
    if "cluster" in f:
        made["cluster"] = breakeven(f["cluster"], out / "breakeven.png")
    if "designs" in f:
        made["designs"] = designs(f["designs"], out / "designs.png")
    if f.get("measured_designs", {}).get("rows"):
        made["measured_designs"] = measured(f["measured_designs"]["rows"], out / "designs-measured.png",
                                            f["measured_designs"]["model"])
    if "algorithms" in f:
        made["algorithms"] = algorithms(f["algorithms"], out / "algorithms.png")
    if "acquisition" in f:
        made["acquisition"] = acquisition(f["acquisition"], out / "acquisition.png")
    if "overall" in f:
        made["overall"] = overall(f["overall"], out / "overall.png", f.get("acquisition"))
    if f.get("measured_algorithms", {}).get("rows"):
        rows = [r for r in f["measured_algorithms"]["rows"].values() if r]
        made["measured_algorithms"] = measured(rows, out / "algorithms-measured.png",
                                               f["measured_algorithms"]["model"])
    if f.get("measured_overall", {}).get("rows"):
        rows = [r for r in f["measured_overall"]["rows"].values() if r]
        made["measured_overall"] = measured(rows, out / "overall-measured.png", f["measured_overall"]["model"])
    if f.get("predictors", {}).get("rows"):
        made["predictors"] = predictors(f["predictors"], out / "predictors.png")
    if "beyond" in f:
        made["beyond"] = beyond(f["beyond"], out / "beyond.png")
    return made
