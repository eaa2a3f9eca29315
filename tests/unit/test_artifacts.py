"""The Prefect artifacts of a pipeline run (tasks/artifacts.py): keys Prefect accepts, and what each one says."""
from __future__ import annotations

import pytest

from nerflow.outputs import Evaluated, Promoted
from nerflow.prefect_tasks.artifacts import artifact_key, decision_markdown, stage_markdown


@pytest.mark.parametrize("model", ["tiny-ner", "My_Model.v2", "conll2003 MiniLM", "x"])
def test_keys_are_ones_the_prefect_api_accepts(model):
    from prefect.client.schemas.actions import ArtifactCreate

    key = artifact_key(model, "promote")
    assert ArtifactCreate(key=key, type="markdown", data="x").key == key   # Prefect's own validation
    assert key.endswith("-promote") and key == key.lower()


def test_a_stage_result_says_reused_or_computed_its_key_and_its_summary_lines():
    metrics = {"test/support_PER": 3, "test/f1_PER": 0.5, "val/best_f1_PER": 0.4, "val/best_f1": 0.4, "test/f1": 0.5}
    text = stage_markdown(Evaluated("evaluate", "k1", "/nowhere", True, metrics), "token-classification")
    assert "Stage `evaluate`: reused" in text and "key: `k1`" in text
    assert "overall" in text and "0.5000" in text   # the evaluation table of the run summary, in a code block
    assert "Stage `evaluate`: computed" in stage_markdown(Evaluated("evaluate", "k1", "/x", False, metrics),
                                                          "token-classification")


def test_the_decision_names_version_alias_outcome_and_carries_the_comparison(tmp_path):
    (tmp_path / "comparison.md").write_text("| type | support |\n|---|---|\n\n**accepted**: better on PER\n")
    decision = {"decision": "accepted", "reason": "better on PER", "version": "3", "alias": "champion",
                "moved": False, "accepted": True}
    text = decision_markdown(Promoted("promote", "k", str(tmp_path), False, decision))
    assert text.startswith("### Promotion of version 3 to @champion: accepted")
    assert "not moved (promote.auto is false)" in text and "| type | support |" in text and "better on PER" in text
