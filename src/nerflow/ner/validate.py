"""NER data validation: check a raw corpus before anything is trained on it, and say where to fix each problem.

Checks that fit a column of scalars run as Great Expectations suites on small derived frames (one row per sentence,
per token, per entity type), so the GX results and Data Docs page are real artefacts of the run. Checks that need
sequence context or compare splits (IOB2 continuations, test/train overlap) are plain Python. Every failure points
at `path:line`, and for CoNLL files at the exact token line.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nerflow.data import SPLITS
from nerflow.ner.config import NerDataConfig as DataConfig
from nerflow.ner.data import Sentence, canonicalize, label_list, load_corpus, write_split  # noqa: F401 - load_corpus: this entry's reader
from nerflow.ner.schemes import invalid_iob2_positions, is_well_formed, split_tag
from nerflow.redact import excerpt
from nerflow.validation import (  # noqa: F401
    MAX_PER_RULE,
    Failure,
    ValidationFailed,
    ValidationReport,
    capped,
    gx_failures,
    gx_modules,
    render_html,
    rule,
    run_gx,
)

RULES = ("sentence_not_empty", "token_not_blank", "tokens_tags_aligned", "tags_well_formed", "iob2_continuation",
         "sentence_length", "entity_types_in_train")


def _token_source(s: Sentence, i: int, one_token_per_line: bool) -> str:
    """CoNLL: token i of a sentence starting at line L sits on line L + i. Other formats: the sentence's own line."""
    path, _, line = s.source.rpartition(":")
    return f"{path}:{int(line) + i}" if one_token_per_line and line.isdigit() else s.source


def _frames(sentences: list[Sentence], train_types: set[str] | None, cfg: DataConfig) -> dict[str, Any]:
    """Scalar frames for GX: list columns break its set/equality expectations, so everything is exploded first."""
    import pandas as pd

    per_line = cfg.format == "conll"
    sent = {"source": [s.source for s in sentences], "n_tokens": [len(s.tokens) for s in sentences],
            "n_tags": [len(s.tags) for s in sentences]}
    tok: dict[str, list] = {"source": [], "position": [], "token": [], "tag": []}
    first_seen: dict[str, str] = {}
    for s in sentences:
        # Rows up to the longer of tokens/tags; the missing side is null, which GX skips (alignment is its own rule).
        for i in range(max(len(s.tokens), len(s.tags))):
            tag = s.tags[i] if i < len(s.tags) else None
            tok["source"].append(_token_source(s, i, per_line))
            tok["position"].append(i)
            tok["token"].append(s.tokens[i] if i < len(s.tokens) else None)
            tok["tag"].append(tag)
            if tag is not None and tag != "O" and is_well_formed(tag, cfg.scheme):
                first_seen.setdefault(split_tag(tag)[1], tok["source"][-1])
    frames = {"sentences": pd.DataFrame(sent), "tokens": pd.DataFrame(tok, dtype=object)}
    if train_types is not None:  # one row per type with its first occurrence: one failure per unseen type
        frames["entity_types"] = pd.DataFrame({"entity_type": list(first_seen), "source": list(first_seen.values())},
                                              dtype=object)
    return frames


def _suites(well_formed: set[str], train_types: set[str], cfg: DataConfig) -> dict[str, list]:
    """The GX expectations per frame kind, each tagged with its nerflow rule."""
    _, gxe = gx_modules()
    from great_expectations.expectations.row_conditions import Column

    return {
        "sentences": [
            gxe.ExpectColumnValuesToBeBetween(column="n_tokens", min_value=1, **rule("sentence_not_empty")),
            gxe.ExpectColumnPairValuesToBeEqual(column_A="n_tokens", column_B="n_tags",
                                                **rule("tokens_tags_aligned")),
            # empty sentences are already reported above; don't report them twice
            gxe.ExpectColumnValuesToBeBetween(column="n_tokens", min_value=cfg.min_tokens, max_value=cfg.max_tokens,
                                              row_condition=Column("n_tokens") > 0,
                                              **rule("sentence_length")),
        ],
        "tokens": [
            gxe.ExpectColumnValuesToNotMatchRegex(column="token", regex=r"^\s*$", **rule("token_not_blank")),
            # the tag grammar lives in schemes.is_well_formed; GX checks against the well-formed tags actually seen
            gxe.ExpectColumnValuesToBeInSet(column="tag", value_set=sorted(well_formed), **rule("tags_well_formed")),
        ],
        "entity_types": [gxe.ExpectColumnValuesToBeInSet(column="entity_type", value_set=sorted(train_types),
                                                         **rule("entity_types_in_train"))],
    }


INDEX_COLUMNS = ["source", "position", "token", "tag", "n_tokens", "n_tags"]


def _message(rule: str, row: dict, split: str, cfg: DataConfig) -> str:
    where = "" if cfg.format == "conll" else f"token {row.get('position', 0) + 1}: "
    if rule == "sentence_not_empty":
        return "sentence has no tokens; remove it or give it tokens and tags"
    if rule == "tokens_tags_aligned":
        return f"sentence has {row['n_tokens']} tokens but {row['n_tags']} tag(s); give exactly one tag per token"
    if rule == "sentence_length":
        return (f"sentence has {row['n_tokens']} tokens, outside data.min_tokens={cfg.min_tokens} .. "
                f"data.max_tokens={cfg.max_tokens}; split or drop it, or change those bounds")
    if rule == "token_not_blank":
        return (f"{where}token {excerpt(row['token'])} is empty or whitespace; remove it with its tag or fix the "
                "tokenization")
    if rule == "tags_well_formed":
        prefixes = "B-/I-/E-/S-" if cfg.scheme == "bioes" else "B-/I-"
        return (f"{where}tag {excerpt(row['tag'])} of token {excerpt(row['token'])} is not valid {cfg.scheme} "
                f"(expected O or {prefixes}TYPE); fix the tag or set data.scheme to the scheme the file uses")
    return (f"entity type {excerpt(row['entity_type'])} occurs in {split} but never in train, so the model cannot "
            "learn it; add train examples or rename/remove the type")


def _iob2_continuations(sentences: list[Sentence], cfg: DataConfig) -> tuple[list[Failure], int, bool]:
    """I-X after O or another type. Plain Python: it needs the previous tag, and under "repair" it is no failure."""
    failures = []
    n_begin = sum(split_tag(t)[0] == "B" for s in sentences for t in s.tags)
    for s in sentences:
        for i in invalid_iob2_positions(s.tags):
            prev = s.tags[i - 1] if i else "the sentence start"
            etype = split_tag(s.tags[i])[1]
            where = "" if cfg.format == "conll" else f"token {i + 1}: "
            failures.append(Failure("iob2_continuation", _token_source(s, i, cfg.format == "conll"),
                                    f"{where}I-{etype} follows {prev} (IOB2 opens entities with B-); change it "
                                    f"to B-{etype} or set data.invalid_iob2=repair"))
    # IOB1 opens entities with I-: if such openings outnumber B- tags, the scheme setting is wrong, not the data
    return failures, len(failures), len(failures) > n_begin


IOB1_HINT = "; most entities start with I-, so the file looks like IOB1: set data.scheme=iob1"


def validate_corpus(corpus: dict[str, list[Sentence]], cfg: DataConfig) -> ValidationReport:
    """Run every rule on the raw tags (in cfg.scheme) of all splits; the report passes when nothing failed."""
    splits = [s for s in SPLITS if s in corpus] + [s for s in corpus if s not in SPLITS]
    distinct = {t for sents in corpus.values() for s in sents for t in s.tags}
    well_formed = {t for t in distinct if is_well_formed(t, cfg.scheme)}
    train_types = {split_tag(t)[1] for s in corpus.get("train", []) for t in s.tags if t != "O" and t in well_formed}
    frames = {split: _frames(corpus[split], None if split == "train" else train_types, cfg) for split in splits}
    gx_results = run_gx(_suites(well_formed, train_types, cfg), frames, INDEX_COLUMNS)
    failures, counts = gx_failures(gx_results, lambda r, row, split: _message(r, row, split, cfg))

    warnings: list[str] = []
    metrics: dict[str, float] = {"invalid_iob2_count": 0.0}
    for split in splits:
        sentences = corpus[split]
        metrics[f"n_sentences_{split}"] = float(len(sentences))
        metrics[f"n_tokens_{split}"] = float(sum(len(s.tokens) for s in sentences))
        if not sentences:
            warnings.append(f"{split}: no sentences")
        if cfg.scheme != "iob2":
            continue
        bad, n_bad, looks_iob1 = _iob2_continuations(sentences, cfg)
        metrics["invalid_iob2_count"] += n_bad
        hint = IOB1_HINT if looks_iob1 else ""
        if n_bad and cfg.invalid_iob2 == "repair":
            warnings.append(f"{split}: {n_bad} I-X tag(s) open an entity after O or another type (first at "
                            f"{bad[0].source}); they will be repaired to B-X (data.invalid_iob2=repair){hint}")
        elif n_bad:
            failures += [Failure(f.rule, f.source, f.message + hint) for f in bad[:MAX_PER_RULE]]
            counts["iob2_continuation"] = counts.get("iob2_continuation", 0) + n_bad

    train_seqs = {tuple(s.tokens) for s in corpus.get("train", [])}
    test = corpus.get("test", [])
    share = sum(tuple(s.tokens) in train_seqs for s in test) / len(test) if test else 0.0
    metrics["test_in_train_share"] = share
    if share > 0.5:
        warnings.append(f"{share:.0%} of test sentences also occur verbatim in train; test scores will be optimistic")

    kept = capped(failures, counts, RULES, metrics)
    return ValidationReport(passed=not kept, failures=kept, warnings=warnings, metrics=metrics,
                            gx_results=gx_results, rules=RULES, unit="sentences")


def write_validated(corpus: dict[str, list[Sentence]], cfg: DataConfig, out: Path) -> None:
    """Canonical IOB2 `<split>.jsonl` and `labels.json` for the stages after validation."""
    canonical = {split: canonicalize(sentences, cfg) for split, sentences in corpus.items()}
    for split, sentences in canonical.items():
        write_split(sentences, out / f"{split}.jsonl")
    (out / "labels.json").write_text(json.dumps(label_list(canonical)))


def sample_train(corpus: dict[str, list[Sentence]], cfg: DataConfig) -> dict[str, list[Sentence]]:
    """The training split cut to `data.train_fraction` of its documents (nerflow.subsets), drawn with
    `data.sample_seed`; a file without -DOCSTART- markers (one document) is sampled by sentence. An entity type
    the sample loses is an error giving the counts."""
    from collections import Counter

    from nerflow import subsets

    if cfg.train_fraction >= 1.0:
        return corpus
    train = corpus["train"]
    documents = {s.doc for s in train}
    index = {id(s): i for i, s in enumerate(train)}
    group = (lambda s: s.doc) if len(documents) > 1 else (lambda s: index[id(s)])
    sample = subsets.by_group(train, group, cfg.train_fraction, cfg.sample_seed)

    def mentions(sentences: list[Sentence]) -> Counter:
        return Counter(t[2:] for s in sentences for t in s.tags if t.startswith(("B-", "S-", "U-")))

    unit = "documents" if len(documents) > 1 else "sentences"
    kept = len({group(s) for s in sample})
    error = subsets.too_few(cfg.train_fraction, cfg.sample_seed, unit, kept, len({group(s) for s in train}),
                            mentions(train), mentions(sample), "mentions")
    if error is not None:
        raise error
    return {**corpus, "train": sample}
