"""Where a text classifier fails: accuracy by text length and the most confused label pairs, with examples of each
pair pointing at their line of the predictions file (`<split>_predictions.jsonl`, one line per text, split order).

A text is right when its predicted label set equals the gold one (accuracy; multi-label: subset accuracy). A wrong
single-label text adds one (gold, predicted) pair. A wrong multi-label text adds each (missed label, spurious label)
pair it holds, a missed label with nothing spurious as (label, "(none)") and a spurious one with nothing missed as
("(none)", label), so every wrong text counts at least once."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from nerflow.html_report import esc, page, table

NONE = "(none)"
LENGTH_BUCKETS = ((1, 10), (11, 30), (31, 100), (101, 300), (301, 1000), (1001, None))   # words per text
EXAMPLES_PER_PAIR = 5
TEXT_CHARS = 300


def bucket_name(n_words: int) -> str:
    for low, high in LENGTH_BUCKETS:
        if n_words >= low and (high is None or n_words <= high):
            return f"{low}-{high}" if high else f"{low}+"
    return "0"


def confused_pairs(gold: list[str], predicted: list[str], multi_label: bool) -> list[tuple[str, str]]:
    """The (gold, predicted) pairs one wrong text adds (module docstring); none for a right one."""
    if set(gold) == set(predicted):
        return []
    if not multi_label:
        return [(gold[0] if gold else NONE, predicted[0] if predicted else NONE)]
    missed = sorted(set(gold) - set(predicted)) or [NONE]
    spurious = sorted(set(predicted) - set(gold)) or [NONE]
    return [(m, s) for m in missed for s in spurious]


@dataclass
class TextErrors:
    split: str
    texts_by_length: Counter = field(default_factory=Counter)
    right_by_length: Counter = field(default_factory=Counter)
    pairs: Counter = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[dict]] = field(default_factory=dict)

    def accuracy(self, bucket: str) -> float:
        n = self.texts_by_length[bucket]
        return self.right_by_length[bucket] / n if n else 0.0

    def to_json(self) -> dict:
        order = [b for b in (bucket_name(low) for low, _ in LENGTH_BUCKETS) if self.texts_by_length[b]]
        return {"split": self.split,
                "by_length": {b: {"texts": self.texts_by_length[b], "accuracy": self.accuracy(b)} for b in order},
                "confused_pairs": [{"gold": g, "predicted": p, "texts": n, "examples": self.examples[(g, p)]}
                                   for (g, p), n in self.pairs.most_common()]}


def analyse(texts: list[str], sources: list[str], gold: list[list[str]], predicted: list[list[str]],
            multi_label: bool, split: str, predictions_file: str = "") -> TextErrors:
    if not (len(texts) == len(sources) == len(gold) == len(predicted)):
        raise ValueError(f"{split}: {len(texts)} texts, {len(sources)} sources, {len(gold)} gold and "
                         f"{len(predicted)} predicted label lists")
    result = TextErrors(split)
    for i, (text, source, g, p) in enumerate(zip(texts, sources, gold, predicted)):
        bucket = bucket_name(len(text.split()))
        result.texts_by_length[bucket] += 1
        pairs = confused_pairs(g, p, multi_label)
        result.right_by_length[bucket] += not pairs
        for pair in pairs:
            result.pairs[pair] += 1
            examples = result.examples.setdefault(pair, [])
            if len(examples) < EXAMPLES_PER_PAIR:
                examples.append({"line": i + 1, "file": predictions_file, "source": source,
                                 "text": text[:TEXT_CHARS], "gold": list(g), "predicted": list(p)})
    return result


def to_html(analyses: list[TextErrors], title: str, top: int = 10) -> str:
    intro = ("A text is right when its predicted labels equal the gold ones. Pairs are (gold, predicted); "
             f"{esc(NONE)} stands for no label (multi-label: a label missed with nothing spurious, or the reverse). "
             "Each example gives its line in the predictions file.")
    body = []
    for a in analyses:
        data = a.to_json()
        body += [f"<h2>{esc(a.split)}</h2><h3>Accuracy by text length (words)</h3>",
                 table(["words", "texts", "accuracy"], [[b, r["texts"], r["accuracy"]]
                                                        for b, r in data["by_length"].items()]),
                 "<h3>Most confused label pairs</h3>",
                 table(["gold", "predicted", "texts"], [[r["gold"], r["predicted"], r["texts"]]
                                                       for r in data["confused_pairs"][:top]])]
        for r in data["confused_pairs"][:top]:
            body.append(f"<h3>{esc(r['gold'])} → {esc(r['predicted'])}: {r['texts']}</h3><ol>")
            for ex in r["examples"]:
                where = f"{esc(ex['file'])}:{ex['line']}" if ex["file"] else f"line {ex['line']}"
                body.append(f"<li>{esc(ex['text'])} <code>{esc(ex['source'])} · {where}</code></li>")
            body.append("</ol>")
    return page(title, intro, body)
