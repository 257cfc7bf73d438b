"""A user's own policy loss through the real CLI: accepted by its signature, its ranges checked, and every
metric it returns logged under actor/ (beside the pg_clipfrac / ppo_kl every loss logs)."""

from __future__ import annotations

import textwrap

from mlflow.tracking import MlflowClient

from tests.conftest import run_rlkit

MODULE = textwrap.dedent('''
    import torch

    from rlkit.algos.advantages import masked_mean
    from rlkit.algos.losses import ppo_clip
    from rlkit.algos.params import POSITIVE, Range, ranges


    @ranges(clip_low=Range(0.0, 1.0), clip_high=POSITIVE, dual_clip=Range(low=1.0, nullable=True))
    def counted(logp, old_logp, advantages, mask, *, clip_low=0.2, clip_high=0.2, dual_clip=None):
        """PPO-clip, plus the share of loss tokens with a negative advantage as a metric of its own."""
        loss, metrics = ppo_clip(logp, old_logp, advantages, mask, clip_low=clip_low, clip_high=clip_high,
                                 dual_clip=dual_clip)
        return loss, {**metrics, "neg_adv_frac": masked_mean((advantages < 0).to(logp.dtype), mask)}
''')
ARGS = [
    "trainer.steps=2",
    "trainer.prompts_per_step=2",
    "data.val_size=8",
    "trainer.eval_every=100",
    "trainer.threads=1",
    "seed=0",
    "algo.policy_loss._target_=my_losses.counted",
]


def test_own_loss_metrics_are_logged_under_actor(tmp_path, tiny_path):
    (tmp_path / "my_losses.py").write_text(MODULE)
    r = run_rlkit(ARGS, tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    mc = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = mc.search_runs([mc.get_experiment_by_name("default").experiment_id])[0]
    frac = {m.step: m.value for m in mc.get_metric_history(run.info.run_id, "actor/neg_adv_frac")}
    assert sorted(frac) == [1, 2] and all(0.0 <= v <= 1.0 for v in frac.values()), frac
    assert {"actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_loss"} <= set(run.data.metrics)


def test_own_loss_ranges_are_checked_before_compute(tmp_path):
    (tmp_path / "my_losses.py").write_text(MODULE)
    r = run_rlkit([*ARGS, "algo.policy_loss.clip_low=1.5"], tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 2, r.stderr[-2000:]
    assert "algo.policy_loss.clip_low=1.5 is invalid; valid: a number in (0, 1)" in r.stderr
