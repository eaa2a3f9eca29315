"""`nerflow drift MODEL_URI --input FILE|DIR|- [--json] [--fail-on-drift] [--config FILE] [KEY=VALUE ...]`: do
these texts still look like what the version was validated on?

The texts (plain text or JSON lines with `text`, as `nerflow predict` reads them; a folder: every `*.jsonl` / `*.txt`
in it, oldest first, e.g. a capture folder) are profiled with the version's own encoder, tokenizer and served
predictor (nerflow.drift_profile) and compared with its reference profile (nerflow.drift: each check with its
statistic, p-value and level; one decision by the rule in `monitor.*`). The reference is the version's
(tasks/monitoring.py: logged on its run, computed once from its resolved config when missing). The report goes to
MLflow, a run in the experiment `nerflow-monitoring` (`--no-track`: not), and to `--report DIR` when given.
docs/monitoring.md has the checks and their defaults; docs/cli.md the output formats.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nerflow.flows.errors import EXIT_DRIFT


def cmd_drift(args: argparse.Namespace) -> int:
    from nerflow.flows import drift_check

    check = drift_check.run(args.model_uri, args.input, args.overrides, config=args.config,
                            report=Path(args.report) if args.report else None, track=not args.no_track,
                            trust=args.trust)
    for warning in check.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        sys.stdout.write(json.dumps(check.record) + "\n")
    else:
        lines = list(check.lines)
        if check.labelling and check.mlflow_run_id:   # before the decision, which stays the last line
            lines.insert(-1, f"{len(check.labelling)} texts to label first: runs:/{check.mlflow_run_id}/"
                             "labelling/texts-to-label.jsonl")
        sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    return EXIT_DRIFT if args.fail_on_drift and check.decision.drift else 0


def add_parsers(sub) -> None:
    d = sub.add_parser("drift", help="do these texts still look like what the model was validated on?",
                       description="compare a batch of unlabelled texts with the version's reference profile "
                                   "(embeddings in its own encoder, input descriptors, predictions): each check's "
                                   "statistic, p-value and level, one decision (docs/monitoring.md)")
    d.add_argument("model_uri", metavar="MODEL_URI",
                   help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/model or a local model folder")
    d.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. monitor.alpha=0.01")
    d.add_argument("--input", required=True, metavar="FILE|DIR",
                   help="plain text (a text per line) or JSON lines with `text`; a folder: its .jsonl/.txt files "
                        "(a capture folder); `-`: standard input")
    d.add_argument("--json", action="store_true", help="one JSON object on stdout: drift, rule, every check")
    d.add_argument("--fail-on-drift", action="store_true",
                   help=f"exit {EXIT_DRIFT} when drift is found (for CI and cron)")
    d.add_argument("--config", type=Path, metavar="FILE",
                   help="the config the model was trained with (needed for a local folder; default: the version's "
                        "own resolved config)")
    d.add_argument("--report", metavar="DIR", help="also write report.json and report.html into DIR")
    d.add_argument("--no-track", action="store_true",
                   help="log nothing to MLflow (no monitoring run, the computed reference is not kept)")
    d.add_argument("--trust", action="store_true",
                   help="load a model whose files nothing vouches for (as `nerflow predict --trust`)")
    d.set_defaults(func=cmd_drift)
