"""(f) Every conf/reward/*.yaml composes with OmegaConf, instantiates via build_components, and runs."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlkit.data.problem import Problem
from rlkit.rewards.base import RewardContext
from rlkit.rewards.compose import build_components, score

CONF = Path(__file__).resolve().parents[2] / "conf" / "reward"
YAMLS = sorted(CONF.glob("*.yaml"))
REQUIRED = {
    "accuracy", "strict", "strict_newline", "lenient", "tag_count", "answer_only", "openr1",
    "kk_logic_rl", "cosine", "overlong", "gsm8k_custom",
}
LENGTH = {"length": {"max_response_tokens": 64, "overlong_buffer": 16}}

KK = Problem("kk", "q", "(1) Zoey is a knight\n(2) Oliver is a knave",
             meta={"names": ["Zoey", "Oliver"], "solution": [True, False]})
MATH = Problem("m", "q", "42")


def load(path: Path):
    root = OmegaConf.merge(OmegaConf.create(LENGTH), OmegaConf.create({"reward": OmegaConf.load(path)}))
    return root.reward


def test_all_required_configs_exist():
    assert REQUIRED <= {p.stem for p in YAMLS}


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_config_instantiates_and_scores(path):
    first = path.read_text().splitlines()[0]
    assert first.strip() == "# @package reward"
    cfg = load(path)
    assert cfg.name == path.stem
    components = build_components(cfg.components)
    assert set(components) == set(cfg.components)
    problem = KK if path.stem.startswith("kk") else MATH
    answer = problem.answer if problem is KK else "42"
    completions = [f"<think>r</think><answer>{answer}</answer>", "garbage", ""]
    ctxs = [RewardContext(60, 64, False, 5, 10), RewardContext(64, 64, True, 5, 10), RewardContext(0, 64, False)]
    total, per = score(components, completions, [problem] * 3, ctxs)
    assert len(total) == 3 and set(per) == set(components)
    assert total[0] > total[1]  # a right, well-formatted answer beats garbage under every config


def test_overlong_buffer_comes_from_length_group():
    cfg = load(CONF / "overlong.yaml")
    weight, fn = build_components(cfg.components)["overlong"]
    assert fn.keywords["buffer"] == 16
    assert fn("x", MATH, RewardContext(56, 64, False)) == pytest.approx(-0.5)


def test_default_reward_is_strict_accuracy_plus_half_format():
    comps = build_components(load(CONF / "strict.yaml").components)
    assert {k: w for k, (w, _) in comps.items()} == {"accuracy": 1.0, "format": 0.5}
    assert comps["accuracy"][1].keywords["answer_from"] == "tag"
