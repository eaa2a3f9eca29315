-- Run once by the postgres image on an empty volume, as its superuser `postgres`: one login role per server (and
-- one for `nerflow tune`'s Optuna studies) that owns that server's database and may open no other, and pg_trgm,
-- which Prefect's migrations need and only a superuser may create. The passwords come from the secret files (psql reads them with a backquoted `cat`), so
-- none is written here or shows on a command line.
\set mlflow_password `cat /run/secrets/mlflow_db_password`
\set prefect_password `cat /run/secrets/prefect_db_password`
\set optuna_password `cat /run/secrets/optuna_db_password`
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE ROLE prefect LOGIN PASSWORD :'prefect_password';
CREATE ROLE optuna LOGIN PASSWORD :'optuna_password';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE prefect OWNER prefect;
CREATE DATABASE optuna OWNER optuna;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
REVOKE ALL ON DATABASE prefect FROM PUBLIC;
REVOKE ALL ON DATABASE optuna FROM PUBLIC;
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
