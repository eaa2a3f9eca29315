"""The exit-code table and the one line a user-caused error prints (flows/errors.py)."""
from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST

from nerflow.config import ConfigError
from nerflow.data import DataError
from nerflow.flows import errors
from nerflow.locks import RunLockedError
from nerflow.ner.validate import ValidationFailed
from nerflow.promotion import Refused


@pytest.mark.parametrize("exc, code", [
    (ConfigError("override x=1: config key 'x' does not exist"), errors.EXIT_BAD_INPUT),
    (DataError("train.txt:4: not UTF-8"), errors.EXIT_BAD_INPUT),
    (ValidationFailed("data validation failed: 1 problem(s)"), errors.EXIT_BAD_INPUT),
    (MlflowException("Registered Model with name=nope not found", error_code=RESOURCE_DOES_NOT_EXIST),
     errors.EXIT_BAD_INPUT),
    (MlflowException("API request to http://127.0.0.1:9/api failed with exception HTTPConnectionPool: Max retries "
                     "exceeded (Caused by NewConnectionError: Connection refused)"), errors.EXIT_UNAVAILABLE),
    (ConnectionRefusedError(111, "Connection refused"), errors.EXIT_UNAVAILABLE),
    (RunLockedError("this run is already running in process 12"), errors.EXIT_REFUSED),
    (Refused("the gate said no"), errors.EXIT_REFUSED),
    (KeyboardInterrupt("SIGINT"), errors.EXIT_INTERRUPTED),
    (KeyError("a bug"), errors.EXIT_BUG),
    (MlflowException("something internal", error_code=INTERNAL_ERROR), errors.EXIT_BUG),
])
def test_every_way_out_has_its_exit_code(exc, code):
    assert errors.classify(exc) == code


def test_a_cause_that_is_a_refused_connection_makes_the_error_unreachable():
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("the flow failed") from inner
    except RuntimeError as outer:
        assert errors.classify(outer) == errors.EXIT_UNAVAILABLE


def test_validation_failure_is_one_error_line_with_the_first_problem_and_a_hint():
    exc = ValidationFailed("data validation failed: 3 problem(s) (tags_well_formed: 3)\n"
                           "d/train.txt:6: [tags_well_formed] tag 'X' is not valid\n"
                           "d/train.txt:9: [tags_well_formed] tag 'Y' is not valid\n"
                           "... and 1 more\n"
                           "warning: 10% of test sentences also occur verbatim in train")
    error, hint = errors.message(exc, errors.EXIT_BAD_INPUT).splitlines()
    assert error == "error: d/train.txt:6: [tags_well_formed] tag 'X' is not valid"
    assert hint.startswith("hint: 2 more problem(s); 3 problem(s) (tags_well_formed: 3)")


def test_unreachable_names_the_server_and_the_reason(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    exc = MlflowException("API request to http://127.0.0.1:9/api/2.0/x failed with exception HTTPConnectionPool: "
                          "Max retries exceeded ([Errno 111] Connection refused)")
    assert errors.message(exc, errors.EXIT_UNAVAILABLE).splitlines()[0] == \
        "error: cannot reach the MLflow tracking server at http://127.0.0.1:9: connection refused"
