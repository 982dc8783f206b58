"""Measurements kept and compared: the results store (store) on SQLite or PostgreSQL (backend, sqlite_backend,
postgres_backend), the schema every row fits (records), JSON export and checked import (exchange), the comparison
table (comparison) and its Pareto front (pareto), and the export to MLflow (mlflow_export, charts)."""
