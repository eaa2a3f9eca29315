"""What the terminal shows for a failed run and for training progress (issue 21): Prefect's end-of-run line does not
repeat the error the command prints once, `nerflow schedule ls` shows a failed run's one error line, and the
throughput after a resume is this attempt's."""
from __future__ import annotations

import logging

import pytest

from nerflow.flows.commands.schedule import last_outcome
from nerflow.flows.console import _NoFailureReports
from nerflow.progress import Progress

DATA_ERROR = ("Flow run encountered an exception: ValidationFailed: data validation failed: 1 problem(s) "
              "(tags_well_formed: 1)\n/d/train.txt:6: [tags_well_formed] tag 'LOCATION' of token 'Berlin' is not "
              "valid iob2")


def record(name: str, level: int, text: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, text, None, None)


@pytest.mark.parametrize("text, shown", [
    (f"Finished in state Failed({DATA_ERROR!r})", False),   # sync flows log it at INFO: ~500 characters again
    ("Finished in state Crashed('Execution was interrupted')", False),
    ("Finished in state Completed()", True),
    ("Beginning flow run 'liberal-leopard' for flow 'nerflow-pipeline'", True),
])
def test_the_end_of_a_failed_flow_run_is_not_repeated_on_the_terminal(text, shown):
    assert _NoFailureReports().filter(record("prefect.flow_runs", logging.INFO, text)) is shown
    assert _NoFailureReports().filter(record("nerflow.stage", logging.INFO, text)) is True   # only Prefect's own


def test_schedule_ls_shows_the_error_line_of_a_failed_run_not_the_exception():
    line = "error: /d/train.txt:6: [tags_well_formed] tag 'LOCATION' of token 'Berlin' is not valid iob2"
    failed = {"state": "Failed", "message": DATA_ERROR, "error": line}
    assert last_outcome(failed) == f"Failed: {line}"
    # a run that could not say (a crash, an older nerflow): Prefect's message, its first line only
    assert last_outcome({**failed, "error": None}) == f"Failed: {DATA_ERROR.splitlines()[0]}"
    assert last_outcome({"state": "Completed", "message": "nothing to do: m version 1"}) == \
        "Completed: nothing to do: m version 1"
    assert last_outcome(None) == "-"


def test_throughput_after_a_resume_counts_only_this_attempts_samples_and_time(caplog):
    """Resumed at step 50 after 400 samples in 10 s; the first step of this attempt: 8 samples in 0.5 s."""
    caplog.set_level(logging.INFO, logger="nerflow.train")
    progress = Progress(total=100, every=1, initial=50, samples=400, seconds=10.0)
    assert progress.samples_per_s(408, 10.5) == pytest.approx(16.0)
    progress.update(52, 408, 10.5)   # logged: every 2 steps (total // 50)
    assert "step 52/100 loss nan 16.0 samples/s" in caplog.text
    fresh = Progress(total=100, every=1)
    assert fresh.samples_per_s(8, 0.5) == pytest.approx(16.0)
