"""On a cluster the MLflow store is an `mlflow server` (a SQLite file on a shared filesystem is not safe
for concurrent jobs on several nodes). Runs a 2-job local_parallel sweep against a real local server.
Needs full mlflow (`pip install -e '.[server]'`): skipped with mlflow-skinny alone."""
from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from tests.launch.checks import TINY, rlkit, sweep_runs

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("flask") is None, reason="`mlflow server` needs full mlflow: pip install -e '.[server]'")]


@pytest.fixture
def server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, "mlflow server exited"
                time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_sweep_against_an_mlflow_server(tmp_path, server, tiny_path):
    r = rlkit("rlkit.run", ["-m", "launcher=local_parallel", "seed=0,1", "trainer.steps=2", "trainer.eval_every=2",
                            *TINY[:2], f"tracking.uri={server}", "sweep.name=server",
                            f"hydra.sweep.dir={tmp_path}/multirun"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    [parent], children = sweep_runs(MlflowClient(server), "server")
    assert len(children) == 2 and {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert all(c.data.tags["rlkit.status"] == "finished" for c in children)
