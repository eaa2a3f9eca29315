# MLflow's own image lacks a PostgreSQL driver; the version matches pyproject.toml's pin.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.13
