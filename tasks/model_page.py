"""The registered model's MLflow page: its description rendered from the alias's settled history
(nerflow.model_description) and the facts a version was registered with (its tags).

Called after every move of the alias and after every settle (tasks/champion.py), and when register creates the
registered model (tasks/register.py). It writes only when the text changed, and a failure to write is a warning,
never the command's failure: the history tags are the record, the description is derived from them, and the next
command that settles the history writes it again.
"""
from __future__ import annotations

import logging

from mlflow import MlflowClient

from nerflow import history, model_description

log = logging.getLogger("nerflow.promote")
TASK_TAG, LABELS_TAG, DATA_TAG, BASE_MODEL_TAG = "nerflow.task", "nerflow.labels", "nerflow.data_name", "base_model"


def about(version: str, tags: dict[str, str]) -> model_description.About:
    """What a version is, from the tags register wrote on it (a version registered before them says so)."""
    from nerflow import task_types

    labels = tuple(x for x in tags.get(LABELS_TAG, "").split(",") if x)
    try:
        task = task_types.canonical(tags.get(TASK_TAG))
    except ValueError:   # a task type this nerflow does not know (a newer one's): show it as tagged
        task = tags[TASK_TAG]
    return model_description.About(version, task, labels, tags.get(DATA_TAG), tags.get(BASE_MODEL_TAG))


def _described_version(client: MlflowClient, name: str, champion: str | None):
    """The champion, else the newest version: the one the page says the model is."""
    if champion is not None:
        return client.get_model_version(name, champion)
    found = client.search_model_versions(f"name = '{name}'", max_results=1, order_by=["version_number DESC"])
    return found[0] if found else None   # the newest alone: one call however many versions


def refresh(client: MlflowClient, name: str, alias: str, entries: list[history.Entry]) -> None:
    """Render the description from `entries` (settled, under the promotion lock) and write it if it changed."""
    try:
        model = client.get_registered_model(name)
        champion = model.aliases.get(alias)
        version = _described_version(client, name, None if champion is None else str(champion))
        facts = None if version is None else about(str(version.version), version.tags)
        text = model_description.render(name, alias, facts, entries)
        if text != (model.description or ""):
            client.update_registered_model(name, description=text)
    except Exception as e:  # noqa: BLE001 - derived data: the move itself is recorded, the next settle rewrites it
        log.warning("could not update the description of %s (the next promote or rollback writes it): %s", name,
                    str(e).splitlines()[0][:160] if str(e) else type(e).__name__)
