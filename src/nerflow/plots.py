"""PNG plots for evaluation artifacts, shared by the task types. Figure + Agg canvas instead of pyplot: no global
backend switch and no figure registry that can leak figures across calls in a long-running worker. matplotlib is
imported inside each function because it is slow to import."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    fig.clear()  # release the artists now rather than at garbage collection


def confusion_png(labels: list[str], matrix: np.ndarray, path: Path) -> None:
    """Heat map, rows gold and columns predicted: colour is the row-normalised share (so rare classes stay
    visible), cells show raw counts."""
    counts = np.asarray(matrix)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    size = 1.5 + 0.6 * len(labels)
    fig = new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of gold row")
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for (r, c), n in np.ndenumerate(counts):
        ax.text(c, r, str(n), ha="center", va="center", fontsize=8,
                color="white" if share[r, c] > 0.5 else "black")
    save(fig, path)


def learning_curve_png(rows: list[dict], path: Path, score: str = "test F1") -> None:
    """Test score against the number of labelled training examples: the mean over seeds with its spread (min to
    max, shaded) per fraction, log-scaled x; the TF-IDF baseline's curve beside it when the rows have one."""
    fig = new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    for key, name, colour in (("test_f1", "transformer", "tab:blue"), ("baseline_test_f1", "TF-IDF + logistic "
                                                                                           "regression", "tab:gray")):
        fractions = sorted({r["fraction"] for r in rows if r.get(key) is not None})
        if not fractions:
            continue
        x, mean, low, high = [], [], [], []
        for f in fractions:
            points = [r for r in rows if r["fraction"] == f and r.get(key) is not None]
            values = np.array([r[key] for r in points])
            x.append(float(np.mean([r["examples"] for r in points])))
            mean.append(float(values.mean()))
            low.append(float(values.min()))
            high.append(float(values.max()))
        ax.plot(x, mean, marker="o", color=colour, label=name)
        ax.fill_between(x, low, high, color=colour, alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training examples")
    ax.set_ylabel(score)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    save(fig, path)
