"""A real SQLite MLflow store per test module, copied from one migrated template (creating the schema
costs ~5 s on the project machine, copying it ~0 s)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # runs MLflow's migrations once
    return path


@pytest.fixture(scope="module")
def store(template_db, tmp_path_factory):
    """(tracking_uri, MlflowClient, directory) of a fresh store for one test module."""
    from mlflow import MlflowClient

    d = tmp_path_factory.mktemp("store")
    shutil.copy(template_db, d / "mlflow.db")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    return uri, MlflowClient(uri), d
