"""The task-type seam: what differs between token classification (NER) and text classification sits behind this
one interface, with one implementation per task type (`nerflow.ner.task`, `nerflow.textcat.task`). Everything
else (config, plan and cache keys, locks, the training loop, tracking, registration, promotion, schedules) is
shared and knows no task: no shared module imports a task module (tests/unit/test_task_seam.py holds that).

Stages hand each other folders with the same shape for every task: `validate` writes `<split>.jsonl` canonical
splits and `labels.json`; `tokenize` writes one Arrow folder per split; `train` a Hugging Face model folder with
`nerflow.json`; `evaluate` `metrics.json` and its artifacts.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

from nerflow.config import DataConfig, PipelineConfig, TokenizeConfig
from nerflow.scoring import LegacyRequest
from nerflow.validation import ValidationReport

IMPLEMENTATIONS = {"token-classification": "nerflow.ner.task", "text-classification": "nerflow.textcat.task"}


class TaskType(Protocol):
    name: str                      # "token-classification" | "text-classification"
    unit: str                      # what one example is called in reports: "sentences", "texts"
    headline: str                  # what `test/f1` is: "micro F1 (strict IOB2)", "macro F1"
    class_word: str                # what a per-class row is: "entity type", "class"
    keys: dict[str, frozenset[str]]   # per config section, the keys this task reads: only those enter stage keys
    modules: dict[str, list[str]]  # per stage, this task's own modules (hashed into the stage's key)
    trainer: str                   # the module whose train_job(job, on_metrics, should_stop) trains it

    def data_fingerprint(self, cfg: DataConfig) -> str:
        """A content hash of the configured data (what the validate key hashes)."""

    def load_corpus(self, cfg: DataConfig) -> dict[str, list]:
        """The raw splits, as read (and split) from the configured data."""

    def validate(self, corpus: dict[str, list], cfg: DataConfig) -> ValidationReport:
        """The data checks (Great Expectations); the report passes when nothing failed."""

    def write_validated(self, corpus: dict[str, list], cfg: DataConfig, out: Path) -> None:
        """Canonical `<split>.jsonl` and `labels.json` for the stages after validation."""

    def split_sizes(self, validated: Path) -> dict[str, int]:
        """Examples per split of a validated folder."""

    def tokenize(self, tokenizer, validated: Path, cfg: TokenizeConfig, out: Path) -> dict[str, float]:
        """Model inputs per split into `out/<split>`; returns the stats logged as `tokenize/*`."""

    def job(self, cfg: PipelineConfig) -> dict[str, Any]:
        """What a training job needs beyond the shared fields (nerflow.launch)."""

    def evaluate(self, model_dir: Path, validated: Path, tokenized: Path, cfg: PipelineConfig, out: Path
                 ) -> dict[str, float]:
        """Scores on validation and test (`val/best_*`, `test/*`; `test/f1` is the headline), artifacts in `out`."""

    def servable(self) -> tuple[Any, Any, list[str]]:
        """(the MLflow PythonModel, its signature, an input example) of a registered version."""

    # The served-scorer protocol (nerflow.scoring): what the gate and `nerflow compare` need from the task. The
    # models themselves implement nerflow.scoring.Scorer; these four read the data and speak to older versions.
    def examples(self, split: Path) -> list[dict]:
        """The examples of a canonical split as the task reads them (its JSON lines, as dicts): what a Scorer
        predicts."""

    def gold(self, examples: list[dict]) -> list:
        """Gold labels of those examples, in the shape of a Scorer's predictions (tags per token, labels per text)."""

    def legacy_request(self, examples: list[dict]) -> LegacyRequest:
        """How to ask a version registered before the protocol (no `predict_examples`): its `predict` input and
        params, and where its python model keeps its label set."""

    def from_legacy(self, examples: list[dict], answers: list) -> list:
        """Such a version's served answers to `legacy_request`, as predictions in the task's label space."""

    def gate_tables(self, gold: list, scored: dict, versions: tuple[str, str | None]
                    ) -> tuple[dict, dict | None, tuple | None]:
        """The promotion gate's score tables of (challenger, champion), from their served predictions, and
        tables restricted to the classes both know when their label sets differ (nerflow.promotion.decide)."""

    def predict_fields(self, result) -> dict:
        """One served answer as the fields of a `nerflow predict` output line."""

    hit_key: str                   # what `nerflow compare` counts: "entities", "labels"

    def hits(self, gold: list, served: dict) -> set:
        """The gold items (entities, document labels) a version's served predictions got right."""

    def gold_count(self, gold: list) -> int:
        """How many gold items there are."""


def get(name: str) -> TaskType:
    """The implementation of a task type, imported on first use."""
    try:
        module = IMPLEMENTATIONS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r} (one of {', '.join(IMPLEMENTATIONS)})") from None
    return importlib.import_module(module).TASK
