"""Data validation: check a raw corpus before anything is trained on it, and say where to fix each problem.

Checks that fit a column of scalars run as Great Expectations suites on small derived frames (one row per sentence,
per token, per entity type), so the GX results and Data Docs page are real artefacts of the run. Checks that need
sequence context or compare splits (IOB2 continuations, test/train overlap) are plain Python. Every failure points
at `path:line`, and for CoNLL files at the exact token line.
"""
from __future__ import annotations

import html
import logging
from dataclasses import asdict, dataclass
from typing import Any

from nerflow.config import DataConfig
from nerflow.data import SPLITS, Sentence
from nerflow.schemes import invalid_iob2_positions, is_well_formed, split_tag

MAX_PER_RULE = 50            # failures kept per rule (all are counted in metrics["failures_<rule>"])
RULES = ("sentence_not_empty", "token_not_blank", "tokens_tags_aligned", "tags_well_formed", "iob2_continuation",
         "sentence_length", "entity_types_in_train")


class ValidationFailed(ValueError):
    """The suite failed; the message lists each problem as `file:line: [rule] message`."""


@dataclass(frozen=True)
class Failure:
    rule: str       # one of RULES
    source: str     # "path:line" to fix
    message: str    # what is wrong and how to fix it


@dataclass
class ValidationReport:
    passed: bool
    failures: list[Failure]
    warnings: list[str]
    metrics: dict[str, float]
    gx_results: list[dict]

    def summary(self, first: int = 5) -> str:
        counts = {r: int(self.metrics.get(f"failures_{r}", 0)) for r in RULES}
        total = sum(counts.values()) or len(self.failures)
        if self.passed:
            n = {k[12:]: int(v) for k, v in self.metrics.items() if k.startswith("n_sentences_")}
            lines = [f"data validation passed: {n} sentences, {len(self.warnings)} warning(s)"]
        else:
            by_rule = ", ".join(f"{r}: {n}" for r, n in counts.items() if n)
            lines = [f"data validation failed: {total} problem(s) ({by_rule})"]
            lines += [f"{f.source}: [{f.rule}] {f.message}" for f in self.failures[:first]]
            if total > first:
                lines.append(f"... and {total - first} more")
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])

    def to_json(self) -> dict:
        return asdict(self)


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


def _run_gx(frames_by_split: dict[str, dict[str, Any]], well_formed: set[str], train_types: set[str],
            cfg: DataConfig) -> list[dict]:
    """One ephemeral context per call (fresh object, so names never clash between calls); one run per split+frame."""
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:  # GX logs store/datasource chatter at INFO; keep pipeline logs readable
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.row_conditions import Column

    # this module pins its own logger to INFO at import ("Created temporary directory ..." on every context)
    logging.getLogger("great_expectations.data_context.types.base").setLevel(gx_logger.level)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars in pipeline logs
    datasource = ctx.data_sources.add_pandas("nerflow")
    rule = lambda r: {"meta": {"rule": r}}  # noqa: E731 - the GX result carries the nerflow rule id back to us
    suites = {
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
    definitions = {}
    for kind, expectations in suites.items():
        batch = datasource.add_dataframe_asset(kind).add_batch_definition_whole_dataframe("whole")
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"nerflow.{kind}", expectations=expectations))
        definitions[kind] = ctx.validation_definitions.add(gx.ValidationDefinition(name=kind, data=batch, suite=suite))

    results = []
    for split, frames in frames_by_split.items():
        for kind, df in frames.items():
            index_columns = [c for c in ("source", "position", "token", "tag", "n_tokens", "n_tags") if c in df]
            result = definitions[kind].run(
                batch_parameters={"dataframe": df}, run_id=RunIdentifier(run_name=f"{split}/{kind}"),
                # SUMMARY keeps the first MAX_PER_RULE bad rows with their source; a full list could be huge
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_PER_RULE,
                               "unexpected_index_column_names": index_columns})
            d = result.to_json_dict()
            d["meta"]["nerflow"] = {"split": split, "frame": kind}
            results.append(d)
    return results


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
        return f"{where}token {row['token']!r} is empty or whitespace; remove it with its tag or fix the tokenization"
    if rule == "tags_well_formed":
        prefixes = "B-/I-/E-/S-" if cfg.scheme == "bioes" else "B-/I-"
        return (f"{where}tag {row['tag']!r} of token {row['token']!r} is not valid {cfg.scheme} (expected O or "
                f"{prefixes}TYPE); fix the tag or set data.scheme to the scheme the file uses")
    return (f"entity type {row['entity_type']!r} occurs in {split} but never in train, so the model cannot learn "
            "it; add train examples or rename/remove the type")


def _gx_failures(results: list[dict], cfg: DataConfig) -> tuple[list[Failure], dict[str, int]]:
    failures, counts = [], {}
    for d in results:
        split = d["meta"]["nerflow"]["split"]
        for res in d["results"]:
            rule = res["expectation_config"]["meta"]["rule"]
            if res["exception_info"].get("raised_exception"):  # a GX error must not read as "data is fine"
                failures.append(Failure(rule, split, f"GX could not run the check: "
                                                     f"{res['exception_info'].get('exception_message')}"))
                counts[rule] = counts.get(rule, 0) + 1
                continue
            counts[rule] = counts.get(rule, 0) + res["result"].get("unexpected_count", 0)
            for row in res["result"].get("partial_unexpected_index_list") or []:
                failures.append(Failure(rule, row["source"], _message(rule, row, split, cfg)))
    return failures, counts


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
    gx_results = _run_gx(frames, well_formed, train_types, cfg)
    failures, counts = _gx_failures(gx_results, cfg)

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

    kept: list[Failure] = []
    for rule in RULES:  # cap per rule, all splits together; the metrics keep the full counts
        kept += [f for f in failures if f.rule == rule][:MAX_PER_RULE]
        metrics[f"failures_{rule}"] = float(counts.get(rule, 0))
    return ValidationReport(passed=not kept, failures=kept, warnings=warnings, metrics=metrics,
                            gx_results=gx_results)


def render_html(report: ValidationReport) -> str:
    """One standalone page: nerflow's findings on top, then GX's own page for each validation run (in iframes,
    because each GX page is a complete HTML document). GX pages load their CSS from CDNs; offline they are plain."""
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResultSchema
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    esc = html.escape
    status = "passed" if report.passed else "FAILED"
    rows = "".join(f"<tr><td>{esc(f.source)}</td><td>{esc(f.rule)}</td><td>{esc(f.message)}</td></tr>"
                   for f in report.failures) or "<tr><td colspan='3'>none</td></tr>"
    warns = "".join(f"<li>{esc(w)}</li>" for w in report.warnings) or "<li>none</li>"
    metrics = "".join(f"<tr><td>{esc(k)}</td><td>{v:g}</td></tr>" for k, v in sorted(report.metrics.items()))
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>nerflow data validation: {status}</title>"
             "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
             "iframe{width:100%;height:80vh;border:1px solid #ccc}</style></head><body>",
             f"<h1>nerflow data validation: {status}</h1>",
             f"<h2>Failures ({len(report.failures)} shown)</h2><table><tr><th>source</th><th>rule</th>"
             f"<th>message</th></tr>{rows}</table>",
             f"<h2>Warnings</h2><ul>{warns}</ul>",
             f"<h2>Metrics</h2><table>{metrics}</table>"]
    for d in report.gx_results:
        label = "/".join(str(v) for v in d.get("meta", {}).get("nerflow", {}).values()) or d.get("suite_name", "")
        page = DefaultJinjaPageView().render(
            ValidationResultsPageRenderer().render(ExpectationSuiteValidationResultSchema().load(d)))
        parts.append(f"<h2>Great Expectations: {esc(label)}</h2><iframe srcdoc=\"{esc(page)}\"></iframe>")
    return "\n".join(parts + ["</body></html>"])
