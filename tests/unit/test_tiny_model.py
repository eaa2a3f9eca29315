"""The tests' tiny model is the same model in every session: built in two fresh processes (hash-map order differs
between processes), its vocabulary, ids and random-init weights are identical. A trained WordPiece vocabulary was
not (the tokenizers trainer breaks ties in hash-map order), which made a test that needs its model to improve after
epoch 1 pass in one session and fail in the next."""
from __future__ import annotations

import hashlib
import subprocess
import sys

from tests.conftest import ROOT

BUILD = """
import hashlib, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.conftest import TINY_TEXTS, build_tiny_model
with tempfile.TemporaryDirectory() as tmp:
    d = build_tiny_model(Path(tmp), TINY_TEXTS * 20)
    print(*(hashlib.sha256((d / f).read_bytes()).hexdigest() for f in ("tokenizer.json", "model.safetensors")))
"""


def test_the_tiny_model_is_the_same_in_every_process():
    built = [subprocess.run([sys.executable, "-c", BUILD, str(ROOT)], capture_output=True, text=True, timeout=120,
                            env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"})
             for seed in (1, 2)]
    assert all(b.returncode == 0 for b in built), [b.stderr[-2000:] for b in built]
    hashes = [b.stdout.split()[-2:] for b in built]
    assert hashes[0] == hashes[1], "the tiny model differs between two processes"
    assert len(hashes[0]) == 2 and all(len(h) == len(hashlib.sha256().hexdigest()) for h in hashes[0])
