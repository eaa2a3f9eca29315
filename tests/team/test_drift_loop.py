"""The drift loop on the team servers (issue 26): `nerflow schedule CONFIG --monitor INPUT` deploys a drift check and a
retraining deployment with a trigger; `nerflow serve` runs both. A check that finds drift emits
`nerflow.drift.detected` once per episode, Prefect's automation starts the retraining deployment with its own
parameters, and the retraining run ends with "drift detected, no new labelled data" and the texts to label when the
labelled data is unchanged, or registers a new version the gate decides on when it changed. Both task types. A drift
event while a retraining runs queues the next retraining behind it (ENQUEUE), checked at the end of the textcat
loop."""
from __future__ import annotations

import datetime
import json
import os
import random
import re
import shutil
import signal
from pathlib import Path

import httpx

from tests.conftest import build_tiny_model
from tests.integration.drift_corpus import noisy, sentence, write_ner_documents, write_texts
from tests.integration.textcat_corpus import review, write_reviews

from .conftest import MLFLOW_AUTH, PREFECT_AUTH
from .scheduling import NERFLOW, Background, flow_run, nerflow, process_env, versions, wait_for

CHECK_S = 120        # one drift check: a process, the model, 200 texts (~15 s alone here)
TRAIN_S = 240        # a tiny full pipeline run (~30-40 s alone)
TRIGGER_S = 120      # event -> automation -> flow run: ~1 s here; generous for a busy CI host
EVENT = "nerflow.drift.detected"
YEARLY = "0 0 1 1 *"   # no scheduled check comes due during a test: the test starts each one


def ner_project(root: Path, model: str) -> tuple[Path, list[str], list[str]]:
    """Training on 4 documents, a validation split of 80 (the reference and its hold-out), and the texts of two
    batches: drawn like the validation split, and the same shifted."""
    rng = random.Random(7)
    docs = [[sentence(rng) for _ in range(5)] for _ in range(88)]
    (root / "data").mkdir(parents=True)
    write_ner_documents(root / "data" / "train.txt", docs[:4])
    write_ner_documents(root / "data" / "valid.txt", docs[8:])
    write_ner_documents(root / "data" / "test.txt", docs[4:8])
    calm = [" ".join(w for w, _ in sentence(rng)) for _ in range(200)]
    build_tiny_model(root / "model", calm * 2)
    (root / "tiny.yaml").write_text(
        f"experiment: {model}\n"
        "data: {dir: data, train: train.txt, validation: valid.txt, test: test.txt}\n"
        f"model: {{name_or_path: {root / 'model'}}}\n"
        f"registry: {{model_name: {model}}}\n"
        "tokenize: {max_length: 16, stride: 4}\n"
        "train: {epochs: 2, lr: 0.003, batch_size: 8, early_stopping_patience: 0, checkpoint_every: 0}\n"
        "promote: {min_f1: 0.0}\n"
        "monitor: {reference: true, alpha: 0.01, labelling_batch: 10}\n")
    return root / "tiny.yaml", calm, [noisy(t, rng) for t in calm]


def textcat_project(root: Path, model: str) -> tuple[Path, list[str], list[str]]:
    corpus = write_reviews(root / "reviews", per_label=100, seed=3)
    rng = random.Random(5)
    calm = [review(rng, rng.choice(["pos", "neg"]), rng.randint(6, 40)) for _ in range(120)]
    build_tiny_model(root / "model", [p.read_text() for p in corpus.rglob("*.txt")] * 3)
    (root / "tiny.yaml").write_text(
        f"task: text-classification\nexperiment: {model}\n"
        "data: {format: folders, dir: reviews, train: ., split: {validation: 0.4, test: 0.1}}\n"
        f"model: {{name_or_path: {root / 'model'}}}\n"
        f"registry: {{model_name: {model}}}\n"
        "tokenize: {max_length: 16, stride: 4, long_documents: windows}\n"
        "train: {epochs: 2, lr: 0.003, freeze: none, checkpoint_every: 0}\n"
        "promote: {min_f1: 0.0, min_support: 5}\n"
        "monitor: {reference: true, alpha: 0.01, labelling_batch: 10}\n")
    return root / "tiny.yaml", calm, [noisy(t, rng) for t in calm]


def deployment_of(api: str, flow: str, name: str) -> dict:
    return httpx.get(f"{api}/deployments/name/{flow}/{name}", auth=PREFECT_AUTH).raise_for_status().json()


def runs_of(api: str, deployment_id: str) -> list[dict]:
    r = httpx.post(f"{api}/flow_runs/filter", auth=PREFECT_AUTH,
                   json={"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"})
    return r.raise_for_status().json()


def start_check(api: str, name: str) -> str:
    """One drift check now, as a person starts it from the Prefect UI; its flow-run id."""
    import os

    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api,
                                     PREFECT_API_AUTH_STRING: os.environ["PREFECT_API_AUTH_STRING"]}):
        return str(run_deployment(f"nerflow-monitor/{name}", timeout=0).id)


def ended(api: str, run_id: str, server: Background, timeout: float = CHECK_S) -> dict:
    run = wait_for(lambda: (r := flow_run(api, run_id))["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED",
                                                                              "CANCELLED") and r,
                   timeout, f"flow run {run_id} to end", server)
    assert run["state"]["type"] == "COMPLETED", (run["state"], server.tail())
    return run


def drift_events(api: str, model: str) -> list[dict]:
    r = httpx.post(f"{api}/events/filter", auth=PREFECT_AUTH, json={"filter": {
        "event": {"name": [EVENT]}, "resource": {"id": [f"nerflow.model.{model}"]}}, "limit": 50})
    return r.raise_for_status().json()["events"]


def artifacts_of(api: str, flow_run_id: str) -> dict[str, str]:
    """The Prefect artifacts of a flow run (its Artifacts tab), by key."""
    r = httpx.post(f"{api}/artifacts/filter", auth=PREFECT_AUTH,
                   json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    return {a["key"]: a["data"] for a in r.raise_for_status().json()}


def monitoring_run(mlflow_uri: str, run_id: str) -> dict:
    r = httpx.get(f"{mlflow_uri}/api/2.0/mlflow/runs/get", auth=MLFLOW_AUTH, params={"run_id": run_id})
    return {t["key"]: t["value"] for t in r.raise_for_status().json()["run"]["data"].get("tags", [])}


def labelling_batch(mlflow_uri: str, run_id: str) -> list[dict]:
    r = httpx.get(f"{mlflow_uri}/get-artifact", auth=MLFLOW_AUTH,
                  params={"run_id": run_id, "path": "labelling/texts-to-label.jsonl"})
    return [json.loads(line) for line in r.raise_for_status().text.splitlines()]


def set_input(folder: Path, texts: list[str]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    write_texts(folder / "batch.jsonl", texts)


def run_id_in(message: str) -> str:
    return message.rsplit("MLflow run ", 1)[1].split(")")[0].split(",")[0].strip()


def drift_then_retrain(api: str, mlflow_uri: str, name: str, model: str, server: Background,
                       retrain_id: str, runs_before: int) -> tuple[dict, dict]:
    """Start a check that finds drift; the retraining run its event starts, once it has ended."""
    check = ended(api, start_check(api, name), server)
    assert check["state"]["message"].startswith(f"drift detected: event {EVENT} "), check["state"]
    retrain = wait_for(lambda: len(runs := runs_of(api, retrain_id)) > runs_before and runs[-1], TRIGGER_S,
                       "the trigger to start the retraining deployment", server)
    return check, ended(api, retrain["id"], server, TRAIN_S)


def paused_pids(log: Path) -> list[int]:
    """The flow-run processes `nerflow serve` started that said they are paused at `scheduled.planned`, in order."""
    return [int(m) for m in re.findall(r"pausing at scheduled\.planned \(pid (\d+)\)", log.read_text())]


def send_drift_event(api: str, model: str) -> None:
    """`nerflow.drift.detected` for `model`, with the resource a monitoring check gives it (flows/monitor_flow.py)."""
    import asyncio

    from prefect.events import Event
    from prefect.events.clients import PrefectEventsClient
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from nerflow.flows.monitor_flow import resource_id

    async def send() -> None:
        async with PrefectEventsClient(api_url=api) as client:
            await client.emit(Event(event=EVENT, resource={"prefect.resource.id": resource_id(model)}))

    with temporary_settings(updates={PREFECT_API_URL: api,
                                     PREFECT_API_AUTH_STRING: os.environ["PREFECT_API_AUTH_STRING"]}):
        asyncio.run(send())


def when(iso: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))


def state_names(api: str, run_id: str) -> list[str]:
    r = httpx.get(f"{api}/flow_run_states/", auth=PREFECT_AUTH, params={"flow_run_id": run_id})
    return [s["name"] for s in sorted(r.raise_for_status().json(), key=lambda s: s["timestamp"])]


def queued_behind_a_running_retraining(api: str, name: str, model: str, root: Path, env: dict,
                                       retrain_id: str) -> None:
    """The retraining deployment queues (ENQUEUE) a run that a drift event starts while another still runs: it waits
    for the slot and runs afterwards; neither is cancelled, and they never overlap. `nerflow serve` runs with the
    fault point `scheduled.planned` set to pause, so every retraining run plans, then waits for SIGUSR1: the second
    event surely arrives while the first runs. The deployment has drift runs behind it already (`loop`)."""
    known = {r["id"] for r in runs_of(api, retrain_id)}

    def started() -> list[dict]:
        """The runs drift events started since (not the runs the deployment's yearly schedule has waiting)."""
        return sorted((r for r in runs_of(api, retrain_id) if r["id"] not in known and
                       (r.get("created_by") or {}).get("type") == "AUTOMATION"), key=lambda r: r["created"])

    log = root / "serve-queue.log"
    server = Background([*NERFLOW, "serve", name], root, {**env, "NERFLOW_FAULT_POINT": "scheduled.planned:pause"},
                        log)
    try:
        # the automation reads only the event's name and resource; `loop` sent its events through drift checks
        send_drift_event(api, model)
        first = wait_for(lambda: started()[:1], TRIGGER_S, "a drift event to start a retraining run", server)[0]
        first_pid = wait_for(lambda: paused_pids(log)[:1], TRAIN_S, "the retraining run to pause", server)[0]
        assert flow_run(api, first["id"])["state"]["type"] == "RUNNING"

        send_drift_event(api, model)   # while the first still runs
        second = wait_for(lambda: started()[1:], TRIGGER_S, "the second drift event to start a retraining run",
                          server)[0]
        queued = wait_for(lambda: (r := flow_run(api, second["id"]))["state"]["name"] == "AwaitingConcurrencySlot"
                          and r, TRIGGER_S, "the second retraining run to wait for the slot", server)
        assert queued["state"]["type"] == "SCHEDULED" and paused_pids(log) == [first_pid]
        assert flow_run(api, first["id"])["state"]["type"] == "RUNNING"

        os.kill(first_pid, signal.SIGUSR1)   # the first run goes on: it ends, and the queued one gets the slot
        done_first = ended(api, first["id"], server, TRAIN_S)
        assert done_first["state"]["message"].startswith(f"drift detected, no new labelled data: {model} version 1")
        second_pid = wait_for(lambda: paused_pids(log)[1:], TRAIN_S, "the queued run to start", server)[0]
        os.kill(second_pid, signal.SIGUSR1)
        done_second = ended(api, second["id"], server, TRAIN_S)
        assert done_second["state"]["message"].startswith("drift detected, no new labelled data")
        assert "AwaitingConcurrencySlot" in state_names(api, second["id"])
        assert when(done_second["start_time"]) >= when(done_first["end_time"])
    finally:
        server.stop()


def loop(tmp_path: Path, team, team_env, project, name: str, model: str, changed_data) -> None:
    api, mlflow_uri = team.prefect_api_url, team.mlflow_uri
    cfg, calm, shifted = project(tmp_path, model)
    env = process_env(team_env, tmp_path)
    first = nerflow(["run", cfg.name], tmp_path, env, timeout=TRAIN_S)
    assert first.returncode == 0, first.stderr
    assert [v["version"] for v in versions(mlflow_uri, model)] == ["1"]

    inbox = tmp_path / "captured"
    set_input(inbox, shifted)
    made = nerflow(["schedule", cfg.name, "--monitor", "captured", "--cron", YEARLY, "--name", name, "--json"],
                   tmp_path, env)
    assert made.returncode == 0, made.stderr
    made = json.loads(made.stdout)
    assert made["monitor"]["model"] == f"models:/{model}@champion" and made["monitor"]["input"] == "captured"
    assert made["retrain"]["schedule"] is None and len(made["retrain"]["triggers"]) == 1
    retrain_deployment = deployment_of(api, "nerflow-scheduled", name)
    assert retrain_deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    listed = nerflow(["schedule", "ls"], tmp_path, env)
    assert f"checks models:/{model}@champion on captured" in listed.stdout and "started by" in listed.stdout

    server = Background([*NERFLOW, "serve", name], tmp_path, env, tmp_path / "serve.log")
    try:
        # drift, unchanged labelled data: the event starts the retraining run, which names the texts to label
        check, retrain = drift_then_retrain(api, mlflow_uri, name, model, server, retrain_deployment["id"], 0)
        assert retrain["created_by"]["type"] == "AUTOMATION", retrain["created_by"]
        assert retrain["parameters"] == retrain_deployment["parameters"]   # the deployment's, not the event's
        said = retrain["state"]["message"]
        assert said.startswith(f"drift detected, no new labelled data: {model} version 1 "), said
        check_run = run_id_in(check["state"]["message"])
        assert f"runs:/{check_run}/labelling/texts-to-label.jsonl" in said
        batch = labelling_batch(mlflow_uri, check_run)
        assert 1 <= len(batch) <= 10 and len({r["id"] for r in batch}) == len(batch)
        assert {"text", "predicted", "confidence", "drift_witness"} <= set(batch[0]) and \
            all(r["drift_witness"] > 0 for r in batch)
        assert set(r["text"] for r in batch) <= set(shifted)
        tags = monitoring_run(mlflow_uri, check_run)
        assert tags["nerflow.drift"] == "true" and "no new labelled data" in tags["nerflow.drift.retraining"]
        # both flow runs show it in the Prefect UI: the check's table, and what to label
        shown = artifacts_of(api, check["id"])[f"{model}-drift"]
        assert shown.startswith(f"### Drift check of {model} version 1: DRIFT") and \
            f"MLflow run `{check_run}`" in shown and "| embedding | **DRIFT** |" in shown, shown
        assert f"runs:/{check_run}/labelling/texts-to-label.jsonl" in artifacts_of(api, retrain["id"])[
            f"{model}-labelling"]

        # the same drift again: no second event (the check says so; the event count below confirms it)
        again = ended(api, start_check(api, name), server)
        assert again["state"]["message"].startswith("drift continues"), again["state"]
        assert monitoring_run(mlflow_uri, run_id_in(again["state"]["message"]))["nerflow.drift.event"] == \
            tags["nerflow.drift.event"]
        if changed_data is None:
            assert len(drift_events(api, model)) == 1
            # a schedule of its own for the retraining (the cheap "anything new?" check that picks up the labels):
            # it keeps its drift trigger and queues, and cancel_new is refused for it
            both = nerflow(["schedule", cfg.name, "--cron", YEARLY, "--name", name, "--json"], tmp_path, env)
            assert both.returncode == 0, both.stderr
            row = json.loads(both.stdout)
            assert row["schedule"] == f"cron {YEARLY} (UTC)" and row["collision"] == "enqueue" and \
                len(row["triggers"]) == 1
            refused = nerflow(["schedule", cfg.name, "--cron", YEARLY, "--name", name, "--collision",
                               "cancel_new"], tmp_path, env)
            assert refused.returncode == 2 and "--collision cancel_new: the drift event of" in refused.stderr
            server.stop()
            queued_behind_a_running_retraining(api, name, model, tmp_path, env, retrain_deployment["id"])
            return

        # no drift ends the episode; new labelled data, drift again: a new event, version 2 and a gate decision
        set_input(inbox, calm)
        calm_check = ended(api, start_check(api, name), server)
        assert calm_check["state"]["message"].startswith("no drift"), calm_check["state"]
        changed_data(tmp_path)
        set_input(inbox, shifted)
        _, retrain = drift_then_retrain(api, mlflow_uri, name, model, server, retrain_deployment["id"], 1)
        said = retrain["state"]["message"]
        assert said.startswith(f"registered {model} version 2") and "promotion: " in said, said
        assert [v["version"] for v in versions(mlflow_uri, model)] == ["1", "2"]
        assert len(drift_events(api, model)) == 2   # one per episode: the "drift continues" check sent none
    finally:
        server.stop()
        nerflow(["schedule", "delete", name], tmp_path, env)


def more_ner_labels(root: Path) -> None:
    rng = random.Random(99)
    extra = [[sentence(rng) for _ in range(5)] for _ in range(2)]
    train = root / "data" / "train.txt"
    train.write_text(train.read_text() + write_ner_documents(root / "extra.txt", extra).read_text())


def test_ner_drift_event_starts_retraining_which_names_texts_to_label_then_registers_on_new_labels(
        team, team_env, tmp_path):
    loop(tmp_path, team, team_env, ner_project, "ner-drift", "drift-loop-ner", more_ner_labels)


def test_textcat_drift_event_starts_retraining_which_names_texts_to_label_and_another_event_queues_a_run(
        team, team_env, tmp_path):
    loop(tmp_path, team, team_env, textcat_project, "textcat-drift", "drift-loop-textcat", None)
