"""Why a model said what it said: per-word attributions by integrated gradients (`nerflow explain`).

What is computed, for both task types (each task's target is defined in `nerflow.<task>.explain`):

- **Method**: Captum's `LayerIntegratedGradients` on the model's word-embedding layer
  (`model.get_input_embeddings()`), on the fp32 PyTorch weights, whatever runtime a version serves. Position and
  token-type embeddings are added after that layer and stay as they are, so only the words vary along the path.
- **Baseline**: the same window with every word sub-token replaced by the tokenizer's pad id; the special tokens
  around it ([CLS] ... [SEP], <s> ... </s>) are kept, so they get exactly zero attribution and the baseline is "the
  model reading a window of the same length with no words in it". The attention mask is all ones on both.
- **Integral**: `DEFAULT_STEPS` Gauss-Legendre points (Captum's default method), `INTERNAL_BATCH_SIZE` points per
  forward/backward pass. Measured with bench/explain_steps.py on the quickstart's fine-tuned MiniLM (16 entities in
  10 test sentences; the target changes by 14.5 on average from baseline to text): mean |convergence delta| 6.4 at
  8 steps, 2.0 at 16, 0.39 at 32, 0.018 at 64 (max 0.048), 0.00006 at 128. 64 is the smallest count that keeps
  every delta within `DELTA_WARNING`; the time grows linearly with the steps.
- **A word's attribution**: the sum, over its sub-tokens and the embedding dimensions, of the attribution to the
  embedding output. Summing keeps completeness: the words' attributions add up to target(text) - target(baseline)
  plus the convergence delta, which is reported per explanation and warned about above `DELTA_WARNING`.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # torch loads when attributions are computed, not when the CLI builds its parser
    import torch

DEFAULT_STEPS = 64
INTERNAL_BATCH_SIZE = 16      # path points per forward/backward pass: bounds memory on long windows
DELTA_WARNING = 0.05          # |convergence delta| above this (in units of the target, a log-probability): warn
ATTRIBUTION_DIGITS = 4


@dataclass(frozen=True)
class WordAttribution:
    word: str
    start: int                # character offsets into the explained text
    end: int
    attribution: float


@dataclass
class Explanation:
    """One explained prediction: an entity (NER) or a label (text classification) of one text."""

    text: str
    title: str                # a short line naming what is explained: `PER "Maria Lopez" 0.98`, `label pos 0.97`
    subject: dict             # the prediction, as `nerflow predict` answers it: {"entity": {...}} or {"label", ...}
    target: str               # the explained quantity in words
    value: float              # the target on the text
    baseline_value: float     # the target on the baseline
    delta: float              # convergence delta: sum of attributions - (value - baseline_value)
    steps: int
    words: list[WordAttribution]
    note: str = ""            # what part of a long text was read, when not all of it
    fields: dict = field(default_factory=dict)   # the input document's other fields (an `id`), passed through

    def record(self) -> dict:
        """The `--json` line."""
        return {**self.fields, "text": self.text, **self.subject, "target": self.target,
                "value": round(self.value, 6), "baseline_value": round(self.baseline_value, 6),
                "convergence_delta": round(self.delta, 6), "steps": self.steps,
                "attributions": [asdict(w) for w in self.words], **({"note": self.note} if self.note else {})}


def baseline_ids(input_ids: Sequence[int], n_prefix: int, n_suffix: int, pad_id: int) -> list[int]:
    """The window with its word sub-tokens replaced by `pad_id`, its special tokens kept."""
    n = len(input_ids)
    return [t if i < n_prefix or i >= n - n_suffix else pad_id for i, t in enumerate(input_ids)]


@dataclass(frozen=True)
class Attributions:
    tokens: list[float]       # one per position of the window
    value: float
    baseline_value: float
    delta: float


def integrated_gradients(model, input_ids: Sequence[int], baseline: Sequence[int],
                         objective: Callable[[torch.Tensor], torch.Tensor], steps: int = DEFAULT_STEPS,
                         internal_batch_size: int = INTERNAL_BATCH_SIZE) -> Attributions:
    """Attributions of `objective(logits) -> [batch]` (the target, one scalar per row) to each position of one
    window, integrated from `baseline` to `input_ids` along the word embeddings."""
    import torch
    from captum.attr import LayerIntegratedGradients

    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    model.eval()
    device = next(model.parameters()).device
    ids = torch.tensor([list(input_ids)], device=device)
    base = torch.tensor([list(baseline)], device=device)
    mask = torch.ones_like(ids)

    def forward(batch_ids: torch.Tensor, batch_mask: torch.Tensor) -> torch.Tensor:
        return objective(model(input_ids=batch_ids, attention_mask=batch_mask).logits.float())

    lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    # at least one example per pass: Captum requires internal_batch_size >= the number of examples (1)
    attributions, delta = lig.attribute(ids, baselines=base, additional_forward_args=(mask,), n_steps=steps,
                                        internal_batch_size=max(1, internal_batch_size),
                                        return_convergence_delta=True)
    with torch.no_grad():
        value, baseline_value = forward(torch.cat([ids, base]), torch.cat([mask, mask])).tolist()
    return Attributions(attributions[0].sum(-1).detach().cpu().tolist(), value, baseline_value, float(delta[0]))


def word_attributions(text: str, token_scores: Sequence[float], token_words: Sequence[int | None],
                      words: Sequence[tuple[int, int]]) -> list[WordAttribution]:
    """Per word, the sum of its positions' scores. `token_words[i]`: the index in `words` ((start, end) character
    offsets into `text`) of the word that position i belongs to, None for special tokens. Words the window does not
    reach are left out."""
    totals: dict[int, float] = {}
    for score, w in zip(token_scores, token_words):
        if w is not None:
            totals[w] = totals.get(w, 0.0) + score
    return [WordAttribution(text[words[w][0]:words[w][1]], words[w][0], words[w][1],
                            round(totals[w], ATTRIBUTION_DIGITS)) for w in sorted(totals)]


def delta_warning(e: Explanation) -> str | None:
    if abs(e.delta) <= DELTA_WARNING:
        return None
    return (f"warning: {e.title}: convergence delta {e.delta:+.4f} exceeds {DELTA_WARNING}: the attributions do not "
            f"add up to the target's change; raise --steps (now {e.steps})")


# ------------------------------------------------------------------------------------------------------ rendering
# 256-colour backgrounds from pale to strong: green for words that raise the target, red for words that lower it
GREENS = (194, 157, 120, 84, 46)
REDS = (224, 217, 210, 203, 196)


def _shade(score: float, scale: float) -> int:
    """0 (too small to show) .. 5: the word's share of the largest |attribution| in its explanation."""
    share = abs(score) / scale if scale > 0 else 0.0
    return 0 if share < 0.1 else min(5, 1 + int(share * 5))


def _marked(e: Explanation, mark: Callable[[WordAttribution, float], str],
            between: Callable[[str], str] = str) -> str:
    """The text with every attributed word replaced by `mark(word, scale)`, what lies between words by
    `between(gap)`; `scale` is the largest |attribution| of the explanation."""
    scale = max((abs(w.attribution) for w in e.words), default=0.0)
    out, at = [], 0
    for w in e.words:
        out.append(between(e.text[at:w.start]))
        out.append(mark(w, scale))
        at = w.end
    out.append(between(e.text[at:]))
    return "".join(out)


def ansi(w: WordAttribution, scale: float) -> str:
    level = _shade(w.attribution, scale)
    if level == 0:
        return w.word
    colour = (GREENS if w.attribution > 0 else REDS)[level - 1]
    return f"\x1b[48;5;{colour}m\x1b[38;5;16m{w.word}\x1b[0m"


def plain(w: WordAttribution, scale: float) -> str:
    return f"{w.word}({w.attribution:+.2f})"


def text_block(e: Explanation, colour: bool) -> str:
    """An explanation for the terminal (`colour`) or a pipe: a header line, then the text with each word marked."""
    header = (f"{e.title}  [{e.target}: {e.value:.3f} vs baseline {e.baseline_value:.3f}; "
              f"convergence delta {e.delta:+.4f}, {e.steps} steps]")
    if colour:
        header = f"\x1b[1m{header}\x1b[0m"
    lines = [header, _marked(e, ansi if colour else plain)]
    if e.note:
        lines.append(f"note: {e.note}")
    return "\n".join(lines)


def use_colour(stream) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def html_word(w: WordAttribution, scale: float) -> str:
    from nerflow.html_report import esc

    share = 0.8 * abs(w.attribution) / scale if scale > 0 else 0.0   # at most 0.8: dark text stays readable
    rgb = "0,160,60" if w.attribution > 0 else "220,40,40"
    return (f"<span style='background:rgba({rgb},{share:.2f})' title='{w.attribution:+.4f}'>"
            f"{esc(w.word)}</span>")


def html_page(explanations: Sequence[Explanation], model: str) -> str:
    """A self-contained page: each explanation's text shaded by attribution, and its words ranked."""
    from nerflow.html_report import esc, page, table

    parts = []
    for e in explanations:
        shaded = _marked(e, html_word, esc)
        ranked = sorted(e.words, key=lambda w: -abs(w.attribution))[:10]
        parts.append(f"<h2>{esc(e.title)}</h2><p style='line-height:1.8'>{shaded}</p>"
                     f"<p><code>{esc(e.target)}: {e.value:.4f} vs baseline {e.baseline_value:.4f}; convergence "
                     f"delta {e.delta:+.4f}; {e.steps} steps</code>{'<br>' + esc(e.note) if e.note else ''}</p>"
                     + table(["word", "start", "end", "attribution"],
                             [[w.word, w.start, w.end, w.attribution] for w in ranked]))
    intro = (f"Model <code>{esc(model)}</code>: integrated gradients on the word embeddings; green raises the "
             "explained target, red lowers it; hover a word for its attribution.")
    return page("nerflow explain", intro, parts or ["<p>nothing to explain</p>"])


def write_atomically(path: Path, content: str) -> None:
    """Written to a temporary file next to `path`, then renamed over it: never half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_line(e: Explanation) -> str:
    return json.dumps(e.record(), ensure_ascii=False)
