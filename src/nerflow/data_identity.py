"""What the configured data is, by role and content, and whether what a run read is what it was planned with.

`identity(cfg)` describes the data for the validate stage's key: each configured role (train, validation, test) by
the sha256 of its file or of its label folders, a local Hugging Face dataset folder by its files, a hub dataset by the
commit its revision resolves to. Content, not location: moving or renaming the data keeps the identity; swapping two
roles' files, renaming a label folder or changing one byte changes it.

The data is described when a run is planned and read later. Every data file the readers (nerflow.ner.data,
nerflow.textcat.data) read goes through `nerflow.data.read_bytes`, which records the sha256 of exactly the bytes it
returned in the ledger that `reading()` opens; `check_read` recomputes the identity from those hashes, so a file
replaced between plan and read stops the run instead of being trained on under the old content's key.
`load_checked` does both around one load.

Plain functions: no Prefect or MLflow; huggingface_hub is imported only when a hub id is resolved.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import TypeVar

from nerflow.config import ConfigError, DataConfig
from nerflow.data import READ_LEDGER, SPLITS, DataError
from nerflow.stat_cache import file_sha256

T = TypeVar("T")
_COMMIT = re.compile(r"[0-9a-f]{40}")   # how the hub spells a commit (huggingface_hub's REGEX_COMMIT_HASH)
_CHANGED = ("{}: changed while the run started (its content is not what the run was planned with); run the command "
            "again")


def is_pinned(revision: str | None) -> bool:
    """A 40-hex commit: the only kind of revision that names the same content forever."""
    return revision is not None and _COMMIT.fullmatch(revision) is not None


def role_paths(cfg: DataConfig) -> dict[str, Path]:
    """role -> the configured file (data.format=folders: the folder of label folders); {} for hf."""
    if cfg.format == "hf":
        return {}
    names = {"train": cfg.train, "validation": cfg.validation, "test": cfg.test}
    return {role: cfg.dir / name for role, name in names.items() if name}


def label_folder_layout(root: Path) -> dict[str, list[Path]]:
    """data.format=folders: label -> its document files, sorted; hidden files and folders (.DS_Store, .git) are not
    data. The text-classification reader reads exactly these files and the identity hashes exactly these."""
    if not root.is_dir():
        raise DataError(f"{root}: folder not found" if not root.exists() else
                        f"{root}: not a folder; data.format=folders reads a folder holding one folder per label")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    layout = {folder.name: sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                                  key=lambda p: p.name)
              for folder in folders}
    if not layout:
        raise DataError(f"{root}: no label folders; data.format=folders expects one sub-folder per label, each "
                        "holding one text file per document")
    if not any(layout.values()):
        raise DataError(f"{root}: no documents in its label folders ({', '.join(layout)})")
    empty = [name for name, files in layout.items() if not files]
    if empty:
        raise DataError(f"{root / empty[0]}: label folder has no documents; add some or remove the folder")
    return layout


def identity(cfg: DataConfig) -> dict[str, str]:
    """role -> `file:sha256:<hex>` / `folder:sha256:<hex>` for each configured role (a role not configured is absent:
    it is cut from train by the split settings, which the key holds separately); `{"hf": "folder:sha256:<hex>"}`
    for a local dataset folder, `{"hf": "hub:<id>@<commit>"}` for a hub dataset (ConfigError if unresolvable)."""
    if cfg.format == "hf":
        name = _hf_name(cfg)
        if _is_local_dataset(name):
            return {"hf": _dataset_folder_identity(Path(name))}
        return {"hf": f"hub:{name}@{resolve_hub_revision(name, cfg.hf_revision, repo_type='dataset')}"}
    described = {}
    for role, path in role_paths(cfg).items():
        if cfg.format == "folders":
            files = label_folder_layout(path).values()
            described[role] = _folder(tree_digest((f.relative_to(path).as_posix(), _sha256(f))
                                                   for fs in files for f in fs))
        elif not path.is_file():
            raise DataError(f"{path}: file not found")
        else:
            described[role] = _file(_sha256(path))
    return described


def identity_digest(described: dict[str, str]) -> str:
    """One hex digest of an identity, for keys that want a string."""
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


# --- hub revisions -------------------------------------------------------------------------------------------------

def resolve_hub_revision(repo_id: str, revision: str | None, repo_type: str = "model") -> str:
    """The 40-hex commit `revision` (None: main) of a hub repo names now: a commit as is; otherwise from the hub, or,
    offline (HF_HUB_OFFLINE=1) or when the hub cannot be reached, from the local Hugging Face cache (`refs/<revision>`
    of HF_HUB_CACHE, as huggingface_hub.constants holds it). Neither: a ConfigError saying what to pin."""
    if revision is not None and is_pinned(revision):
        return revision
    # huggingface_hub's own resolver: the hub's answer when online, its cache's refs/ when offline or unreachable.
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RevisionResolutionError

    offline = constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    try:
        resolved = HfApi().resolve_revision(repo_id, repo_type=repo_type, revision=revision,
                                            local_files_only=offline).resolved
    except RevisionResolutionError:
        reason = "it is not in the local Hugging Face cache and the hub cannot be reached"
    except (HfHubHTTPError, HFValidationError) as e:   # the hub answered: no such repo or revision; or a bad id
        reason = str(e).strip().splitlines()[0].rstrip(".")
    else:
        if is_pinned(resolved):
            return resolved
        reason = f"the local Hugging Face cache says {resolved!r}, which is not a commit"
    what, key = ("model", "model.revision") if repo_type == "model" else ("dataset", "data.hf_revision")
    if repo_type == "dataset":   # data.hf_dataset may have been meant as a folder
        reason += ", and no local folder has that name"
    raise ConfigError(f"cannot resolve revision {revision or 'main'!r} of the hub {what} {repo_id!r} to a commit: "
                      f"{reason}; pin {key} to a 40-character commit")


# --- what was read -------------------------------------------------------------------------------------------------

@contextmanager
def reading() -> Iterator[dict[str, str]]:
    """Opens the ledger the readers record into: absolute path -> sha256 of the bytes read. Reads in other threads
    are not recorded (a ContextVar): load on the calling thread."""
    ledger: dict[str, str] = {}
    token = READ_LEDGER.set(ledger)
    try:
        yield ledger
    finally:
        READ_LEDGER.reset(token)


def check_read(cfg: DataConfig, planned: dict[str, str], ledger: dict[str, str]) -> None:
    """DataError naming the file (for label folders: the folder) whose content read is not the `planned` identity.
    The identity is recomputed from the ledger's hashes, not by reading the disk again; only a local hf dataset
    folder, which `datasets` reads, is hashed again (after the load: a change during the load that is undone before
    this hash is not caught)."""
    if cfg.format == "hf":
        _check_hf(cfg, planned)
        return
    paths = role_paths(cfg)
    if set(paths) != set(planned):
        raise ValueError(f"the run was planned with data roles {sorted(planned)} but the config has {sorted(paths)}")
    read = _identity_read(paths, cfg.format == "folders", ledger)
    for role in (r for r in SPLITS if r in paths):
        if read[role] != planned[role]:
            raise DataError(_CHANGED.format(paths[role]))


def load_checked(cfg: DataConfig, planned: dict[str, str], load: Callable[[DataConfig], T]) -> T:
    """`load(cfg)` with its reads recorded, then `check_read`. A hub dataset is loaded at the planned commit."""
    hub = planned.get("hf", "")
    if cfg.format == "hf" and hub.startswith("hub:"):
        cfg = cfg.model_copy(update={"hf_revision": hub.rsplit("@", 1)[1]})
    with reading() as ledger:
        loaded = load(cfg)
    check_read(cfg, planned, ledger)
    return loaded


def _identity_read(paths: dict[str, Path], folders: bool, ledger: dict[str, str]) -> dict[str, str]:
    """The identity of what the ledger says was read, built like `identity` builds it from the disk."""
    read = {}
    for role, path in paths.items():
        key = os.path.abspath(path)
        if folders:   # a document is root/label/file: exactly two levels below the root, as label_folder_layout lists
            files = [(PurePath(p).relative_to(key).as_posix(), digest) for p, digest in ledger.items()
                     if os.path.dirname(os.path.dirname(p)) == key]
            value = _folder(tree_digest(files)) if files else None
        else:
            value = _file(ledger[key]) if key in ledger else None
        if value is None:
            raise RuntimeError(f"{path}: nothing of it was read inside nerflow.data_identity.reading(), so what was "
                               "read cannot be checked")
        read[role] = value
    return read


def _check_hf(cfg: DataConfig, planned: dict[str, str]) -> None:
    name = _hf_name(cfg)
    if _is_local_dataset(name):
        now = _dataset_folder_identity(Path(name))
    else:   # a commit never changes: what matters is that the load read the planned one (load_checked pins it)
        now = f"hub:{name}@{resolve_hub_revision(name, cfg.hf_revision, repo_type='dataset')}"
    if now != planned.get("hf"):
        raise DataError(_CHANGED.format(name))


# --- hashing -------------------------------------------------------------------------------------------------------

def _hf_name(cfg: DataConfig) -> str:
    if not cfg.hf_dataset:
        raise DataError("config key 'data.hf_dataset' is required when data.format is 'hf'")
    return cfg.hf_dataset


def _is_local_dataset(name: str) -> bool:
    return os.path.isdir(name)   # what datasets.load_dataset decides: an existing folder, else a hub id


def _dataset_folder_identity(root: Path) -> str:
    """The files `datasets` reads from a local folder by default: not hidden ones (or inside hidden folders), not
    inside folders named `__*` (datasets.data_files); junk such as .DS_Store or .git does not change the identity."""
    files = []
    for f in root.rglob("*"):
        parts = f.relative_to(root).parts
        if f.is_file() and not any(p.startswith(".") for p in parts) and not any(p.startswith("__")
                                                                               for p in parts[:-1]):
            files.append((PurePath(*parts).as_posix(), _sha256(f)))
    return _folder(tree_digest(files))


def _sha256(path: Path) -> str:
    return file_sha256(path)   # the scheduled check's stat cache may answer (nerflow.stat_cache); a run hashes


def tree_digest(files: Iterable[tuple[str, str]]) -> str:
    """sha256 over (relative POSIX name, sha256 of the content) in name order, each part length-prefixed so no two
    layouts hash alike. Built from per-file hashes, so the ledger's hashes rebuild it without the bytes."""
    h = hashlib.sha256()
    for name, digest in sorted(files):
        for part in (name.encode(), digest.encode()):
            h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()


def _file(digest: str) -> str:
    return f"file:sha256:{digest}"


def _folder(digest: str) -> str:
    return f"folder:sha256:{digest}"
