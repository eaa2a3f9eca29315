"""`nerflow predict MODEL_URI TEXT ...`: entity spans from a registered (or logged) model, one JSON line per text."""
from __future__ import annotations

import argparse
import json

from nerflow.config import ConfigError


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


def cmd_predict(args: argparse.Namespace) -> int:
    from nerflow.tasks import tracking

    tracking.configure()
    model = load_model(args.model_uri)
    for text, spans in zip(args.texts, model.predict(list(args.texts))):
        print(json.dumps({"text": text, "entities": spans}, ensure_ascii=False))
    return 0


def add_parsers(sub) -> None:
    pred = sub.add_parser("predict", help="entity spans from a model URI, e.g. models:/nerflow-quickstart@challenger")
    pred.add_argument("model_uri")
    pred.add_argument("texts", nargs="+")
    pred.set_defaults(func=cmd_predict)
