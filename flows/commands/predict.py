"""`nerflow predict MODEL_URI [TEXT ...] [--input FILE|-] [--output FILE]`: one JSON line per document with the
model's answer: entity spans (NER), or a label with its score and every label's probability (text
classification).

MODEL_URI is `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/RUN_ID/model` (any MLflow model URI), or a local
folder: an MLflow model (it has an `MLmodel` file) or a Hugging Face checkpoint nerflow trained (it has
`nerflow.json`). Every form is answered by nerflow's installed predictor from the model's served folder, checked
first (open_model); a model's pickled python model and bundled code are never loaded. Reading and writing
documents lives in nerflow.documents; `--flow` runs the same as the Prefect flow `nerflow-predict`, tracked in MLflow
(flows/predict_flow.py). docs/cli.md, "predict", has the formats.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from nerflow.config import ConfigError

URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")   # models:/..., runs:/..., file:///..., s3://...


def open_model(uri: str, trust: bool = False, runtime: str | None = None):
    """(texts -> one answer per text, the model's task type), for any MODEL_URI form (`verified_folder`). The
    answers come from nerflow's installed predictor, never the model's pickled python model or bundled code, on the
    runtime the model is served with (nerflow.runtimes) or `runtime` (torch | onnx)."""
    with verified_folder(uri, trust) as (folder, what):
        return load_folder(folder, what, runtime)   # loaded: a downloaded folder may go


@contextlib.contextmanager
def verified_folder(uri: str, trust: bool = False) -> Iterator[tuple[Path, str]]:
    """(the model folder nerflow trained, how to name it in messages) for any MODEL_URI form, checked first. A model
    from the tracking server is downloaded into a temporary folder (removed on exit) and checked against the hash
    stored on its version (tasks/served_model.py; `trust`: also a model without one: a version registered before
    hashes, a run's model); a local folder has no stored hash (files on this machine, the user's own), only the
    pickled-weights rule."""
    import tempfile

    from nerflow import model_files
    from nerflow.models import SERVED_ARTIFACT

    if not URI_SCHEME.match(uri):                       # a local folder
        path = Path(uri)
        if not path.is_dir():
            raise ConfigError(f"{uri}: no such model folder (or give models:/NAME@ALIAS, models:/NAME/VERSION, "
                              "runs:/RUN_ID/model)")
        if not (path / "nerflow.json").is_file():       # not a checkpoint: the served folder of an MLflow model
            if not (path / "MLmodel").is_file():
                raise ConfigError(f"{uri}: neither an MLflow model folder (no MLmodel file) nor a nerflow "
                                  "checkpoint (no nerflow.json)")
            path = path / model_files.served_path((path / "MLmodel").read_text(encoding="utf-8"), SERVED_ARTIFACT,
                                                  uri)
        model_files.verify(path, uri, None, trust=trust, hashed=False)
        yield path, uri
        return
    from nerflow.prefect_tasks import served_model, tracking

    client = tracking.configure()
    source = served_model.uri_source(client, uri)
    with tempfile.TemporaryDirectory(prefix="nerflow-model-") as tmp:
        yield served_model.fetch(source, Path(tmp), trust), source.what


def model_task(folder: Path, what: str):
    """The task type of a model folder nerflow trained (its nerflow.json says which)."""
    from nerflow import task_types

    meta = folder / "nerflow.json"
    if not meta.is_file():
        raise ConfigError(f"{what}: its model folder has no nerflow.json: not a model nerflow trained")
    # checkpoints saved before task types have no `task`: the default task type trained them
    return task_types.get(json.loads(meta.read_text()).get("task"))


def load_folder(folder: Path, what: str, runtime: str | None = None):
    """(texts -> answers, task type) of a model folder nerflow trained, with its task type's predictor."""
    from nerflow import task_types
    from nerflow.prefect_tasks import served_model

    kind = model_task(folder, what)
    with served_model.quiet_loading():   # `predict` called from a process that imported transformers already
        return task_types.entry(kind.name, "predict").load_predictor(folder, runtime), kind


def documents(args: argparse.Namespace) -> list[dict]:
    from nerflow.documents import read_documents

    if args.input is not None and args.texts:
        raise ConfigError("give TEXT arguments or --input FILE, not both")
    if args.input is None and not args.texts:
        raise ConfigError("nothing to predict: give TEXT arguments, or --input FILE (`-` for standard input)")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {args.batch_size}")
    return read_documents(args.input) if args.input is not None else [{"text": t} for t in args.texts]


def cmd_predict(args: argparse.Namespace) -> int:
    from nerflow.documents import dumps, predict_documents, write_jsonl

    docs = documents(args)                 # bad input fails before any model is loaded
    if args.flow:
        from nerflow.flows.predict_flow import run_flow

        stats = run_flow(args.model_uri, docs, args.input, args.output, args.batch_size, args.trust, args.runtime)
    else:
        predict, kind = open_model(args.model_uri, args.trust, args.runtime)
        stats: dict = {"task": kind.name}
        records = predict_documents(predict, docs, kind, args.batch_size, progress=sys.stderr.isatty(), stats=stats)
        if args.output is not None:
            write_jsonl(args.output, records)
        else:
            for record in records:
                sys.stdout.write(dumps(record) + "\n")
            sys.stdout.flush()
    report(stats, args)
    return 0


def report(stats: dict, args: argparse.Namespace) -> None:
    """One line on stderr; with --json one JSON object instead, on stdout when the predictions went to a file."""
    from nerflow import task_types
    from nerflow.documents import summary

    if not args.json:
        print(summary(stats, task_types.get(stats["task"])), file=sys.stderr)
        return
    record = {"model_uri": args.model_uri, "input": args.input, "output": args.output,
              **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items() if k != "counts"},
              **stats["counts"]}
    print(json.dumps(record), file=sys.stdout if args.output is not None else sys.stderr)


def add_document_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """MODEL_URI, TEXT ... and --input: what `predict` and `explain` both read (`documents` checks them)."""
    parser.add_argument("model_uri", metavar="MODEL_URI",
                        help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/model, or a local folder "
                             "(MLflow model, or a checkpoint nerflow trained)")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help=f"documents to {verb} (or use --input)")
    parser.add_argument("--input", "-i", metavar="FILE",
                        help="plain text, one document per line, or JSON lines with a `text` field; - for stdin")


def add_parsers(sub) -> None:
    pred = sub.add_parser("predict", help="a model's answers (entity spans, or labels), one JSON line per document",
                          description="one JSON line per document: {...input fields, \"text\", and the answer: "
                                      '"entities": [{type, start, end, text, score}] (NER), or "label", "score", '
                                      '"scores" ("labels" when multi-label) (text classification)}')
    add_document_arguments(pred, "predict on")
    pred.add_argument("--output", "-o", metavar="FILE", help="write the JSON lines here (atomically), not stdout")
    pred.add_argument("--batch-size", type=int, default=64, metavar="N", help="documents per model call (64)")
    pred.add_argument("--flow", action="store_true",
                      help="run as the Prefect flow nerflow-predict, tracked in the MLflow experiment nerflow-predict")
    pred.add_argument("--json", action="store_true", help="the closing summary as one JSON object")
    pred.add_argument("--runtime", choices=("torch", "torch-bf16", "onnx"),
                      help="force a runtime: torch (the fp32 weights), torch-bf16 (the weights in bf16) or onnx "
                           "(the ONNX model the export stage chose); default: the one the model is served with")
    pred.add_argument("--trust", action="store_true",
                      help="load a model whose files nothing vouches for (a version registered before nerflow stored "
                           "model hashes, a runs:/ model) or that has pickled weights")
    pred.set_defaults(func=cmd_predict)
