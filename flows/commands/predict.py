"""`nerflow predict MODEL_URI [TEXT ...] [--input FILE|-] [--output FILE]`: one JSON line per document with the
model's answer: entity spans (NER), or a label with its score and every label's probability (text
classification).

MODEL_URI is `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/RUN_ID/model` (any MLflow model URI), or a local
folder: an MLflow model (it has an `MLmodel` file) or a Hugging Face checkpoint nerflow trained (it has
`nerflow.json`; loaded with nerflow's predictor directly, no MLflow). Reading and writing documents lives in
nerflow.documents; `--flow` runs the same as the Prefect flow `nerflow-predict`, tracked in MLflow
(flows/predict_flow.py). docs/cli.md, "predict", has the formats.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from nerflow.config import ConfigError

URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")   # models:/..., runs:/..., file:///..., s3://...


def load_model(uri: str):
    """The pyfunc behind `uri`; an unknown model, version, alias or run is bad input (exit 2), not a traceback."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise ConfigError(f"{uri}: {e.message.splitlines()[0]}") from None
        raise
    except OSError as e:  # a local path that is not a model folder
        raise ConfigError(f"{uri}: not an MLflow model ({e.strerror or e})") from None


def open_model(uri: str):
    """(texts -> one answer per text, the model's task type), for any MODEL_URI form."""
    from nerflow import task_types

    if not URI_SCHEME.match(uri):                       # a local folder
        path = Path(uri)
        meta = path / "nerflow.json"
        if not path.is_dir():
            raise ConfigError(f"{uri}: no such model folder (or give models:/NAME@ALIAS, models:/NAME/VERSION, "
                              "runs:/RUN_ID/model)")
        if meta.is_file():                              # a checkpoint nerflow trained: no MLflow needed
            # checkpoints saved before task types have no `task`: the default task type trained them
            kind = task_types.get(json.loads(meta.read_text()).get("task"))
            return task_types.entry(kind.name, "predict").load_predictor(path), kind
        if not (path / "MLmodel").is_file():
            raise ConfigError(f"{uri}: neither an MLflow model folder (no MLmodel file) nor a nerflow checkpoint "
                              "(no nerflow.json)")
    from nerflow.prefect_tasks import tracking

    tracking.configure()
    model = load_model(uri)
    # versions registered before task types have no `task` attribute: the default task type made them
    kind = task_types.get(getattr(model.unwrap_python_model(), "task", None))
    return (lambda texts: model.predict(list(texts))), kind


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

        stats = run_flow(args.model_uri, docs, args.input, args.output, args.batch_size)
    else:
        predict, kind = open_model(args.model_uri)
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


def add_parsers(sub) -> None:
    pred = sub.add_parser("predict", help="a model's answers (entity spans, or labels), one JSON line per document",
                          description="one JSON line per document: {...input fields, \"text\", and the answer: "
                                      '"entities": [{type, start, end, text, score}] (NER), or "label", "score", '
                                      '"scores" ("labels" when multi-label) (text classification)}')
    pred.add_argument("model_uri", metavar="MODEL_URI",
                      help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/model, or a local folder "
                           "(MLflow model, or a checkpoint nerflow trained)")
    pred.add_argument("texts", nargs="*", metavar="TEXT", help="documents to predict on (or use --input)")
    pred.add_argument("--input", "-i", metavar="FILE",
                      help="plain text, one document per line, or JSON lines with a `text` field; - for stdin")
    pred.add_argument("--output", "-o", metavar="FILE", help="write the JSON lines here (atomically), not stdout")
    pred.add_argument("--batch-size", type=int, default=64, metavar="N", help="documents per model call (64)")
    pred.add_argument("--flow", action="store_true",
                      help="run as the Prefect flow nerflow-predict, tracked in the MLflow experiment nerflow-predict")
    pred.add_argument("--json", action="store_true", help="the closing summary as one JSON object")
    pred.set_defaults(func=cmd_predict)
