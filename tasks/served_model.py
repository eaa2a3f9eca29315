"""A registered version's served folder, fetched and checked before nerflow loads it (the gate, `predict`,
`compare`).

Only the folder nerflow loads is downloaded (the pyfunc's `hf_model` artifact: weights, tokenizer, `nerflow.json`),
into a directory the caller owns, and checked there against the version's stored hash (nerflow.model_files): what
is loaded is the copy that was checked, whatever the store holds meanwhile. The version's `python_model.pkl` and
bundled `code/` are never downloaded: they exist for `mlflow models serve` alone.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from nerflow import model_files
from nerflow.config import ConfigError
from nerflow.models import SERVED_ARTIFACT

# what `--trust` is called where a command takes it; the pipeline names its config key instead
TRUST_FLAG = "--trust"
TRUST_KEY = "promote.trust_unverified=true"
MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


@dataclass(frozen=True)
class Source:
    """Where a model's files are and what was stored about them: `hashed` False for a model that is no registered
    version (a run's model), whose files nothing vouches for."""

    uri: str                        # the model's artifact root (what get_model_version_download_uri gives)
    what: str                       # its name in messages: "tiny-ner version 3", or the URI
    stored_hash: str | None = None
    stored_manifest: str | None = None


def version_source(client: MlflowClient, name: str, version: str) -> Source:
    found = client.get_model_version(name, str(version))
    return Source(client.get_model_version_download_uri(name, str(version)), f"{name} version {found.version}",
                  found.tags.get(model_files.MODEL_HASH_TAG), found.tags.get(model_files.MODEL_FILES_TAG))


def uri_source(client: MlflowClient, uri: str) -> Source:
    """A `models:/` URI names a version (by number or alias); any other URI (runs:/, a store's path) a model no
    version vouches for. An unknown model, version, alias or run is bad input."""
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    try:
        if uri.startswith("models:/"):
            named = get_model_name_and_version(client, uri)
            if len(named) == 2:
                return version_source(client, *named)
            # a logged model by id (models:/m-...): no version vouches for it; its files are where it was logged
            return Source(client.get_logged_model(named[0]).artifact_location.rstrip("/"), uri)
        return Source(uri.rstrip("/"), uri)
    except MlflowException as e:
        if e.error_code in MISSING:
            raise ConfigError(f"{uri}: {e.message.splitlines()[0]}") from None
        raise


def fetch(source: Source, dst: Path, trust: bool = False, trust_hint: str = TRUST_FLAG) -> Path:
    """The served folder of `source`, downloaded under `dst` (a directory the caller owns) and verified
    (model_files.verify: UnverifiedModel when it must not be loaded)."""
    try:
        mlmodel = mlflow.artifacts.download_artifacts(artifact_uri=f"{source.uri}/MLmodel", dst_path=str(dst / "meta"))
        sub = model_files.served_path(Path(mlmodel).read_text(encoding="utf-8"), SERVED_ARTIFACT, source.what)
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{source.uri}/{sub}",
                                                          dst_path=str(dst / "model")))
    except MlflowException as e:
        if e.error_code in MISSING:
            raise ConfigError(f"{source.what}: {e.message.splitlines()[0]}") from None
        raise
    except OSError as e:   # a local store without the files
        raise ConfigError(f"{source.what}: not an MLflow model ({e.strerror or e})") from None
    model_files.verify(folder, source.what, source.stored_hash, source.stored_manifest, trust, trust_hint)
    return folder


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No "Loading weights" bar while versions load in this process. The CLI turns transformers' bars off by
    environment before transformers is imported (flows/console.py); a process that imported it earlier (a notebook,
    a test, a long-lived worker) would print one on stderr per version the gate loads."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
