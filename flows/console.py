"""What a `nerflow` command prints besides its own output: environment defaults, one log format, and the library
noise known to tell a user nothing, each silenced at its source.

Every filter names its message and the module that emits it (or one logger), so an unexpected warning, ours or a
library's, still reaches the terminal and the run's log file: nothing here ignores warnings wholesale. The noise
was found by running the quickstart with its output captured (docs/metrics.md, "Quiet output").
"""
from __future__ import annotations

import logging
import os
import re
import sys
import warnings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%H:%M:%S"

ENV_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",   # else a "database is locked" telemetry traceback now and then
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "nerflow",    # our log lines also reach the Prefect UI
    # ... those logged outside a flow run (starting the temporary server, planning) have no run to go to: that is
    # expected, not worth a UserWarning per line
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "TOKENIZERS_PARALLELISM": "false",             # the fork warning of HF tokenizers
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",           # per-file "Loading weights" bars
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "TRANSFORMERS_VERBOSITY": "error",             # e.g. the per-weight load report of a new classification head
    # MLflow configures its own loggers when imported, at INFO unless told: "Creating initial MLflow database
    # tables..." (first use of a sqlite store) in another format than ours
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    # "🏃 View run ... at: http://..." on stdout at every run end against a tracking server (twice per run); the
    # summary prints the run id and the UI's address once
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

# loggers whose INFO lines are plumbing (HTTP requests, schema migrations, file locks); their warnings still show
QUIET_LOGGERS = ("httpx", "alembic", "mlflow", "urllib3", "filelock")

# (message regex, category, emitting module): each seen in a normal `nerflow run`
KNOWN_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # validate stage, once per split: our dataset source is a local path, which two registered sources of
    # MLflow's both accept; MLflow picks one and says so
    ("The specified dataset source can be interpreted in multiple ways", UserWarning,
     "mlflow.data.dataset_source_registry"),
    # register stage: the served model's `predict` takes a list of texts and params by design, without the type
    # hints MLflow would use for input validation (the message starts with an ANSI colour code)
    (r"(\x1b\[[0-9;]*m)?Add type hints to the `predict` method", UserWarning, "mlflow.pyfunc.utils.data_validation"),
)


class KnownWarningRecords(logging.Filter):
    """Drops the `py.warnings` log records of KNOWN_WARNINGS. Needed besides the warning filters because MLflow
    wraps some checks in `warnings.catch_warnings()` + `simplefilter("once")` (`filter_user_warnings_once`), which
    puts its own filter in front of ours for that call; the warning then still arrives here, as a log record
    `<path>:<line>: <Category>: <message>`, and is matched by the same message and the module's file."""

    def __init__(self) -> None:
        super().__init__()
        self.patterns = [re.compile(re.escape(module.replace(".", "/")) + r"\.py:\d+: " + category.__name__ + ": "
                                    + message) for message, category, module in KNOWN_WARNINGS]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(p.search(text) for p in self.patterns)


def filter_known_warnings() -> None:
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=re.escape(module) + r"\Z")
    # warnings become log records (our format, and the run's log file); KnownWarningRecords is the backstop
    logging.captureWarnings(True)
    py_warnings = logging.getLogger("py.warnings")
    if not any(isinstance(f, KnownWarningRecords) for f in py_warnings.filters):
        py_warnings.addFilter(KnownWarningRecords())


class OnnxQuantizerInfo(logging.Filter):
    """onnxruntime's quantizer logs its progress with `logging.info(...)` on the root logger: ~37 lines per export
    ("Quantization parameters for tensor ... not specified", "Ignore MatMul due to non constant B"), half of a
    CoNLL `nerflow run`'s output. A filter on the root logger sees only records logged to the root logger itself
    (not those our named loggers propagate), and this one drops only onnxruntime.quantization's below WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name != "root" or \
            "onnxruntime/quantization" not in record.pathname.replace(os.sep, "/")


def quiet_onnx_quantizer() -> None:
    root = logging.getLogger()
    if not any(isinstance(f, OnnxQuantizerInfo) for f in root.filters):
        root.addFilter(OnnxQuantizerInfo())


def redact_logs() -> None:
    """Every log record this process makes has its secrets masked when it is made (nerflow.redact), before any
    handler sees it: the console, the run's log file, and Prefect's handler that sends the lines to its server
    (PREFECT_LOGGING_EXTRA_LOGGERS above) all get the masked text. A record factory, not a handler filter: it
    also covers the handlers libraries add later."""
    from nerflow import redact

    make = logging.getLogRecordFactory()
    if getattr(make, "nerflow_redacts", False):
        return

    def redacting(*args, **kwargs) -> logging.LogRecord:
        return redact.log_record(make(*args, **kwargs))

    redacting.nerflow_redacts = True
    logging.setLogRecordFactory(redacting)


def quiet_libraries() -> None:
    """The library noise filters and the log redaction, for a process whose logging Prefect set up: a flow run
    started by a worker or by `nerflow serve`."""
    redact_logs()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    # system metrics are best effort: with the tracking server gone their sampler warns "Failed to get mlflow run"
    # with the whole exception, a repeat of what the command reports once itself
    logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)
    quiet_onnx_quantizer()
    filter_known_warnings()


def configure_output() -> None:
    """Call once, first thing in a command, before the heavy libraries are imported (some read their settings from
    the environment at import). Values already in the environment win."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if not sys.stderr.isatty():
        # `datasets` bars ("Map: 100%|...", "Generating train split") are redrawn with carriage returns: in a file
        # or a CI log each becomes one long garbled line. On a terminal a long load still shows its progress.
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    # urllib3's "Retrying (Retry(total=1, ...)) after connection broken by ...": MLflow's bounded HTTP retries;
    # when they run out, the command reports the unreachable server once itself (flows/errors.py)
    quiet_libraries()


class _NoFailureReports(logging.Filter):
    """Prefect logs a failed or crashed task and flow run at ERROR with the traceback, once per level (task, flow),
    and a flow run's end as `Finished in state Failed('...')` with the whole exception text (at INFO in a sync
    flow: a data error's ~500 characters again). The command reports the same error once itself (`error: ...`,
    or the traceback of a bug), so on the terminal these are repeats. Console handlers only: the Prefect UI (the
    API log handler) still gets every record, and each run's final state keeps its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name not in ("prefect.flow_runs", "prefect.task_runs"):
            return True
        if record.levelno >= logging.ERROR or record.exc_info:
            return False
        text = record.getMessage()
        return not (text.startswith("Finished in state ") and not text.startswith("Finished in state Completed"))


def quiet_prefect_failures() -> None:
    """Call after Prefect is imported (it sets up its console handlers then)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, (PrefectConsoleHandler, logging.StreamHandler)) and \
                    not any(isinstance(f, _NoFailureReports) for f in handler.filters) and \
                    not isinstance(handler, logging.FileHandler):
                handler.addFilter(_NoFailureReports())
