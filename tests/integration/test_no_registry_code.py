"""No registry code in nerflow's own processes: a version whose `python_model.pkl`, model-code file (MLflow's
"models from code" file, and the bundled module that defines the pyfunc class) and other modules under its bundled
`code/` were each replaced with one that writes a marker file when executed is scored by the gate, answered by
`predict` and compared by `compare` without any of them running; once its weights or tokenizer no longer match the
hash stored at registration, all three refuse it.

Two versions of a model of their own (the session's `tiny-ner` weights logged and registered again, no training),
tampered in the local artifact store the way anyone with artifact access could; every command runs in this process
through `cli.main`, so an unpickled artifact or an imported bundled module would write the marker here (the code
before this change scored in fresh processes: the marker appeared there)."""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
import yaml

from nerflow import model_files
from nerflow.flows import cli
from nerflow.flows.errors import EXIT_REFUSED
from nerflow.prefect_tasks import register, tracking

from .served import stage_output

MODEL = "tiny-ner-tampered"
TEXT = "John Smith visited Berlin ."


class Payload:
    """Unpickling runs `code`: what a malicious python_model.pkl does."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def writes_marker(marker: Path, what: str) -> str:
    return f"open({str(marker)!r}, 'a').write({what!r} + '\\n')\n"


def artifact_root(client, version: str) -> Path:
    uri = client.get_model_version_download_uri(MODEL, version)
    return Path(urlparse(uri).path if uri.startswith("file:") else uri)


@pytest.fixture(scope="module")
def tampered(pipeline_result, tmp_path_factory):
    """(marker path, {version: its model's artifact root}): versions 1 (@champion) and 2, both with every wrapper
    file replaced by marker code (version 1's MLmodel pointing at a model-code file, version 2's at the pickle),
    their served folders (weights, tokenizer) as registered."""
    cfg, result = pipeline_result
    model_dir = stage_output(cfg, result.run_id, "train") / "model"
    marker = tmp_path_factory.mktemp("marker") / "executed.txt"
    client = tracking.configure()
    # a run of its own (`runs:/<pipeline run>/model` stays the pipeline's model), with the pipeline's resolved config:
    # what `promote` and `compare` read the test data from
    run_id = client.create_run(tracking.experiment_id(client, "nerflow-tampered")).info.run_id
    config = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="config/resolved.yaml",
                                                 dst_path=str(tmp_path_factory.mktemp("config")))
    client.log_artifact(run_id, config, "config")
    client.create_registered_model(MODEL)
    roots = {}
    for _ in range(2):
        info = register.log_servable_model(run_id, str(model_dir), cfg.task)
        version = str(client.create_model_version(MODEL, source=info.model_uri, run_id=run_id,
                                                  model_id=info.model_id,
                                                  tags={"nerflow.task": cfg.task,
                                                        **model_files.version_tags(model_dir)}).version)
        root = roots[version] = artifact_root(client, version)
        (root / "python_model.pkl").write_bytes(pickle.dumps(Payload(writes_marker(marker, f"pkl {version}"))))
        # a model-code file (MLflow's "models from code"): version 1's MLmodel names it instead of the pickle
        (root / "model_code.py").write_text(writes_marker(marker, f"model_code.py {version}"))
        if version == "1":
            mlmodel = yaml.safe_load((root / "MLmodel").read_text())
            mlmodel["flavors"]["python_function"]["python_model"] = "model_code.py"
            (root / "MLmodel").write_text(yaml.safe_dump(mlmodel))
        code = root / "code" / "nerflow"
        for module in ("ner/serving.py", "__init__.py", "ner/predict.py", "scoring.py", "models.py"):
            assert (code / module).is_file(), module
            (code / module).write_text(writes_marker(marker, f"{module} {version}"))
    client.set_registered_model_alias(MODEL, "champion", "1")
    # the payloads work: this is what loading the versions as MLflow serves them would run
    pickle.loads((roots["2"] / "python_model.pkl").read_bytes())
    exec((roots["1"] / "model_code.py").read_text())
    assert marker.read_text() == "pkl 2\nmodel_code.py 1\n"
    marker.unlink()
    return marker, roots


def main(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_registration_stores_the_hash_of_the_served_folder(pipeline_result, tmp_path):
    """The pipeline's own version carries the hash of exactly the folder the registry serves."""
    _, result = pipeline_result
    client = tracking.configure()
    version = client.get_model_version("tiny-ner", str(result["register"].version))
    served = mlflow.artifacts.download_artifacts(
        f"{client.get_model_version_download_uri('tiny-ner', version.version)}/artifacts/model", dst_path=str(tmp_path))
    assert version.tags[model_files.MODEL_HASH_TAG] == model_files.folder_sha256(served)
    assert model_files.digest(version.tags[model_files.MODEL_FILES_TAG]) == version.tags[model_files.MODEL_HASH_TAG]


def test_the_gate_predict_and_compare_run_no_code_of_the_version(capsys, tampered):
    marker, _ = tampered
    code, out, err = main(capsys, "promote", MODEL, "2", "--json")
    # the gate scored both versions and decided (same weights: a tie keeps the champion)
    assert code == EXIT_REFUSED and "not promoted to @champion" in err, err
    decision = json.loads(out)
    assert decision["champion_f1"] == decision["challenger_f1"] > 0
    code, out, err = main(capsys, "predict", f"models:/{MODEL}/2", TEXT)
    assert code == 0, err
    assert [e["text"] for e in json.loads(out)["entities"]] == ["John Smith", "Berlin"]
    code, out, err = main(capsys, "compare", MODEL, "1", "2", "--json")
    assert code == 0, err
    assert len(set(json.loads(out)["f1"].values())) == 1
    assert not marker.exists(), marker.read_text()


def test_changed_weights_or_tokenizer_are_refused_by_all_three(capsys, tampered):
    marker, roots = tampered
    weights = roots["2"] / "artifacts" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"\0")
    refused = rf"^error: {MODEL} version 2: its model files no longer match the hash stored at registration " \
              r"\(changed model.safetensors\)"
    for args in (["promote", MODEL, "2"], ["predict", f"models:/{MODEL}/2", TEXT], ["compare", MODEL, "1", "2"],
                 ["predict", f"models:/{MODEL}/2", TEXT, "--trust"]):   # --trust does not cover changed files
        code, out, err = main(capsys, *args)
        assert code == EXIT_REFUSED and out == "", (args, err)
        assert len(err.strip().splitlines()) == 1 and re.match(refused, err), (args, err)
    tokenizer = roots["1"] / "artifacts" / "model" / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text() + "\n")   # still a tokenizer, not the registered one
    code, _, err = main(capsys, "predict", f"models:/{MODEL}@champion", TEXT)
    assert code == EXIT_REFUSED and f"{MODEL} version 1: its model files no longer match" in err, err
    assert "(changed tokenizer.json)" in err
    assert not marker.exists(), marker.read_text()
