"""Prefect tasks (package `nerflow.prefect_tasks`): one thin adapter per declared stage (nerflow.graph) that calls
the library (nerflow.*) to compute it and records it in MLflow, plus the MLflow edge shared by them (tracking,
registration, the champion's moves). `stage.py` runs any stage through its adapter."""
