"""The task-type seam: what differs between token classification (NER) and text classification sits behind this one
interface, with one implementation per task type (`nerflow.ner`, `nerflow.textcat`). Everything else (config,
plan and keys, the stage graph, locks, the training loop, tracking, registration, promotion, schedules, the CLI)
is shared and knows no task: outside the two task packages, nothing imports a task module or names a task type but
this module (tests/unit/test_task_seam.py scans src/, tasks/ and flows/).

A task type is a small descriptor (`TASK` in `nerflow.<task>.task`) plus one entry module per stage, named in its
`entries` table and imported only by the stage that runs it, so a stage's code identity holds only its own task
code (nerflow.code_identity follows the entry of the stage it hashes). What each entry module provides:

- validate: `load_corpus(cfg.data)`, `validate_corpus(corpus, cfg.data) -> ValidationReport`,
  `write_validated(corpus, cfg.data, out)` (`<split>.jsonl` canonical splits and `labels.json`)
- tokenize: `tokenize_validated(tokenizer, validated, cfg.tokenize, out) -> stats` (one Arrow folder per split)
- train: `job_fields(cfg) -> dict` (what a training job needs beyond the shared fields),
  `train_job(job, on_metrics, should_stop)`
- evaluate: `evaluate_model(model_dir, validated, tokenized, cfg.evaluate, out) -> metrics` (`val/best_*`,
  `test/*`; `test/f1` is the headline)
- register: `servable() -> (python model, signature, input example)` of a registered version
- promote: the task's side of the served-scorer protocol (nerflow.scoring): `examples(split)`, `gold(examples)`,
  `load_scorer(folder) -> Scorer` (a verified model folder, loaded with nerflow's code), `gate_tables`, `hits`,
  `gold_count`
- predict: `load_predictor(folder) -> texts -> answers` for a model folder nerflow trained
- reference: `texts_of(split items) -> [(text, document)]`, `split_texts(validated, split)` (a canonical split) and
  `load_predictor` (the drift reference profiles the served model's answers: nerflow.drift_profile)
- explain: `load_explainer(folder) -> (text, steps) -> [nerflow.explain.Explanation]`, one per predicted entity or
  label (`nerflow explain`; the task's target and window are defined in its module)
- sample (NER only): `generate_corpus(folder, seed)`, the synthetic quickstart corpus

Stages hand each other folders with the same shape for every task: `validate` writes `<split>.jsonl` and
`labels.json`; `tokenize` one Arrow folder per split; `train` a Hugging Face model folder with `nerflow.json`;
`evaluate` `metrics.json` and its artifacts.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Protocol

IMPLEMENTATIONS = {"token-classification": "nerflow.ner.task", "text-classification": "nerflow.textcat.task"}
ALIASES = {"ner": "token-classification"}
DEFAULT = "token-classification"   # a config without `task` (and every config logged before task types)


class TaskType(Protocol):
    name: str                      # "token-classification" | "text-classification"
    unit: str                      # what one example is called in reports: "sentences", "texts"
    headline: str                  # what `test/f1` is: "micro F1 (strict IOB2)", "macro F1"
    class_word: str                # what a per-class row is: "entity type", "class"
    class_column: str              # the per-class column's header in the run summary: "type", "class"
    hit_key: str                   # what `nerflow compare` counts: "entities", "labels"
    config: type                   # the root config class (a nerflow.config.PipelineConfig)
    entries: dict[str, str]        # entry point -> the task's module that implements it (table above)
    empty_answer: list | None      # the answer to a text without a word, given unasked (None: ask the model)

    def answer_fields(self, answer: Any) -> dict:
        """One served answer as the fields of a `nerflow predict` output line."""

    def answer_counts(self, fields: dict) -> dict[str, int]:
        """What one output line counts towards a prediction run's metrics (`predict/<name>`)."""

    def describe_counts(self, counts: dict[str, int]) -> str:
        """The counts of a prediction run in words ("5 entities", "neg 3, pos 2")."""

    def answer_labels(self, fields: dict) -> tuple[list[str], float | None]:
        """What one output line predicts, as the drift checks count it (entity types, or labels), and how sure
        (None: nothing predicted)."""


def canonical(name: str | None) -> str:
    """The task type's name: `None` is the default, `ner` an alias; anything else unknown is a ValueError."""
    name = DEFAULT if name is None else ALIASES.get(name, name)
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"unknown task {name!r} (one of {', '.join(IMPLEMENTATIONS)})")
    return name


def get(name: str) -> TaskType:
    """The implementation of a task type, imported on first use."""
    return importlib.import_module(IMPLEMENTATIONS[canonical(name)]).TASK


def entry(name: str, point: str) -> ModuleType:
    """The task type's module for an entry point (a stage's name, or `predict`)."""
    kind = get(name)
    try:
        module = kind.entries[point]
    except KeyError:
        raise KeyError(f"{kind.name} has no entry {point!r} (entries: {', '.join(kind.entries)})") from None
    return importlib.import_module(module)


def config_type(name: str) -> type:
    return get(name).config


def config_types() -> dict[str, type]:
    """Every task type's config class (only needed to explain a key the configured task does not read)."""
    return {name: get(name).config for name in IMPLEMENTATIONS}
