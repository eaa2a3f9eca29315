"""The export stage's library (nerflow.export, nerflow.runtimes): which runtime is served and why, what a folder
without an export is served by, and the ONNX model answering as the PyTorch model does."""
from __future__ import annotations

import json

import pytest
import torch

from nerflow import runtimes
from nerflow.config import ConfigError
from nerflow.export import choose, export_onnx, latency_ms, metrics
from nerflow.runtimes import OnnxModel, load_model, native_bf16, served_runtime, threads


def rows(torch_f1: float, onnx_f1: float, int8_f1: float | None) -> dict:
    out = {"torch": {"val_f1": torch_f1}, "onnx": {"val_f1": onnx_f1}}
    return out if int8_f1 is None else {**out, "onnx-int8": {"val_f1": int8_f1}}


def test_int8_is_served_within_the_allowed_drop_and_the_reason_gives_the_numbers():
    runtime, reason = choose(rows(0.9000, 0.9000, 0.8960), max_f1_drop=0.5)
    assert runtime == "onnx-int8"
    assert reason == "onnx-int8: validation F1 0.8960 vs PyTorch fp32 0.9000 (-0.40 points; allowed -0.5)"
    assert choose(rows(0.9000, 0.9000, 0.8950), 0.5)[0] == "onnx-int8"    # exactly the allowed drop
    assert choose(rows(0.9000, 0.9000, 0.9100), 0.0)[0] == "onnx-int8"    # a gain is no loss


def test_int8_beyond_the_drop_falls_back_to_fp32_onnx_then_pytorch_saying_why():
    runtime, reason = choose(rows(0.9000, 0.9000, 0.8940), 0.5)
    assert runtime == "onnx"
    assert reason.startswith("onnx-int8 not served: validation F1 0.8940 is 0.60 points below PyTorch fp32's 0.9000 "
                             "(export.max_f1_drop 0.5); onnx: validation F1 0.9000")
    runtime, reason = choose(rows(0.9000, 0.8000, 0.7000), 0.5)
    assert runtime == "torch" and "onnx not served" in reason and "onnx-int8 not served" in reason
    assert choose(rows(0.9, 0.9, None), 0.5)[0] == "onnx"                 # export.quantize: false
    assert choose({"torch": {"val_f1": 0.9}}, 0.5) == ("torch", "no ONNX model to compare")   # export failed


def test_metric_names_follow_the_runtime():
    summary = {"rows": {"onnx-int8": {"val_f1": 0.9, "p50_ms": 3.0}, "torch": {"mb": 90.0}}}
    assert metrics(summary) == {"export/onnx_int8_val_f1": 0.9, "export/onnx_int8_p50_ms": 3.0,
                                "export/torch_mb": 90.0}


def test_latency_is_percentiles_of_single_requests():
    seen = []
    p50, p99 = latency_ms(lambda texts: seen.append(texts), ["a", "b", "c", "d"])
    assert seen[:3] == [["a"], ["b"], ["c"]] and seen[3:] == [["a"], ["b"], ["c"], ["d"]]   # warm-up, then each
    assert 0 <= p50 <= p99


def test_a_folder_without_an_export_is_served_by_pytorch_and_onnx_is_one_clear_error(tmp_path, tiny_model_dir):
    from transformers import AutoModelForTokenClassification

    assert served_runtime(tmp_path)["runtime"] == "torch"
    model = load_model(tiny_model_dir, AutoModelForTokenClassification, "cpu")
    assert isinstance(model, torch.nn.Module)
    with pytest.raises(ConfigError, match="no ONNX model to run .*use --runtime torch"):
        load_model(tiny_model_dir, AutoModelForTokenClassification, "cpu", runtime="onnx")
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'"):
        load_model(tiny_model_dir, AutoModelForTokenClassification, "cpu", runtime="tensorrt")


@pytest.mark.parametrize("auto", ["AutoModelForTokenClassification", "AutoModelForSequenceClassification"])
def test_the_exported_graph_answers_like_pytorch_at_any_batch_and_length(auto, tiny_model_dir, tmp_path,
                                                                         monkeypatch):
    import transformers

    model = getattr(transformers, auto).from_pretrained(tiny_model_dir, num_labels=5).eval()
    path = tmp_path / "onnx" / "model.onnx"
    export_onnx(model, path, sequence_output=auto == "AutoModelForTokenClassification")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads() == 1
    onnx = OnnxModel(path, 5)
    torch.manual_seed(0)
    for batch, length in ((1, 3), (4, 17), (2, 40)):   # shapes other than the 2x8 it was traced with
        ids = torch.randint(5, model.config.vocab_size, (batch, length))
        mask = torch.ones_like(ids)
        mask[0, length // 2:] = 0                        # padding, as a batch of unequal texts has
        with torch.no_grad():
            expected = model(input_ids=ids, attention_mask=mask).logits
        assert torch.allclose(onnx(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-4)


def test_served_runtime_reads_the_choice(tmp_path):
    (tmp_path / "runtime.json").write_text(json.dumps({"runtime": "onnx-int8", "file": "onnx/model-int8.onnx",
                                                       "reason": "r"}))
    assert served_runtime(tmp_path)["file"] == "onnx/model-int8.onnx"


def test_the_quantizers_progress_lines_stay_off_the_terminal_and_its_warnings_do_not(tiny_model_dir, tmp_path,
                                                                                     caplog):
    import logging

    import transformers

    from nerflow.export import quantize_int8
    from nerflow.flows.console import OnnxQuantizerInfo, quiet_onnx_quantizer

    model = transformers.AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=5).eval()
    fp32 = tmp_path / "model.onnx"
    export_onnx(model, fp32, sequence_output=True)
    caplog.set_level(logging.INFO)

    def quantizer_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "onnxruntime/quantization" in r.pathname]

    root = logging.getLogger()
    # a command run in-process by an earlier test (flows/console.py) may have installed the filter already
    installed = [f for f in root.filters if isinstance(f, OnnxQuantizerInfo)]
    for f in installed:
        root.removeFilter(f)
    try:
        quantize_int8(fp32, tmp_path / "before.onnx")
        assert len(quantizer_lines()) > 5          # the premise: without the filter they reach every handler
        caplog.clear()
        quiet_onnx_quantizer()
        quantize_int8(fp32, tmp_path / "after.onnx")
        assert quantizer_lines() == []
        logging.getLogger("nerflow.export").info("ours")   # named loggers' lines and the root's warnings still pass
        logging.warning("a warning on the root logger")
        assert [r.getMessage() for r in caplog.records] == ["ours", "a warning on the root logger"]
    finally:
        for f in [f for f in root.filters if isinstance(f, OnnxQuantizerInfo)]:
            root.removeFilter(f)
        for f in installed:
            root.addFilter(f)


def speeds(bf16: tuple[float, float] | None, int8: tuple[float, float] | None) -> dict:
    """Rows with (validation F1, words per second) for bf16 and int8; PyTorch and ONNX fp32 at 0.9000, 100/s."""
    out = {"torch": {"val_f1": 0.9, "words_per_s": 100.0}, "onnx": {"val_f1": 0.9, "words_per_s": 110.0}}
    for name, row in (("torch-bf16", bf16), ("onnx-int8", int8)):
        if row is not None:
            out[name] = {"val_f1": row[0], "words_per_s": row[1]}
    return out


def test_bf16_and_int8_both_within_the_drop_the_faster_as_measured_is_served():
    runtime, reason = choose(speeds((0.8990, 300.0), (0.8980, 160.0)), 0.5)
    assert runtime == "torch-bf16"
    assert reason == ("onnx-int8 not served: 160 per second against torch-bf16's 300; torch-bf16: validation F1 "
                      "0.8990 vs PyTorch fp32 0.9000 (-0.10 points; allowed -0.5)")
    runtime, reason = choose(speeds((0.8990, 300.0), (0.8980, 400.0)), 0.5)
    assert runtime == "onnx-int8" and reason.startswith("torch-bf16 not served: 300 per second against onnx-int8's 400")
    # one beyond the drop: the other, whatever its speed
    runtime, reason = choose(speeds((0.8900, 900.0), (0.8980, 160.0)), 0.5)
    assert runtime == "onnx-int8" and reason.startswith("torch-bf16 not served: validation F1 0.8900 is 1.00 points")
    assert choose(speeds((0.8990, 90.0), (0.8900, 160.0)), 0.5)[0] == "torch-bf16"
    assert choose(speeds((0.8990, 90.0), None), 0.5)[0] == "torch-bf16"      # export.quantize: false
    assert choose(speeds((0.8800, 900.0), (0.8800, 900.0)), 0.5)[0] == "onnx"   # both lost it: ONNX fp32


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_bf16 amx_tile\n")
    assert native_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert native_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")   # no bf16 instructions
    assert not native_bf16(cpuinfo)
    assert not native_bf16(tmp_path / "absent")                                    # not Linux


def test_a_folder_served_in_bf16_runs_bf16_where_the_cpu_has_it_and_fp32_elsewhere(tmp_path, tiny_model_dir,
                                                                                   monkeypatch, caplog):
    import shutil

    from transformers import AutoModelForTokenClassification

    folder = tmp_path / "served"
    shutil.copytree(tiny_model_dir, folder)     # the tokenizer; then a head saved with it, so that loads agree
    AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=3).save_pretrained(folder)
    (folder / "runtime.json").write_text(json.dumps({"runtime": "torch-bf16", "file": "", "reason": "r"}))

    def dtype(model) -> torch.dtype:
        return next(model.parameters()).dtype

    monkeypatch.setattr(runtimes, "native_bf16", lambda: True)
    model = load_model(folder, AutoModelForTokenClassification, "cpu")
    assert dtype(model) == torch.bfloat16
    ids = torch.tensor([[2, 7, 9, 3]])
    with torch.no_grad():
        bf16 = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()
        fp32 = load_model(folder, AutoModelForTokenClassification, "cpu", runtime="torch")(
            input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.allclose(bf16, fp32, atol=0.05)     # bf16 keeps ~3 significant digits
    monkeypatch.setattr(runtimes, "native_bf16", lambda: False)
    assert dtype(load_model(folder, AutoModelForTokenClassification, "cpu")) == torch.float32
    assert "no instructions for: running the fp32 weights" in caplog.text
    # forced, bf16 runs anyway (emulated: slower, the same answers)
    assert dtype(load_model(folder, AutoModelForTokenClassification, "cpu", runtime="torch-bf16")) == torch.bfloat16


def test_a_distilled_student_is_served_only_within_the_drop_and_faster_than_every_other_runtime():
    def with_student(f1: float, speed: float, int8: tuple[float, float] = (0.8980, 160.0)) -> dict:
        return {**speeds(None, int8), "onnx-int8-distilled": {"val_f1": f1, "words_per_s": speed}}

    runtime, reason = choose(with_student(0.8960, 320.0), 0.5)
    assert runtime == "onnx-int8-distilled"
    assert reason == "onnx-int8-distilled: validation F1 0.8960 vs PyTorch fp32 0.9000 (-0.40 points; allowed -0.5)"
    # beyond the drop: refused with the numbers, and the fine-tuned model's own runtimes decide as before
    runtime, reason = choose(with_student(0.8900, 900.0), 0.5)
    assert runtime == "onnx-int8"
    assert reason.startswith("onnx-int8-distilled not served: validation F1 0.8900 is 1.00 points below PyTorch "
                             "fp32's 0.9000 (export.max_f1_drop 0.5); onnx-int8: validation F1 0.8980")
    # within it but no faster than int8 of the full model: a smaller model earns its place by speed only
    runtime, reason = choose(with_student(0.8990, 150.0), 0.5)
    assert runtime == "onnx-int8"
    assert reason.startswith("onnx-int8-distilled not served: 150 per second against onnx-int8's 160; onnx-int8:")
    # int8 of the full model refused: the student still has to beat ONNX fp32 and PyTorch
    assert choose(with_student(0.8990, 150.0, int8=(0.8000, 900.0)), 0.5)[0] == "onnx-int8-distilled"
    runtime, reason = choose(with_student(0.8990, 105.0, int8=(0.8000, 900.0)), 0.5)
    assert runtime == "onnx" and "onnx-int8-distilled not served: 105 per second against onnx's 110" in reason


def test_a_large_batch_is_split_across_one_thread_sessions_with_the_same_answers(tiny_model_dir, tmp_path):
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=5).eval()
    path = tmp_path / "onnx" / "model.onnx"
    export_onnx(model, path, sequence_output=True)
    one, two = OnnxModel(path, 5, n_threads=1), OnnxModel(path, 5, n_threads=2)
    torch.manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (21, 13))
    mask = torch.ones_like(ids)
    mask[3, 5:] = mask[20, 2:] = 0
    small = two(input_ids=ids[:15], attention_mask=mask[:15]).logits     # under 8 rows per thread: not split
    assert two.parts == [] and torch.allclose(small, one(input_ids=ids[:15], attention_mask=mask[:15]).logits,
                                              atol=1e-5)
    split = two(input_ids=ids, attention_mask=mask).logits               # 21 rows: 11 + 10
    assert len(two.parts) == 2 and all(s.get_session_options().intra_op_num_threads == 1 for s in two.parts)
    assert split.shape == (21, 13, 5)
    assert torch.allclose(split, one(input_ids=ids, attention_mask=mask).logits, atol=1e-5)


def test_a_loaded_model_splits_a_batch_after_its_file_is_gone(tiny_model_dir, tmp_path):
    """The gate loads each version from a temporary download, removes it, then scores: the split sessions, made at
    the first large batch, must not need the file (they were once made from its path: NoSuchFile in the gate)."""
    import shutil

    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=5).eval()
    path = tmp_path / "download" / "model.onnx"
    export_onnx(model, path, sequence_output=True)
    one, two = OnnxModel(path, 5, n_threads=1), OnnxModel(path, 5, n_threads=2)
    shutil.rmtree(tmp_path / "download")
    ids = torch.randint(5, model.config.vocab_size, (16, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    split = two(input_ids=ids, attention_mask=mask).logits
    assert len(two.parts) == 2 and two.model_bytes is None   # split, and the bytes let go once the parts exist
    assert torch.allclose(split, one(input_ids=ids, attention_mask=mask).logits, atol=1e-5)
