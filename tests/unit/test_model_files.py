"""The model folder's hash and the rules nerflow checks before loading a version's files (nerflow.model_files): a
changed, added or missing file breaks the hash and is named; a version without a hash, or with pickled weights,
needs trust; a changed folder is refused even with it. The registered versions themselves:
tests/integration/test_no_registry_code.py."""
from __future__ import annotations

import pytest

from nerflow import model_files
from nerflow.model_files import UnverifiedModel
from nerflow.promotion import Refused


def folder(tmp_path):
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "model.safetensors").write_bytes(b"weights")
    (root / "tokenizer.json").write_text("{}")
    (root / "sub" / "nerflow.json").write_text('{"labels": []}')
    return root


def test_the_hash_covers_every_file_by_path_and_content(tmp_path):
    root = folder(tmp_path)
    tags = model_files.version_tags(root)
    before = tags[model_files.MODEL_HASH_TAG]
    assert model_files.folder_sha256(root) == before == model_files.digest(tags[model_files.MODEL_FILES_TAG])
    assert tags[model_files.MODEL_FILES_TAG].splitlines()[-1].endswith("  tokenizer.json")
    (root / "tokenizer.json").rename(root / "tokenizer2.json")            # same bytes, another name
    assert model_files.folder_sha256(root) != before
    (root / "tokenizer2.json").rename(root / "tokenizer.json")
    (root / "model.safetensors").write_bytes(b"weightz")                  # same name, other bytes
    assert model_files.folder_sha256(root) != before


def test_a_changed_folder_is_refused_naming_what_changed_even_with_trust(tmp_path):
    root = folder(tmp_path)
    tags = model_files.version_tags(root)
    stored = tags[model_files.MODEL_HASH_TAG], tags[model_files.MODEL_FILES_TAG]
    model_files.verify(root, "m version 1", *stored)                     # untouched: loads
    (root / "model.safetensors").write_bytes(b"other weights")
    (root / "extra.py").write_text("print('hi')")
    (root / "sub" / "nerflow.json").unlink()
    for trust in (False, True):
        with pytest.raises(UnverifiedModel, match=r"^m version 1: its model files no longer match the hash stored at "
                           r"registration \(added extra.py, changed model.safetensors, missing sub/nerflow.json\)"):
            model_files.verify(root, "m version 1", *stored, trust=trust)
    # without the manifest (too long for a tag, or rewritten) the refusal stands, without the names
    with pytest.raises(UnverifiedModel, match=r"no longer match the hash stored at registration; they were"):
        model_files.verify(root, "m version 1", stored[0], "bogus manifest")
    assert issubclass(UnverifiedModel, Refused)                          # exit 4, "refused by a rule"


def test_no_stored_hash_or_pickled_weights_need_trust(tmp_path):
    root = folder(tmp_path)
    with pytest.raises(UnverifiedModel, match=r"^m version 1 has no stored model hash .*give --trust to load it"):
        model_files.verify(root, "m version 1", None)
    model_files.verify(root, "m version 1", None, trust=True)
    model_files.verify(root, "local folder", None, hashed=False)          # a local folder: nothing to check against
    (root / "pytorch_model.bin").write_bytes(b"pickle")
    (root / "sub" / "optimizer.PT").write_bytes(b"pickle")
    stored = model_files.folder_sha256(root)
    with pytest.raises(UnverifiedModel, match=r"^m version 2 carries pickled weights \(pytorch_model.bin, "
                       r"sub/optimizer.PT\).* give promote.trust_unverified=true to load them anyway"):
        model_files.verify(root, "m version 2", stored, trust_hint="promote.trust_unverified=true")
    with pytest.raises(UnverifiedModel, match="carries pickled weights"):
        model_files.verify(root, "local folder", None, hashed=False)
    model_files.verify(root, "m version 2", stored, trust=True)
    assert model_files.pickled_files(root) == ["pytorch_model.bin", "sub/optimizer.PT"]


def test_the_served_path_is_read_from_the_mlmodel_file_and_stays_inside_the_model():
    mlmodel = "flavors:\n  python_function:\n    artifacts:\n      hf_model:\n        path: {}\n"
    assert model_files.served_path(mlmodel.format("artifacts/model"), "hf_model", "m") == "artifacts/model"
    for bad in ("../../elsewhere", "/etc", "artifacts/../../x"):
        with pytest.raises(UnverifiedModel, match=r"^m: its MLmodel file puts the artifact 'hf_model' outside"):
            model_files.served_path(mlmodel.format(bad), "hf_model", "m")
    with pytest.raises(UnverifiedModel, match="names no artifact 'hf_model'"):
        model_files.served_path("flavors: {}\n", "hf_model", "m")
