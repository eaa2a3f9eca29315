"""Words -> model windows. Label alignment, and the overlapping windows that keep long sentences whole.

A sentence longer than the model's limit is cut into windows of whole words that overlap by at least `stride`
sub-tokens; each word is later predicted from the window where it sits most centrally (see `merge_windows`), in
training, evaluation and serving alike, so no word is ever silently dropped.

Document context (`tokenize.context: document`, FLERT, Schweter & Akbik 2020): each window is filled up with whole
words from the neighbouring sentences of the same document, at most `tokenize.context_tokens` sub-tokens split
between the left and right side. Context sub-tokens carry no word id and no label, so they change what the encoder
sees but never which words are trained or scored.
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

    def __init__(self, tokenizer, max_length: int | None, stride: int, label_all_subtokens: bool = False,
                 context_tokens: int = 0):
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
        self.context_tokens = context_tokens   # 0: sentence context only

    def word_pieces(self, words: list[str]) -> list[list[int]]:
        return self.word_pieces_batch([words])[0]

    def word_pieces_batch(self, sentences: list[list[str]]) -> list[list[list[int]]]:
        """Each sentence's words as sub-token ids. One tokenizer call for all of them: the Rust tokenizer's batch
        path, where a call per sentence cost ~100 us of Python each (a third of prediction's host work on
        CoNLL-2003 test). An empty sentence has no words and so no pieces."""
        asked = [i for i, words in enumerate(sentences) if words]
        out: list[list[list[int]]] = [[] for _ in sentences]
        if not asked:
            return out
        enc = self.tokenizer([sentences[i] for i in asked], is_split_into_words=True, add_special_tokens=False,
                             return_token_type_ids=False, return_attention_mask=False)
        unk = self.tokenizer.unk_token_id
        for row, i in enumerate(asked):
            pieces: list[list[int]] = [[] for _ in sentences[i]]
            for token_id, w in zip(enc["input_ids"][row], enc.word_ids(row)):
                if w is not None:
                    pieces[w].append(token_id)
            # a word the tokenizer maps to nothing (e.g. a lone control character) still needs one position
            out[i] = [p[: self.budget] if p else [unk if unk is not None else 0] for p in pieces]
        return out

    def encode(self, index: int, words: list[str], label_ids: list[int] | None,
               i_of: dict[int, int] | None = None) -> list[Window]:
        return self.encode_pieces(index, self.word_pieces(words), label_ids, i_of)

    def encode_pieces(self, index: int, pieces: list[list[int]], label_ids: list[int] | None,
                      i_of: dict[int, int] | None = None, left: list[list[int]] = (),
                      right: list[list[int]] = ()) -> list[Window]:
        """Windows of one sentence given its words' sub-tokens. `left`/`right`: the sub-tokens of the document's
        words before and after the sentence, nearest first; used as unscored context when `context_tokens` > 0."""
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
            if self.context_tokens:
                # a window of a long sentence sees the sentence's own words beyond it first, then the neighbours
                before, after = context_split([*reversed(pieces[:start]), *left], [*pieces[end:], *right],
                                              min(self.context_tokens, self.budget - len(content)))
                content = before + content + after
                word_ids = [-1] * len(before) + word_ids + [-1] * len(after)
                labels = [IGNORE] * len(before) + labels + [IGNORE] * len(after)
            ids = self.prefix_ids + content + self.suffix_ids
            pad = lambda xs, v: [v] * len(self.prefix_ids) + xs + [v] * len(self.suffix_ids)  # noqa: E731
            windows.append(Window(index, start, end, ids, pad(word_ids, -1), pad(labels, IGNORE)))
        return windows


def _take(words: list[list[int]], quota: int) -> int:
    """How many of `words` (nearest first) fit whole into `quota` sub-tokens."""
    n, used = 0, 0
    while n < len(words) and used + len(words[n]) <= quota:
        used += len(words[n])
        n += 1
    return n


def context_split(left: list[list[int]], right: list[list[int]], quota: int) -> tuple[list[int], list[int]]:
    """Whole context words (each side nearest first) within `quota` sub-tokens, half per side; a side that has
    fewer words leaves its share to the other. Returns the left and right sub-tokens in reading order."""
    size = lambda ws, n: sum(len(w) for w in ws[:n])  # noqa: E731
    n_left = _take(left, quota // 2)
    n_right = _take(right, quota - size(left, n_left))
    n_left = _take(left, quota - size(right, n_right))
    before = [t for w in reversed(left[:n_left]) for t in w]
    return before, [t for w in right[:n_right] for t in w]


def document_context(pieces: list[list[list[int]]], docs: list[int], i: int, limit: int
                     ) -> tuple[list[list[int]], list[list[int]]]:
    """The words of sentence `i`'s neighbours in the same document (consecutive sentences with an equal `docs`
    entry), nearest first on each side, at most `limit` words per side (each word is at least one sub-token)."""
    left: list[list[int]] = []
    j = i - 1
    while j >= 0 and docs[j] == docs[i] and len(left) < limit:
        left.extend(reversed(pieces[j]))
        j -= 1
    right: list[list[int]] = []
    j = i + 1
    while j < len(pieces) and docs[j] == docs[i] and len(right) < limit:
        right.extend(pieces[j])
        j += 1
    return left[:limit], right[:limit]


def encode_sentences(encoder: Encoder, sentences: list[list[str]], docs: list[int] | None,
                     label_ids: list[list[int]] | None = None, i_of: dict[int, int] | None = None) -> list[Window]:
    """Windows of every sentence, with document context from its neighbours when the encoder has a context budget
    (`docs`: each sentence's document; None: every sentence is its own document). One path for training,
    evaluation, the served model and the gate's scorer."""
    pieces = encoder.word_pieces_batch(sentences)
    out: list[Window] = []
    for i, p in enumerate(pieces):
        left, right = (document_context(pieces, docs, i, encoder.context_tokens)
                       if encoder.context_tokens and docs is not None else ([], []))
        out.extend(encoder.encode_pieces(i, p, label_ids[i] if label_ids is not None else None, i_of, left, right))
    return out


def encoder_for(tokenizer, settings) -> Encoder:
    """The encoder of a tokenize config or a model's saved meta (nerflow.json): the same windows either way."""
    get = settings.get if isinstance(settings, dict) else lambda k, d=None: getattr(settings, k, d)
    context = get("context", "sentence")
    return Encoder(tokenizer, get("max_length"), get("stride"), get("label_all_subtokens", False),
                   get("context_tokens", 0) if context == "document" else 0)


def inside_label_map(labels: list[str]) -> dict[int, int]:
    """B-X id -> I-X id, used when all sub-tokens of a word are labelled."""
    index = {t: i for i, t in enumerate(labels)}
    return {i: index[f"I-{t[2:]}"] for i, t in enumerate(labels) if t.startswith("B-") and f"I-{t[2:]}" in index}


def encode_split(encoder: Encoder, sentences: list[Sentence], labels: list[str]) -> list[Window]:
    label_to_id = {t: i for i, t in enumerate(labels)}
    return encode_sentences(encoder, [s.tokens for s in sentences], [s.doc for s in sentences],
                            [[label_to_id[t] for t in s.tags] for s in sentences], inside_label_map(labels))


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
    encoder = encoder_for(tokenizer, cfg)
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
