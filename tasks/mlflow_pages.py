"""Every page of an MLflow search, not the first one only.

MLflow's searches answer one page (registered models: 100 by default, at most 1,000; runs and experiments: 1,000;
model versions: 10,000) and a `token` for the next. A caller that reads the first page alone silently misses
what lies past it: `cache prune` would stop protecting the aliased models past the 100th, `nerflow models` would
list 100. These helpers follow the token to the end (or to `limit` items), so the number of calls is the number of
pages, never the number of items.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from mlflow import MlflowClient

IN_BATCH = 100   # ids or names per `IN (...)` filter: one query each, short enough for any store and proxy


def pages(search: Callable, *args, limit: int | None = None, page_size: int | None = None, **kwargs) -> Iterator:
    """The items of `search(*args, **kwargs)` page after page (`page_size`: MLflow's default when None), at most
    `limit` of them."""
    token, seen = None, 0
    while True:
        size = page_size if limit is None else min(x for x in (page_size, limit - seen) if x is not None)
        page = search(*args, **kwargs, page_token=token, **({"max_results": size} if size is not None else {}))
        for item in page:
            yield item
            seen += 1
            if limit is not None and seen >= limit:
                return
        token = getattr(page, "token", None)
        if not token:
            return


def registered_models(client: MlflowClient, filter_string: str | None = None) -> list:
    return list(pages(client.search_registered_models, filter_string=filter_string))


def model_versions(client: MlflowClient, filter_string: str) -> list:
    return list(pages(client.search_model_versions, filter_string=filter_string))


def experiment_ids(client: MlflowClient) -> list[str]:
    return [e.experiment_id for e in experiments(client)]


def experiments(client: MlflowClient) -> list:
    return list(pages(client.search_experiments))


def runs(client: MlflowClient, experiment_ids: list[str], filter_string: str = "", order_by: list[str] | None = None,
         limit: int | None = None, deleted_too: bool = False) -> list:
    if not experiment_ids:
        return []
    from mlflow.entities import ViewType

    return list(pages(client.search_runs, experiment_ids, filter_string=filter_string, order_by=order_by,
                      run_view_type=ViewType.ALL if deleted_too else ViewType.ACTIVE_ONLY, limit=limit))


def quoted(values: Iterable[str]) -> str | None:
    """`('a', 'b')` for an IN filter, or None when a value holds a quote (MLflow's filter has no escape for it)."""
    values = list(values)
    if any("'" in v for v in values):
        return None
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def batches(values: Iterable[str], size: int = IN_BATCH) -> Iterator[list[str]]:
    values = sorted(set(values))
    for i in range(0, len(values), size):
        yield values[i:i + size]


def runs_by_id(client: MlflowClient, run_ids: Iterable[str], in_experiments: list[str] | None = None) -> dict:
    """run id -> run (mlflow.entities.Run) for these ids, `IN_BATCH` ids per search: a bounded number of calls
    however many versions point at runs (one `get_run` each would be one call per version). Ids no run has are
    left out."""
    run_ids = [r for r in run_ids if r]
    if not run_ids:
        return {}
    where = in_experiments if in_experiments is not None else experiment_ids(client)
    found = {}
    for batch in batches(run_ids):
        listed = quoted(batch)   # run ids are hex: always quotable
        for run in runs(client, where, f"attributes.run_id IN {listed}", deleted_too=True):   # as get_run
            found[run.info.run_id] = run
    return found


def versions_of_models(client: MlflowClient, names: Iterable[str]) -> list:
    """Every live version of these registered models, `IN_BATCH` names per search (a name with a quote in it
    alone, by `name = "..."`; one with both quotes cannot be written in MLflow's filter: left out)."""
    found = []
    for batch in batches(names):
        plain = [n for n in batch if "'" not in n]
        if plain:
            found += model_versions(client, f"name IN {quoted(plain)}")
        for odd in (n for n in batch if "'" in n and '"' not in n):
            found += model_versions(client, f'name = "{odd}"')
    return found
