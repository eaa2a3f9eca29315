"""Entity-level scores, a type confusion matrix, a predictions file for error analysis, and the promotion gate's
score tables: what training (validation F1), the evaluate stage (nerflow.ner.evaluation) and the gate share.

Plain functions over IOB2 tag sequences; the flow/task layer decides where results go (MLflow, artifacts).
Scores are seqeval's strict IOB2 mode, which decodes entities exactly like `schemes.entity_spans`, so the
numbers describe the spans the served model will actually return.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2

from nerflow.data import plain
from nerflow.ner.data import Sentence
from nerflow.ner.schemes import entity_spans, entity_types, is_well_formed, split_tag
from nerflow.plots import confusion_png

_AVERAGES = ("micro avg", "macro avg", "weighted avg")
_LINE_BREAK = re.compile(r"[\r\n]")
_ZERO = {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}


@dataclass(frozen=True)
class EntityScores:
    precision: float  # micro
    recall: float  # micro
    f1: float  # micro
    macro_precision: float
    macro_recall: float
    macro_f1: float
    per_type: dict[str, dict[str, float]]  # {"PER": {"precision", "recall", "f1", "support"}}
    report_text: str  # seqeval classification_report, digits=4
    report: dict  # the same, JSON-ready (plain floats/ints)

    def metrics(self, prefix: str, per_type: tuple[str, ...] = ("f1", "precision", "recall", "support")
                ) -> dict[str, float]:
        """Flat MLflow-ready metrics (names in docs/metrics.md): `{prefix}f1`, `{prefix}precision`,
        `{prefix}recall` (micro), `{prefix}f1_macro`, and `{prefix}{field}_{TYPE}` for each of `per_type`'s fields.
        The prefix carries its own separator, e.g. `test/` -> `test/f1`, `test/f1_PER`."""
        out = {f"{prefix}f1": self.f1, f"{prefix}precision": self.precision, f"{prefix}recall": self.recall,
               f"{prefix}f1_macro": self.macro_f1}
        for etype, row in self.per_type.items():
            # MLflow rejects metric names with characters outside this set; entity types come from user data.
            name = re.sub(r"[^A-Za-z0-9_./ -]", "_", etype)
            for field in per_type:
                out[f"{prefix}{field}_{name}"] = float(row[field])
        return out


def _check_pairs(gold: list[list[str]], pred: list[list[str]], what: str = "pred") -> None:
    """seqeval silently mis-aligns or fails deep inside on these; say which sentence is off instead."""
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences but {what} has {len(pred)}")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: gold has {len(g)} tags but {what} has {len(p)}")


def _check_tags(seqs: list[list[str]], name: str) -> None:
    # seqeval raises a bare KeyError('P') for a tag like 'PER'; point at the sentence and the tag instead.
    for i, seq in enumerate(seqs):
        for tag in seq:
            if not is_well_formed(tag, "iob2"):
                raise ValueError(f"sentence {i}: {name} tag {tag!r} is not IOB2 (expected O, B-TYPE or I-TYPE)")


def score(gold: list[list[str]], pred: list[list[str]]) -> EntityScores:
    """Entity-level precision/recall/F1 (seqeval, strict IOB2, zero_division=0): micro, macro and per type."""
    _check_pairs(gold, pred)
    _check_tags(gold, "gold")
    _check_tags(pred, "pred")
    if not any(entity_spans(seq) for seq in [*gold, *pred]):
        # seqeval crashes (max() of an empty sequence) when there is no strict entity on either side
        # (only O, or only stray I-X); there is nothing to score.
        report = {name: dict(_ZERO) for name in _AVERAGES}
        text = "no entities in gold or predicted tags: all scores are 0\n"
    else:
        kwargs = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
        text = classification_report(gold, pred, digits=4, **kwargs)
        report = plain(classification_report(gold, pred, output_dict=True, **kwargs))
    micro, macro = report["micro avg"], report["macro avg"]
    per_type = {etype: {"precision": row["precision"], "recall": row["recall"], "f1": row["f1-score"],
                        "support": row["support"]}
                for etype, row in report.items() if etype not in _AVERAGES}
    return EntityScores(precision=micro["precision"], recall=micro["recall"], f1=micro["f1-score"],
                        macro_precision=macro["precision"], macro_recall=macro["recall"],
                        macro_f1=macro["f1-score"], per_type=per_type, report_text=text, report=report)


def _entity_type(tag: str) -> str:
    return split_tag(tag)[1] or "O"


def type_confusion(gold: list[list[str]], pred: list[list[str]]) -> tuple[list[str], np.ndarray]:
    """Token-level confusion of entity types (B-/I- dropped) plus "O": rows gold, columns predicted, "O" last.

    Dropping the prefix separates "wrong type" errors from boundary errors, which the entity scores mix up.
    """
    _check_pairs(gold, pred)
    types = sorted({_entity_type(t) for seq in [*gold, *pred] for t in seq} - {"O"})
    labels = [*types, "O"]
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for g_seq, p_seq in zip(gold, pred):
        for g, p in zip(g_seq, p_seq):
            matrix[index[_entity_type(g)], index[_entity_type(p)]] += 1
    return labels, matrix


def plot_type_confusion(labels: list[str], matrix: np.ndarray, path: Path) -> None:
    """PNG heat map of `type_confusion`: colour is the row-normalised share (so rare types stay visible), cells show
    raw counts."""
    confusion_png(labels, matrix, path)


def write_predictions_conll(sentences: list[Sentence], pred: list[list[str]], path: Path) -> None:
    """`token gold pred` per line, blank line between sentences, `# source = file:line` before each sentence."""
    _check_pairs([s.tags for s in sentences], pred)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for s, tags in zip(sentences, pred):
            f.write(f"# source = {s.source}\n")
            for token, g, p in zip(s.tokens, s.tags, tags):
                # A token cannot span lines; spaces inside a token are kept (the reader splits from the right).
                token = _LINE_BREAK.sub(" ", token)
                f.write(f"{token} {g} {p}\n")
            f.write("\n")


def read_predictions_conll(path: Path) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """Read `write_predictions_conll` output back as (tokens, gold, pred)."""
    tokens: list[list[str]] = []
    gold: list[list[str]] = []
    pred: list[list[str]] = []
    current: list[tuple[str, str, str]] = []

    def flush() -> None:
        if current:
            tokens.append([t for t, _, _ in current])
            gold.append([g for _, g, _ in current])
            pred.append([p for _, _, p in current])
            current.clear()

    with path.open(encoding="utf-8") as f:  # universal newlines: a file re-saved with CRLF still reads
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                flush()
            elif not current and line.startswith("# source = "):
                continue  # the comment only opens a sentence; sources are not part of the result
            else:
                # Tags never contain spaces, tokens may: split the two tags off the right.
                fields = line.rsplit(" ", 2)
                if len(fields) != 3:
                    raise ValueError(f"{path}:{lineno}: expected 'token gold pred', found {line!r}")
                current.append((fields[0], fields[1], fields[2]))
    flush()
    return tokens, gold, pred


# ------------------------------------------------------------------------------------------------ the promotion gate
def gate_tables(gold: list[list[str]], scored: dict, versions: tuple[str, str | None]
                ) -> tuple[dict, dict | None, tuple | None]:
    """Full score tables of (challenger, champion) from their served tags, and tables restricted to the entity
    types both know when their label sets differ (nerflow.promotion.decide)."""
    challenger, champion = versions
    full = {v: {"f1": float(s.f1), "per_type": s.per_type, "metric": "micro F1"} for v in versions if v is not None
            for s in [score(gold, scored[v]["pred"])]}
    restricted = None
    if champion is not None:
        types = {v: entity_types(scored[v]["labels"]) for v in versions}
        if types[challenger] != types[champion]:
            keep = types[challenger] & types[champion]
            restricted = tuple(score_restricted(gold, scored[v]["pred"], keep) for v in versions)
    return full[challenger], full.get(champion) if champion else None, restricted


def score_restricted(gold: list[list[str]], pred: list[list[str]], keep: set[str]) -> dict:
    """Score only the entity types in `keep`: every B-/I- tag of another type becomes "O" in gold AND predictions.

    This is how models with different label sets are compared: micro F1 over the types both know, so neither is
    blamed for (or credited with) types the other cannot predict. Strict IOB2, like `evaluate.score`.
    """
    for name, seqs in (("gold", gold), ("pred", pred)):
        for i, seq in enumerate(seqs):
            for tag in seq:
                # Check before masking: a malformed tag of a dropped type would otherwise vanish silently.
                if not is_well_formed(tag, "iob2"):
                    raise ValueError(f"sentence {i}: {name} tag {tag!r} is not IOB2 (expected O, B-TYPE or I-TYPE)")
    masked_gold = [_mask(seq, keep) for seq in gold]
    masked_pred = [_mask(seq, keep) for seq in pred]
    s = score(masked_gold, masked_pred)
    return {"f1": float(s.f1), "per_type": {t: dict(row) for t, row in s.per_type.items()},
            "types": sorted(keep)}  # extra key: lets `decide` name the shared types even when one has no entity


def _mask(tags: list[str], keep: set[str]) -> list[str]:
    return [t if t == "O" or split_tag(t)[1] in keep else "O" for t in tags]
