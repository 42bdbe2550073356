"""The report's plots: matplotlib figures on the Agg canvas, returned as PNG data URIs.

Every function takes numbers already computed by a stage (its report or
``train/diagnostics.json``) and draws them; none computes a metric. Figures
are built from ``matplotlib.figure.Figure`` with an explicit Agg canvas, so no
display, pyplot state or backend setting is involved.
"""

from __future__ import annotations

import base64
import io
from typing import Mapping, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

WIDTH, HEIGHT, DPI = 4.6, 3.2, 90
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _figure(width: float = WIDTH, height: float = HEIGHT):
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def to_data_uri(figure: Figure) -> str:
    """The figure as an inline ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def bars(values: Mapping[str, float], title: str, xlabel: str) -> str:
    """Horizontal bars, one per key (e.g. dead letters by input/reason)."""
    names = list(values)
    figure, ax = _figure(WIDTH, max(1.6, 0.28 * len(names) + 0.9))
    ax.barh(range(len(names)), [values[n] for n in names], color=COLOURS[0])
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    for i, n in enumerate(names):
        ax.annotate(f"{values[n]:g}", (values[n], i), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    return to_data_uri(figure)


def grouped_bars(groups: Mapping[str, Mapping[str, float]], title: str, ylabel: str) -> str:
    """One group of bars per outer key, one bar per inner key (label rates per split)."""
    outer = list(groups)
    inner = sorted({k for g in groups.values() for k in g})
    figure, ax = _figure()
    width = 0.8 / max(len(inner), 1)
    for j, name in enumerate(inner):
        xs = [i + j * width for i in range(len(outer))]
        ax.bar(xs, [groups[o].get(name, 0.0) for o in outer], width, label=name,
               color=COLOURS[j % len(COLOURS)])
    ax.set_xticks([i + width * (len(inner) - 1) / 2 for i in range(len(outer))], outer)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return to_data_uri(figure)


def histogram_counts(counts: Mapping[str, int], title: str, xlabel: str) -> str:
    """Bars of a ``{value: count}`` histogram (history lengths)."""
    keys = sorted(counts, key=float)
    figure, ax = _figure()
    ax.bar([float(k) for k in keys], [counts[k] for k in keys], color=COLOURS[0])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("examples")
    return to_data_uri(figure)


def curves(series: Mapping[str, tuple], title: str, xlabel: str, ylabel: str,
           diagonal: bool = False, baseline: Optional[float] = None) -> str:
    """Lines ``{label: (xs, ys)}``: ROC (with the chance diagonal) or precision-recall."""
    figure, ax = _figure()
    for i, (label, (xs, ys)) in enumerate(series.items()):
        ax.plot(xs, ys, label=label, color=COLOURS[i % len(COLOURS)], lw=1.5)
    if diagonal:
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    if baseline is not None:
        ax.axhline(baseline, ls="--", color="grey", lw=1, label=f"positive rate {baseline:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return to_data_uri(figure)


def reliability(table: Mapping[str, Sequence], title: str) -> str:
    """Mean prediction against positive rate per bin, with the bin counts beneath."""
    figure, ax = _figure(WIDTH, HEIGHT + 0.4)
    full = [(p, r, c) for p, r, c in zip(table["mean_prediction"], table["positive_rate"],
                                         table["count"]) if c]
    top = max([max(p, r) for p, r, _ in full] + [0.05]) * 1.1
    ax.plot([0, top], [0, top], ls="--", color="grey", lw=1, label="perfectly calibrated")
    ax.plot([p for p, _, _ in full], [r for _, r, _ in full], marker="o", color=COLOURS[0],
            label="model")
    for p, r, c in full:
        ax.annotate(f"n={c}", (p, r), xytext=(4, -10), textcoords="offset points", fontsize=7)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("mean predicted probability (bin)")
    ax.set_ylabel("observed positive rate")
    ax.legend(fontsize=8)
    return to_data_uri(figure)


def score_histograms(table: Mapping[str, Sequence], title: str) -> str:
    """Predicted-probability histograms of positives and negatives, each as a share."""
    edges = table["edges"]
    centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
    width = edges[1] - edges[0]
    figure, ax = _figure()
    for i, key in enumerate(("negative", "positive")):
        counts = table[key]
        total = sum(counts) or 1
        ax.bar(centres, [c / total for c in counts], width, alpha=0.55,
               color=COLOURS[i], label=f"{key} (n={sum(counts)})")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("share of the class")
    ax.legend(fontsize=8)
    return to_data_uri(figure)


def per_epoch(series: Mapping[str, Sequence[Optional[float]]], title: str, ylabel: str,
              epochs: Optional[Sequence[int]] = None, marker: Optional[int] = None,
              log: bool = False) -> str:
    """Lines per epoch (loss per output, eval metric per task); ``marker``: chosen epoch.

    ``log``: a log scale, for losses of different sizes (retrieval's softmax
    loss is ~20 times a binary task's) on one axis.
    """
    figure, ax = _figure()
    for i, (label, values) in enumerate(series.items()):
        xs = list(epochs) if epochs is not None else list(range(len(values)))
        points = [(x, v) for x, v in zip(xs, values) if v is not None]
        ax.plot([x + 1 for x, _ in points], [v for _, v in points], marker="o", ms=3,
                label=label, color=COLOURS[i % len(COLOURS)])
    if marker is not None:
        ax.axvline(marker + 1, ls=":", color="black", lw=1, label=f"chosen epoch {marker + 1}")
    if log:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return to_data_uri(figure)


def slice_intervals(rows: Sequence[Mapping], title: str, overall: Optional[float]) -> str:
    """AUC per slice with its bootstrap interval and example count."""
    shown = [r for r in rows if r["auc"] is not None]
    figure, ax = _figure(WIDTH, max(1.6, 0.32 * len(rows) + 0.9))
    for i, r in enumerate(shown):
        ax.errorbar(r["auc"], i, xerr=[[r["auc"] - r["auc_low"]], [r["auc_high"] - r["auc"]]],
                    fmt="o", color=COLOURS[0], capsize=3)
    ax.set_yticks(range(len(shown)), [f"{r['value']} (n={r['examples']})" for r in shown],
                  fontsize=8)
    ax.invert_yaxis()
    if overall is not None:
        ax.axvline(overall, ls="--", color="grey", lw=1, label=f"all {overall:.3f}")
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("AUC (95% bootstrap interval)")
    return to_data_uri(figure)


def metric_vs_k(series: Mapping[str, Sequence[float]], title: str, ylabel: str) -> str:
    """A ranking metric at every cut-off K, one line per list."""
    figure, ax = _figure()
    for i, (label, values) in enumerate(series.items()):
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=label,
                color=COLOURS[i % len(COLOURS)])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("K")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return to_data_uri(figure)
