"""`nerflow predict ... --flow`: the same prediction as a Prefect flow (`nerflow-predict`, one task), tracked in MLflow.

One MLflow run per call in the experiment `nerflow-predict`: params model_uri, input, output, batch_size; metrics
predict/documents, predict/documents_per_s and the task type's counts (predict/entities for NER,
predict/label_<label> for a classifier); the output JSON lines as the artifact
`predictions/<file name>`; tags with the Prefect flow-run id. A failure marks the run FAILED with the error as a tag.
With NERFLOW_CAPTURE_DIR set, the input documents are also appended to that capture folder (nerflow.capture).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

EXPERIMENT = "nerflow-predict"
ARTIFACT_DIR = "predictions"


@task(name="predict", cache_policy=NO_CACHE, persist_result=False, retries=0)
def predict_task(model_uri: str, input_path: str, output_path: str, batch_size: int, trust: bool = False,
                 runtime: str | None = None) -> dict:
    from nerflow.capture import capture_from_env
    from nerflow.documents import predict_documents, read_documents, write_jsonl
    from nerflow.flows.commands.predict import open_model

    capture = capture_from_env()   # NERFLOW_CAPTURE_DIR: opt-in (docs/monitoring.md); a bad bound fails first
    predict, kind = open_model(model_uri, trust, runtime)
    stats: dict = {"task": kind.name}
    docs = read_documents(input_path)
    write_jsonl(output_path, predict_documents(predict, docs, kind, batch_size,
                                               progress=sys.stderr.isatty(), stats=stats))
    if capture is not None:        # after answering; a failed capture only warns
        capture.append(docs, model_uri)
    return stats


@flow(name="nerflow-predict", validate_parameters=False)
def predict_flow(model_uri: str, input_path: str, output_path: str, batch_size: int = 64,
                 input_label: str | None = None, trust: bool = False, runtime: str | None = None) -> dict:
    """`input_path` is what the task reads; `input_label` what the run records as the input (the file the user gave,
    `-` for standard input, `<arguments>` for TEXT arguments)."""
    from mlflow.entities import Metric, Param

    from nerflow.prefect_tasks import tracking

    client = tracking.configure()
    flow_run_id = str(flow_run.get_id() or "")
    run = client.create_run(tracking.experiment_id(client, EXPERIMENT),
                            tags={"mlflow.runName": f"predict {Path(output_path).name}",
                                  "nerflow.prefect_flow_run": flow_run_id, "nerflow.model_uri": model_uri})
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param("model_uri", model_uri), Param("input", input_label or input_path),
                                     Param("output", output_path), Param("batch_size", str(batch_size))])
    try:
        stats = predict_task(model_uri, input_path, output_path, batch_size, trust, runtime)
        step_ms = int(run.info.start_time)
        counted = {"documents": stats["documents"], "documents_per_s": stats["documents_per_s"], **stats["counts"]}
        client.log_batch(run_id, metrics=[Metric(f"predict/{k}", float(v), step_ms, 0) for k, v in counted.items()])
        client.log_artifact(run_id, output_path, ARTIFACT_DIR)
    except BaseException as e:
        client.set_tag(run_id, "error", f"{type(e).__name__}: {e}"[:5000])
        client.set_terminated(run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return {**stats, "run_id": run_id, "flow_run_id": flow_run_id}


def run_flow(model_uri: str, docs: list[dict], input_arg: str | None, output: str | None, batch_size: int,
             trust: bool = False, runtime: str | None = None) -> dict:
    """Run the flow under the Prefect API nerflow uses (PREFECT_API_URL, else a temporary server); documents that
    are not in a re-readable file (standard input, TEXT arguments) are spilled to a temporary JSON lines file first.
    Without `output` the predictions go to stdout after the flow, from the file it logged."""
    from nerflow.documents import write_jsonl
    from nerflow.flows.console import quiet_prefect_failures
    from nerflow.flows.prefect_server import prefect_api

    with tempfile.TemporaryDirectory(prefix="nerflow-predict-") as tmp:
        input_path = input_arg
        if input_arg is None or input_arg == "-":
            input_path = str(Path(tmp) / "input.jsonl")
            write_jsonl(input_path, docs)
        output_path = str(Path(output).resolve()) if output is not None else str(Path(tmp) / "predictions.jsonl")
        label = {None: "<arguments>", "-": "-"}.get(input_arg, str(Path(input_arg).resolve()) if input_arg else "")
        quiet_prefect_failures()
        with prefect_api():
            state = predict_flow(model_uri, input_path, output_path, batch_size, label, trust, runtime,
                                 return_state=True)
            stats = state.result()   # raises what the flow raised
        if output is None:
            with open(output_path, encoding="utf-8") as f:
                shutil.copyfileobj(f, sys.stdout)
            sys.stdout.flush()
    return stats
