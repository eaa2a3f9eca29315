"""Texts -> model inputs, and what happens to a text longer than the model reads at once (`tokenize.long_documents`).

- `head`: the first max_length sub-tokens; the rest is cut.
- `head_tail`: a `head_share` of the budget from the start and the rest from the end (Sun et al. 2019, "How to
  Fine-Tune BERT for Text Classification?": the end of a review often says the verdict); the middle is cut.
- `windows`: overlapping windows of max_length that share `stride` sub-tokens cover the whole text; a text's logits
  are pooled over its windows (mean or max, `tokenize.pool`). Nothing is cut.

The tokenize stage reports the length distribution in sub-word tokens and the share of texts that the chosen
strategy cut (`tokenize/truncated_share`), so a cut is never silent.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerflow.textcat.config import TextcatTokenizeConfig as TokenizeConfig
from nerflow.textcat.data import Document


@dataclass(frozen=True)
class Segment:
    doc: int                # the text's index in its split
    input_ids: list[int]    # special tokens included
    labels: list[int]       # the text's label ids (one for single-label data)


class Encoder:
    """Turns texts into segments for one tokenizer, one window size and one long-text strategy."""

    def __init__(self, tokenizer, cfg: TokenizeConfig):
        limit = min(cfg.max_length or tokenizer.model_max_length, tokenizer.model_max_length)
        probe = tokenizer("a", add_special_tokens=True)["input_ids"]
        inner = tokenizer("a", add_special_tokens=False)["input_ids"]
        first = next(i for i in range(len(probe)) if probe[i:i + len(inner)] == inner)
        self.prefix, self.suffix = probe[:first], probe[first + len(inner):]
        self.tokenizer, self.cfg = tokenizer, cfg
        self.budget = limit - len(self.prefix) - len(self.suffix)
        if self.budget < 2:
            raise ValueError(f"tokenize.max_length={cfg.max_length} leaves no room for text")
        self.stride = min(cfg.stride, self.budget // 2)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        # whole texts, cut into windows afterwards: the tokenizer's warning that a text is longer than the model reads
        # does not apply (verbose=False), and would fill a served model's log with one line per long review
        return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []

    def spans(self, n: int) -> list[tuple[int, int]]:
        """[start, end) of each window over n sub-tokens (one window for short texts)."""
        if n <= self.budget:
            return [(0, n)]
        step = self.budget - self.stride
        starts = list(range(0, n - self.budget, step)) + [n - self.budget]   # the last window ends at the text's end
        return [(s, s + self.budget) for s in starts]

    def encode(self, doc: int, ids: list[int], label_ids: list[int]) -> list[Segment]:
        wrap = lambda part: self.prefix + part + self.suffix  # noqa: E731
        strategy = self.cfg.long_documents
        if len(ids) <= self.budget or strategy == "head":
            return [Segment(doc, wrap(ids[: self.budget]), label_ids)]
        if strategy == "head_tail":
            head = round(self.budget * self.cfg.head_share)
            return [Segment(doc, wrap(ids[:head] + ids[len(ids) - (self.budget - head):]), label_ids)]
        return [Segment(doc, wrap(ids[a:b]), label_ids) for a, b in self.spans(len(ids))]


def encode_split(encoder: Encoder, docs: list[Document], labels: list[str]) -> tuple[list[Segment], list[int]]:
    """Segments of every text, and each text's length in sub-word tokens (special tokens excluded)."""
    index = {label: i for i, label in enumerate(labels)}
    segments: list[Segment] = []
    lengths = []
    for i, (doc, ids) in enumerate(zip(docs, encoder.token_ids([d.text for d in docs]))):
        segments.extend(encoder.encode(i, ids, [index[label] for label in doc.labels]))
        lengths.append(len(ids))
    return segments, lengths


def length_stats(lengths: list[int], encoder: Encoder, split: str) -> dict[str, float]:
    """The length distribution in sub-word tokens and what the strategy did with the long texts."""
    if not lengths:
        return {}
    arr = np.asarray(lengths)
    over = float((arr > encoder.budget).mean())
    windows = [len(encoder.spans(n)) for n in lengths] if encoder.cfg.long_documents == "windows" else [1] * len(arr)
    return {f"tokens_mean_{split}": float(arr.mean()), f"tokens_p50_{split}": float(np.percentile(arr, 50)),
            f"tokens_p90_{split}": float(np.percentile(arr, 90)), f"tokens_max_{split}": float(arr.max()),
            f"over_max_length_share_{split}": over,
            f"truncated_share_{split}": 0.0 if encoder.cfg.long_documents == "windows" else over,
            f"windows_per_text_{split}": float(np.mean(windows))}


def save_segments(segments: list[Segment], path: Path) -> None:
    import datasets

    columns = {f: [getattr(s, f) for s in segments] for f in Segment.__dataclass_fields__}
    datasets.Dataset.from_dict(columns).save_to_disk(str(path))


def load_segments(path: Path) -> list[Segment]:
    import datasets

    return [Segment(**row) for row in datasets.load_from_disk(str(path)).to_list()]


def tokenize_corpus(tokenizer, corpus: dict[str, list[Document]], labels: list[str], cfg: TokenizeConfig,
                    out_dir: Path) -> dict[str, float]:
    """Encode every split into `out_dir/<split>` (Arrow). Returns the length distribution, the truncated share
    and texts/s."""
    encoder = Encoder(tokenizer, cfg)
    stats: dict[str, float] = {}
    started, n_texts, n_truncated = time.perf_counter(), 0, 0.0
    for split, docs in corpus.items():
        segments, lengths = encode_split(encoder, docs, labels)
        save_segments(segments, out_dir / split)
        n_texts += len(docs)
        stats[f"segments_{split}"] = len(segments)
        stats.update(length_stats(lengths, encoder, split))
        n_truncated += stats.get(f"truncated_share_{split}", 0.0) * len(docs)
    stats["truncated_share"] = n_truncated / max(n_texts, 1)
    stats["texts_per_s"] = n_texts / max(time.perf_counter() - started, 1e-9)
    return stats


def tokenize_validated(tokenizer, validated: Path, cfg: TokenizeConfig, out: Path) -> dict[str, float]:
    """The tokenize stage: every canonical split of `validated` as segments in `out/<split>`; returns its stats."""
    import json

    from nerflow.data import SPLITS
    from nerflow.textcat.data import read_split

    corpus = {split: read_split(validated / f"{split}.jsonl") for split in SPLITS}
    labels = json.loads((validated / "labels.json").read_text())
    return tokenize_corpus(tokenizer, corpus, labels, cfg, out)
