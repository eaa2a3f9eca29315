# MLflow's own image lacks a PostgreSQL driver and the basic-auth app's Flask-WTF; versions as in requirements.lock.
# nerflow-mlflow-roles is the server app (`mlflow server --app-name nerflow-roles`): MLflow's basic-auth plus the
# promoter rule (infra/mlflow-roles).
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 flask-wtf==1.3.0 wtforms==3.3.2
COPY mlflow-roles /opt/nerflow-mlflow-roles
RUN pip install --no-cache-dir --no-deps /opt/nerflow-mlflow-roles
