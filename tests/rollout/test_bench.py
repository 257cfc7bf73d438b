"""`python -m bench.rl_bench` (alias `python -m rlkit.bench`): the step records come from the real loop's own timers, the TRL side runs on the same
prompts, and the helper parsers read what they should."""
from __future__ import annotations

import importlib.util

import pytest

from bench import rl_bench as bench


def test_import_breakdown_parses_importtime():
    err = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       100 |        200 |     torch._C",
        "import time:      1000 |    2500000 | torch",
        "import time:       500 |     700000 |   mlflow",
        "import time:        10 |         10 | unrelated",
    ])
    assert bench.import_breakdown(err) == {"torch": 2.5, "mlflow": 0.7}


def test_rlkit_steps_recorded_from_the_real_loop(tiny_path):
    _, over = bench.model_dirs("random", 16)
    cfg = bench.step_cfg(over, 16, 1, ["trainer.prompts_per_step=2", "trainer.group_size=4"], 2)
    run = bench.run_rlkit(cfg, 1, 16)
    assert len(run.steps) == 3  # trainer.steps = steps + 1 (the last one evaluates)
    s = run.steps[0]
    assert s["gen_tokens"] > 0 and s["generation"] > 0 and s["update"] > 0
    # the separately timed parts fit inside the loop's own step time, which fits inside the wall time
    assert 0 <= s["advantage+other"] < s["step"] <= s["wall"]
    assert all(s[k] >= 0 for k in bench.PARTS)
    assert run.setup_s > 0  # the loop's step-0 timer


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="needs the bench extra (trl)")
def test_trl_pair_alternates_and_sees_the_same_prompts(tiny_path, capsys):
    model_dir, over = bench.model_dirs("random", 16)
    cfg = bench.step_cfg(over, 16, 1, ["trainer.prompts_per_step=2", "trainer.group_size=4"], 2)
    rl, trl = bench.run_pair(cfg, model_dir, 1, 16, 2, "rlkit")
    assert len(rl.steps) == 3 and len(trl.steps) == 2
    assert all(s["gen_tokens"] > 0 for s in trl.steps)
    bench.check_same_prompts(cfg, [rl, trl])
    assert "same prompt token ids as TRL's first step: yes" in capsys.readouterr().out
