"""Why the model tagged an entity (`nerflow explain` on a NER model): the task's side of nerflow.explain.

**Target**: for each predicted entity, the sum of the log-probabilities of its predicted tags (the Viterbi tags
that `nerflow predict` returns, e.g. B-PER then I-PER) at its words' first sub-tokens, the positions the tags are
read from. A two-word entity is explained as a whole: a word that raises the model's belief in either tag counts.

**Window**: the text is split into words and windows exactly as the predictor does (nerflow.ner.predict); each
entity is explained in the window where its words sit most centrally, the window the predictor read its tags from.
Words outside that window (a long text) get no attribution and are left out; with document context the window's
context words from neighbouring sentences are attributed too. The note of such an explanation says which window.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from nerflow.explain import DEFAULT_STEPS, Explanation, baseline_ids, integrated_gradients, word_attributions
from nerflow.ner.predict import Predictor, split_sentences, split_words
from nerflow.ner.schemes import entity_spans
from nerflow.ner.tokenization import Window, encode_sentences, encoder_for


def load_explainer(folder: Path) -> Callable[[str, int], list[Explanation]]:
    """text, steps -> one explanation per predicted entity, for a model folder nerflow trained. The PyTorch
    weights in fp32, whatever runtime the version serves."""
    predictor = Predictor.load(folder, runtime="torch")   # attributions need gradients: the fp32 weights
    predictor.model.float()
    return lambda text, steps=DEFAULT_STEPS: explain_text(predictor, text, steps)


def explain_text(predictor: Predictor, text: str, steps: int = DEFAULT_STEPS) -> list[Explanation]:
    words = split_words(text)
    tokens = [w for w, _, _ in words]
    if not tokens:
        return []
    tags, confidences = (x[0] for x in predictor.predict_texts_words([tokens]))
    # the sentences and windows predict_texts_words read (a text is one document)
    sentences = split_sentences(tokens) if predictor.context == "document" else [tokens]
    encoder = encoder_for(predictor.tokenizer, {"max_length": predictor.max_length, "stride": predictor.stride,
                                                "context": predictor.context,
                                                "context_tokens": predictor.context_tokens})
    windows = encode_sentences(encoder, sentences, [0] * len(sentences))
    pieces = [p for s in sentences for p in encoder.word_pieces(s)]
    offsets = [0]
    for s in sentences:
        offsets.append(offsets[-1] + len(s))
    spans = [(start, end) for _, start, end in words]
    out = []
    for etype, a, b in entity_spans(tags):
        sentence = max(i for i in range(len(sentences)) if offsets[i] <= a)
        own = [w for w in windows if w.sentence == sentence]
        window = best_window(own, a - offsets[sentence], b - offsets[sentence])
        local = range(max(a - offsets[sentence], window.word_start), min(b - offsets[sentence], window.word_end))
        positions = [window.word_ids.index(w) for w in local]
        tag_ids = [predictor.labels.index(tags[offsets[sentence] + w]) for w in local]
        result = integrated_gradients(
            predictor.model, window.input_ids,
            baseline_ids(window.input_ids, len(encoder.prefix_ids), len(encoder.suffix_ids),
                         predictor.tokenizer.pad_token_id or 0),
            tag_log_probability(positions, tag_ids), steps)
        owners = position_words(window, pieces, offsets[sentence], len(encoder.prefix_ids), len(encoder.suffix_ids))
        start, end = spans[a][0], spans[b - 1][1]
        score = round(sum(confidences[a:b]) / (b - a), 4)   # as `nerflow predict` scores the span
        entity = {"type": etype, "start": start, "end": end, "text": text[start:end], "score": score}
        explained_tags = " ".join(tags[offsets[sentence] + w] for w in local)
        out.append(Explanation(
            text, f'{etype} "{text[start:end]}" {score:.2f}', {"entity": entity},
            f"sum of log p({explained_tags}) at the entity's words", result.value, result.baseline_value,
            result.delta, steps, word_attributions(text, result.tokens, owners, spans),
            window_note(window, len(set(owners) - {None}), len(words), len(local) < b - a, len(sentences) > 1)))
    return out


def best_window(windows: list[Window], a: int, b: int) -> Window:
    """The window holding most of words [a, b) of the sentence, and among those the one where they sit most
    centrally (the predictor takes each word's tag from the window where it is most central)."""
    def rank(w: Window) -> tuple[int, int]:
        covered = min(b, w.word_end) - max(a, w.word_start)
        return covered, min(a - w.word_start, w.word_end - b)
    return max(windows, key=rank)


def window_note(window: Window, seen: int, n_words: int, cut: bool, sentences: bool) -> str:
    """What a long text's explanation did not see: `seen` of its `n_words` words were in the window (`sentences`:
    the text was read sentence by sentence, with its neighbours as context)."""
    if seen == n_words:
        return ""
    where = f"sentence {window.sentence + 1}, " if sentences else ""
    said = (f"a long text: explained in the window the entity's tags were read from ({where}words "
            f"{window.word_start + 1}-{window.word_end}; {seen} of the text's {n_words} words with its context); "
            "the other words have no attribution")
    return said + ("; the entity crosses that window's edge: only its words inside are explained" if cut else "")


def tag_log_probability(positions: list[int], tag_ids: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """logits [batch, positions, labels] -> [batch]: the sum of log p(tag) at each (position, tag)."""
    pos, tag = torch.tensor(positions), torch.tensor(tag_ids)
    return lambda logits: logits.log_softmax(-1)[:, pos.to(logits.device), tag.to(logits.device)].sum(-1)


def position_words(window: Window, pieces: list[list[int]], offset: int, n_prefix: int, n_suffix: int
                   ) -> list[int | None]:
    """The text-level word each position of `window` belongs to (None: a special token). Between its special
    tokens a window holds whole words in reading order: context before, its sentence's words from `word_start`,
    context after (nerflow.ner.tokenization.Encoder.encode_pieces); so the run starts as many words before the
    window's first word as fill the sub-tokens before it. `pieces`: every word's sub-tokens, the text's words in
    order; `offset`: the window's sentence's first word in the text."""
    ids = window.input_ids
    first = next(i for i, w in enumerate(window.word_ids) if w >= 0)
    word, before = offset + window.word_start, first - n_prefix
    while before > 0:
        word -= 1
        before -= len(pieces[word])
    owners: list[int | None] = [None] * n_prefix
    position = n_prefix
    while position < len(ids) - n_suffix:
        piece = pieces[word]
        if before != 0 or ids[position:position + len(piece)] != piece:
            raise RuntimeError(f"window of sentence {window.sentence} does not hold whole words in reading order")
        owners.extend([word] * len(piece))
        position += len(piece)
        word += 1
    return owners + [None] * n_suffix
