"""One drift check of a batch of texts against a version's reference: what `nerflow drift` (flows/commands/drift.py)
prints and the monitoring flow (flows/monitor_flow.py) runs on a schedule.

The texts are profiled with the version's own encoder, tokenizer and served predictor (nerflow.drift_profile) and
compared with its reference profile (nerflow.drift_calibration: each check with its statistic, p-value and level;
one decision by the rule in `monitor.*`). The reference is the version's (tasks/monitoring.py: logged on its run,
computed once from its resolved config when missing). When drift is found, the texts to label first
(nerflow.labelling: in the drifted region, least sure, spread out) go with the report: `labelling/texts-to-label.jsonl`
on the monitoring run.
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from nerflow.config import ConfigError


@dataclass
class Check:
    """What one check found, and where it was logged."""

    decision: object                   # nerflow.drift.Decision
    record: dict                       # the `--json` object
    lines: list[str]                   # the terminal report
    version: object                    # tasks/monitoring.Version
    input_label: str
    labelling: list[dict] = field(default_factory=list)   # the texts to label first (drift found), else empty
    warnings: list[str] = field(default_factory=list)
    mlflow_run_id: str | None = None


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


def settings(model_uri: str, overrides: list[str], config: Path | None, client, version):
    """The config whose `monitor.*` (and data, for a reference) apply: `config`, else the version's own."""
    from nerflow.config import load_config
    from nerflow.prefect_tasks import monitoring

    if config is not None:
        return load_config(config, overrides)
    if version.run_id:
        return monitoring.resolved_config(client, version.run_id, overrides)
    raise ConfigError(f"{model_uri}: a local folder has no run whose config names its validation data; give "
                      "the config it was trained with: --config FILE")


def reference(model_uri: str, config: Path | None, track: bool, client, version, cfg, folder: Path, predict, kind,
              tmp: Path) -> tuple[dict, dict, list[str]]:
    """(reference profile, what it is, warnings): the version's stored one, else computed from its own config and
    kept on its run; with `config`, computed from that config's validation split and kept nowhere."""
    from nerflow import drift_profile
    from nerflow.prefect_tasks import monitoring

    warnings: list[str] = []
    own = config is None                  # the version's own config: its reference is stored, or kept
    stored = monitoring.stored_reference(client, version.run_id, tmp / "stored") if own and version.run_id else None
    if stored is None:
        print(f"{model_uri}: " + ("no reference profile yet: profiling the validation split of its own config "
                                  "once" if own else f"profiling the validation split of {config}"), file=sys.stderr)
        stored = tmp / "reference"
        bar = progress_bar("reference")
        try:
            drift_profile.reference_from_config(cfg, folder, predict, kind, stored,
                                                bar.update if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        if own and version.run_id and track:
            warnings += [w for w in [monitoring.keep_reference(client, version.run_id, stored)] if w]
    profile, about = drift_profile.load(stored, "reference")
    if (stored / "holdout.npz").is_file():
        holdout, held = drift_profile.load(stored, "holdout")
        about["holdout"] = (holdout, held["text_documents"])
    about["training"] = drift_profile.load_training(stored)     # None for a reference written before it existed
    return profile, about, warnings


def run(model_uri: str, source: str, overrides: list[str], *, config: Path | None = None, report: Path | None = None,
        track: bool = True, trust: bool = False, finish_run: bool = True) -> Check:
    """Check the texts of `source` against the version `model_uri` names. Bad input raises before any model or
    server is asked. With `track`, the check is a run in the monitoring experiment (left running when not
    `finish_run`: the monitoring flow ends it once its event is out)."""
    from nerflow import drift, drift_calibration, drift_profile, drift_report
    from nerflow.flows.commands.predict import load_folder, verified_folder
    from nerflow.prefect_tasks import monitoring, served_model, tracking

    if report is not None and report.exists() and not report.is_dir():
        raise ConfigError(f"--report {report}: a file, not a folder (report.json and report.html go into a folder)")
    docs, label = documents(source)
    started = time.perf_counter()
    client = tracking.configure()
    version = monitoring.version_of(client, model_uri)
    cfg = settings(model_uri, overrides, config, client, version)
    if len(docs) < cfg.monitor.min_texts:
        raise ConfigError(f"{label}: {len(docs)} texts; a check needs at least monitor.min_texts = "
                          f"{cfg.monitor.min_texts}")
    with tempfile.TemporaryDirectory(prefix="nerflow-drift-") as tmp_name, \
            verified_folder(model_uri, trust) as (folder, what):
        tmp = Path(tmp_name)
        with served_model.quiet_loading():
            predict, kind = load_folder(folder, what)
            ref, about, warnings = reference(model_uri, config, track, client, version, cfg, folder, predict, kind,
                                             tmp)
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
                                                reference_docs=about.get("text_documents"),
                                                pool=about.get("training"))
        else:                     # no hold-out (every validation document is in the reference): permutation tests
            decision = drift.assess(ref, batch, alpha=m.alpha, permutations=m.permutations, seed=cfg.seed,
                                    bandwidth=about.get("bandwidth"))
            decision = dataclasses.replace(decision, rule=f"{decision.rule}; permutation tests, which assume the "
                                           "texts exchangeable: the reference has no hold-out to calibrate on")
        to_label = texts_to_label(decision, docs, batch, ref, about, m.labelling_batch) if decision.drift else []
        record = drift_report.summary(decision, what, len(docs), len(ref["labels"]), time.perf_counter() - started)
        record["labelling_texts"] = len(to_label)
        folder_out = report if report is not None else tmp / "report"
        drift_report.write(folder_out, record, drift_report.html(decision, ref, batch, what))
        check = Check(decision, record, drift_report.lines(decision, what, len(docs), len(ref["labels"])), version,
                      label, to_label, warnings)
        if track:
            check.mlflow_run_id = monitoring.log_check(client, model_uri, version, record, folder_out, label,
                                                       labelling=to_label, finish=finish_run)
            record["mlflow_run_id"] = check.mlflow_run_id
    return check


def texts_to_label(decision, docs: list[dict], batch: dict, ref: dict, about: dict, n: int) -> list[dict]:
    """The JSON lines of the labelling batch (nerflow.labelling), with the embedding check's own kernel width."""
    from nerflow import labelling
    from nerflow.two_sample import median_bandwidth

    embedding = next((c for c in decision.checks if c.name == "embedding"), None)
    bandwidth = (embedding.detail.get("bandwidth") if embedding is not None else None) or about.get("bandwidth") \
        or median_bandwidth(ref["embeddings"])
    rows = labelling.choose(batch, ref, n, float(bandwidth))
    return labelling.records(docs, batch, rows, labelling.witness(batch["embeddings"], ref["embeddings"],
                                                                  float(bandwidth)))


def progress_bar(unit: str, total: int | None = None):
    """A bar on stderr, on a terminal only (a pipe or a log file gets none)."""
    if not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, dynamic_ncols=True, file=sys.stderr, leave=False)
