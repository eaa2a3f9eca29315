"""The registered text classifier's serving code: an MLflow pyfunc that runs nerflow's own classifier (the same
segments, window pooling and thresholds as evaluation). Like nerflow.ner.serving it travels inside the model
(code_paths) and is one of the library's two modules that import MLflow."""
from __future__ import annotations

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import Array, ColSpec, Map, Object, Property, Schema

from nerflow.capture import capture_from_env
from nerflow.models import SERVED_ARTIFACT as ARTIFACT
from nerflow.textcat.predict import Classifier

EXAMPLE = ["A quiet, patient film that earns every minute of its running time."]

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string")]),   # a list of strings, or a one-column frame
    outputs=Schema([ColSpec(Object([
        Property("label", "string", required=False),            # single-label
        Property("labels", Array("string"), required=False),    # multi-label
        Property("score", "double", required=False),
        Property("scores", Map("double"))]))]),
)


class TextClassifierModel(PythonModel):
    """Input: a list of strings (or a one-column frame). Output per text: `{"label", "score", "scores": {label: p}}`,
    or for a multi-label model `{"labels": [...], "scores": {label: p}}`. Only MLflow loads this class; nerflow's
    gate and `predict` load the model folder with nerflow.textcat.predict directly (docs/promotion.md)."""

    task = "text-classification"

    def load_context(self, context) -> None:
        self.classifier = Classifier.load(context.artifacts[ARTIFACT])
        self.capture = capture_from_env()   # NERFLOW_CAPTURE_DIR: opt-in (nerflow.capture)

    def predict(self, context, model_input, params: dict | None = None) -> list[dict]:
        if isinstance(model_input, pd.DataFrame):
            texts = model_input.iloc[:, 0].astype(str).tolist()
        elif isinstance(model_input, str):
            texts = [model_input]
        else:
            texts = [str(t) for t in model_input]
        answers = self.classifier.predict_text(texts)
        if getattr(self, "capture", None) is not None:   # after answering; never fails the call
            self.capture.append_texts(texts, "serve")
        return answers


def servable():
    """(python model, signature, input example) of a registered text classifier."""
    return TextClassifierModel(), SIGNATURE, EXAMPLE
