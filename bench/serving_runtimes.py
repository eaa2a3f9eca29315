"""PyTorch fp32 vs ONNX fp32 vs ONNX int8 (and PyTorch bf16 on a CPU with bf16 instructions) for one trained model,
in one session, one job at a time (issue 25): validation and test F1 through the evaluate stage's code, size, batch
predict words (or texts) per second after model load, and `mlflow models serve` latency and requests/s at 1 and 8
clients (bench/serve_bench.py), with a no-op pyfunc
served the same way as the server's floor.

    python bench/serving_runtimes.py --run-dir bench/out/conll_context/sentence-seed42/nerflow-run \
        --out bench/results/serving_runtimes-conll-cpu-2026-12-04.json

`--run-dir` is a finished benchmark run's folder (its `cache/` holds the validate, tokenize and train outputs): the
export is the export stage's own library function (nerflow.<task>.export.export_model) on that trained model, so
no retraining is needed. A run with the distill stage (`distill.enabled`) adds its student's int8 ONNX as the row
`onnx-int8-distilled`, measured the same way. Each measured row is written to `--out` as it completes and skipped
when already there. At the end the table of docs/benchmarks.md ("Serving fast") is printed, with the issue's
targets for the runtime the export stage chose, against PyTorch fp32 of the same run (`--table`: only that, from
`--out`). `--batch-rounds N` then measures the batch rows N more times, alternated, to show how far the batch ratio
moves between runs (kept in `--out` too; an existing `--out` gets only the rounds it lacks). `--batch-first N`
measures, before anything else, N alternated rounds of the batch rows of PyTorch fp32, ONNX int8 and the distilled
student's int8 alone (exported by the export stage's own functions): the throughput ratio a few minutes after the
distill stage ends, where the whole benchmark takes ~15; with `--student DIR` (the distill stage's `best/` while it
still trains) those rounds, then the served rows of the same three folders and the no-op: speed only, no F1.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

BENCH = Path(__file__).resolve().parent
RUNTIMES = ("torch", "onnx", "onnx-int8")
DISTILLED = "onnx-int8-distilled"


def newest(cache: Path, stage: str) -> Path:
    entries = sorted((cache / stage / ".generations").iterdir(), key=lambda p: p.stat().st_mtime)
    if not entries:
        raise SystemExit(f"{cache}: no {stage} output")
    return entries[-1]


def variant(served: Path, export_dir: Path, runtime: str, dst: Path) -> Path:
    """The served folder as each runtime would be registered: the weights, plus runtime.json and its ONNX file."""
    from nerflow.export import ONNX_FILES

    if dst.exists():
        return dst
    shutil.copytree(served, dst, ignore=shutil.ignore_patterns("onnx", "runtime.json"))
    if runtime == "torch-bf16":
        (dst / "runtime.json").write_text(json.dumps({"runtime": runtime, "file": "", "reason": "benchmark variant"}))
    elif runtime != "torch":
        (dst / "onnx").mkdir()
        shutil.copy2(export_dir / ONNX_FILES[runtime], dst / ONNX_FILES[runtime])
        (dst / "runtime.json").write_text(json.dumps({"runtime": runtime, "file": ONNX_FILES[runtime],
                                                      "reason": "benchmark variant"}))
    return dst


def batch_predict(folder: Path, docs: list[dict], kind) -> dict:
    """`nerflow predict FOLDER --input FILE --batch-size 256` in-process: load (timed apart), then every document."""
    from nerflow.documents import predict_documents
    from nerflow.flows.commands.predict import load_folder

    started = time.perf_counter()
    predict, _ = load_folder(folder, str(folder))
    load_s = time.perf_counter() - started
    stats: dict = {}
    for _ in predict_documents(predict, docs, kind, batch_size=256, stats=stats):
        pass
    return {"load_s": round(load_s, 2), "predict_s": round(stats["seconds"], 2)}


def student_folders(quick: Path, model_dir: Path, student: Path, validated: Path, tokenized: Path,
                    task: str) -> dict[str, Path]:
    """PyTorch fp32, the fine-tuned model's int8 and the student's int8 as served folders, without the export
    block's scoring: exported and quantized by the export stage's own functions."""
    from nerflow import task_types
    from nerflow.config import EvaluateConfig
    from nerflow.export import ONNX, ONNX_FILES, ONNX_INT8, export_onnx, export_student, link_tree, quantize_int8

    if not (quick / ONNX_FILES[DISTILLED]).is_file():
        shutil.rmtree(quick, ignore_errors=True)
        quick.mkdir(parents=True)
        link_tree(model_dir, quick / "served")
        module = task_types.entry(task, "export")   # NerExport or TextcatExport: the task's export measures
        exporter = next(v for k, v in vars(module).items() if k.endswith("Export") and isinstance(v, type))
        measures = exporter(model_dir, validated, tokenized, EvaluateConfig())
        export_onnx(measures.auto_class.from_pretrained(model_dir).eval(), quick / ONNX_FILES[ONNX],
                    sequence_output=measures.unit == "words")
        quantize_int8(quick / ONNX_FILES[ONNX], quick / ONNX_FILES[ONNX_INT8])
        if export_student(student, measures, quick) is None:
            raise SystemExit(f"{student}: the student could not be exported (the log says why)")
    return {rt: variant(quick / "served", quick, rt, quick / f"served-{rt}") for rt in ("torch", ONNX_INT8, DISTILLED)}


def serve_all(work: Path, folders: dict[str, Path], task: str, done: dict, save, requests: int) -> None:
    """`mlflow models serve` of each folder and of the no-op pyfunc, bench/serve_bench.py at 1 and 8 clients; each row
    saved as it completes, rows already in `done` skipped."""
    names = (*folders, "no-op")
    uris = log_models(work, folders, task) if any(f"serve {n}" not in done["rows"] for n in names) else {}
    for name, uri in uris.items():
        key = f"serve {name}"
        if key in done["rows"]:
            continue
        out = work / f"serve-{name}.json"
        subprocess.run([sys.executable, str(BENCH / "serve_bench.py"), uri, "--requests", str(requests),
                        "--concurrency", "1", "8", "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}",
                        "--output", str(out)], check=True)
        result = json.loads(out.read_text())
        done["rows"][key] = {"ready_s": result.get("ready_s"), "levels": [
            {k: lv[k] for k in ("clients", "requests_per_s", "p50_ms", "p99_ms", "failed") if k in lv}
            for lv in result["levels"]]}
        save()
        print(key, done["rows"][key], file=sys.stderr)


class NoOp:
    """The server's floor: a pyfunc that answers an empty list per text, no model."""


def log_models(store: Path, folders: dict[str, Path], task: str) -> dict[str, str]:
    """Each variant logged as nerflow registers it (its pyfunc and code), plus the no-op; their model URIs."""
    import mlflow
    from mlflow.pyfunc import PythonModel

    from nerflow.prefect_tasks.register import log_servable_model

    class Empty(PythonModel):
        def predict(self, context, model_input, params=None):
            return [[] for _ in range(len(model_input))]

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    uris = {}
    with mlflow.start_run() as run:
        for name, folder in folders.items():
            uris[name] = log_servable_model(run.info.run_id, str(folder), task,
                                            ("onnxruntime==1.31.1",) if name.startswith("onnx") else ()).model_uri
        uris["no-op"] = mlflow.pyfunc.log_model(name="noop", python_model=Empty(), input_example=["x"]).model_uri
    return uris


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=BENCH / "out" / "serving_runtimes")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--latency-requests", type=int, default=50)
    ap.add_argument("--batch-rounds", type=int, default=0,
                    help="then N more rounds of the batch rows alone, alternated (every other round reversed), each "
                         "written as it completes: how far the batch ratio moves between runs")
    ap.add_argument("--batch-first", type=int, default=0,
                    help="first N alternated rounds of the batch rows of PyTorch fp32, ONNX int8 and the distilled "
                         "student's int8 alone, before the export block (a run with a student only)")
    ap.add_argument("--student", type=Path,
                    help="with --batch-first: this student folder (the distill stage's `best/` of a run still "
                         "training: speed does not depend on the weights, F1 does), then those folders served")
    ap.add_argument("--table", action="store_true", help="print the table of --out and measure nothing")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return 0
    from nerflow import task_types
    from nerflow.config import EvaluateConfig
    from nerflow.config_export import ExportConfig
    from nerflow.runtimes import native_bf16

    runtimes = (*RUNTIMES, "torch-bf16") if native_bf16() else RUNTIMES

    cache = args.run_dir / "cache"
    model_dir, validated, tokenized = newest(cache, "train") / "model", newest(cache, "validate"), \
        newest(cache, "tokenize")
    student = newest(cache, "distill") / "model" if (cache / "distill" / ".generations").is_dir() else None
    if args.student and not args.batch_first:
        raise SystemExit("--student: only with --batch-first (a student still training has no F1 to report)")
    student = args.student or student
    runtimes = (*runtimes, DISTILLED) if student else runtimes
    task = json.loads((model_dir / "nerflow.json").read_text()).get("task", "token-classification")
    kind = task_types.get(task)
    # one work folder per results file (its rows resume together); named after the run folder's parent until
    # 2026-12-06, which gave two models whose run folders share a parent name ("out") one folder
    work = args.work / args.out.stem
    work.mkdir(parents=True, exist_ok=True)
    done = json.loads(args.out.read_text()) if args.out.is_file() else {
        "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "model": str(model_dir), "task": task, "rows": {}}

    if student:
        done.setdefault("student", str(student))

    def save() -> None:
        args.out.write_text(json.dumps(done, indent=1) + "\n")

    lines = [json.loads(line) for line in (validated / "test.jsonl").read_text().splitlines()]
    docs = [{"text": " ".join(d["tokens"]) if "tokens" in d else d["text"]} for d in lines]
    units = sum(len(d["tokens"]) for d in lines) if "tokens" in lines[0] else len(lines)
    if args.batch_first and not student:
        raise SystemExit(f"--batch-first: {args.run_dir} has no distill stage output")
    if args.batch_first:
        first = done.setdefault("batch_first", {})
        folders = student_folders(work / "batch-first", model_dir, student, validated, tokenized, task)
        for n in range(len(first.get("torch", [])), args.batch_first):
            for rt in (folders if n % 2 == 0 else list(folders)[::-1]):
                first.setdefault(rt, []).append(round(units / batch_predict(folders[rt], docs, kind)["predict_s"], 1))
            save()
            print(f"batch first, round {n + 1}", {rt: per_s[-1] for rt, per_s in first.items()},
                  f"{first[DISTILLED][-1] / first['torch'][-1]:.2f}x", file=sys.stderr)
    if args.student:     # a student still training: its speed only (batch rows above, served rows here), no F1
        serve_all(work / "batch-first", folders, task, done, save, args.requests)
        print(table(done))
        return 0
    export_dir = work / "export"
    if "export" not in done:   # F1s, sizes, in-process throughput and latency: the export stage's own measurement
        shutil.rmtree(export_dir, ignore_errors=True)
        export_dir.mkdir()
        cfg = SimpleNamespace(export=ExportConfig(enabled=True, latency_requests=args.latency_requests,
                                                  bf16=native_bf16()),
                              evaluate=EvaluateConfig())
        started = time.perf_counter()
        summary = task_types.entry(task, "export").export_model(model_dir, validated, tokenized, cfg, export_dir,
                                                                student)
        done["export"] = {**summary, "stage_seconds": round(time.perf_counter() - started, 1)}
        save()
        print(json.dumps(done["export"], indent=1), file=sys.stderr)
    folders = {rt: variant(export_dir / "served", export_dir, rt, work / f"served-{rt}") for rt in runtimes}
    for rt in runtimes:
        key = f"batch {rt}"
        if key not in done["rows"]:
            row = batch_predict(folders[rt], docs, kind)
            done["rows"][key] = {**row, "units": units, "per_s": round(units / row["predict_s"], 1)}
            save()
            print(key, done["rows"][key], file=sys.stderr)
    serve_all(work, folders, task, done, save, args.requests)
    rounds = done.setdefault("batch_rounds", {})
    for n in range(len(rounds.get("torch", [])), args.batch_rounds):
        for rt in (runtimes if n % 2 == 0 else runtimes[::-1]):
            rounds.setdefault(rt, []).append(round(units / batch_predict(folders[rt], docs, kind)["predict_s"], 1))
        save()
        print(f"batch round {n + 1}", {rt: per_s[-1] for rt, per_s in rounds.items()}, file=sys.stderr)
    print(table(done))
    return 0


def table(done: dict) -> str:
    """The runtimes side by side (markdown) and the issue's three targets for the served one against PyTorch fp32:
    >= 3x batch units/s, served p50 at one client <= half, test F1 drop <= 0.5 points."""
    if "export" not in done:      # --student, or the batch rows measured first so far: speed only
        served = {k.removeprefix("serve "): {lv["clients"]: lv for lv in v["levels"]} for k, v in done["rows"].items()
                  if k.startswith("serve ")}
        lines = []
        for name, levels in served.items():
            said = ", ".join(f"{c} client(s) {lv['p50_ms']} / {lv['p99_ms']} ms ({lv['requests_per_s']:.1f} req/s)"
                             for c, lv in sorted(levels.items()))
            if "torch" in served and name not in ("torch", "no-op"):
                said += f"; p50 at 1 client {levels[1]['p50_ms'] / served['torch'][1]['p50_ms']:.2f}x PyTorch fp32's"
            lines.append(f"- served {name}: p50 / p99 {said}")
        return "\n".join(batch_rounds(done, "words" if done["task"] == "token-classification" else "texts") +
                         ([""] + lines if lines else []))
    stage, rows, unit = done["export"]["rows"], done["rows"], done["export"].get("unit", "words")

    def served(name: str, clients: int) -> dict:
        return next((lv for lv in rows.get(f"serve {name}", {}).get("levels", []) if lv["clients"] == clients), {})

    def cells(name: str) -> list[str]:
        one, eight = served(name, 1), served(name, 8)
        latency = [f"{lv.get('p50_ms', '-')} / {lv.get('p99_ms', '-')} ms" if lv else "-" for lv in (one, eight)]
        rates = [f"{lv['requests_per_s']:.1f}" if lv else "-" for lv in (one, eight)]
        if name == "no-op":
            return ["-", "-", "-", "-", latency[0], rates[0], latency[1], rates[1]]
        batch = rows.get(f"batch {name}", {}).get("per_s")
        return [f"{stage[name]['val_f1']:.4f}", f"{stage[name]['test_f1']:.4f}", f"{stage[name]['mb']:.1f}",
                f"{batch:,.0f}" if batch else "-", latency[0], rates[0], latency[1], rates[1]]

    chosen = done["export"]["runtime"]
    head = ["runtime", "val F1", "test F1", "MB", f"batch {unit}/s", "served p50 / p99, 1 client", "req/s, 1 client",
            "p50 / p99, 8 clients", "req/s, 8 clients"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in (*stage, "no-op"):
        label = f"**{name} (served)**" if name == chosen else name
        lines.append("| " + " | ".join([label, *cells(name)]) + " |")
    base, best = rows.get("batch torch", {}).get("per_s"), rows.get(f"batch {chosen}", {}).get("per_s")
    p50 = {n: served(n, 1).get("p50_ms") for n in ("torch", chosen)}
    drop = 100 * (stage["torch"]["test_f1"] - stage[chosen]["test_f1"])
    lines += ["", f"served: {chosen} ({done['export']['reason']})",
              f"- batch {unit}/s: {best / base:.2f}x PyTorch fp32's (target >= 3x: "
              f"{'met' if best >= 3 * base else 'missed'})" if base and best else f"- batch {unit}/s: not measured",
              f"- served p50 at one client: {p50[chosen] / p50['torch']:.2f}x PyTorch fp32's (target <= 0.5x: "
              f"{'met' if p50[chosen] <= 0.5 * p50['torch'] else 'missed'})" if all(p50.values())
              else "- served p50: not measured",
              f"- test F1 drop: {drop:+.2f} points (target <= 0.5: {'met' if drop <= 0.5 else 'missed'})"]
    return "\n".join(lines + batch_rounds(done, unit))


def batch_rounds(done: dict, unit: str) -> list[str]:
    """The batch rows measured apart (`--batch-first`, `--batch-rounds`), per round against PyTorch fp32."""
    lines = []
    for key, said in (("batch_first", "before the export block"), ("batch_rounds", "more")):
        rounds = done.get(key, {})
        if rounds.get("torch"):
            lines += ["", f"batch {unit}/s, {len(rounds['torch'])} alternated rounds {said} (vs PyTorch fp32, per "
                          "round):"]
            lines += [f"- {rt}: " + ", ".join(f"{v:,.0f}" for v in per_s) + " (" + ", ".join(
                f"{v / b:.2f}x" for v, b in zip(per_s, rounds["torch"])) + ")" for rt, per_s in rounds.items()]
    return lines


if __name__ == "__main__":
    sys.exit(main())
