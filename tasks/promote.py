"""Promotion stage: the model card on the new version, then the evidence gate for `promote.alias` (champion).

Both the challenger and the current champion are scored on this run's test split, each version's model folder
checked against the hash stored on it and loaded with nerflow's own code (tasks/champion.py, nerflow.scoring;
`promote.trust_unverified` lets through a version registered before hashes, or with pickled weights); the
decision, both models' per-class scores and the reason go to the MLflow run (promotion/comparison.json and .md),
onto the version (tags `nerflow.promotion`, `nerflow.reason`) and onto the Prefect flow run (a markdown artifact,
tasks/artifacts.py).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from nerflow import promotion, redact, task_types
from nerflow.config import PipelineConfig, resolved_dict
from nerflow.outputs import Promoted, Registered, Validated, write_fields
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import artifacts, champion, promote_handover, served_model, tracking
from nerflow.prefect_tasks.stage import RunContext

log = logging.getLogger("nerflow.promote")


def rules_of(cfg: PipelineConfig) -> promotion.GateRules:
    p = cfg.promote
    return promotion.GateRules(min_delta=p.min_delta, min_f1=p.min_f1, min_support=p.min_support,
                               max_type_drop=p.max_type_drop)


def model_card(cfg: PipelineConfig, metrics: dict, validated: Validated, registered: Registered, run_id: str,
               serving: list[str] = ()) -> str:
    """The version's description (Markdown, shown on its MLflow page)."""
    kind = task_types.get(cfg.task)
    classes = sorted(k.removeprefix("test/support_") for k in metrics if k.startswith("test/support_"))
    sizes = validated.sizes
    labels = json.loads((Path(validated.path) / "labels.json").read_text())
    rows = [f"| {t} | {int(metrics[f'test/support_{t}'])} | {metrics.get(f'val/best_f1_{t}', 0):.4f} | "
            f"{metrics[f'test/f1_{t}']:.4f} |" for t in classes]
    return redact.text("\n".join([
        f"# {registered.model_name} version {registered.version}", "",
        f"- task: {cfg.task}; base model: `{cfg.model.name_or_path}`",
        f"- data: hash `{validated.data_hash[:16]}`, {sizes['train']:,} / {sizes['validation']:,} / "
        f"{sizes['test']:,} {kind.unit} (train / validation / test), from `{cfg.data.dir}`",
        f"- labels: {', '.join(labels)}",
        f"- scores: validation F1 {metrics['val/best_f1']:.4f}, test F1 {metrics['test/f1']:.4f} ({kind.headline})",
        "", f"| {kind.class_word} | test support | val F1 | test F1 |", "|---|---|---|---|", *rows, "", *serving,
        f"Trained by MLflow run `{run_id}`. Reproduce: `nerflow rerun {run_id}` (exactly its resolved config, "
        "below), or save the config and `nerflow run CONFIG`.", "",
        "```yaml", yaml.safe_dump(redact.mapping(resolved_dict(cfg)), sort_keys=False).strip(), "```"]))[:19000]


def compute(ctx: RunContext, step: StagePlan, upstream: dict, out: Path) -> None:
    cfg, client = ctx.cfg, tracking.configure()
    validated, evaluated, registered = upstream["validate"], upstream["evaluate"], upstream["register"]
    name, version, alias = registered.model_name, str(registered.version), cfg.promote.alias
    if registered.new_version:
        client.update_model_version(name, version,
                                    description=model_card(cfg, evaluated.metrics, validated, registered, ctx.run_id,
                                                           upstream["export"].card_lines()
                                                           if "export" in upstream else []))
    split, scorer = Path(validated.path) / "test.jsonl", task_types.entry(cfg.task, "promote")
    handover = promote_handover.deployment_name() if cfg.promote.auto else None
    if handover:   # a missing deployment is one error before the gate writes anything
        promote_handover.check_exists(handover)
    decision = champion.gate(
        client, name, version, alias, rules_of(cfg), split, scorer.gold(scorer.examples(split)),
        data_passed=True, auto=cfg.promote.auto, approval=cfg.promote.mode == "approval",
        actor=champion.actor_name(), task=cfg.task,
        trust=cfg.promote.trust_unverified, trust_hint=served_model.TRUST_KEY, handover=handover,
        score_timeout_s=cfg.promote.score_timeout_s,
        evidence={"test_data_hash": validated.data_hash, "mlflow_run_id": ctx.run_id,
                  "prefect_flow_run_id": ctx.flow_run_id})
    verdict = client.get_model_version(name, version).tags.get(champion.DECISION_TAG)
    handed = handover is not None and verdict == promotion.HANDED_OVER
    moved = decision.accepted and cfg.promote.auto and not handed and \
        champion.alias_version(client, name, alias) == version
    outcome = {**promotion.decision_json(decision), "version": version, "alias": alias, "moved": moved,
               "auto": cfg.promote.auto, "mode": cfg.promote.mode, "model_name": name,
               "awaiting_approval": verdict == promotion.AWAITING and not moved}
    if outcome["awaiting_approval"]:   # the run ends here, successfully: nothing waits, no lock is held
        outcome["decision"] = promotion.AWAITING
    if handed:   # submitted after the gate let go of the promotion lock, which the promoter's run takes; not awaited
        flow_run, flow_run_id = promote_handover.submit(handover, name, version, alias)
        outcome.update(decision=promotion.HANDED_OVER, handed_to=handover, promote_flow_run=flow_run,
                       promote_flow_run_id=flow_run_id)
    (out / "comparison.json").write_text(json.dumps(outcome, indent=1))
    (out / "comparison.md").write_text(promotion.comparison_markdown(decision))
    write_fields(out, {"decision": outcome})


def record(ctx: RunContext, step: StagePlan, upstream: dict, output: Promoted) -> Promoted:
    client, out = tracking.configure(), Path(output.path)
    for name in ("comparison.json", "comparison.md"):
        client.log_artifact(ctx.run_id, str(out / name), "promotion")
    tracking.log_tags(client, ctx.run_id, {"promotion": output.decision["decision"],
                                           "promotion_reason": output.decision["reason"][:4900]})
    artifacts.publish_decision(ctx.cfg.registry.model_name, output)   # the comparison on the Prefect run page
    return output
