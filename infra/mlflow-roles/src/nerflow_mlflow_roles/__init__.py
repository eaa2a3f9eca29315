"""MLflow's basic-auth app plus one rule of nerflow's: only promoters move a protected alias or write its history.

MLflow's permissions give one right, EDIT, for both creating a model version and setting an alias, and whoever
creates a registered model gets MANAGE on it (mlflow/mlflow#24742). So an account that can register could also move
`@champion`, past nerflow's evidence gate. This app, loaded by `mlflow server --app-name nerflow-roles`, is MLflow's
own basic-auth app (`mlflow.server.auth.create_app`: users, passwords, per-resource permissions, the UI's login)
with three additions that hold for the REST API, the Python client and the UI alike, since all of them reach the
same Flask routes:

- setting or deleting a protected alias (`NERFLOW_PROTECTED_ALIASES`, default `champion`) is refused (403) unless
  the user is a promoter;
- setting or deleting a registered-model tag under `nerflow.<protected alias>.` (nerflow's promotion history) is
  refused likewise;
- a non-promoter who creates a registered model gets EDIT on it, not MANAGE (MANAGE could grant itself anything),
  and the promoters get MANAGE on it (basic-auth's own check asks for EDIT before this app's rule is asked).

Promoters: MLflow admins and the users named in `NERFLOW_PROMOTERS` (comma-separated), read when the server starts.
Everything else (who may read, log runs, register versions) is basic-auth's own permission model.
"""
from __future__ import annotations

import os

from flask import Flask, Response, g, request

PROTECTED_ALIASES_ENV = "NERFLOW_PROTECTED_ALIASES"
PROMOTERS_ENV = "NERFLOW_PROMOTERS"
HISTORY_PREFIX = "nerflow"   # nerflow.history.PREFIX: tags `nerflow.<alias>.<seq>` hold an alias's history


def _names(variable: str, default: str = "") -> frozenset[str]:
    return frozenset(n.strip() for n in os.environ.get(variable, default).split(",") if n.strip())


def protected_aliases() -> frozenset[str]:
    return _names(PROTECTED_ALIASES_ENV, "champion")


def promoters() -> frozenset[str]:
    return _names(PROMOTERS_ENV)


def _param(name: str) -> str | None:
    """A request parameter wherever MLflow's REST API carries it: the JSON body, else the query string."""
    body = request.get_json(silent=True) if request.is_json or request.method in ("POST", "PATCH") else None
    if isinstance(body, dict) and name in body:
        return str(body[name])
    return request.args.get(name)


def _alias_is_protected() -> bool:
    return (_param("alias") or "") in protected_aliases()


def _tag_is_history() -> bool:
    key = _param("key") or ""
    return any(key.startswith(f"{HISTORY_PREFIX}.{alias}.") for alias in protected_aliases())


def _routes() -> dict[tuple[str, str], object]:
    """{(path, method): predicate}: the requests that need a promoter when the predicate holds. Paths come from
    MLflow's own endpoint table, so /api/2.0, /api/3.0 and the UI's /ajax-api forms are all covered."""
    from mlflow.protos.model_registry_pb2 import (
        DeleteRegisteredModelAlias,
        DeleteRegisteredModelTag,
        SetRegisteredModelAlias,
        SetRegisteredModelTag,
    )
    from mlflow.server.handlers import get_endpoints

    checks = {SetRegisteredModelAlias: _alias_is_protected, DeleteRegisteredModelAlias: _alias_is_protected,
              SetRegisteredModelTag: _tag_is_history, DeleteRegisteredModelTag: _tag_is_history}
    # get_endpoints also lists routes outside the services (graphql, server-info, ...) with their own handlers: keep
    # only what `checks` answered.
    return {(path, method): check for path, check, methods in get_endpoints(checks.get)
            if check in checks.values() for method in methods}


def _is_promoter(username: str) -> bool:
    from mlflow.server.auth import store

    return username in promoters() or store.get_user(username).is_admin


def _forbidden(what: str) -> Response:
    return Response(f"Permission denied: {what} needs a promoter (an MLflow admin or a user named in "
                    f"{PROMOTERS_ENV} on the MLflow server).", status=403, mimetype="text/plain")


def _created_model_name(resp: Response) -> str | None:
    data = resp.get_json(silent=True) or {}
    return (data.get("registered_model") or {}).get("name")


def create_app(app: Flask | None = None):
    from mlflow.protos.model_registry_pb2 import CreateRegisteredModel
    from mlflow.server import app as mlflow_app
    from mlflow.server.auth import create_app as basic_auth_app
    from mlflow.server.auth import store
    from mlflow.server.handlers import get_endpoints

    app = app or mlflow_app
    guarded = _routes()
    creating = {(path, method) for path, found, methods in get_endpoints(lambda cls: cls is CreateRegisteredModel)
                if found is True for method in methods}

    def hand_over_ownership(resp: Response) -> Response:
        # Flask runs after-request functions in reverse order of registration: registered before basic-auth's, this
        # one runs after basic-auth has granted the creator MANAGE, and lowers that grant to EDIT.
        if resp.status_code != 200 or (request.path, request.method) not in creating:
            return resp
        username, name = getattr(g, "mlflow_authenticated_user", None), _created_model_name(resp)
        if username and name and not _is_promoter(username):
            store.update_registered_model_permission(name, username, "EDIT")
            for promoter in sorted(promoters() - {username}):
                if store.has_user(promoter):
                    store.create_registered_model_permission(name, promoter, "MANAGE")
        return resp

    app.after_request(hand_over_ownership)
    served = basic_auth_app(app)   # authentication, permissions, the admin user; the FastAPI app under uvicorn

    def require_promoter() -> Response | None:
        # Registered after basic-auth's before-request function: the user is authenticated (or the request was
        # already refused) and basic-auth's own permission check has passed when this runs.
        check = guarded.get((request.path, request.method))
        if check is None or not check():
            return None
        username = getattr(g, "mlflow_authenticated_user", None)
        if username is None or not _is_promoter(username):
            what = f"alias @{_param('alias')}" if "alias" in request.path else f"tag {_param('key')}"
            return _forbidden(f"changing the {what}")
        return None

    app.before_request(require_promoter)
    return served
