-- Run once by the postgres image on an empty volume (as POSTGRES_USER, the superuser it creates from team.env):
-- one database per server, and pg_trgm, which Prefect's migrations need and only a superuser may create here.
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
