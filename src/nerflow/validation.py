"""Data validation, shared by every task type: the report, Great Expectations runs, failures that point at
`file:line`, and the standalone HTML page. What is checked is the task's (nerflow.ner.validate,
nerflow.textcat.validate): each builds small scalar frames and GX expectations tagged with a rule id; this module
runs them and turns GX's unexpected rows back into `Failure`s.
"""
from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

MAX_PER_RULE = 50            # failures kept per rule (all are counted in metrics["failures_<rule>"])


class ValidationFailed(ValueError):
    """The suite failed; the message lists each problem as `file:line: [rule] message`."""


@dataclass(frozen=True)
class Failure:
    rule: str       # one of the task's rules
    source: str     # "path:line" to fix
    message: str    # what is wrong and how to fix it


@dataclass
class ValidationReport:
    passed: bool
    failures: list[Failure]
    warnings: list[str]
    metrics: dict[str, float]
    gx_results: list[dict]
    rules: tuple[str, ...] = ()
    unit: str = "sentences"   # what `n_<unit>_<split>` counts: sentences, documents

    def summary(self, first: int | None = 5) -> str:
        """The headline, the first `first` problems (all kept ones with None), the warnings."""
        if self.passed:
            prefix = f"n_{self.unit}_"
            n = {k.removeprefix(prefix): int(v) for k, v in self.metrics.items() if k.startswith(prefix)}
            lines = [f"data validation passed: {n} {self.unit}, {len(self.warnings)} warning(s)"]
        else:
            lines = [self.headline(), *self.problem_lines(first)]
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])

    def problem_counts(self) -> dict[str, int]:
        return {r: int(self.metrics.get(f"failures_{r}", 0)) for r in self.rules}

    def headline(self) -> str:
        """`data validation failed: N problem(s) (rule: n, ...)`: every problem counted, listed or not."""
        counts = self.problem_counts()
        total = sum(counts.values()) or len(self.failures)
        return f"data validation failed: {total} problem(s) ({', '.join(f'{r}: {n}' for r, n in counts.items() if n)})"

    def problem_lines(self, first: int | None = None) -> list[str]:
        """`file:line: [rule] message` for the first `first` problems (None: every one kept), then `... and N more`
        for those counted but not listed (beyond `first`, or beyond the MAX_PER_RULE a report keeps per rule)."""
        total = sum(self.problem_counts().values()) or len(self.failures)
        shown = self.failures if first is None else self.failures[:first]
        lines = [f"{f.source}: [{f.rule}] {f.message}" for f in shown]
        if total > len(shown):
            why = "" if first is not None and len(self.failures) > first else \
                f" (a report keeps the first {MAX_PER_RULE} of each rule)"
            lines.append(f"... and {total - len(shown)} more{why}")
        return lines

    def to_json(self) -> dict:
        return asdict(self)


def gx_modules():
    """Great Expectations, imported quietly (its import costs seconds: only validation pays it)."""
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:  # GX logs store/datasource chatter at INFO; keep pipeline logs readable
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx
    import great_expectations.expectations as gxe

    # this module pins its own logger to INFO at import ("Created temporary directory ..." on every context)
    logging.getLogger("great_expectations.data_context.types.base").setLevel(gx_logger.level)
    return gx, gxe


def rule(name: str) -> dict:
    """Keyword arguments that tag an expectation with nerflow's rule id; the GX result carries it back."""
    return {"meta": {"rule": name}}


def run_gx(suites: dict[str, list], frames_by_split: dict[str, dict[str, Any]], index_columns: list[str]) -> list[dict]:
    """Run each suite (a list of GX expectations per frame kind) on that kind's frame of every split. One
    ephemeral context per call (fresh object, so names never clash between calls)."""
    gx, _ = gx_modules()
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars in pipeline logs
    datasource = ctx.data_sources.add_pandas("nerflow")
    definitions = {}
    for kind, expectations in suites.items():
        batch = datasource.add_dataframe_asset(kind).add_batch_definition_whole_dataframe("whole")
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"nerflow.{kind}", expectations=expectations))
        definitions[kind] = ctx.validation_definitions.add(gx.ValidationDefinition(name=kind, data=batch, suite=suite))
    results = []
    for split, frames in frames_by_split.items():
        for kind, df in frames.items():
            result = definitions[kind].run(
                batch_parameters={"dataframe": df}, run_id=RunIdentifier(run_name=f"{split}/{kind}"),
                # SUMMARY keeps the first MAX_PER_RULE bad rows with their source; a full list could be huge
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_PER_RULE,
                               "unexpected_index_column_names": [c for c in index_columns if c in df]})
            d = result.to_json_dict()
            d["meta"]["nerflow"] = {"split": split, "frame": kind}
            results.append(d)
    return results


def gx_failures(results: list[dict], message: Callable[[str, dict, str], str]) -> tuple[list[Failure], dict[str, int]]:
    """Failures (via `message(rule, row, split)`) and per-rule counts from GX results. A check GX could not run
    is a failure too: it must not read as "the data is fine"."""
    failures, counts = [], {}
    for d in results:
        split = d["meta"]["nerflow"]["split"]
        for res in d["results"]:
            name = res["expectation_config"]["meta"]["rule"]
            if res["exception_info"].get("raised_exception"):
                failures.append(Failure(name, split, f"GX could not run the check: "
                                                     f"{res['exception_info'].get('exception_message')}"))
                counts[name] = counts.get(name, 0) + 1
                continue
            counts[name] = counts.get(name, 0) + res["result"].get("unexpected_count", 0)
            for row in res["result"].get("partial_unexpected_index_list") or []:
                failures.append(Failure(name, row["source"], message(name, row, split)))
    return failures, counts


def capped(failures: list[Failure], counts: dict[str, int], rules: tuple[str, ...], metrics: dict[str, float]
           ) -> list[Failure]:
    """At most MAX_PER_RULE failures per rule, all splits together; the metrics keep the full counts."""
    kept: list[Failure] = []
    for name in rules:
        kept += [f for f in failures if f.rule == name][:MAX_PER_RULE]
        metrics[f"failures_{name}"] = float(counts.get(name, 0))
    return kept


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
