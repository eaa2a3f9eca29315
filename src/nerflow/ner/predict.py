"""Windowed prediction: the one code path that evaluation, the training loop's validation and the served model share.

Words -> windows -> probabilities at each word's first sub-token -> the most central window's vote -> IOB2 tags ->
spans with character offsets for raw text.

Tags are decoded as a sequence, not word by word: the most probable tag sequence that is valid IOB2 (no `I-X` that
opens an entity or changes type), found by Viterbi over the per-word log-probabilities. Word-by-word argmax
produces such invalid `I-X` fragments, and seqeval's strict IOB2 mode (our scorer) ignores them: argmax then loses
the entity, and repairing the fragment to `B-X` adds a false positive on top of the missed entity (0.8641 vs 0.8702
test F1 on CoNLL-2003, same model). The constrained decoder instead asks which valid reading the model believes
most; docs/benchmarks.md has the comparison on the same weights.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from nerflow.batching import (
    PREDICT_MAX_SEQUENCES,
    inference_batches,
    pad_multiple,
    padded,
    predict_batch_tokens,
)
from nerflow.ner.schemes import entity_spans, invalid_iob2_positions
from nerflow.ner.tokenization import Window, encode_sentences, encoder_for, merge_windows
from nerflow.runtimes import load_model

META_FILE = "nerflow.json"   # saved next to the weights: labels and window settings the predictor needs
# Raw-text words: runs of letters/digits joined by inner . ' - & (U.S, O'Neil, Coca-Cola, AT&T), or one other char.
WORD_RE = re.compile(r"\w+(?:[.'’\-&]\w+)*|[^\w\s]")


def collate(windows: list[Window], pad_id: int, with_labels: bool = True, multiple: int = 1
            ) -> dict[str, torch.Tensor]:
    """Dynamic padding: each batch is padded to its own longest window (rounded up to `multiple`: 8 on GPUs,
    nerflow.batching.pad_multiple), not to max_length."""
    width = padded(max(len(w.input_ids) for w in windows), multiple)
    # filled in numpy: a torch.tensor per window was most of the collation's time
    ids = np.full((len(windows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(windows), width), dtype=np.int64)
    labels = np.full((len(windows), width), -100, dtype=np.int64)
    for i, w in enumerate(windows):
        n = len(w.input_ids)
        ids[i, :n] = w.input_ids
        mask[i, :n] = 1
        if with_labels:
            labels[i, :n] = w.labels
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if with_labels:
        batch["labels"] = torch.from_numpy(labels)
    return batch


@torch.inference_mode()
def predict_windows(model, windows: list[Window], n_words: list[int], id2label: dict[int, str], pad_id: int,
                    batch_size: int = 64, device: str = "cpu", autocast_dtype=None, decode: str = "viterbi",
                    batch_tokens: int | None = None) -> tuple[list[list[str]], list[list[float]]]:
    """Word-level IOB2 tags and their probabilities for every sentence the windows cover.

    `decode`: "viterbi" (the most probable valid IOB2 sequence; what nerflow uses everywhere) or "argmax" (each
    word's most probable tag; kept to measure what the sequence decoder is worth)."""
    if decode not in ("viterbi", "argmax"):
        raise ValueError(f"decode must be 'viterbi' or 'argmax', not {decode!r}")
    was_training = model.training
    model.eval()
    word_scores: list[dict[int, np.ndarray]] = [{} for _ in windows]
    for chunk_ids in inference_batches([len(w.input_ids) for w in windows], batch_tokens, batch_size):
        chunk = [windows[k] for k in chunk_ids]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_id, False, pad_multiple(device)).items()}
        with torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(**batch).logits
        # only the positions that score a word (a word's first sub-token) leave the model's device: with document
        # context most positions are context
        word_ids = np.full(tuple(logits.shape[:2]), -1)
        for row, w in enumerate(chunk):
            word_ids[row, :len(w.word_ids)] = w.word_ids
        rows, cols = np.nonzero(word_ids >= 0)
        picked = logits[torch.from_numpy(rows).to(logits.device), torch.from_numpy(cols).to(logits.device)]
        probs = picked.float().softmax(-1).cpu().numpy()
        ends = np.cumsum(np.bincount(rows, minlength=len(chunk)))
        for row, k in enumerate(chunk_ids):
            start = ends[row - 1] if row else 0
            word_scores[k] = dict(zip(word_ids[rows[start:ends[row]], cols[start:ends[row]]].tolist(),
                                      probs[start:ends[row]]))
    model.train(was_training)
    labels = [id2label[i] for i in range(len(id2label))]
    # a word no window scored (no sub-tokens at all) is certainly O
    fallback = np.eye(len(labels))[labels.index("O") if "O" in labels else 0]
    sentences = [np.array([p if p is not None else fallback for p in sentence]).reshape(len(sentence), len(labels))
                 for sentence in merge_windows(windows, word_scores, n_words)]   # an empty text: (0, labels)
    paths = (decode_iob2_batch(sentences, iob2_transitions(labels)) if decode == "viterbi"
             else [[int(i) for i in probs.argmax(-1)] for probs in sentences])
    tags = [[labels[i] for i in ids] for ids in paths]
    confidences = [probs[np.arange(len(ids)), ids].tolist() for probs, ids in zip(sentences, paths)]
    return tags, confidences


def iob2_transitions(labels: list[str]) -> np.ndarray:
    """allowed[i, j]: tag j may follow tag i in valid IOB2; the last row is the sentence start. Read off
    `invalid_iob2_positions`, so decoding and data validation share one definition of valid IOB2."""
    follows = [[1 not in invalid_iob2_positions([prev, tag]) for tag in labels] for prev in labels]
    starts = [not invalid_iob2_positions([tag]) for tag in labels]
    return np.array([*follows, starts], dtype=bool)


def decode_iob2(probs: np.ndarray, allowed: np.ndarray) -> list[int]:
    """Viterbi: the tag ids, one per word, of the most probable sequence (product of the per-word probabilities)
    among those `allowed` permits. `probs` is [words, labels]."""
    return decode_iob2_batch([probs], allowed)[0]


# sentences x word positions decoded together at most: with 9 labels, ~19 MB of scores and as much of back pointers
VITERBI_CELLS = 1 << 18


def decode_iob2_batch(sentences: list[np.ndarray], allowed: np.ndarray) -> list[list[int]]:
    """`decode_iob2` of each [words, labels] array, computed for many sentences at once: one numpy step per word
    position of a group instead of one per word of each sentence (that was a quarter of prediction's host work on
    CoNLL-2003 test). Sentences are grouped by length so that little is padded, at most VITERBI_CELLS words a
    group; a sentence that has ended keeps its final score while the longer ones go on."""
    paths: list[list[int]] = [[] for _ in sentences]
    order = sorted((i for i, p in enumerate(sentences) if len(p)), key=lambda i: len(sentences[i]))
    penalty = np.where(allowed, 0.0, -np.inf)
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * len(sentences[order[end]]) <= VITERBI_CELLS:
            end += 1
        group = order[start:end]
        longest = len(sentences[group[-1]])
        lengths = np.array([len(sentences[i]) for i in group])
        logp = np.zeros((len(group), longest, allowed.shape[1]))
        for row, i in enumerate(group):
            logp[row, :lengths[row]] = np.log(np.clip(sentences[i], 1e-12, None))
        score = logp[:, 0] + penalty[-1]
        back = np.zeros((len(group), longest, allowed.shape[1]), dtype=np.int64)
        for t in range(1, longest):
            candidates = score[:, :, None] + penalty[:-1]          # [sentence, previous tag, this tag]
            back[:, t] = candidates.argmax(1)
            live = (lengths > t)[:, None]                           # a finished sentence keeps its final score
            score = np.where(live, candidates.max(1) + logp[:, t], score)
        path = np.zeros((len(group), longest), dtype=np.int64)
        path[np.arange(len(group)), lengths - 1] = score.argmax(1)
        for t in range(longest - 1, 0, -1):
            live = np.flatnonzero(lengths > t)
            path[live, t - 1] = back[live, t, path[live, t]]
        for row, i in enumerate(group):
            paths[i] = path[row, :lengths[row]].tolist()
        start = end
    return paths


@dataclass
class Predictor:
    """A fine-tuned model plus what it needs to turn raw text into entity spans."""

    model: object
    tokenizer: object
    labels: list[str]
    max_length: int | None
    stride: int
    device: str = "cpu"
    context: str = "sentence"      # how the model was trained to read documents (tokenize.context)
    context_tokens: int = 0

    @classmethod
    def load(cls, model_dir: Path | str, device: str | None = None, runtime: str | None = None, model=None
             ) -> Predictor:
        """The folder's predictor, running the runtime it is served with (nerflow.runtimes: PyTorch, or the ONNX
        model the export stage chose), `runtime` ("torch" | "onnx") when forced, or `model` when given."""
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        model_dir = Path(model_dir)
        meta = json.loads((model_dir / META_FILE).read_text())
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = model if model is not None else load_model(model_dir, AutoModelForTokenClassification, device,
                                                            runtime)
        # a model saved before document context has no `context`: it read sentences alone
        return cls(model, AutoTokenizer.from_pretrained(model_dir), meta["labels"], meta["max_length"],
                   meta["stride"], device, meta.get("context", "sentence"), meta.get("context_tokens", 0))

    def windows(self, sentences: list[list[str]], docs: list[int] | None = None) -> list[Window]:
        """The windows evaluation would build for these sentences (`docs`: each one's document, for document
        context; None: each sentence alone)."""
        encoder = encoder_for(self.tokenizer, {"max_length": self.max_length, "stride": self.stride,
                                               "context": self.context, "context_tokens": self.context_tokens})
        return encode_sentences(encoder, sentences, docs)

    def predict_words(self, sentences: list[list[str]], docs: list[int] | None = None
                      ) -> tuple[list[list[str]], list[list[float]]]:
        windows = self.windows(sentences, docs)
        return predict_windows(self.model, windows, [len(s) for s in sentences], dict(enumerate(self.labels)),
                               self.tokenizer.pad_token_id or 0, PREDICT_MAX_SEQUENCES, self.device,
                               batch_tokens=predict_batch_tokens(self.device))

    multi_label: ClassVar[bool] = False   # one IOB2 tag per token (nerflow.scoring.Scorer)

    def predict_examples(self, examples: list[dict]) -> list[list[str]]:
        """The served-scorer protocol (nerflow.scoring.Scorer): one IOB2 tag per token of each example's `tokens`,
        predicted from the tokens as given (the windows and decoding evaluation uses), never re-split: a token
        holding a space stays one word."""
        if not examples:
            return []
        # consecutive examples of one document are read together, as evaluation read them
        docs = [int(e.get("doc", 0)) for e in examples]
        return self.predict_words([list(e["tokens"]) for e in examples], docs=docs)[0]

    def predict_texts_words(self, texts: list[list[str]]) -> tuple[list[list[str]], list[list[float]]]:
        """Tags and probabilities per word of each text. A text is one document: with document context it is read
        sentence by sentence, each with its neighbours as context, as the model was trained; otherwise as one
        windowed word sequence."""
        if self.context != "document":
            return self.predict_words(texts)
        sentences, docs = [], []
        for i, words in enumerate(texts):
            parts = split_sentences(words)
            sentences.extend(parts)
            docs.extend([i] * len(parts))
        tags, confs = self.predict_words(sentences, docs=docs)
        out_tags, out_confs = [[] for _ in texts], [[] for _ in texts]
        for doc, t, c in zip(docs, tags, confs):
            out_tags[doc].extend(t)
            out_confs[doc].extend(c)
        return out_tags, out_confs

    def predict_text(self, texts: list[str], pretokenized: bool = False) -> list[list[dict]]:
        """Entity spans per text: type, start/end character offsets into that text, the text itself, a score.

        `pretokenized`: words are exactly the whitespace-separated chunks (for text made by joining tokens)."""
        words_per_text = [split_words(t, pretokenized) for t in texts]
        tags, confs = self.predict_texts_words([[w for w, _, _ in ws] for ws in words_per_text])
        out = []
        for text, words, sent_tags, sent_conf in zip(texts, words_per_text, tags, confs):
            spans = []
            for etype, a, b in entity_spans(sent_tags):
                start, end = words[a][1], words[b - 1][2]
                spans.append({"type": etype, "start": start, "end": end, "text": text[start:end],
                              "score": round(sum(sent_conf[a:b]) / (b - a), 4)})
            out.append(spans)
        return out


def split_words(text: str, pretokenized: bool = False) -> list[tuple[str, int, int]]:
    """(word, start, end) with character offsets into `text`."""
    pattern = r"\S+" if pretokenized else WORD_RE
    return [(m.group(), m.start(), m.end()) for m in re.finditer(pattern, text)]


def split_sentences(words: list[str]) -> list[list[str]]:
    """A text's words cut after each sentence-final . ! ? (a wrong cut costs little: with document context the
    words on either side stay in view as context)."""
    sentences, current = [], []
    for w in words:
        current.append(w)
        if w in (".", "!", "?"):
            sentences.append(current)
            current = []
    return [*sentences, current] if current or not sentences else sentences


def write_meta(model_dir: Path, labels: list[str], max_length: int | None, stride: int, **extra) -> None:
    (model_dir / META_FILE).write_text(json.dumps({"labels": labels, "max_length": max_length, "stride": stride,
                                                   **extra}, indent=2))


def load_predictor(folder: Path, runtime: str | None = None):
    """texts -> entity spans, from a model folder nerflow trained (`nerflow predict FOLDER`), on the runtime it is
    served with or `runtime` (torch | onnx)."""
    return Predictor.load(folder, runtime=runtime).predict_text
