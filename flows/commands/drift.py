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
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from nerflow.config import ConfigError
from nerflow.flows.errors import EXIT_DRIFT


def documents(source: str) -> tuple[list[dict], str]:
    """The texts to check and how to name their source: a file, standard input, or a folder's files."""
    from nerflow.capture import capture_files, read_captured_documents
    from nerflow.data import DataError
    from nerflow.documents import decode, parse_documents, read_documents

    path = Path(source)
    if source != "-" and path.is_dir() and capture_files(path):   # a capture folder: oldest file first
        docs, label = read_captured_documents(path), f"{source} ({len(capture_files(path))} capture files)"
    elif source != "-" and path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix in (".jsonl", ".txt")),
                       key=lambda p: (p.stat().st_mtime, p.name))
        if not files:
            raise DataError(f"{source}: no .jsonl or .txt file in this folder")
        docs = [d for f in files for d in parse_documents(decode(f.read_bytes(), str(f)), str(f))]
        label = f"{source} ({len(files)} files)"
    else:
        docs, label = read_documents(source), source
    texts = [d for d in docs if d["text"].strip()]
    if not texts:
        raise DataError(f"{label}: no text to check (empty input)")
    return texts, label


def settings(args: argparse.Namespace, client, version):
    """The config whose `monitor.*` (and data, for a reference) apply: --config, else the version's own."""
    from nerflow.config import load_config
    from nerflow.prefect_tasks import monitoring

    if args.config is not None:
        return load_config(args.config, args.overrides)
    if version.run_id:
        return monitoring.resolved_config(client, version.run_id, args.overrides)
    raise ConfigError(f"{args.model_uri}: a local folder has no run whose config names its validation data; give "
                      "the config it was trained with: --config FILE")


def reference(args, client, version, cfg, folder: Path, predict, kind, tmp: Path) -> tuple[dict, dict, list[str]]:
    """(reference profile, what it is, warnings): the version's stored one, else computed from its own config and
    kept on its run; with --config, computed from that config's validation split and kept nowhere."""
    from nerflow import drift_profile
    from nerflow.prefect_tasks import monitoring

    warnings: list[str] = []
    own = args.config is None                  # the version's own config: its reference is stored, or kept
    stored = monitoring.stored_reference(client, version.run_id, tmp / "stored") if own and version.run_id else None
    if stored is None:
        print(f"{args.model_uri}: " + ("no reference profile yet: profiling the validation split of its own config "
                                       "once" if own else f"profiling the validation split of {args.config}"),
              file=sys.stderr)
        stored = tmp / "reference"
        bar = progress_bar("reference")
        try:
            drift_profile.reference_from_config(cfg, folder, predict, kind, stored,
                                                bar.update if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        if own and version.run_id and not args.no_track:
            warnings += [w for w in [monitoring.keep_reference(client, version.run_id, stored)] if w]
    profile, about = drift_profile.load(stored, "reference")
    if (stored / "holdout.npz").is_file():
        holdout, held = drift_profile.load(stored, "holdout")
        about["holdout"] = (holdout, held["text_documents"])
    return profile, about, warnings


def cmd_drift(args: argparse.Namespace) -> int:
    from nerflow import drift, drift_calibration, drift_profile, drift_report
    from nerflow.flows.commands.predict import load_folder, verified_folder
    from nerflow.prefect_tasks import monitoring, served_model, tracking

    docs, label = documents(args.input)         # bad input fails before any model or server is asked
    started = time.perf_counter()
    client = tracking.configure()
    version = monitoring.version_of(client, args.model_uri)
    cfg = settings(args, client, version)
    if len(docs) < cfg.monitor.min_texts:
        raise ConfigError(f"{label}: {len(docs)} texts; a check needs at least monitor.min_texts = "
                          f"{cfg.monitor.min_texts}")
    with tempfile.TemporaryDirectory(prefix="nerflow-drift-") as tmp_name, \
            verified_folder(args.model_uri, args.trust) as (folder, what):
        tmp = Path(tmp_name)
        with served_model.quiet_loading():
            predict, kind = load_folder(folder, what)
            ref, about, warnings = reference(args, client, version, cfg, folder, predict, kind, tmp)
            if about.get("task", kind.name) != kind.name:
                raise ConfigError(f"{what}: its reference was profiled for {about['task']}, the model is {kind.name}")
            bar = progress_bar("texts", len(docs))
            try:
                batch = drift_profile.profile_texts([d["text"] for d in docs], folder, predict, kind,
                                                    cfg.monitor.batch_size, bar.update if bar is not None else None)
            finally:
                if bar is not None:
                    bar.close()
        m = cfg.monitor
        if "holdout" in about:    # calibrated on hold-out batches drawn by document (nerflow.drift_calibration)
            holdout, holdout_docs = about["holdout"]
            decision = drift_calibration.assess(ref, holdout, holdout_docs, batch, alpha=m.alpha,
                                                resamples=m.holdout_batches, seed=cfg.seed,
                                                bandwidth=about.get("bandwidth"),
                                                reference_docs=about.get("text_documents"))
        else:                     # no hold-out (every validation document is in the reference): permutation tests
            decision = drift.assess(ref, batch, alpha=m.alpha, permutations=m.permutations, seed=cfg.seed,
                                    bandwidth=about.get("bandwidth"))
            decision = dataclasses.replace(decision, rule=f"{decision.rule}; permutation tests, which assume the "
                                           "texts exchangeable: the reference has no hold-out to calibrate on")
        record = drift_report.summary(decision, what, len(docs), len(ref["labels"]),
                                      time.perf_counter() - started)
        report = Path(args.report) if args.report else tmp / "report"
        drift_report.write(report, record, drift_report.html(decision, ref, batch, what))
        if not args.no_track:
            record["mlflow_run_id"] = monitoring.log_check(client, args.model_uri, version, record, report, label)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        sys.stdout.write(json.dumps(record) + "\n")
    else:
        sys.stdout.write("\n".join(drift_report.lines(decision, what, len(docs), len(ref["labels"]))) + "\n")
    sys.stdout.flush()
    return EXIT_DRIFT if args.fail_on_drift and decision.drift else 0


def progress_bar(unit: str, total: int | None = None):
    """A bar on stderr, on a terminal only (a pipe or a log file gets none)."""
    if not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, dynamic_ncols=True, file=sys.stderr, leave=False)


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
