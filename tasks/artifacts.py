"""Stage results and the gate's decision as Prefect artifacts of the flow run: the run's page in the Prefect UI
(Artifacts tab, and the task run of each stage) then says what each stage did and what the gate decided, as the
summary of `nerflow run` does on the terminal and the MLflow run does in full.

One markdown artifact per stage result (reused or computed, its key, its summary lines) and one for the promotion
decision (the gate's comparison table, decision and reason). Keys name the registered model and the stage, so the
Artifacts page keeps one latest entry per model and stage. Best effort: the run's record is MLflow's; an artifact
the Prefect API refuses is a warning in the log, never a failed stage.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from nerflow import promotion, redact, task_types
from nerflow.outputs import Promoted, StageOutput

log = logging.getLogger("nerflow.artifacts")
SHORT_FIELD = 120   # a stage's own fields are listed when their JSON is this short (sizes, hashes, a version)


def artifact_key(model_name: str, what: str) -> str:
    """A valid Prefect artifact key (lowercase letters, digits, dashes) from the model name and what it shows."""
    return re.sub(r"[^a-z0-9]+", "-", f"{model_name}-{what}".lower()).strip("-")


def stage_markdown(output: StageOutput, task: str) -> str:
    """The stage's result: reused or computed, its key, its short fields, its lines of the run summary."""
    how = "reused from the stage cache (inputs, settings and code unchanged)" if output.reused else \
        "computed by this run"
    lines = [f"### Stage `{output.stage}`: {'reused' if output.reused else 'computed'}", "",
             f"- {how}", f"- key: `{output.key}`"]
    for name, value in output.fields().items():
        text = json.dumps(value, default=str)
        if len(text) <= SHORT_FIELD:
            lines.append(f"- {name}: `{text}`")
    summary = [line for line in output.summary_lines(task_types.get(task)) if line.strip()]
    if summary:   # fixed-width lines (the evaluation table): a code block keeps their columns
        lines += ["", "```", *summary, "```"]
    return "\n".join(lines) + "\n"


def decision_markdown(output: Promoted) -> str:
    """The gate's decision: which version for which alias, whether the alias moved, the comparison it rests on."""
    d = output.decision
    moved = "the alias moved to it" if d["moved"] else \
        f"awaiting approval: {promotion.approval_hint(d['model_name'], d['version'])}" if d.get("awaiting_approval") \
        else f"handed to {d['handed_to']} (flow run {d.get('promote_flow_run')}): the promoter's worker moves it" \
        if d.get("handed_to") else "not moved (promote.auto is false)" if d["accepted"] else \
        "the alias stays where it was"
    # promotion.comparison_markdown(decision): the per-type table, then the decision and its reason
    comparison = (Path(output.path) / "comparison.md").read_text()
    return "\n".join([f"### Promotion of version {d['version']} to @{d['alias']}: {d['decision']}", "",
                      f"- {moved}", "", comparison])


def publish_stage(model_name: str, output: StageOutput, task: str) -> None:
    _publish(artifact_key(model_name, output.stage), lambda: stage_markdown(output, task),
             f"{output.stage}: {'reused' if output.reused else 'computed'}")


def publish_decision(model_name: str, output: Promoted) -> None:
    if output.decision:
        _publish(artifact_key(model_name, "promotion"), lambda: decision_markdown(output),
                 f"promotion: {output.decision['decision']} for @{output.decision['alias']}")


def publish_lines(name: str, what: str, lines: list[str]) -> None:
    """A command's fixed-width result (a study's best trial against the defaults, a learning curve's table) on its
    flow run, as the terminal shows it."""
    _publish(artifact_key(name, what), lambda: "\n".join([f"### {what}: {name}", "", "```", *lines, "```"]) + "\n",
             f"{what} {name}")


def _publish(key: str, markdown, description: str) -> None:
    """Create the artifact on the current flow run (and task run); outside one (a stage called by a test or
    script without Prefect) there is nothing to attach it to."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    try:
        create_markdown_artifact(markdown=redact.text(markdown()), key=key, description=description)
    except Exception as e:   # whatever goes wrong here must not fail the stage whose result it shows
        log.warning("could not write the Prefect artifact %r (the run's record in MLflow is complete): %s", key, e)


def drift_markdown(check, link: str | None = None) -> str:
    """A drift check (flows/drift_check.py): each check's verdict, statistic and p-value, the decision and its rule,
    where the report and the texts to label are."""
    r = check.record
    rows = ["| check | verdict | statistic | p-value | level |", "|---|---|---|---|---|"]
    for c in r["checks"]:
        if c["p_value"] is None:
            rows.append(f"| {c['name']} | not run | | | {c['detail'].get('reason', '')} |")
            continue
        rows.append(f"| {c['name']} | {'**DRIFT**' if c['drift'] else 'ok'} | {c['statistic']:.4g} | "
                    f"{c['p_value']:.4g} | {c['alpha']:.4g} |")
    run = r.get("mlflow_run_id")
    where = [f"- report: MLflow run `{run}`, artifacts `drift/report.html` and `drift/report.json`"] if run else []
    if link:
        where.append(f"- open it: {link}")
    if check.labelling and run:
        where.append(f"- {len(check.labelling)} texts to label first: `runs:/{run}/labelling/texts-to-label.jsonl`")
    return "\n".join([f"### Drift check of {r['model']}: {'DRIFT' if r['drift'] else 'no drift'}", "",
                      f"- {r['texts']} texts from `{check.input_label}` against {r['reference_texts']} reference "
                      f"texts", f"- rule: {r['rule']}", *where, "", *rows]) + "\n"


def publish_drift(model_name: str, check, link: str | None = None) -> None:
    _publish(artifact_key(model_name, "drift"), lambda: drift_markdown(check, link),
             f"drift check: {'drift' if check.record['drift'] else 'no drift'}")


def publish_labelling(model_name: str, said: str, batch: str | None) -> None:
    """The retraining run a drift event started, with no new labelled data: what to label, on its flow run."""
    lines = ["### Drift detected, no new labelled data", "", said]
    if batch:
        lines += ["", f"Download: `mlflow artifacts download --artifact-uri {batch}` (JSON lines: the text, what the "
                      "champion predicted, how sure it was, how far into the drifted region it lies)"]
    _publish(artifact_key(model_name, "labelling"), lambda: "\n".join(lines) + "\n", "texts to label")
