"""One run over 2 processes (torchrun, gloo, CPU) equals the single-process run on the same data.

Each rank generates its share of the same global batch (per-prompt seeded sampling, so a prompt's 8
samples are the same tokens whichever process draws them), advantages are computed on the gathered
batch, loss denominators and gradients are summed over ranks, and metrics are reduced before rank 0
logs them. Measured here: every logged metric at every step within 1e-6 relative of the 1-process run
(float summation order only); the test allows atol 1e-6 + rtol 1e-4.
"""
from __future__ import annotations

import pytest

from tests.scale.helpers import SMALL, assert_metrics_match, crash_env, history, run, runs

pytestmark = pytest.mark.slow
STEPS = 4
_REFERENCE: dict[str, dict] = {}


def reference(algo: str, tmp_path_factory) -> dict:
    """The single-process torch run (computed once per algorithm for the module)."""
    if algo not in _REFERENCE:
        tmp = tmp_path_factory.mktemp(f"ref_{algo}")
        r = run([f"trainer.steps={STEPS}", f"algo={algo}", *SMALL], tmp)
        assert r.returncode == 0, r.stderr[-3000:]
        _REFERENCE[algo] = history(tmp)
    return _REFERENCE[algo]


def test_torch_backend_two_processes_equal_one_and_resume(tmp_path, tmp_path_factory):
    # Reinforce++: advantages whitened over the whole batch and KL as a reward (old-logprob pass): the
    # cases where a rank's own shard is not enough.
    # Killed after its step-2 checkpoint (rank 0 alone writes rlkit's state.pt) and started again: both
    # ranks resume from it (each its own RNG state) into the one MLflow run.
    want = reference("reinforce_pp", tmp_path_factory)
    args = [f"trainer.steps={STEPS}", "algo=reinforce_pp", "trainer.backend=torch", *SMALL]
    assert run(args, tmp_path, nproc=2, extra_env=crash_env(tmp_path, after_step=2)).returncode != 0
    r = run(args, tmp_path, nproc=2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming MLflow run" in r.stderr
    got = history(tmp_path)  # asserts exactly one MLflow run
    worst = assert_metrics_match(got, want)
    print(f"largest relative difference: {worst:.2e}")
    assert sorted(got["actor/pg_loss"]) == list(range(1, STEPS + 1))
    assert len(list((tmp_path / "ck").glob("*/state.pt"))) == 1  # rank 0 alone wrote rlkit's state


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_matches_torch_and_resumes(stage, tmp_path, tmp_path_factory):
    """ZeRO-2/3 over 2 processes: killed right after its step-2 checkpoint, started again with the same
    command, it resumes from the DeepSpeed checkpoint into the same MLflow run, and every step's loss
    (and every other metric) equals the uninterrupted single-process torch run."""
    pytest.importorskip("deepspeed", reason="pip install 'rlkit[deepspeed]'")
    want = reference("grpo", tmp_path_factory)
    args = [f"trainer.steps={STEPS}", "algo=grpo", "trainer.backend=deepspeed", f"model.resources.zero_stage={stage}",
            *SMALL]
    first = run(args, tmp_path, nproc=2, extra_env=crash_env(tmp_path, after_step=2))
    assert first.returncode != 0  # died after the checkpoint
    mc, found = runs(tmp_path)
    [killed] = found
    assert killed.info.status == "RUNNING" and max(m.step for m in mc.get_metric_history(killed.info.run_id,
                                                                                           "actor/pg_loss")) == 2
    [ck] = (tmp_path / "ck").glob("*")
    assert (ck / "deepspeed" / "policy" / "step0000002").is_dir()
    assert len(list((ck / "deepspeed" / "policy" / "step0000002").glob("*optim_states.pt"))) == 2  # a shard per rank

    again = run(args, tmp_path, nproc=2)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming MLflow run {killed.info.run_id}" in again.stderr
    got = history(tmp_path)  # one run, one value per step
    worst = assert_metrics_match(got, want)
    print(f"ZeRO-{stage}: largest relative difference to the torch run: {worst:.2e}")
    mc, [run_] = runs(tmp_path)
    assert run_.info.run_id == killed.info.run_id and run_.data.tags["rlkit.resumes"] == "1"
    assert run_.info.status == "FINISHED"
    assert sorted(p.name for p in (ck / "deepspeed" / "policy").iterdir() if p.is_dir()) == ["step0000002",
                                                                                            "step0000004"]
