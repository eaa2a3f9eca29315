"""A normal `nerflow run`, output captured as in a CI log, is quiet: none of the library warnings, progress bars or
plumbing lines found in the quickstart's output (docs/metrics.md, "Quiet output"), no WARNING/ERROR line, no
traceback; while warnings nobody filtered, ours and a library's, still get through: the filters are not "ignore
everything"."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import yaml

from nerflow.config import resolved_dict

from .corpus import tiny_config

# Runs `nerflow run CONFIG` in-process after planting canaries in the tokenize stage: a UserWarning from a module
# named like ours, one from our module that starts like a filtered MLflow message (the filters match message AND
# module), and a WARNING record from a logger under `mlflow` (a quiet logger keeps its warnings).
WRAPPER = r'''
import sys, types
from nerflow.flows import cli, console
from nerflow.ner import tokenization

console.configure_output()
canary = types.ModuleType("nerflow.canary")
exec("""
import logging, warnings
def wrap(original):
    def tokenize_corpus(*args, **kwargs):
        warnings.warn("nerflow-canary: a warning of our own", UserWarning)
        warnings.warn("The specified dataset source can be interpreted in multiple ways (nerflow-canary)", UserWarning)
        logging.getLogger("mlflow.canary").warning("nerflow-canary: a library logger's warning")
        return original(*args, **kwargs)
    return tokenize_corpus
""", canary.__dict__)
tokenization.tokenize_corpus = canary.wrap(tokenization.tokenize_corpus)
sys.exit(cli.main(["run", sys.argv[1]]))
'''

NOISE = {   # what each looked like in the quickstart's captured output
    "dataset source warning": re.compile(r"dataset source can be interpreted in multiple ways: "),
    "type-hint warning": re.compile(r"Add type hints to the `predict` method"),
    "datasets progress bar": re.compile(r"Saving the dataset|Map:|Filter:|Generating \w+ split|examples/s"),
    "any progress bar": re.compile(r"\d+%\|"),
    "MLflow's own INFO lines": re.compile(r"INFO mlflow\.|Creating initial MLflow database tables"),
    "traceback": re.compile(r"Traceback \(most recent call last\)"),
}


def test_run_output_has_no_known_noise_but_unfiltered_warnings_show(tmp_path, tiny_corpus, corpus_model_dir):
    from prefect.settings import PREFECT_API_URL

    cfg = tiny_config(tmp_path, tiny_corpus, corpus_model_dir, tmp_path / "cache", "experiment=nerflow-quiet",
                      "registry.model_name=quiet", "train.epochs=2")
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(resolved_dict(cfg)))
    # a fresh store: its first use is when MLflow announces "Creating initial MLflow database tables"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "HF_HUB_OFFLINE": "1",
           "PREFECT_API_URL": PREFECT_API_URL.value(), "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(cfg_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "nerflow run finished" in proc.stdout and "registered: quiet version 1" in proc.stdout
    assert time.monotonic() - started < 120, "a tiny run should take well under a minute"

    assert "nerflow-canary: a warning of our own" in out, out[-5000:]
    assert "interpreted in multiple ways (nerflow-canary)" in out     # same words, another module: not filtered
    assert "nerflow-canary: a library logger's warning" in out
    loud = [line for line in out.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)
            and "nerflow-canary" not in line]
    assert loud == [], "\n".join(loud)
    found = {name: [line for line in out.splitlines() if pattern.search(line)] for name, pattern in NOISE.items()}
    assert {name: lines for name, lines in found.items() if lines} == {}
