"""Why the classifier chose a label (`nerflow explain` on a text classifier): the task's side of nerflow.explain.

**Target**: the log-probability of the predicted label: log softmax of the logits (single-label), or each predicted
label's own log sigmoid (multi-label, one explanation per label at or above its threshold; none when no label is).

**Window**: a text that fits the model's window is explained whole. A longer one is explained in the first segment
the model reads, and the note says so: with `head` that is all the model read; with `head_tail` the head and the
tail together (the middle was never read); with `windows` the prediction pooled the logits of several windows and
only the first window's own target is explained.

**Words**: the tokenizer's words (its pre-tokenizer's split: punctuation stands alone), each with the character
offsets of its sub-tokens in the text.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from nerflow.explain import DEFAULT_STEPS, Explanation, baseline_ids, integrated_gradients, word_attributions
from nerflow.textcat.predict import Classifier, tokenize_settings
from nerflow.textcat.tokenization import Encoder


def load_explainer(folder: Path) -> Callable[[str, int], list[Explanation]]:
    """text, steps -> one explanation per predicted label, for a model folder nerflow trained. The PyTorch
    weights in fp32, whatever runtime the version serves."""
    classifier = Classifier.load(folder, runtime="torch")   # attributions need gradients: the fp32 weights
    classifier.model.float()
    return lambda text, steps=DEFAULT_STEPS: explain_text(classifier, text, steps)


def explain_text(classifier: Classifier, text: str, steps: int = DEFAULT_STEPS) -> list[Explanation]:
    encoder = Encoder(classifier.tokenizer, tokenize_settings(classifier.meta))
    encoded = classifier.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    if not ids:
        return []
    answer = classifier.predict_text([text])[0]
    labels = answer["labels"] if classifier.multi_label else [answer["label"]]
    segment = encoder.encode(0, ids, [])[0]
    kept, note = read_tokens(encoder, len(ids))
    inner = segment.input_ids[len(encoder.prefix):len(segment.input_ids) - len(encoder.suffix)]
    if [ids[i] for i in kept] != inner:
        raise RuntimeError("the explained segment is not the one the classifier read")
    words, word_of = token_words(encoded.word_ids(), encoded["offset_mapping"])
    owners = [None] * len(encoder.prefix) + [word_of[i] for i in kept] + [None] * len(encoder.suffix)
    baseline = baseline_ids(segment.input_ids, len(encoder.prefix), len(encoder.suffix),
                            classifier.tokenizer.pad_token_id or 0)
    out = []
    for label in labels:
        index = classifier.labels.index(label)
        result = integrated_gradients(classifier.model, segment.input_ids, baseline,
                                      label_log_probability(index, classifier.multi_label), steps)
        score = float(answer["scores"][label])
        out.append(Explanation(
            text, f"label {label} {score:.2f}", {"label": label, "score": score},
            f"log {'sigmoid' if classifier.multi_label else 'softmax'} p({label})", result.value,
            result.baseline_value, result.delta, steps, word_attributions(text, result.tokens, owners, words), note))
    return out


def label_log_probability(index: int, multi_label: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """logits [batch, labels] -> [batch]: log p(label), as the classifier turns logits into probabilities."""
    if multi_label:
        return lambda logits: torch.nn.functional.logsigmoid(logits[:, index])
    return lambda logits: logits.log_softmax(-1)[:, index]


def read_tokens(encoder: Encoder, n: int) -> tuple[list[int], str]:
    """The text's sub-tokens in the first segment the model reads (nerflow.textcat.tokenization.Encoder.encode),
    and a note when that is not all of them."""
    budget, strategy = encoder.budget, encoder.cfg.long_documents
    if n <= budget:
        return list(range(n)), ""
    if strategy == "head_tail":
        head = round(budget * encoder.cfg.head_share)
        return [*range(head), *range(n - (budget - head), n)], \
            f"a long text ({n} sub-tokens): the model read its first {head} and last {budget - head} sub-tokens"
    if strategy == "windows":
        return list(range(budget)), (f"a long text ({n} sub-tokens) read as {len(encoder.spans(n))} windows whose "
                                     f"logits are pooled: explained in the first window ({budget} sub-tokens)")
    return list(range(budget)), f"a long text ({n} sub-tokens): the model read its first {budget}"


def token_words(word_ids: list[int | None], offsets: list[tuple[int, int]]
                ) -> tuple[list[tuple[int, int]], list[int]]:
    """(each word's (start, end) characters, each sub-token's word index): the sub-tokens of one tokenizer word
    form one word; a sub-token without a word (a tokenizer that keeps none) is a word of its own."""
    words: list[tuple[int, int]] = []
    word_of: list[int] = []
    previous = object()
    for w, (start, end) in zip(word_ids, offsets):
        if w is None or w != previous:
            words.append((start, end))
        else:
            words[-1] = (words[-1][0], max(words[-1][1], end))
        word_of.append(len(words) - 1)
        previous = w if w is not None else object()
    return words, word_of
