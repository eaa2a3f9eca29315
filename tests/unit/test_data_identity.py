"""Data identity by role and content, hub revisions resolved from a local Hugging Face cache layout, and the check that
what the readers read is what the run was planned with. Tiny files in tmp_path; nothing is downloaded."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nerflow import data_identity, models
from nerflow.config import ConfigError
from nerflow.data import DataError
from nerflow.data_identity import check_read, identity, is_pinned, load_checked, reading, resolve_hub_revision
from nerflow.ner import data as ner_data
from nerflow.ner.config import NerDataConfig as DataConfig
from nerflow.textcat import data as textcat_data
from nerflow.textcat.config import TextcatDataConfig

COMMIT_A, COMMIT_B = "a" * 40, "0123456789abcdef0123456789abcdef01234567"
A = "John B-PER\nsleeps O\n"
B = "Paris B-LOC\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def changed(path: Path) -> str:
    return "^" + re.escape(f"{path}: changed while the run started (its content is not what the run was planned "
                           "with); run the command again")


def reviews(root: Path) -> Path:
    write(root / "pos" / "1.txt", "a joyous film .\n")
    write(root / "pos" / "2.txt", "great acting .\n")
    write(root / "neg" / "3.txt", "dull and long .\n")
    write(root / "neg" / ".DS_Store", b"\x00\x01")
    return root


# --- role and content ----------------------------------------------------------------------------------------------

def test_swapping_validation_and_test_changes_the_identity(tmp_path):
    write(tmp_path / "train.txt", A + "\n" + B)
    write(tmp_path / "a.txt", A)
    write(tmp_path / "b.txt", B)
    one = identity(DataConfig(dir=tmp_path, validation="a.txt", test="b.txt"))
    assert set(one) == {"train", "validation", "test"} and one["test"].startswith("file:sha256:")
    assert identity(DataConfig(dir=tmp_path, validation="b.txt", test="a.txt")) != one
    assert identity(DataConfig(dir=tmp_path, test="a.txt")).keys() == {"train", "test"}   # a split-off role is absent


def test_moved_or_renamed_data_keeps_its_identity_and_one_byte_changes_it(tmp_path):
    write(tmp_path / "x" / "train.txt", A)
    write(tmp_path / "x" / "test.txt", B)
    before = identity(DataConfig(dir=tmp_path / "x", test="test.txt"))
    write(tmp_path / "y" / "data.conll", A)
    write(tmp_path / "y" / "held-out.conll", B)
    assert identity(DataConfig(dir=tmp_path / "y", train="data.conll", test="held-out.conll")) == before
    write(tmp_path / "x" / "test.txt", B.replace("Paris", "Parts"))
    assert identity(DataConfig(dir=tmp_path / "x", test="test.txt")) != before


def test_a_missing_file_is_named(tmp_path):
    write(tmp_path / "train.txt", A)
    with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path / 'test.txt'}: file not found")):
        identity(DataConfig(dir=tmp_path, test="test.txt"))


def test_label_folders_by_layout_and_content_not_location(tmp_path):
    before = identity(TextcatDataConfig(format="folders", dir=reviews(tmp_path / "a" / "reviews"), train="."))
    assert before["train"].startswith("folder:sha256:")
    moved = tmp_path / "b" / "elsewhere"
    shutil.copytree(tmp_path / "a" / "reviews", moved)
    write(moved / "README", "not a document\n")
    write(moved / "neg" / ".hidden", "junk the reader skips\n")
    cfg = TextcatDataConfig(format="folders", dir=moved.parent, train="elsewhere")
    assert identity(cfg) == before
    (moved / "pos").rename(moved / "positive")   # a changed label
    assert identity(cfg) != before
    (moved / "positive").rename(moved / "pos")
    write(moved / "pos" / "2.txt", "great acting !\n")
    assert identity(cfg) != before


def test_a_local_hf_dataset_folder_is_keyed_by_its_content(tmp_path):
    folder = tmp_path / "dataset"
    write(folder / "train.jsonl", '{"text": "fine", "label": "pos"}\n')
    write(folder / "test.jsonl", '{"text": "bad", "label": "neg"}\n')
    cfg = DataConfig(format="hf", hf_dataset=str(folder))
    before = identity(cfg)
    assert before["hf"].startswith("folder:sha256:") and set(before) == {"hf"}
    write(folder / ".DS_Store", b"\x00")   # datasets skips hidden files: so does the identity
    assert identity(cfg) == before
    write(folder / "train.jsonl", '{"text": "fine", "label": "neg"}\n')
    assert identity(cfg) != before


# --- hub revisions -------------------------------------------------------------------------------------------------

@pytest.fixture()
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache, offline. huggingface_hub reads HF_HUB_CACHE into its constants at import, so the
    constant is redirected in-process (the env variable too, for anything that reads it later)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def cached_ref(cache: Path, folder: str, commit: str, ref: str = "main") -> None:
    """What a download leaves: `<type>s--ORG--NAME/refs/<ref>` holding the commit (no newline)."""
    write(cache / folder / "refs" / ref, commit)


def test_a_hub_revision_resolves_from_the_local_cache_offline(hub_cache):
    cached_ref(hub_cache, "models--acme--tiny-bert", COMMIT_B)
    cached_ref(hub_cache, "models--acme--tiny-bert", COMMIT_A, ref="v1")
    assert resolve_hub_revision("acme/tiny-bert", None) == COMMIT_B
    assert resolve_hub_revision("acme/tiny-bert", "v1") == COMMIT_A
    assert resolve_hub_revision("acme/never-downloaded", COMMIT_A) == COMMIT_A   # a commit needs no look-up
    assert is_pinned(COMMIT_B) and not is_pinned("main") and not is_pinned(None) and not is_pinned(COMMIT_B.upper())


def test_an_unknown_hub_id_is_a_config_error_that_says_what_to_pin(hub_cache):
    with pytest.raises(ConfigError, match=r"revision 'main' of the hub model 'acme/unknown'.*not in the local "
                                          r"Hugging Face cache.*pin model\.revision to a 40-character commit"):
        resolve_hub_revision("acme/unknown", None)
    with pytest.raises(ConfigError, match=r"hub dataset 'acme/reviews'.*no local folder has that name; "
                                          r"pin data\.hf_revision"):
        identity(DataConfig(format="hf", hf_dataset="acme/reviews"))


def test_a_hub_dataset_is_keyed_by_the_commit_of_its_revision(hub_cache):
    cached_ref(hub_cache, "datasets--acme--reviews", COMMIT_B)
    assert identity(DataConfig(format="hf", hf_dataset="acme/reviews")) == {"hf": f"hub:acme/reviews@{COMMIT_B}"}
    pinned = DataConfig(format="hf", hf_dataset="acme/reviews", hf_revision=COMMIT_A)
    assert identity(pinned) == {"hf": f"hub:acme/reviews@{COMMIT_A}"}


def test_a_hub_model_is_keyed_by_its_commit_and_a_moved_main_changes_it(hub_cache, tmp_path):
    cached_ref(hub_cache, "models--acme--tiny-bert", COMMIT_A)
    first = models.model_fingerprint("acme/tiny-bert")
    assert first == f"hub:acme/tiny-bert@{COMMIT_A}"
    assert models.resolved_revision("acme/tiny-bert", None) == COMMIT_A
    cached_ref(hub_cache, "models--acme--tiny-bert", COMMIT_B)   # main moved on a later download
    assert models.model_fingerprint("acme/tiny-bert") != first
    assert models.model_fingerprint("acme/tiny-bert", COMMIT_A) == first
    local = write(tmp_path / "local-model" / "config.json", "{}").parent
    assert models.resolved_revision(str(local), "main") is None and len(models.model_fingerprint(str(local))) == 64


def test_the_hf_hub_cache_environment_variable_redirects_a_fresh_process(tmp_path):
    """How a user points at a cache: the variable, read by huggingface_hub when it is imported."""
    cached_ref(tmp_path, "models--acme--tiny-bert", COMMIT_B)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", "from nerflow.data_identity import resolve_hub_revision as r; "
                          "print(r('acme/tiny-bert', None))"], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == COMMIT_B


# --- what was read is what was planned -----------------------------------------------------------------------------

def test_a_conll_file_replaced_between_plan_and_read_is_named(tmp_path):
    write(tmp_path / "train.txt", A)
    write(tmp_path / "test.txt", B)
    cfg = DataConfig(dir=tmp_path, validation="train.txt", test="test.txt")
    planned = identity(cfg)
    assert load_checked(cfg, planned, ner_data.load_corpus)["test"][0].tokens == ["Paris"]   # unchanged: passes
    write(tmp_path / "test.txt", "Rome B-LOC\n")
    with pytest.raises(DataError, match=changed(tmp_path / "test.txt")):
        load_checked(cfg, planned, ner_data.load_corpus)


def test_a_label_folder_or_csv_replaced_between_plan_and_read_is_named(tmp_path):
    root = reviews(tmp_path / "reviews")
    cfg = TextcatDataConfig(format="folders", dir=root, train=".", split={"validation": 0.0, "test": 0.0})
    planned = identity(cfg)
    assert len(load_checked(cfg, planned, textcat_data.load_corpus)["train"]) == 3
    write(root / "neg" / "3.txt", "dull , long and loud .\n")
    with pytest.raises(DataError, match=changed(root)):
        load_checked(cfg, planned, textcat_data.load_corpus)
    write(tmp_path / "train.csv", "text,label\nfine,pos\nbad,neg\n")
    write(tmp_path / "test.csv", "text,label\nok,pos\n")
    cfg = TextcatDataConfig(format="csv", dir=tmp_path, train="train.csv", validation="train.csv", test="test.csv")
    planned = identity(cfg)
    load_checked(cfg, planned, textcat_data.load_corpus)
    write(tmp_path / "test.csv", "text,label\nok,neg\n")
    with pytest.raises(DataError, match=changed(tmp_path / "test.csv")):
        load_checked(cfg, planned, textcat_data.load_corpus)


def test_the_check_uses_the_hashes_recorded_at_read_time_not_the_disk_after(tmp_path):
    path = write(tmp_path / "train.txt", A)
    cfg = DataConfig(dir=tmp_path)
    planned = identity(cfg)

    def read_then_restore(cfg):   # the reader sees other bytes; the disk holds the planned ones again afterwards
        write(path, B)
        corpus = ner_data.read_conll(path)
        write(path, A)
        return corpus

    with pytest.raises(DataError, match=changed(path)):
        load_checked(cfg, planned, read_then_restore)
    write(path, B)
    with reading() as ledger:
        ner_data.read_conll(path)
        write(path, A)
        ner_data.read_conll(path)   # one file read twice with different bytes never passes, even if the last matches
    with pytest.raises(DataError, match=changed(path)):
        check_read(cfg, planned, ledger)
    with pytest.raises(RuntimeError, match="nothing of it was read"):
        load_checked(cfg, identity(cfg), lambda cfg: None)


def test_a_local_hf_folder_is_hashed_again_after_the_load(tmp_path):
    folder = tmp_path / "dataset"
    write(folder / "train.jsonl", '{"text": "fine", "label": "pos"}\n')
    cfg = DataConfig(format="hf", hf_dataset=str(folder))
    planned = identity(cfg)
    assert load_checked(cfg, planned, lambda cfg: "loaded") == "loaded"

    def load_while_it_changes(cfg):
        write(folder / "train.jsonl", '{"text": "fine", "label": "neg"}\n')

    with pytest.raises(DataError, match=changed(folder)):
        load_checked(cfg, planned, load_while_it_changes)


def test_a_hub_dataset_is_loaded_at_the_planned_commit(hub_cache):
    cached_ref(hub_cache, "datasets--acme--reviews", COMMIT_A)
    cfg = DataConfig(format="hf", hf_dataset="acme/reviews")
    planned = identity(cfg)
    cached_ref(hub_cache, "datasets--acme--reviews", COMMIT_B)   # main moves after the plan
    assert load_checked(cfg, planned, lambda cfg: cfg.hf_revision) == COMMIT_A
    with pytest.raises(DataError, match=changed("acme/reviews")):
        check_read(cfg, planned, {})   # loaded unpinned: main is no longer the planned commit


def test_data_identity_imports_no_heavy_library():
    code = ("import sys, nerflow.data_identity; "
            "print([m for m in ('datasets', 'torch', 'huggingface_hub', 'prefect', 'mlflow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", data_identity.__file__
