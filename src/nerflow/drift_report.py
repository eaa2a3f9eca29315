"""A drift check as people read it: the terminal lines, the JSON object `nerflow drift --json` prints, and the
self-contained HTML page logged to MLflow (a table of the checks, then reference-vs-batch histograms of each
descriptor and of the confidence, and the predicted label shares)."""
from __future__ import annotations

import base64
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from nerflow import html_report
from nerflow.drift import Decision
from nerflow.plots import new_figure


def summary(decision: Decision, model: str, n_texts: int, n_reference: int, seconds: float) -> dict:
    """The `--json` object (and `report.json`): the decision, its rule, every check."""
    return {"model": model, "texts": n_texts, "reference_texts": n_reference, "seconds": round(seconds, 2),
            **decision.record()}


def lines(decision: Decision, model: str, n_texts: int, n_reference: int) -> list[str]:
    """The terminal report: one line per check, the decision last."""
    out = [f"{model}: {n_texts} texts against a reference of {n_reference} validation texts",
           f"  {'check':<{max(len(c.name) for c in decision.checks)}}  {'':<5}  {'distance':<8} {'p-value':<10} "
           "statistic"]
    width = max(len(c.name) for c in decision.checks)
    for c in decision.checks:
        if c.p_value != c.p_value:     # NaN: the check could not run
            out.append(f"  {c.name:<{width}}  -      {c.detail.get('reason', 'not run')}")
            continue
        verdict = "DRIFT" if c.drift else "ok"
        out.append(f"  {c.name:<{width}}  {verdict:<5}  {c.statistic:<8.4g} {c.p_value:<10.4g} {c.test}")
    drifted = [c.name for c in decision.checks if c.drift]
    out.append(("drift: " + ", ".join(drifted) if drifted else "no drift") + f" ({decision.rule})")
    return out


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=80)
    fig.clear()
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def histograms(reference: dict, batch: dict) -> str:
    """One small reference-vs-batch histogram per descriptor and for the confidence, as inline PNGs."""
    pairs = [(name, reference["descriptors"][name], batch["descriptors"][name])
             for name in sorted(reference["descriptors"]) if name in batch["descriptors"]]
    pairs.append(("confidence", reference["confidence"], batch["confidence"]))
    parts = []
    for name, ref, new in pairs:
        ref, new = ref[np.isfinite(ref)], new[np.isfinite(new)]
        if not len(ref) or not len(new):
            continue
        fig = new_figure(3.2, 2.2)
        ax = fig.add_subplot()
        bins = np.histogram_bin_edges(np.concatenate([ref, new]), bins=20)
        ax.hist(ref, bins=bins, density=True, alpha=0.5, label="reference")
        ax.hist(new, bins=bins, density=True, alpha=0.5, label="batch")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
        parts.append(f"<img alt='{html_report.esc(name)}' src='{_png(fig)}'>")
    return "<h2>Distributions</h2><p>" + "".join(parts) + "</p>"


def html(decision: Decision, reference: dict, batch: dict, model: str) -> str:
    verdict = "<b>drift</b>" if decision.drift else "no drift"
    rows = [(c.name, c.test, c.statistic, c.p_value, c.alpha, "DRIFT" if c.drift else "ok") for c in decision.checks]
    labels = next((c.detail for c in decision.checks if c.name == "prediction:labels"), {})
    ref_share, batch_share = labels.get("reference_share", {}), labels.get("batch_share", {})
    label_rows = [(label, float(ref_share.get(label, 0.0)), float(batch_share.get(label, 0.0)))
                  for label in sorted(set(ref_share) | set(batch_share))]
    body = [html_report.table(("check", "test", "statistic", "p-value", "drift below", "verdict"), rows)]
    if label_rows:
        body.append("<h2>Predicted labels</h2>" + html_report.table(("label", "reference share", "batch share"),
                                                                     label_rows))
    body.append(histograms(reference, batch))
    intro = (f"{html_report.esc(model)}: {len(batch['labels'])} texts against {len(reference['labels'])} reference "
             f"texts: {verdict}. Rule: {html_report.esc(decision.rule)}.")
    return html_report.page("Drift check", intro, body)


def write(folder: Path, record: dict, page: str) -> None:
    """`report.json` and `report.html` in `folder`, each written whole (a temporary file renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("report.json", json.dumps(record, indent=1) + "\n"), ("report.html", page)):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, folder / name)
