"""A user's own advantage estimator is accepted by its signature (no whitelist): a `_target_` in a module
of the user's, run through the real CLI, is called by the loop (wrong signatures: tests/algos/test_validate.py)."""
from __future__ import annotations

import textwrap

from tests.conftest import run_rlkit

MODULE = textwrap.dedent('''
    from pathlib import Path

    from rlkit.algos.advantages import grpo


    def centered(token_rewards, mask, group, values=None, *, scale=1.0, log=""):
        """Group-mean baseline, no std normalisation, times `scale`; records each call in `log`."""
        with open(log, "a") as f:
            f.write(f"{tuple(token_rewards.shape)}\\n")
        adv, ret = grpo(token_rewards, mask, group, values, norm_by_std=False)
        return adv * scale, ret
''')
ARGS = ["trainer.steps=2", "trainer.prompts_per_step=2", "data.val_size=8", "trainer.threads=1", "seed=0"]


def test_own_estimator_runs_through_the_cli(tmp_path):
    (tmp_path / "my_estimators.py").write_text(MODULE)
    log = tmp_path / "calls.txt"
    adv = ["~algo.advantage.eps", "~algo.advantage.norm_by_std", "algo.advantage._target_=my_estimators.centered",
           "+algo.advantage.scale=0.5", f"+algo.advantage.log={log}"]
    r = run_rlkit([*ARGS, *adv], tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(log.read_text().splitlines()) == 2  # one call per step, on the step's batch

