"""The RL loop: train() reads like the data flow and calls the named steps in rlkit/steps/.

setup (rlkit.steps.parts) -> for each step: sample and score (steps.sample; trainer.staleness = k trains
on the batch the policy of step t - k generated; trainer.overlap generates it beside the update), old/ref logprobs and
advantages (steps.advantage), update (steps.update), metrics and log (steps.metrics); evaluate
(steps.evaluate) and checkpoint on schedule.

Algorithms differ only in the pure pieces bound from conf/algo (advantage estimator, KL estimator
and placement, clip range, aggregation); the loop branches on capabilities (critic or not, where KL
goes, group filtering), never on an algorithm's name.

Scale (rlkit/distributed.py, rlkit/backends/, rlkit/models/lora.py): under torchrun or a multi-task
SLURM job each rank generates and trains on its share of the same global batch; advantages, loss
denominators, gradients and metrics are reduced over ranks, and only rank 0 logs and writes rlkit's
state. `actor` (and `critic`) wrap the module and its optimizer for the chosen backend (torch or
DeepSpeed ZeRO); with one process they are the plain AdamW path.
"""
from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from rlkit import checkpoint, distributed
from rlkit.data.stream import DataGroup
from rlkit.steps import parts
from rlkit.steps.advantage import advantages
from rlkit.steps.evaluate import evaluate, evaluate_suite, suite_due
from rlkit.steps.log import StepLog
from rlkit.steps.metrics import NonFinite, Timers, nonfinite, rollout_metrics
from rlkit.steps.parts import RunParts
from rlkit.steps.sample import next_batch, settle
from rlkit.steps.update import StaleWeights, mismatch_breach, update


def train(cfg: DictConfig, tracker: StepLog, ckpt_dir: Path, groups: list[DataGroup], stage_steps: list[int | None],
          held_out: list[DataGroup] | None = None, progress: bool = True) -> dict[str, float]:
    """Run cfg.trainer.steps RL steps (resuming from ckpt_dir if a checkpoint is there). Evaluation scores
    `held_out` (the first group is `val/acc`; rlkit.data.stream.load_data chooses them), else the last
    data group. Returns the last `val/acc` and the loop's wall time."""
    t0, t_entry, t = time.perf_counter(), time.time(), cfg.trainer
    p = parts.build(cfg, groups, stage_steps, held_out)
    if t.get("staleness", 0) and p.dist.world > 1:  # only rank 0's in-flight batches would be checkpointed
        raise NotImplementedError("trainer.staleness > 0 runs in one process (world size 1) for now")
    start = parts.restore(p, ckpt_dir)
    if p.dist.is_main:  # the checkpoints must fit before any step is spent (a full disk: DiskFull, not a crash)
        checkpoint.preflight(ckpt_dir, parts.checkpoint_bytes(p))
    if start is None:  # a fresh run: the held-out accuracy before any update is step 0
        start, timers = 0, Timers()
        setup = {"timing_s/setup": time.perf_counter() - t0}
        tracker.log({**evaluate_now(p, tracker, 0, timers), **setup, **timers.metrics()}, 0)
    bar = tqdm(range(start, t.steps), initial=start, total=t.steps, desc=f"{cfg.algo.name}", unit="step",
               dynamic_ncols=True, disable=not (progress and p.dist.is_main))
    for step in bar:
        timers = Timers()
        with timers("step"):  # the RL step alone; evaluation is timing_s/eval
            p.policy.eval()
            batch, m = next_batch(p, step, timers)  # generated max(0, step - trainer.staleness) updates ago
            batch = distributed.to_device(batch, p.dist.device)
            scored, adv_metrics = advantages(p, batch, timers)
            p.policy.train()
            with timers("update_actor"):
                m.update(update(p, batch, scored))
            p.sched.step()
            m.update(settle(p, timers))  # trainer.overlap: the batch generated beside this update, scored
            with p.actor.gathered():
                p.engine.sync_weights(p.policy)
            m.update(rollout_metrics(batch.rollout, batch.scores, batch.correct, scored.uniform, batch.components,
                                     batch.timed_out))
            m.update(adv_metrics, **{"actor/lr": p.sched.get_last_lr()[0], "data/stage": p.stage})
        m["perf/throughput"] = float(batch.rollout.lengths.sum()) / timers.seconds["step"]
        if (step + 1) % t.eval_every == 0 or step + 1 == t.steps:
            m.update(evaluate_now(p, tracker, step + 1, timers))
        m.update(timers.metrics())
        m = p.dist.reduce_metrics(m, n_seqs=len(batch.problems), n_tokens=float(batch.rollout.response_mask.sum()))
        tracker.log(m, step + 1)
        if t.get("on_nonfinite", "stop") == "stop" and (bad := nonfinite(m)):
            raise NonFinite(step + 1, bad)  # before the checkpoint: the last one saved is finite
        breach = mismatch_breach(m, t.get("max_mismatch_kl"), t.get("max_mismatch_ratio_dev"))
        if breach:  # the stale-weights guard: logged, then stopped (the run ends FAILED with the reason)
            raise StaleWeights(f"step {step + 1}: {breach}: the rollout engine's weights are not the policy's "
                               "(a skipped or failed weight push?)")
        bar.set_postfix(reward=f"{m['critic/score/mean']:.3f}", len=f"{m['response_length/mean']:.1f}",
                        val=f"{p.last_val:.3f}")
        stop = checkpoint.stop_requested(p.dist)  # SIGTERM/SIGUSR2 under rlkit.run: checkpoint now and stop
        if (step + 1) % t.checkpoint_every == 0 or step + 1 == t.steps or stop:
            parts.save(p, ckpt_dir, step, tracker.run_id, p.prior_wall + time.time() - t_entry)
        if stop and step + 1 < t.steps:
            raise checkpoint.Preempted(stop, step + 1)
    bar.close()
    return {"val/acc": p.last_val, "wall_time_s": p.prior_wall + time.time() - t_entry}


def evaluate_now(p: RunParts, tracker: StepLog, step: int, timers: Timers) -> dict[str, float]:
    """Held-out metrics at `step` (timing_s/eval); sample completions go to the run's artifacts."""
    p.policy.eval()
    with timers("eval"), p.actor.gathered():
        metrics, samples = evaluate(p, step)
    p.last_val = metrics.get("val/acc", p.last_val)
    if step:
        tracker.log_text("\n".join(samples), f"samples/step_{step:05d}.md")
    if suite_due(p, step):
        with timers("eval_suite"), p.actor.gathered():
            metrics.update(evaluate_suite(p, step, tracker))
    return metrics
