"""NER's side of the served-scorer protocol (nerflow.scoring), the `promote` entry of the task type: the examples of
a canonical split, their gold tags, how a version registered before the protocol is asked and understood, and what
the gate and `nerflow compare` count (`gate_tables`, `hits`, `gold_count`).

Such a version has no `predict_examples`; its served `predict` takes raw text. It is asked what the gate asked
before the protocol: each sentence's tokens joined with single spaces and `pretokenized=True` (so words are the
whitespace-separated chunks), and its entity spans (character offsets) are turned back into one IOB2 tag per token.
Only a token that itself holds whitespace reads differently that way (as several words): the protocol exists so
that the gate scores exactly the tokens evaluation scores.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import asdict
from pathlib import Path

from nerflow.ner.data import read_split
from nerflow.ner.evaluate import gate_tables  # noqa: F401 - the gate's score tables: this entry's, with the rest
from nerflow.ner.schemes import entity_spans
from nerflow.scoring import LegacyRequest


def examples(split: Path) -> list[dict]:
    """The canonical split's sentences as dicts (`tokens`, `tags`, `source`, `doc`), as the protocol takes them."""
    return [asdict(s) for s in read_split(split)]


def gold(examples: list[dict]) -> list[list[str]]:
    return [list(e["tags"]) for e in examples]


def legacy_request(examples: list[dict]) -> LegacyRequest:
    # an old NerModel keeps its labels on its Predictor (`nerflow.ner.predict.Predictor.labels`)
    return LegacyRequest(inputs=[" ".join(e["tokens"]) for e in examples], params={"pretokenized": True},
                         labels_at="predictor.labels")


def from_legacy(examples: list[dict], answers: list[list[dict]]) -> list[list[str]]:
    """Entity spans over the space-joined tokens -> one IOB2 tag per token. A span covers the tokens it overlaps
    (a span that starts inside a token holding a space starts at that token)."""
    pred = []
    for example, spans in zip(examples, answers, strict=True):
        tokens = example["tokens"]
        starts, position = [], 0
        for token in tokens:           # the character offset of each token in the joined text
            starts.append(position)
            position += len(token) + 1
        tags = ["O"] * len(tokens)
        for span in spans:
            first = bisect_right(starts, span["start"]) - 1
            last = max(first, bisect_right(starts, span["end"] - 1) - 1)
            tags[first] = f"B-{span['type']}"
            tags[first + 1:last + 1] = [f"I-{span['type']}"] * (last - first)
        pred.append(tags)
    return pred


def hits(gold_tags: list[list[str]], served: dict) -> set:
    """The gold entities a version's served predictions got right (`nerflow compare`)."""
    predicted = {(i, *e) for i, seq in enumerate(served["pred"]) for e in entity_spans(seq)}
    return predicted & {(i, *e) for i, seq in enumerate(gold_tags) for e in entity_spans(seq)}


def gold_count(gold_tags: list[list[str]]) -> int:
    return sum(len(entity_spans(seq)) for seq in gold_tags)
