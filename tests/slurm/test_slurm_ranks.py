"""One rlkit run over several SLURM tasks and nodes of the real local cluster (tests/slurm/local_slurm.sh
starts 2 nodes on this machine, each a `slurmd -N` on its own port).

The job is submitted detached through `launcher=slurm` like any sweep; its tasks find each other from the
allocation alone (rlkit.distributed.slurm_rendezvous: the step's first node, a port from the job id) and
train as gloo ranks. Every logged metric at every step must equal the single-process run of the same
overrides, and a preemption (`scancel --signal=USR2`: submitit requeues the job) in the middle must resume
into the same MLflow run with every value logged exactly once.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlkit.launch.launchers import read_jobs
from tests.conftest import REPO
from tests.launch.checks import client, rlkit, sweep_runs
from tests.scale.helpers import assert_metrics_match, history, run

pytestmark = [pytest.mark.slurm, pytest.mark.skipif(shutil.which("sbatch") is None, reason="no sbatch (SLURM)")]

STEPS, PAUSE_AT = 6, 3  # checkpoints at 2, 4, 6; the preemption comes after step 3 was logged (not checkpointed)
ARGS = ["seed=0", f"trainer.steps={STEPS}", "algo=reinforce_pp", "trainer.prompts_per_step=4", "data.val_size=16",
        "trainer.threads=1", "rollout.seed_per_prompt=true", "trainer.micro_batch_size=8", "trainer.eval_every=2",
        "trainer.checkpoint_every=2"]
SLURM = ["launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=3", "hydra.launcher.timeout_min=15"]
SHAPES = {"1x2": ["hydra.launcher.nodes=1", "hydra.launcher.tasks_per_node=2"],
          "2x1": ["hydra.launcher.nodes=2", "hydra.launcher.tasks_per_node=1"]}

# rank 0 (the only rank with a real MLflow tracker) stops right after logging step PAUSE_AT, once: the test
# preempts the job there, so the requeued attempt must skip a step it logged but did not checkpoint
PAUSE_HOOK = '''
import os
if os.environ.get("RLKIT_TEST_PAUSE_AT"):
    import time
    from rlkit import tracking as _t
    _log = _t.Tracker.log
    def log(self, metrics, step):
        _log(self, metrics, step)
        marker = os.environ["RLKIT_TEST_PAUSE_MARKER"]
        if step == int(os.environ["RLKIT_TEST_PAUSE_AT"]) and not os.path.exists(marker):
            open(marker, "w").close()
            time.sleep(900)
    _t.Tracker.log = log
'''


@pytest.fixture(scope="module", autouse=True)
def cluster(tiny_path):
    if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        pytest.skip("SLURM controller not reachable: bash tests/slurm/local_slurm.sh")
    idle = subprocess.run(["sinfo", "-h", "-o", "%D"], capture_output=True, text=True).stdout.split()
    if sum(int(n) for n in idle) < 2:
        pytest.skip("the local cluster has one node: LOCAL_SLURM_NODES=2 bash tests/slurm/local_slurm.sh")


_REFERENCE: dict[str, dict] = {}


def reference(tmp_path_factory) -> dict:
    """The single-process run of the same overrides (once per module)."""
    if "ref" not in _REFERENCE:
        tmp = tmp_path_factory.mktemp("ref")
        r = run(ARGS, tmp)
        assert r.returncode == 0, r.stderr[-3000:]
        _REFERENCE["ref"] = history(tmp)
    return _REFERENCE["ref"]


def wait_until(pred, timeout: float, what: str, every: float = 0.5):
    end = time.time() + timeout
    while not (value := pred()):
        assert time.time() < end, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)
    return value


def job_state(tmp: Path, sweep: Path) -> dict:
    r = rlkit("rlkit.status", [str(sweep), "--json"], tmp, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    [job] = json.loads(r.stdout)["jobs"]
    return job


def submit(tmp: Path, args: list[str], env: dict[str, str]) -> Path:
    sweep = tmp / "multirun"
    r = subprocess.run([sys.executable, "-m", "rlkit.submit", *args, f"hydra.sweep.dir={sweep}"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    return sweep


def job_env(tmp: Path, pause: bool) -> dict[str, str]:
    """The environment sbatch hands to the job: this test's store and checkpoints, threads 1, and the hook."""
    hook = tmp / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(PAUSE_HOOK)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "RLKIT_CHECKPOINT_DIR": str(tmp / "ck"),
           "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu",
           "PYTHONPATH": os.pathsep.join([str(hook), str(REPO), os.environ.get("PYTHONPATH", "")])}
    if pause:
        env.update(RLKIT_TEST_PAUSE_AT=str(PAUSE_AT), RLKIT_TEST_PAUSE_MARKER=str(tmp / "paused"))
    return env


def the_run(tmp: Path, sweep_name: str):
    [_parent], [child] = sweep_runs(client(tmp), sweep_name)
    return child


def check_run(tmp: Path, sweep_name: str, want: dict, nodes: list[str], resumes: int) -> float:
    """The child run: ranks on `nodes`, every metric equal to the 1-process run, each value once."""
    child = the_run(tmp, sweep_name)
    tags = child.data.tags
    assert tags["rlkit.world_size"] == str(len(nodes)) and tags["rlkit.nodes"].split(",") == nodes, tags
    assert child.info.status == "FINISHED" and tags.get("rlkit.resumes", "0") == str(resumes)
    mc = client(tmp)
    got = {}
    for key in child.data.metrics:
        hist = mc.get_metric_history(child.info.run_id, key)
        steps = [m.step for m in hist]
        assert len(steps) == len(set(steps)), f"{key} logged twice at a step: {steps}"  # 0 duplicated
        got[key] = {m.step: m.value for m in hist}
    assert sorted(got["actor/pg_loss"]) == list(range(1, STEPS + 1))  # 0 lost
    assert_metrics_match(got, want)
    return precision(got, want)


def precision(got: dict, want: dict) -> str:
    """The largest absolute difference, and the largest relative one among values of size >= 1e-3 (smaller
    ones are float32 cancellation residue such as a whitened advantage's mean, ~1e-8)."""
    pairs = [(got[k][s], b) for k in want if not k.startswith(("timing_s/", "perf/", "summary/wall"))
             for s, b in want[k].items()]
    worst_abs = max(abs(a - b) for a, b in pairs)
    worst_rel = max(abs(a - b) / abs(b) for a, b in pairs if abs(b) >= 1e-3)
    return f"largest difference {worst_abs:.1e} absolute, {worst_rel:.1e} relative (|value| >= 1e-3)"


@pytest.mark.parametrize("shape", ["1x2", "2x1"])
def test_one_run_over_slurm_tasks_equals_one_process_and_resumes_after_requeue(shape, tmp_path, tmp_path_factory):
    want = reference(tmp_path_factory)
    t0 = time.time()
    env = job_env(tmp_path, pause=True)
    sweep = submit(tmp_path, [*SLURM, *SHAPES[shape], *ARGS, f"sweep.name=ranks{shape}"], env)
    job_id = read_jobs(sweep)[0]["job_id"]
    wait_until(lambda: (tmp_path / "paused").exists(), 300, "rank 0 to log step 3")
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)  # preemption: submitit requeues the job
    wait_until(lambda: "PENDING" in subprocess.run(["squeue", "-h", "-o", "%T", "-j", job_id], capture_output=True,
                                                   text=True).stdout, 300, "the requeued job")
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)  # skip the requeue delay
    job = wait_until(lambda: (j := job_state(tmp_path, sweep))["state"] in ("finished", "failed") and j, 600,
                     "the job to end", 2)
    assert job["state"] == "finished", job
    child = the_run(tmp_path, f"ranks{shape}")
    placed = child.data.tags["rlkit.nodes"].split(",")
    nodes = [placed[0]] * 2 if shape == "1x2" else placed
    assert len(set(nodes)) == (1 if shape == "1x2" else 2), placed
    diff = check_run(tmp_path, f"ranks{shape}", want, nodes, resumes=1)
    print(f"{shape} vs 1 process: {diff}; {time.time() - t0:.0f} s")


def test_deepspeed_zero2_across_two_nodes_equals_one_process(tmp_path, tmp_path_factory):
    pytest.importorskip("deepspeed", reason="pip install 'rlkit[deepspeed]'")
    want = reference(tmp_path_factory)
    env = job_env(tmp_path, pause=False)
    sweep = submit(tmp_path, [*SLURM, *SHAPES["2x1"], *ARGS, "trainer.backend=deepspeed",
                              "model.resources.zero_stage=2", "sweep.name=zero2"], env)
    job = wait_until(lambda: (j := job_state(tmp_path, sweep))["state"] in ("finished", "failed") and j, 600,
                     "the job to end", 2)
    assert job["state"] == "finished", job
    placed = the_run(tmp_path, "zero2").data.tags["rlkit.nodes"].split(",")
    assert len(set(placed)) == 2, placed
    diff = check_run(tmp_path, "zero2", want, placed, resumes=0)
    [ck] = (tmp_path / "ck").glob("*")
    assert len(list((ck / "deepspeed" / "policy" / f"step{STEPS:07d}").glob("*optim_states.pt"))) == 2  # a shard per rank
    print(f"ZeRO-2 over 2 nodes vs 1 process: {diff}")
