"""What a registered model folder must be before nerflow loads it: the files it was registered with (a hash of the
whole folder, stored on the version), and no pickled weights.

nerflow loads a version's served folder (weights as safetensors, tokenizer, `nerflow.json`) with its own installed
code: it never unpickles an artifact nor imports a version's bundled code. What can still go wrong is the files
themselves: replaced in the artifact store after registration (the hash catches that), or pickled weights, which
`torch.load` may execute (refused unless the caller trusts the folder). docs/promotion.md, "Loading a version",
says what the hash protects against and what it does not.

The hash is sha256 over a manifest: one `<sha256 of the file>  <relative path>` line per file, sorted by path
(the format of `sha256sum`). Hashing file hashes rather than the files' bytes back to back keeps a name and the
content before it from trading bytes; the manifest itself, stored beside the hash when it fits a tag, names the
files that differ.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from nerflow.promotion import Refused

MODEL_HASH_TAG = "nerflow.model_sha256"     # sha256 of the manifest of the served model folder
MODEL_FILES_TAG = "nerflow.model_files"     # the manifest itself, when it fits a tag: names what changed
TAG_LIMIT = 4900                            # what nerflow writes into one MLflow tag value at most
# Weight formats loaded through pickle (torch.load, joblib): loading one may run code. safetensors is plain data.
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


class UnverifiedModel(Refused):
    """A model folder nerflow will not load: its files differ from the registered ones, it has no stored hash to
    check them against, or it carries pickled weights (exit code 4, "refused by a rule")."""


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(folder: Path | str) -> str:
    """`<sha256>  <path>` per file under `folder`, sorted by its relative POSIX path, one line each."""
    folder = Path(folder)
    files = sorted((p.relative_to(folder).as_posix(), p) for p in folder.rglob("*") if p.is_file())
    return "".join(f"{_file_sha256(p)}  {rel}\n" for rel, p in files)


def digest(manifest_text: str) -> str:
    return hashlib.sha256(manifest_text.encode("utf-8")).hexdigest()


def folder_sha256(folder: Path | str) -> str:
    """The hash of the whole folder: every file's path and content."""
    return digest(manifest(folder))


def version_tags(folder: Path | str) -> dict[str, str]:
    """The tags registration writes on a version: the folder's hash, and its manifest when it fits a tag."""
    text = manifest(folder)
    return {MODEL_HASH_TAG: digest(text), **({MODEL_FILES_TAG: text} if len(text) <= TAG_LIMIT else {})}


def _entries(manifest_text: str) -> dict[str, str]:
    return {path: sha for sha, _, path in (line.partition("  ") for line in manifest_text.splitlines() if line)}


def changed_files(stored_manifest: str, actual_manifest: str) -> list[str]:
    """What differs, in words: `changed X`, `added Y`, `missing Z` (path order)."""
    stored, actual = _entries(stored_manifest), _entries(actual_manifest)
    words = {p: "changed" for p in stored.keys() & actual.keys() if stored[p] != actual[p]}
    words |= {p: "added" for p in actual.keys() - stored.keys()} | {p: "missing" for p in stored.keys() - actual.keys()}
    return [f"{words[p]} {p}" for p in sorted(words)]


def pickled_files(folder: Path | str) -> list[str]:
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in PICKLED_SUFFIXES)


def verify(folder: Path | str, what: str, stored_hash: str | None, stored_manifest: str | None = None,
           trust: bool = False, trust_hint: str = "--trust", hashed: bool = True) -> None:
    """Refuse (UnverifiedModel) a model folder nerflow should not load; return quietly otherwise.

    `what` names the model in the message ("tiny-ner version 3"); `hashed`: the model comes from a registry, where
    a version carries `stored_hash` (None: registered before nerflow stored one). A folder whose files differ from
    the stored hash is refused whatever `trust` says: it is not what was registered. `trust` lets through a version
    without a hash and pickled weights; `trust_hint` says how the caller gives it (a flag, a config key)."""
    if hashed:
        if stored_hash is None:
            if not trust:
                raise UnverifiedModel(
                    f"{what} has no stored model hash ({MODEL_HASH_TAG}: registered before nerflow stored one, or "
                    f"not a registered version), so its files cannot be checked; give {trust_hint} to load it as it "
                    "is, or register the model folder again")
        else:
            actual = manifest(folder)
            if digest(actual) != stored_hash:
                differs = changed_files(stored_manifest, actual) if stored_manifest is not None and \
                    digest(stored_manifest) == stored_hash else []
                detail = f" ({', '.join(differs[:5])}{', ...' if len(differs) > 5 else ''})" if differs else ""
                raise UnverifiedModel(
                    f"{what}: its model files no longer match the hash stored at registration{detail}; they were "
                    "changed in the artifact store after registration: not loaded (register a folder you trust "
                    "again)")
    pickled = pickled_files(folder)
    if pickled and not trust:
        raise UnverifiedModel(f"{what} carries pickled weights ({', '.join(pickled[:5])}), which can run code when "
                              f"loaded; nerflow loads safetensors only: give {trust_hint} to load them anyway")


def served_path(mlmodel_text: str, artifact: str, what: str) -> str:
    """Where an MLflow pyfunc model keeps its artifact `artifact` (e.g. `artifacts/model`), read from its `MLmodel`
    file as plain YAML data. The path stays inside the model: the MLmodel file is not covered by the hash."""
    import yaml

    try:
        path = yaml.safe_load(mlmodel_text)["flavors"]["python_function"]["artifacts"][artifact]["path"]
    except (yaml.YAMLError, KeyError, TypeError):
        raise UnverifiedModel(f"{what}: its MLmodel file names no artifact {artifact!r}: not a model nerflow "
                              "registered") from None
    parts = Path(str(path)).parts
    if not parts or Path(str(path)).is_absolute() or ".." in parts:
        raise UnverifiedModel(f"{what}: its MLmodel file puts the artifact {artifact!r} outside the model ({path})")
    return Path(str(path)).as_posix()
