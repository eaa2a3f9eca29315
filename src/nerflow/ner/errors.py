"""Where a token-classification model fails: every predicted and gold entity of a split put in one error kind, the
most confused type pairs, F1 on entities seen in training against those never seen, and F1 by sentence length,
with examples of each kind pointing at the line of the predictions file (`<split>_predictions.conll`).

The kinds, per entity (strict IOB2 spans, as the scores count them):
- `correct`: a predicted entity with a gold entity of the same type and boundaries;
- `type`: same boundaries as a gold entity, another type;
- `boundary`: overlaps a gold entity of its type, other boundaries;
- `boundary_type`: overlaps gold entities, none of its type and none with its boundaries;
- `spurious`: a predicted entity that overlaps no gold entity;
- `missed`: a gold entity that no predicted entity matches or overlaps.
A gold entity overlapped by a wrong prediction is counted once, through that prediction (not also as `missed`).
Errors are counted under the gold entity's type, `spurious` under the predicted one.

Seen/unseen: an entity is "seen" when its exact words (case kept) are a gold entity of the training split, of any
type. Recall is over gold entities of the group, precision over predicted ones; the two groups' counts add up to
the split's, so their F1s bracket the headline F1.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from nerflow.html_report import esc, page, table
from nerflow.ner.schemes import entity_spans

KINDS = ("correct", "type", "boundary", "boundary_type", "spurious", "missed")
ERRORS = KINDS[1:]
LENGTH_BUCKETS = ((1, 10), (11, 20), (21, 40), (41, None))   # words per sentence; None: no upper bound
EXAMPLES_PER_KIND = 25


@dataclass(frozen=True)
class Case:
    """One entity's outcome: `sentence` indexes the split, spans are word indices (end exclusive)."""

    kind: str
    sentence: int
    gold: tuple[str, int, int] | None
    pred: tuple[str, int, int] | None

    @property
    def type(self) -> str:
        """The type it counts under: the gold entity's, the predicted one's for `spurious`."""
        return (self.gold or self.pred)[0]


@dataclass
class Prf:
    correct: int = 0
    predicted: int = 0
    gold: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def row(self) -> dict:
        return {"f1": self.f1, "precision": self.precision, "recall": self.recall, "gold": self.gold,
                "predicted": self.predicted}


def _overlaps(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
    return a[1] < b[2] and b[1] < a[2]


def classify(gold: list[str], pred: list[str], sentence: int = 0) -> list[Case]:
    """Every gold and predicted entity of one sentence, each in one kind (module docstring)."""
    gold_spans, pred_spans = entity_spans(gold), entity_spans(pred)
    cases, explained = [], set()
    for p in pred_spans:
        same_bounds = [g for g in gold_spans if g[1:] == p[1:]]
        overlapping = [g for g in gold_spans if _overlaps(g, p)]
        explained.update(overlapping)
        if p in gold_spans:
            cases.append(Case("correct", sentence, p, p))
        elif same_bounds:
            cases.append(Case("type", sentence, same_bounds[0], p))
        elif any(g[0] == p[0] for g in overlapping):
            cases.append(Case("boundary", sentence, next(g for g in overlapping if g[0] == p[0]), p))
        elif overlapping:
            cases.append(Case("boundary_type", sentence, overlapping[0], p))
        else:
            cases.append(Case("spurious", sentence, None, p))
    cases += [Case("missed", sentence, g, None) for g in gold_spans if g not in explained]
    return cases


def _text(tokens: list[str], span: tuple[str, int, int]) -> str:
    return " ".join(tokens[span[1]:span[2]])


def _bucket(n_words: int) -> str:
    for low, high in LENGTH_BUCKETS:
        if n_words >= low and (high is None or n_words <= high):
            return f"{low}-{high}" if high else f"{low}+"
    return "0"


def predictions_lines(tokens: list[list[str]]) -> list[int]:
    """The line of each sentence's `# source` comment in the predictions file (nerflow.ner.evaluate's layout)."""
    lines, line = [], 1
    for words in tokens:
        lines.append(line)
        line += len(words) + 2
    return lines


@dataclass
class ErrorAnalysis:
    split: str
    kinds: dict[str, Counter] = field(default_factory=dict)     # kind -> {type: count}
    confused: Counter = field(default_factory=Counter)           # (gold type, predicted type) -> count
    seen: dict[str, Prf] = field(default_factory=dict)           # "seen" / "unseen"
    by_length: dict[str, Prf] = field(default_factory=dict)      # bucket -> counts
    sentences_by_length: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict]] = field(default_factory=dict)

    def metrics(self, prefix: str) -> dict[str, float]:
        """The summary numbers for MLflow (docs/metrics.md): error counts by kind, F1 seen/unseen."""
        out = {f"{prefix}errors_{kind}": float(sum(self.kinds[kind].values())) for kind in ERRORS}
        return out | {f"{prefix}{group}_entities_f1": self.seen[group].f1 for group in ("seen", "unseen")}

    def to_json(self) -> dict:
        pairs = [{"gold": g, "predicted": p, "count": n} for (g, p), n in self.confused.most_common()]
        return {"split": self.split, "kinds": {k: dict(sorted(v.items())) for k, v in self.kinds.items()},
                "confused_pairs": pairs,
                "seen_in_train": {k: v.row() for k, v in self.seen.items()},
                "by_length": {k: {**v.row(), "sentences": self.sentences_by_length[k]}
                              for k, v in self.by_length.items()},
                "examples": self.examples}


def analyse(tokens: list[list[str]], gold: list[list[str]], pred: list[list[str]], train_entities: set[str],
            split: str, predictions_file: str = "") -> ErrorAnalysis:
    """The error analysis of one split: `tokens`, `gold`, `pred` per sentence; `train_entities` the exact strings of
    the training split's gold entities (`entity_strings`)."""
    if not (len(tokens) == len(gold) == len(pred)):
        raise ValueError(f"{split}: {len(tokens)} sentences, {len(gold)} gold and {len(pred)} predicted tag rows")
    result = ErrorAnalysis(split, {kind: Counter() for kind in KINDS}, Counter(),
                           {"seen": Prf(), "unseen": Prf()}, {}, Counter(), {kind: [] for kind in ERRORS})
    for low, high in LENGTH_BUCKETS:
        result.by_length[f"{low}-{high}" if high else f"{low}+"] = Prf()
    lines = predictions_lines(tokens)
    for i, (words, g_tags, p_tags) in enumerate(zip(tokens, gold, pred)):
        bucket = _bucket(len(words))
        result.sentences_by_length[bucket] += 1
        length = result.by_length.setdefault(bucket, Prf())
        # the groups count entities, each once (a gold entity two wrong predictions overlap is still one)
        gold_spans, pred_spans = entity_spans(g_tags), set(entity_spans(p_tags))
        for span in gold_spans:
            for prf in (result.seen["seen" if _text(words, span) in train_entities else "unseen"], length):
                prf.gold += 1
                prf.correct += span in pred_spans
        for span in pred_spans:
            for prf in (result.seen["seen" if _text(words, span) in train_entities else "unseen"], length):
                prf.predicted += 1
        for case in classify(g_tags, p_tags, i):
            result.kinds[case.kind][case.type] += 1
            if case.kind in ("type", "boundary_type"):
                result.confused[(case.gold[0], case.pred[0])] += 1
            if case.kind != "correct" and len(result.examples[case.kind]) < EXAMPLES_PER_KIND:
                result.examples[case.kind].append({
                    "sentence": i, "line": lines[i], "file": predictions_file, "words": list(words),
                    "gold": [case.gold[0], _text(words, case.gold)] if case.gold else None,
                    "predicted": [case.pred[0], _text(words, case.pred)] if case.pred else None,
                    "spans": {"gold": list(case.gold[1:]) if case.gold else None,
                              "predicted": list(case.pred[1:]) if case.pred else None}})
    return result


def entity_strings(tokens: list[list[str]], tags: list[list[str]]) -> set[str]:
    """The exact strings of the gold entities of a split (words joined by one space)."""
    return {_text(words, span) for words, seq in zip(tokens, tags) for span in entity_spans(seq)}


def _marked(words: list[str], spans: dict) -> str:
    """The sentence as HTML with the gold span underlined and the predicted one highlighted."""
    out = []
    for j, word in enumerate(words):
        classes = [name for name, span in spans.items() if span and span[0] <= j < span[1]]
        text = esc(word)
        out.append(f'<span class="{" ".join(classes)}">{text}</span>' if classes else text)
    return " ".join(out)


def to_html(analyses: list[ErrorAnalysis], title: str) -> str:
    """One self-contained page with every split's tables and examples."""
    intro = ("Kinds: <b>type</b> same boundaries, other type; <b>boundary</b> overlapping, same type; "
             "<b>boundary_type</b> overlapping, other type; <b>spurious</b> predicted where no gold entity is; "
             "<b>missed</b> a gold entity nothing overlaps. In examples the gold entity is <span class='gold'>"
             "underlined</span>, the predicted one <span class='predicted'>highlighted</span>; the line is that of "
             "the predictions file.")
    body = []
    for a in analyses:
        types = sorted({t for counter in a.kinds.values() for t in counter})
        body += [f"<h2>{esc(a.split)}</h2><h3>Entities by kind and type</h3>",
                 table(["kind", *types, "all"], [[kind, *(a.kinds[kind][t] for t in types),
                                                  sum(a.kinds[kind].values())] for kind in KINDS]),
                 "<h3>Most confused type pairs</h3>",
                 table(["gold", "predicted", "entities"], [[g, p, n] for (g, p), n in a.confused.most_common(10)]),
                 "<h3>Entities seen in training vs never seen</h3>",
                 table(["group", "F1", "precision", "recall", "gold", "predicted"],
                       [[name, prf.f1, prf.precision, prf.recall, prf.gold, prf.predicted]
                        for name, prf in a.seen.items()]),
                 "<h3>F1 by sentence length (words)</h3>",
                 table(["words", "sentences", "F1", "gold entities"],
                       [[name, a.sentences_by_length[name], prf.f1, prf.gold] for name, prf in a.by_length.items()])]
        for kind in ERRORS:
            examples = a.examples[kind]
            body.append(f"<h3>{kind}: {sum(a.kinds[kind].values())} (first {len(examples)})</h3><ol>")
            for ex in examples:
                label = " → ".join(esc(x[0]) for x in (ex["gold"], ex["predicted"]) if x)
                where = f"{esc(ex['file'])}:{ex['line']}" if ex["file"] else f"line {ex['line']}"
                body.append(f"<li>{_marked(ex['words'], ex['spans'])} <code>{label} · {where}</code></li>")
            body.append("</ol>")
    return page(title, intro, body)
