"""`nerflow` command line: run the pipeline, check data, make the quickstart corpus, predict with a registered model.

Bad input ends with one line `error: <where>: <what>` and exit code 2; heavy libraries load only for commands
that need them.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def _setup_env() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "nerflow")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("httpx", "alembic", "mlflow", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def bad_input_types() -> tuple[type[BaseException], ...]:
    from nerflow.config import ConfigError
    from nerflow.data import DataError

    return ConfigError, DataError


def cmd_run(args: argparse.Namespace) -> int:
    from nerflow.config import load_config

    cfg = load_config(args.config, args.overrides)
    from nerflow.flows.pipeline import ner_pipeline

    result = ner_pipeline(cfg)
    print(format_summary(result, cfg))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from nerflow.config import load_config
    from nerflow.tasks.validate import check_corpus

    cfg = load_config(args.config, args.overrides)
    corpus, report = check_corpus(cfg)
    print(report.summary())
    print("data OK: " + ", ".join(f"{split} {len(s)} sentences" for split, s in corpus.items()))
    return 0


def cmd_make_sample(args: argparse.Namespace) -> int:
    from nerflow.synthetic import generate_corpus

    paths = generate_corpus(Path(args.out_dir), seed=args.seed)
    print(f"synthetic corpus in {Path(args.out_dir)}: " + ", ".join(p.name for p in paths.values()))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    import mlflow

    from nerflow.tasks import tracking

    tracking.configure()
    model = mlflow.pyfunc.load_model(args.model_uri)
    for text, spans in zip(args.texts, model.predict(list(args.texts))):
        print(json.dumps({"text": text, "entities": spans}, ensure_ascii=False))
    return 0


def format_summary(result: dict, cfg) -> str:
    metrics = result["metrics"]
    types = sorted(k.removeprefix("test_f1_") for k in metrics if k.startswith("test_f1_"))
    width = max([len(t) for t in types] + [7])
    lines = ["", "nerflow run finished", "",
             f"{'type':<{width}}  {'val F1':>7}  {'test F1':>7}"]
    for t in types:
        lines.append(f"{t:<{width}}  {metrics.get(f'validation_f1_{t}', 0):>7.4f}  {metrics[f'test_f1_{t}']:>7.4f}")
    lines.append(f"{'overall':<{width}}  {metrics['validation_f1']:>7.4f}  {metrics['test_f1']:>7.4f}  (micro)")
    reused = [stage for stage, was_reused in result["stages"].items() if was_reused]
    lines += ["", f"registered: {result['model_name']} version {result['version']} (alias @{result['alias']})",
              f"load it:    mlflow.pyfunc.load_model('{result['uri']}')",
              f"MLflow run: {result['run_id']}" + (f" (stages reused from cache: {', '.join(reused)})" if reused else ""),
              f"browse:     mlflow ui --backend-store-uri {tracking_uri_for_display()}"]
    return "\n".join(lines)


def tracking_uri_for_display() -> str:
    from nerflow.tasks import tracking

    uri = tracking.tracking_uri()
    return "sqlite:///mlruns/mlflow.db" if uri == tracking.default_uri() else uri


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nerflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole pipeline and register the model")
    run.add_argument("config", type=Path)
    run.add_argument("overrides", nargs="*", help="key=value, e.g. train.epochs=1 data.dir=../data")
    run.set_defaults(func=cmd_run)
    val = sub.add_parser("validate", help="run only the data checks")
    val.add_argument("config", type=Path)
    val.add_argument("overrides", nargs="*")
    val.set_defaults(func=cmd_validate)
    sample = sub.add_parser("make-sample", help="write the seeded synthetic quickstart corpus")
    sample.add_argument("out_dir", nargs="?", default="data/generated/quickstart")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=cmd_make_sample)
    pred = sub.add_parser("predict", help="entity spans from a model URI, e.g. models:/nerflow-ner@challenger")
    pred.add_argument("model_uri")
    pred.add_argument("texts", nargs="+")
    pred.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_env()
    try:
        return args.func(args)
    except bad_input_types() + (_validation_error(),) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _validation_error() -> type[BaseException]:
    from nerflow.tasks.validate import DataValidationError

    return DataValidationError


if __name__ == "__main__":
    sys.exit(main())
