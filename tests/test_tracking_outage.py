"""A real `mlflow server` on 127.0.0.1 killed (SIGKILL) while a job trains and restarted later: the
loop does not wait for it (the spool, rlkit/spool.py), and every value arrives exactly once — whether
the server comes back during the job or only after it ended (then `python -m rlkit.sync` sends the rest).
Prints the loop's step period before and during the outage (from the spooled timestamps)."""
from __future__ import annotations

import importlib.util
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO
from tests.launch.checks import assert_clean_history, env

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("flask") is None, reason="`mlflow server` needs full mlflow: pip install -e '.[server]'")]
FAST = ["trainer.prompts_per_step=2", "trainer.group_size=4", "data.val_size=8", "trainer.threads=1"]


class Server:
    def __init__(self, tmp: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri, self.db, self.proc = f"http://127.0.0.1:{self.port}", tmp / "server.db", None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                                      str(self.port), "--backend-store-uri", f"sqlite:///{self.db}", "--workers", "1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=1)
                return
            except OSError:
                assert self.proc.poll() is None, "mlflow server exited"
                time.sleep(0.5)
        raise AssertionError("mlflow server did not start")

    def kill(self) -> None:
        import os

        os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its workers, at once
        self.proc.wait(timeout=30)

    def steps(self) -> int:
        try:
            with sqlite3.connect(self.db, timeout=1) as con:
                row = con.execute("select max(step) from metrics where key = 'timing_s/step'").fetchone()
            return -1 if row[0] is None else int(row[0])
        except sqlite3.Error:
            return -1


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    s.start()
    yield s
    if s.proc.poll() is None:
        s.kill()


def spooled_steps(tmp: Path) -> list[tuple[int, int]]:
    """(step, timestamp ms) of each step's metrics in the job's spool (while it exists)."""
    import json

    out = []
    for f in (tmp / "ck").glob("*/spool/log.jsonl"):
        for line in f.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r["op"] == "metrics" and "timing_s/step" in r["metrics"]:
                out.append((r["step"], r["ts"]))
    return out


def job(tmp: Path, uri: str, steps: int, flush_s: float = 3) -> subprocess.Popen:
    a = [f"trainer.steps={steps}", "trainer.eval_every=50", "trainer.checkpoint_every=25", *FAST,
         "sweep.name=outage", f"tracking.uri={uri}", f"tracking.flush_timeout_s={flush_s}", f"hydra.run.dir={tmp}/out"]
    return subprocess.Popen([sys.executable, "-m", "rlkit.run", *a], cwd=REPO, env=env(tmp),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(cond, proc, timeout=300):
    deadline = time.time() + timeout
    while not cond():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.1)


def check(server: Server, steps: int) -> None:
    mc = MlflowClient(server.uri)
    [run] = mc.search_runs([mc.get_experiment_by_name("outage").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["rlkit.state"] == "finished"
    assert_clean_history(mc, run.info.run_id, steps, 50)
    for k in ("summary/wall_time_s", "summary/final_val_acc"):
        assert len(mc.get_metric_history(run.info.run_id, k)) == 1, k


def test_server_down_mid_run_and_back_loses_nothing(tmp_path, server, tiny_path):
    steps, outage = 250, 15.0
    # the job may end soon after the server is back (a quiet machine runs 250 tiny steps in ~25 s and a
    # restarted server takes ~10 s to answer): the default flush window lets the backlog drain before exit
    p = job(tmp_path, server.uri, steps, flush_s=60)
    wait_for(lambda: server.steps() >= 5, p)
    server.kill()
    t_kill = time.time()
    time.sleep(outage)
    during = [s for s, _ in spooled_steps(tmp_path)]
    server.start()
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    assert "unavailable" in err and "back after" in err
    assert max(during) > 10, during  # the loop went on while the server was down
    check(server, steps)
    # the loop's period from the spooled timestamps: before vs during the outage
    mc = MlflowClient(server.uri)
    [run] = mc.search_runs([mc.get_experiment_by_name("outage").experiment_id])
    ts = sorted((m.step, m.timestamp) for m in mc.get_metric_history(run.info.run_id, "timing_s/step"))
    period = {s: (b - a) / 1000 for (s, a), (_, b) in zip(ts, ts[1:]) if (s + 1) % 25 and (s + 1) % 50}
    at = dict(ts)  # step -> ms when the loop logged it
    before = [g for s, g in period.items() if at[s] / 1000 < t_kill]
    down = [g for s, g in period.items() if t_kill < at[s] / 1000 < t_kill + outage]
    after = [g for s, g in period.items() if at[s] / 1000 > t_kill + outage + 5]
    med = lambda xs: f"{statistics.median(xs):.3f} s (n={len(xs)})" if xs else "-"  # noqa: E731
    print(f"\nstep period (median, evaluation/checkpoint steps excluded): before the outage {med(before)}, "
          f"during a {outage:.0f} s outage {med(down)}, after {med(after)}")
    assert len(down) >= 10  # the loop went on stepping while the server was down


def test_job_ends_while_server_down_then_sync_sends_the_rest(tmp_path, server, tiny_path):
    steps = 60
    p = job(tmp_path, server.uri, steps)
    wait_for(lambda: server.steps() >= 3, p)
    server.kill()
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    assert "records kept in" in err
    [spool] = (tmp_path / "ck").glob("*/spool")
    server.start()
    r = subprocess.run([sys.executable, "-m", "rlkit.sync", str(tmp_path / "ck")], cwd=REPO, env=env(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "sent" in r.stdout, r.stderr
    assert not (spool / "log.jsonl").exists()
    check(server, steps)
    r = subprocess.run([sys.executable, "-m", "rlkit.sync", str(tmp_path / "ck")], cwd=REPO, env=env(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "no spool" in r.stdout  # nothing sent twice
    check(server, steps)
