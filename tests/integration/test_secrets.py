"""A secret planted in the config, in an override, in the environment and in the tracking URI appears in no param,
tag, artifact, log line or printed output of a full `nerflow run` (issue 22, part 5; docs/cli.md "Secrets"): the
test searches the MLflow server's whole store (database and artifact files), the run as the API returns it, the
Prefect flow run (its parameters, every log line sent there, its artifacts) and the command's output."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from nerflow.config import resolved_dict

from .corpus import tiny_config

SECRETS = {"config": "cfg-Secret-7431xq", "override": "ovr-Secret-2298kd", "environment": "env-Secret-5521mz",
           "logged environment": "env-Token-8812pw", "tracking URI": "uri-Secret-6650ty"}

# `nerflow run` in-process with a stand-in for a library that logs what it was given (the credential it holds
# and the URI it connects to), called by the tokenize stage: the log redaction has something to find.
WRAPPER = r'''
import logging, os, sys
from nerflow.flows import cli
from nerflow.ner import tokenization

original = tokenization.tokenize_corpus

def tokenize_corpus(*args, **kwargs):
    logging.getLogger("nerflow.canary").info("connecting with token %s to %s", os.environ["NERFLOW_CANARY_API_TOKEN"],
                                             os.environ["MLFLOW_TRACKING_URI"])
    return original(*args, **kwargs)

tokenization.tokenize_corpus = tokenize_corpus
sys.exit(cli.main(sys.argv[1:]))
'''


@contextlib.contextmanager
def tracking_server(root: Path, monkeypatch):
    """A real MLflow tracking server without authentication (it ignores the credentials a client sends) on a
    sqlite store and an artifacts folder under `root`: MLflow's own server app, served from a thread of this
    process (a `mlflow server` process takes most of a minute to start on a loaded test machine)."""
    from mlflow import server
    from mlflow.server import handlers
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils
    from werkzeug.serving import make_server

    # The server's handlers, at their first request, make their store this *process's* tracking and registry URI
    # (globals, and MLFLOW_TRACKING_URI in os.environ): put all of it back afterwards, or every later test of the
    # session logs into this server's sqlite file.
    for module, name in ((tracking_utils, "_tracking_uri"), (registry_utils, "_registry_uri"),
                         (handlers, "_tracking_store"), (handlers, "_model_registry_store")):
        monkeypatch.setattr(module, name, getattr(module, name))
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):   # recorded (set or not) to be put back
        monkeypatch.setenv(variable, os.environ.get(variable, ""))
        if not os.environ[variable]:
            monkeypatch.delenv(variable)
    monkeypatch.setenv(server.BACKEND_STORE_URI_ENV_VAR, f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv(server.SERVE_ARTIFACTS_ENV_VAR, "true")
    monkeypatch.setenv(server.ARTIFACTS_DESTINATION_ENV_VAR, str(root / "artifacts"))
    monkeypatch.setenv(server.ARTIFACT_ROOT_ENV_VAR, "mlflow-artifacts:/")
    httpd = make_server("127.0.0.1", 0, server.app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="mlflow-server", daemon=True)
    thread.start()
    try:
        yield httpd.server_port
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


def found_in(where: str, text: str) -> list[str]:
    return [f"{what} secret in {where}" for what, secret in SECRETS.items() if secret in text]


# MLflow's server app imports Starlette's deprecated WSGI middleware (while serving: from the server's thread)
@pytest.mark.filterwarnings("ignore:starlette.middleware.wsgi is deprecated")
def test_no_planted_secret_is_recorded_or_printed(tmp_path, tiny_corpus, corpus_model_dir, monkeypatch):
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.settings import PREFECT_API_URL

    cfg = resolved_dict(tiny_config(tmp_path, tiny_corpus, corpus_model_dir, tmp_path / "cache",
                                    "experiment=nerflow-secrets", "registry.model_name=secrets", "train.epochs=2"))
    # a credentialed URL where a user could write one: unused by a CoNLL corpus, logged like every other key
    cfg["data"]["hf_dataset"] = f"https://nerflow:{SECRETS['config']}@hub.example.com/datasets/ner"
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    override = f"train.master_addr=https://node0:{SECRETS['override']}@10.0.0.7"
    with tracking_server(tmp_path / "server", monkeypatch) as port:
        uri = f"http://nerflow:{SECRETS['tracking URI']}@127.0.0.1:{port}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_USERNAME": "nerflow",
               "MLFLOW_TRACKING_PASSWORD": SECRETS["environment"],
               "NERFLOW_CANARY_API_TOKEN": SECRETS["logged environment"], "HF_HUB_OFFLINE": "1",
               "PREFECT_API_URL": PREFECT_API_URL.value(), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-c", WRAPPER, "run", str(cfg_path), override], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-5000:]
        # the secrets went through: each reached what it was planted for, masked
        assert f"browse:     http://127.0.0.1:{port}/#/experiments/" in proc.stdout, proc.stdout
        assert f"connecting with token *** to http://nerflow:***@127.0.0.1:{port}" in out, out[-5000:]

        client = MlflowClient(f"http://127.0.0.1:{port}")
        run = client.search_runs([client.get_experiment_by_name("nerflow-secrets").experiment_id])[0]
        params, tags = run.data.params, run.data.tags
        assert params["data.hf_dataset"] == "https://nerflow:***@hub.example.com/datasets/ner"
        assert params["train.master_addr"] == "https://node0:***@10.0.0.7"
        assert "train.master_addr=https://node0:***@10.0.0.7" in tags["nerflow.command"]
        leaks = found_in("the output", out) + found_in("the params", repr(params)) + found_in("the tags", repr(tags))
        logged = {item.path for folder in ("config", "logs", "pipeline")
                  for item in client.list_artifacts(run.info.run_id, folder)}
        assert {"config/resolved.yaml", "logs/1.log", "pipeline/outputs.json"} <= logged

    # everything the server stored: runs, registry (versions, descriptions, the model card), every artifact file
    stored = {path: path.read_bytes().decode("utf-8", "replace")
              for path in sorted((tmp_path / "server").rglob("*")) if path.is_file()}
    leaks += [leak for path, text in stored.items() for leak in found_in(f"the store's {path.name}", text)]
    folder = tmp_path / "server" / "artifacts" / run.info.experiment_id / run.info.run_id / "artifacts"
    assert "connecting with token ***" in stored[folder / "logs" / "1.log"]
    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(tags["prefect_flow_run_id"])
        logs = prefect.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
        pages = prefect.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))
    assert any("connecting with token ***" in line.message for line in logs) and pages
    leaks += found_in("the Prefect flow run's parameters", repr(flow_run.parameters))
    leaks += found_in("the Prefect logs", "\n".join(line.message for line in logs))
    leaks += found_in("the Prefect artifacts", "\n".join(f"{page.description} {page.data}" for page in pages))
    assert leaks == []
