"""The served-scorer protocol: how the promotion gate (and `nerflow compare`) scores a registered version exactly as
it is served, on the same inputs the evaluate stage scores.

A model that speaks the protocol (`Scorer`) takes the examples *as the task reads them*: the dicts of a canonical
split's JSON lines (NER `{"tokens", "tags", "doc", "source"}`, text classification `{"text", "labels", "source"}`),
and answers in the task's label space: one IOB2 tag per token (NER), the list of predicted labels per text (text
classification). It also names its label set and whether one example may carry several labels. The in-process
predictors and the served pyfunc classes of both task types implement it; nothing here knows which task it scores.

`score_served` runs each version in a fresh `python -c STUB` process: a process that has imported nerflow already
would ignore the model's own bundled code (MLflow puts `code_paths` on sys.path, but `nerflow` would then come from
sys.modules), so an older version would be scored with today's windows and decoding. Versions registered before
the protocol existed have no `predict_examples`; the stub then asks their ordinary `predict` with a request the task
type prepared (`LegacyRequest`), and the task type turns those answers back into its label space in this process.
The task type's side of the protocol is its `promote` entry module (nerflow.task_types).

`WarmScorers` starts such processes ahead of need (the pipeline does, while the stages before promote run): each
imports the serving libraries (mlflow.pyfunc, torch, transformers; never nerflow), then waits for its one request on
stdin and goes on exactly as a fresh process would. Loading and scoring a small model then takes about a second
instead of the ~8 s of imports.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Scorer(Protocol):
    """What a model answers the gate: predictions for examples as the task reads them, in its label space."""

    labels: list[str]       # the label set it predicts from (NER: IOB2 tags; texts: class names)
    multi_label: bool       # several labels per example may be predicted (NER: False, one tag per token)

    def predict_examples(self, examples: list[dict]) -> list:
        """One prediction per example: a list of IOB2 tags, one per token (NER); a list of labels (texts)."""


@dataclass(frozen=True)
class LegacyRequest:
    """How to ask a version registered before the protocol: its ordinary `predict(inputs, params=params)`, and where
    its python model keeps its label set. The paths are attributes (or dict keys) from the unwrapped python model,
    e.g. "predictor.labels": data the stub follows, so the stub itself names no task."""

    inputs: list
    params: dict | None = None
    labels_at: str = "labels"
    multi_label_at: str | None = None     # None: one label per item (False)


# Run as `python -c STUB URI EXAMPLES REQUEST OUT` with an empty working directory, or as `python -c STUB` (warm:
# the same four as one JSON line on stdin; end of input: nothing to do). It must not import nerflow before
# load_model: the model's pyfunc imports nerflow from the model's own bundled copy.
STUB = '''
import json
import sys

import mlflow.pyfunc

if len(sys.argv) > 1:
    uri, examples_path, request_path, out_path = sys.argv[1:5]
else:   # warm: what any served transformers model imports, then wait for the request
    import torch  # noqa: F401
    import transformers.modeling_utils  # noqa: F401

    line = sys.stdin.readline()
    if not line.strip():
        sys.exit(0)
    uri, examples_path, request_path, out_path = json.loads(line)
model = mlflow.pyfunc.load_model(uri)
python_model = model.unwrap_python_model()


def attribute(path):
    value = python_model
    for part in path.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


if hasattr(python_model, "predict_examples"):
    with open(examples_path, encoding="utf-8") as f:
        examples = [json.loads(line) for line in f if line.strip()]
    out = {"protocol": "examples", "labels": list(python_model.labels),
           "multi_label": bool(python_model.multi_label),
           "pred": python_model.predict_examples(examples) if examples else []}
else:   # registered before the protocol: its ordinary predict, with the request the task type prepared
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    inputs = request["inputs"]
    answers = model.predict(inputs, params=request["params"]) if inputs else []
    multi_at = request["multi_label_at"]
    out = {"protocol": "legacy", "labels": list(attribute(request["labels_at"])),
           "multi_label": bool(attribute(multi_at)) if multi_at else False, "answers": list(answers)}
with open(out_path, "w", encoding="utf-8") as f:
    json.dump(out, f)
'''

QUIET = {"PYTHONWARNINGS": "ignore", "TRANSFORMERS_VERBOSITY": "error", "MLFLOW_LOGGING_LEVEL": "WARNING"}


class WarmScorers:
    """`count` scorer processes started now, each used for one request later (`take`) and then gone; those not
    taken are killed by `close` (a process this object started and holds). A process that died warming up is
    passed over: the caller then starts a fresh one, whose error it reports."""

    def __init__(self, count: int, env: dict[str, str] | None = None):
        self.dir = tempfile.TemporaryDirectory(prefix="nerflow-warm-")   # empty: nothing importable from cwd
        self.extra_env = dict(env or {})
        self.procs = [subprocess.Popen([sys.executable, "-c", STUB], cwd=self.dir.name,
                                       env={**os.environ, **QUIET, **self.extra_env},
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       text=True) for _ in range(count)]

    def take(self, env: dict[str, str]) -> subprocess.Popen | None:
        """A waiting process started with these environment settings (`env` as given to both), or None. The rest of
        the environment is this process's at start (imports since may add variables such as KMP_*: not ours)."""
        if env != self.extra_env:
            return None
        while self.procs:
            proc = self.procs.pop(0)
            if proc.poll() is None:
                return proc
        return None

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.communicate()
        self.procs = []
        self.dir.cleanup()

    def __enter__(self) -> WarmScorers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def score_served(model_uris: dict[str, str], examples_path: Path, task_scoring: ModuleType,
                 env: dict[str, str] | None = None, warm: WarmScorers | None = None) -> dict[str, dict[str, Any]]:
    """{key: {"labels", "multi_label", "pred", "protocol"}} for each `{key: model URI}`: every model loaded as
    served, each in its own fresh process, all at once, predicting the examples of `examples_path` (a canonical
    split). `pred` is in the task's label space whichever protocol the model speaks ("examples" or "legacy").
    `task_scoring`: the task type's `promote` entry (nerflow.task_types): `examples`, `legacy_request`,
    `from_legacy`. `env`: more environment for the processes (e.g. MLFLOW_TRACKING_URI). `warm`: processes
    started ahead (same environment) to use first."""
    examples = task_scoring.examples(Path(examples_path))
    legacy = task_scoring.legacy_request(examples)
    child_env = {**os.environ, **QUIET, **(env or {})}
    with tempfile.TemporaryDirectory(prefix="nerflow-score-") as tmp:
        request_path = Path(tmp) / "legacy-request.json"
        request_path.write_text(json.dumps(asdict(legacy), ensure_ascii=False), encoding="utf-8")
        procs = {}
        for i, (key, uri) in enumerate(model_uris.items()):
            out = Path(tmp) / f"scored-{i}.json"
            args = [uri, str(Path(examples_path).resolve()), str(request_path), str(out)]
            proc = warm.take(dict(env or {})) if warm is not None else None
            request = None
            if proc is not None:
                request = json.dumps(args) + "\n"
            else:
                proc = subprocess.Popen([sys.executable, "-c", STUB, *args], cwd=tmp, env=child_env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
            procs[key] = (uri, out, proc, request)
        with ThreadPoolExecutor(len(procs) or 1) as pool:   # all finish before tmp goes
            errors = dict(zip(procs, pool.map(lambda p: p[2].communicate(p[3])[1], procs.values()), strict=True))
        results = {}
        for key, (uri, out, proc, _) in procs.items():
            if proc.returncode != 0:
                raise RuntimeError(f"scoring {uri} as served failed:\n{errors[key][-3000:]}")
            results[key] = json.loads(out.read_text(encoding="utf-8"))
    for result in results.values():
        if result["protocol"] == "legacy":
            result["pred"] = task_scoring.from_legacy(examples, result.pop("answers"))
        if len(result["pred"]) != len(examples):
            raise RuntimeError(f"a served model answered {len(result['pred'])} predictions for {len(examples)} "
                               "examples")
    return results
