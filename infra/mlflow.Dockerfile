# MLflow's own image lacks a PostgreSQL driver; the version matches pyproject.toml's pin. nerflow-mlflow-roles is
# the server app (`mlflow server --app-name nerflow-roles`): MLflow's basic-auth plus the promoter rule; it pulls
# mlflow[auth] (Flask-WTF) at the same MLflow version.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 Flask-WTF==1.3.0 WTForms==3.3.2
COPY mlflow-roles /opt/nerflow-mlflow-roles
RUN pip install --no-cache-dir --no-deps /opt/nerflow-mlflow-roles
