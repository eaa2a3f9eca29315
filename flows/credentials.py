"""A server that refused nerflow's credentials: one line naming the server and what to set (flows/errors.py prints
it, exit 4), distinct from "cannot reach" (exit 3). nerflow reads credentials only from the environment: MLflow's
client MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, Prefect's client PREFECT_API_AUTH_STRING."""
from __future__ import annotations

import os

MLFLOW_CODES = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}


def refused(exc: BaseException) -> tuple[int, bool] | None:
    """(401 or 403, whether Prefect refused) when a server in the exception's chain refused the credentials: MLflow's
    client raises an MlflowException (UNAUTHENTICATED / PERMISSION_DENIED), its artifact proxy a requests HTTPError,
    Prefect's client an httpx HTTPStatusError."""
    from nerflow.flows.errors import _chain, _is_instance  # here: errors.py imports this module

    for e in _chain(exc):
        if _is_instance(e, "mlflow.exceptions", "MlflowException") and getattr(e, "error_code", None) in MLFLOW_CODES:
            return MLFLOW_CODES[e.error_code], False
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403) and _is_instance(e, "httpx", "HTTPStatusError"):
            return status, True
        if status in (401, 403) and _is_instance(e, "requests", "HTTPError"):
            return status, False
    return None


def line(status: int, prefect: bool) -> str:
    if prefect:
        return (f"error: Prefect at {os.environ.get('PREFECT_API_URL') or 'PREFECT_API_URL'} refused the credentials "
                f"({status}): set PREFECT_API_AUTH_STRING")
    uri = os.environ.get("MLFLOW_TRACKING_URI") or "MLFLOW_TRACKING_URI"
    if status == 403:   # the password was right: this account lacks the permission
        return (f"error: MLflow at {uri} refused the credentials (403): user "
                f"{os.environ.get('MLFLOW_TRACKING_USERNAME', '')!r} may not do this; set MLFLOW_TRACKING_USERNAME "
                "and MLFLOW_TRACKING_PASSWORD to an account that may")
    return (f"error: MLflow at {uri} refused the credentials (401): set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD")
