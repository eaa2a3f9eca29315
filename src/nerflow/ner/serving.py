"""The registered NER model's serving code: an MLflow pyfunc that runs nerflow's own windowed predictor.

The serving modules (this one and nerflow.textcat.serving) are the library modules that import MLflow: a served
model must load with nothing but its own files and pinned requirements, so the wrapper travels inside the model
(code_paths) rather than in the orchestration layer. MLflow's transformers flavor is not used because its pyfunc
flattens token-classification output to comma-joined tags; this one answers entity types, whole words and character
offsets.
"""
from __future__ import annotations

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import Array, ColSpec, Object, ParamSchema, ParamSpec, Property, Schema

from nerflow.capture import capture_from_env
from nerflow.models import SERVED_ARTIFACT as ARTIFACT
from nerflow.ner.predict import Predictor

EXAMPLE = ["Maria Lopez flew from Berlin to New York to meet the board of Acme Corp."]

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string")]),   # unnamed: a list of strings, or a one-column frame (e.g. "text")
    outputs=Schema([ColSpec(Array(Object([
        Property("type", "string"), Property("start", "long"), Property("end", "long"),
        Property("text", "string"), Property("score", "double")])))]),
    params=ParamSchema([ParamSpec("pretokenized", "boolean", False)]),
)


class NerModel(PythonModel):
    """Input: a list of strings (or a one-column frame of them). Output: per text, a list of
    {"type", "start", "end", "text", "score"} with `text == input[start:end]`. Only MLflow loads this class
    (`mlflow models serve`, `mlflow.pyfunc.load_model`); nerflow's gate and `predict` load the model folder with
    nerflow.ner.predict directly and never unpickle it (docs/promotion.md, "Loading a version")."""

    task = "token-classification"

    def load_context(self, context) -> None:
        self.predictor = Predictor.load(context.artifacts[ARTIFACT])
        self.capture = capture_from_env()   # NERFLOW_CAPTURE_DIR: opt-in (nerflow.capture)

    def predict(self, context, model_input, params: dict | None = None) -> list[list[dict]]:
        if isinstance(model_input, pd.DataFrame):
            texts = model_input.iloc[:, 0].astype(str).tolist()
        elif isinstance(model_input, str):
            texts = [model_input]
        else:
            texts = [str(t) for t in model_input]
        answers = self.predictor.predict_text(texts, pretokenized=bool((params or {}).get("pretokenized", False)))
        if getattr(self, "capture", None) is not None:   # after answering; never fails the call
            self.capture.append_texts(texts, "serve")
        return answers


def servable():
    """(python model, signature, input example) of a registered NER version."""
    return NerModel(), SIGNATURE, EXAMPLE
