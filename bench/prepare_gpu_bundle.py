"""What bench/train_speed.py needs on a GPU machine that has torch and transformers but nothing else of nerflow's
(no MLflow, Prefect or GX, no registry access, 64 MiB of files per call): the MiniLM weights in half precision
(~45 MB), the CoNLL-2003 files, and the small wheels the library imports beyond torch/transformers (pydantic and
its core for Python 3.12, seqeval). Written under bench/out/gpu (git-ignored: research data never enters the
repository). The command that uses it is in docs/benchmarks.md, "GPU".

    python bench/prepare_gpu_bundle.py [--out bench/out/gpu]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
# pure-Python or manylinux wheels for the device's CPython 3.12; versions as pinned in requirements.lock
WHEELS = ["pydantic==2.14.3", "pydantic-core==2.50.4", "annotated-types==0.8.0", "typing-inspection==0.4.5"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "gpu")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "conll2003")
    args = ap.parse_args()
    import torch
    from transformers import AutoModel, AutoTokenizer

    from nerflow.models import resolve_model

    shutil.rmtree(args.out, ignore_errors=True)
    model_dir = args.out / "minilm-fp16"
    source = resolve_model("all-MiniLM-L6-v2", ROOT / ".cache" / "nerflow")
    AutoModel.from_pretrained(source, dtype=torch.float16).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(source).save_pretrained(model_dir)
    (args.out / "conll2003").mkdir(parents=True)
    for name in ("train.txt", "valid.txt", "test.txt"):
        shutil.copy(args.data_dir / name, args.out / "conll2003" / name)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", "3.12",
                    "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64", "--no-deps", "-d",
                    str(args.out / "wheels"), *WHEELS], check=True)
    # seqeval ships only a source archive: build its (pure-Python) wheel here, the device may have no build tools
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(args.out / "wheels"),
                    "seqeval==1.2.2"], check=True)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {size / 2**20:.1f} MiB (the device takes 64 MiB per call)")


if __name__ == "__main__":
    main()
