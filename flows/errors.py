"""One exit-code table for every `nerflow` command, and the one line a user-caused error prints.

| code | meaning |
|------|---------|
| 0    | done |
| 1    | a bug in nerflow (the traceback is printed) |
| 2    | bad input: data, config, an unknown model / version / alias, a file that cannot be read |
| 3    | a service is unreachable: the MLflow tracking server or the Prefect API |
| 4    | refused by a rule: another process runs the same pipeline run, a promotion gate, ...; or a server     |
|      | refused the credentials (401/403: flows/credentials.py)                                              |
| 5    | drift found, and `nerflow drift --fail-on-drift` was asked to say so                                 |
| 130  | interrupted (Ctrl-C, SIGTERM): the run is marked KILLED and continues with the same command |
"""
from __future__ import annotations

import sys
import traceback

from nerflow import redact
from nerflow.flows import credentials

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_UNAVAILABLE, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_DRIFT = 5   # not an error: `nerflow drift --fail-on-drift` found drift

# MLflow's own HTTP retries (7 with exponential backoff by default, ~2 minutes) would stack on the task retries;
# these bound one unreachable-server call to about 10 s before the error is reported.
MLFLOW_HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
UNREACHABLE_MARKERS = ("max retries exceeded", "connection refused", "failed to establish a new connection",
                       "name or service not known", "all connection attempts failed", "connecterror",
                       "cannot connect to", "failed to reach api")
REASONS = (("connection refused", "connection refused"), ("all connection attempts failed", "connection refused"),
           ("timed out", "timed out"), ("name or service not known", "unknown host"))
BAD_INPUT_MLFLOW_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def classify(exc: BaseException) -> int:
    """The exit code of an exception that ended a command."""
    from nerflow.config import ConfigError
    from nerflow.data import DataError
    from nerflow.flows.prefect_server import ServiceUnavailable
    from nerflow.locks import RunLockedError
    from nerflow.progress import TrainingInterrupted
    from nerflow.promotion import Refused, ScoringTimeout
    from nerflow.validation import ValidationFailed

    if isinstance(exc, (KeyboardInterrupt, TrainingInterrupted)):
        return EXIT_INTERRUPTED
    if isinstance(exc, (ConfigError, DataError, ValidationFailed, UnicodeDecodeError)):
        return EXIT_BAD_INPUT
    if isinstance(exc, (Refused, RunLockedError)) or credentials.refused(exc):
        return EXIT_REFUSED
    if isinstance(exc, (ServiceUnavailable, ScoringTimeout)) or any(_unreachable(e) for e in _chain(exc)):
        return EXIT_UNAVAILABLE
    if _is_instance(exc, "mlflow.exceptions", "MlflowException") and \
            getattr(exc, "error_code", None) in BAD_INPUT_MLFLOW_CODES:
        return EXIT_BAD_INPUT
    return EXIT_BUG


def _is_instance(exc: BaseException, module: str, name: str) -> bool:
    """isinstance against a library's exception class, without importing the library: an exception of that class
    exists only if its module was imported already (mlflow costs seconds to import)."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(exc, cls)


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionRefusedError) or _is_instance(exc, "httpx", "ConnectError") or \
            _is_instance(exc, "httpx", "ConnectTimeout"):
        return True
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(marker in text for marker in UNREACHABLE_MARKERS)


def message(exc: BaseException, code: int) -> str:
    """The one line (plus at most a short hint) printed for a user-caused error, its secrets masked: the tracking
    URI with its credentials, a secret in an override (nerflow.redact)."""
    return redact.text(_message(exc, code))


def _message(exc: BaseException, code: int) -> str:
    text = str(exc).strip() or type(exc).__name__
    if code == EXIT_REFUSED and (refused := credentials.refused(exc)):
        return credentials.line(*refused)
    if code == EXIT_UNAVAILABLE:
        from nerflow.flows.prefect_server import ServiceUnavailable

        if isinstance(exc, ServiceUnavailable):   # nerflow's own sentence: it already names the server and the fix
            return f"error: {text}"
        uri, prefect = _service_uri(exc)
        # the reason may sit deeper in the chain than the outermost message (Prefect: "Failed to reach API at ...")
        lowered = " ".join(f"{type(e).__name__}: {e}" for e in _chain(exc)).lower()
        reason = next((said for marker, said in REASONS if marker in lowered), text.splitlines()[0][:200])
        hint = ("start the Prefect server (`make team-up`), or unset PREFECT_API_URL: `nerflow run` then starts a "
                "temporary one" if prefect else
                "start the MLflow server (`make team-up`), or unset MLFLOW_TRACKING_URI to use the local sqlite store")
        return f"error: cannot reach {uri}: {reason}\nhint: {hint}"
    if _is_instance(exc, "mlflow.exceptions", "MlflowException"):
        text = text.splitlines()[0]
    lines = text.splitlines()
    if len(lines) > 1 and lines[0].startswith("data validation failed"):
        # ValidationFailed: the first problem names its file:line; the count and the rest are the hint
        problems = [line for line in lines[1:] if not line.startswith(("warning: ", "... and"))]
        rest = len(problems) - 1 + sum(int(line.split()[2]) for line in lines if line.startswith("... and"))
        more = f"{rest} more problem(s); " if rest > 0 else ""
        return (f"error: {problems[0]}\nhint: {more}{lines[0].removeprefix('data validation failed: ')}; "
                "`nerflow validate CONFIG` lists them, the run's validation/report.json has all")
    return f"error: {lines[0] if lines else text}"


def _service_uri(exc: BaseException) -> tuple[str, bool]:
    """Which server, and whether it is Prefect's: Prefect's client speaks httpx, MLflow's requests."""
    import os

    prefect = any(type(e).__module__.split(".")[0] in ("httpx", "httpcore", "prefect") for e in _chain(exc))
    if prefect:
        return f"the Prefect server at {os.environ.get('PREFECT_API_URL') or 'the Prefect API'}", True
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return (f"the MLflow tracking server at {uri}" if uri else "the MLflow tracking store"), False


def format_bug(exc: BaseException) -> str:
    return redact.text("".join(traceback.format_exception(exc))) + \
        "\nThis is a bug in nerflow: please report it with the traceback above."
