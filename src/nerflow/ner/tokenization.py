"""Words -> model windows. Label alignment, and the overlapping windows that keep long sentences whole.

A sentence longer than the model's limit is cut into windows of whole words that overlap by at least `stride`
sub-tokens; each word is later predicted from the window where it sits most centrally (see `merge_windows`), in
training, evaluation and serving alike, so no word is ever silently dropped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nerflow.ner.config import NerTokenizeConfig as TokenizeConfig
from nerflow.ner.data import Sentence

IGNORE = -100  # label id the loss skips


@dataclass(frozen=True)
class Window:
    sentence: int               # index of the sentence in its split
    word_start: int             # words [word_start, word_end) of the sentence are in this window
    word_end: int
    input_ids: list[int]
    word_ids: list[int]         # sentence-level word index per position, -1 for special tokens and later sub-tokens
    labels: list[int]           # IGNORE where no label is trained


def plan_windows(word_lengths: list[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Cover all words with windows of at most `budget` sub-tokens; consecutive windows share >= `stride`
    sub-tokens where the budget allows it. Word lengths must already be clipped to `budget`."""
    n, spans, start = len(word_lengths), [], 0
    while start < n:
        end, used = start, 0
        while end < n and used + word_lengths[end] <= budget:
            used += word_lengths[end]
            end += 1
        spans.append((start, end))
        if end >= n:
            break
        # next start: as far right as gives >= stride overlap, but early enough that word `end` still fits
        nxt, overlap = end, 0
        while nxt > start + 1 and overlap < stride:
            nxt -= 1
            overlap += word_lengths[nxt]
        while sum(word_lengths[nxt:end + 1]) > budget:
            nxt += 1
        start = nxt
    return spans


class Encoder:
    """Turns word lists into windows for one tokenizer and one window size."""

    def __init__(self, tokenizer, max_length: int | None, stride: int, label_all_subtokens: bool = False):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("nerflow needs a fast (Rust) tokenizer: word alignment uses word_ids()")
        limit = min(max_length or tokenizer.model_max_length, tokenizer.model_max_length)
        self.tokenizer = tokenizer
        # the special tokens around one sequence ([CLS] ... [SEP], <s> ... </s>), read off a one-word encoding
        probe = tokenizer(["a"], is_split_into_words=True, add_special_tokens=True)
        ids, words = probe["input_ids"], probe.word_ids()
        first = words.index(0)
        last = len(words) - 1 - words[::-1].index(0)
        self.prefix_ids, self.suffix_ids = ids[:first], ids[last + 1:]
        self.budget = limit - len(self.prefix_ids) - len(self.suffix_ids)
        if self.budget < 2:
            raise ValueError(f"tokenize.max_length={max_length} leaves no room for words")
        self.stride = min(stride, self.budget // 2)
        self.label_all_subtokens = label_all_subtokens

    def word_pieces(self, words: list[str]) -> list[list[int]]:
        enc = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False)
        pieces: list[list[int]] = [[] for _ in words]
        for token_id, w in zip(enc["input_ids"], enc.word_ids()):
            if w is not None:
                pieces[w].append(token_id)
        unk = self.tokenizer.unk_token_id
        # a word the tokenizer maps to nothing (e.g. a lone control character) still needs one position
        return [p[: self.budget] if p else [unk if unk is not None else 0] for p in pieces]

    def encode(self, index: int, words: list[str], label_ids: list[int] | None,
               i_of: dict[int, int] | None = None) -> list[Window]:
        pieces = self.word_pieces(words)
        windows = []
        for start, end in plan_windows([len(p) for p in pieces], self.budget, self.stride):
            content, word_ids, labels = [], [], []
            for w in range(start, end):
                for j, token_id in enumerate(pieces[w]):
                    content.append(token_id)
                    word_ids.append(w if j == 0 else -1)
                    if label_ids is None:
                        labels.append(IGNORE)
                    elif j == 0:
                        labels.append(label_ids[w])
                    else:  # later sub-tokens: ignored, or trained as the inside of the same entity
                        labels.append(i_of.get(label_ids[w], label_ids[w]) if self.label_all_subtokens else IGNORE)
            ids = self.prefix_ids + content + self.suffix_ids
            pad = lambda xs, v: [v] * len(self.prefix_ids) + xs + [v] * len(self.suffix_ids)  # noqa: E731
            windows.append(Window(index, start, end, ids, pad(word_ids, -1), pad(labels, IGNORE)))
        return windows


def inside_label_map(labels: list[str]) -> dict[int, int]:
    """B-X id -> I-X id, used when all sub-tokens of a word are labelled."""
    index = {t: i for i, t in enumerate(labels)}
    return {i: index[f"I-{t[2:]}"] for i, t in enumerate(labels) if t.startswith("B-") and f"I-{t[2:]}" in index}


def encode_split(encoder: Encoder, sentences: list[Sentence], labels: list[str]) -> list[Window]:
    label_to_id = {t: i for i, t in enumerate(labels)}
    i_of = inside_label_map(labels)
    out: list[Window] = []
    for i, s in enumerate(sentences):
        out.extend(encoder.encode(i, s.tokens, [label_to_id[t] for t in s.tags], i_of))
    return out


def merge_windows(windows: list[Window], word_scores: list[dict[int, object]], n_words: list[int]) -> list[list]:
    """Per sentence, per word: the score vector from the window where the word is most central.

    `word_scores[k]` maps word index -> score for window k (only words whose first sub-token is in it)."""
    best: list[list] = [[None] * n for n in n_words]
    centrality: list[list[int]] = [[-1] * n for n in n_words]
    for win, scores in zip(windows, word_scores):
        for w, score in scores.items():
            c = min(w - win.word_start, win.word_end - 1 - w)
            if c > centrality[win.sentence][w]:
                centrality[win.sentence][w] = c
                best[win.sentence][w] = score
    return best


def save_windows(windows: list[Window], path: Path) -> None:
    """Arrow on disk (datasets), one row per window."""
    import datasets

    columns = {f: [getattr(w, f) for w in windows] for f in Window.__dataclass_fields__}
    datasets.Dataset.from_dict(columns).save_to_disk(str(path))


def load_windows(path: Path) -> list[Window]:
    import datasets

    ds = datasets.load_from_disk(str(path))
    return [Window(**row) for row in ds.to_list()]


def tokenize_corpus(tokenizer, corpus: dict[str, list[Sentence]], labels: list[str], cfg: TokenizeConfig,
                    out_dir: Path) -> dict[str, float]:
    """Encode every split into `out_dir/<split>` (Arrow). Returns counts and sentences/s."""
    encoder = Encoder(tokenizer, cfg.max_length, cfg.stride, cfg.label_all_subtokens)
    stats: dict[str, float] = {}
    started, n_sentences = time.perf_counter(), 0
    for split, sentences in corpus.items():
        windows = encode_split(encoder, sentences, labels)
        save_windows(windows, out_dir / split)
        n_sentences += len(sentences)
        stats[f"windows_{split}"] = len(windows)
        stats[f"extra_windows_{split}"] = sum(1 for w in windows if w.word_start > 0)  # long sentences
    stats["sentences_per_s"] = n_sentences / max(time.perf_counter() - started, 1e-9)
    return stats


def tokenize_validated(tokenizer, validated: Path, cfg: TokenizeConfig, out: Path) -> dict[str, float]:
    """The tokenize stage: every canonical split of `validated` as windows in `out/<split>`; returns its stats."""
    import json

    from nerflow.data import SPLITS
    from nerflow.ner.data import read_split

    corpus = {split: read_split(validated / f"{split}.jsonl") for split in SPLITS}
    labels = json.loads((validated / "labels.json").read_text())
    return tokenize_corpus(tokenizer, corpus, labels, cfg, out)
