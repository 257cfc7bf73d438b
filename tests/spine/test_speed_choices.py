"""Speed choices of the loop. Skipping the rows whose loss is exactly 0 (trainer.skip_idle_rows)
changes compute, not results: after the same updates the weights are equal to the full computation's
and so is every metric, also when a whole batch is idle (AdamW still takes its momentum step). The
default torch thread count shares the usable CPUs between a node's processes."""
from __future__ import annotations

import copy

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from rlkit import distributed
from rlkit.backends import make_backend
from rlkit.data.arithmetic import load
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.fast import FastEngine
from rlkit.steps.advantage import Scored
from rlkit.steps.parts import RunParts
from rlkit.steps.sample import Batch
from rlkit.steps.update import idle_rows, update
from tests.conftest import REPO


class Plain:  # the torch backend's capability flag, read by idle_rows
    can_skip_rows = True


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _batch(tiny_path, scores_fn):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    problems = load("test", size=4)
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": p.question}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False)["input_ids"]
               for p in problems]
    torch.manual_seed(0)
    r = FastEngine(model, tok).generate(prompts, 4, SamplingParams(24))
    scores = scores_fn(len(r.texts))
    batch = Batch(r, scores, scores > 0, {}, [p for p in problems for _ in range(4)])
    return model, batch


def _updates(cfg, model, batches):
    """Weights and metrics after one update per batch, from a copy of `model`."""
    torch.manual_seed(0)
    dist = distributed.Dist()
    policy = copy.deepcopy(model)
    actor = make_backend(cfg, dist).trainer(policy, lr=1e-3, weight_decay=0.01)
    adv_fn = instantiate(cfg.algo.advantage)
    metrics = []
    for b in batches:
        r = b.rollout
        rewards = torch.zeros_like(r.response_mask)
        last = r.response_mask.sum(-1).long() - 1
        rewards[torch.arange(len(last)), last] = b.scores
        adv, ret = adv_fn(rewards, r.response_mask, r.group, None)
        scored = Scored(None, None, None, adv, ret, r.response_mask, torch.zeros(len(b.problems), dtype=torch.bool))
        parts = RunParts(cfg, dist, actor, policy_loss=instantiate(cfg.algo.policy_loss),
                         correction=instantiate(cfg.algo.correction))
        metrics.append(update(parts, b, scored))
    return torch.cat([p.detach().flatten() for p in policy.parameters()]), metrics


@pytest.mark.parametrize("algo", ["grpo", "dr_grpo", "rloo"])
def test_skipping_idle_rows_gives_the_same_update(tiny_path, algo):
    # groups 0 and 2 all-equal (idle), groups 1 and 3 mixed
    model, mixed = _batch(tiny_path, lambda n: torch.tensor([1.0] * 4 + [0, 1, 0, 1] + [0.0] * 4 + [1, 1, 0, 1]))
    _, idle = _batch(tiny_path, lambda n: torch.ones(n))  # a batch with no learning signal at all
    on, off = (_cfg(f"algo={algo}", "algo.kl.coef=0", f"trainer.skip_idle_rows={s}") for s in ("true", "false"))
    adv = torch.zeros(16, 3)
    adv[4:8] = 1.0
    skip = idle_rows(on, Plain(), adv, torch.ones(16, 3), None)
    assert skip.tolist() == [True] * 4 + [False] * 4 + [True] * 8
    assert idle_rows(off, Plain(), adv, torch.ones(16, 3), None) is None

    w_on, m_on = _updates(on, model, [mixed, idle])
    w_off, m_off = _updates(off, model, [mixed, idle])
    start = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (w_off - start).abs().max() > 1e-4  # the updates did move the weights (the idle step via momentum)
    torch.testing.assert_close(w_on, w_off, rtol=0, atol=2e-6)
    for a, b in zip(m_on, m_off):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k


def test_not_skipped_when_the_row_still_matters(tiny_path):
    adv, mask = torch.zeros(4, 3), torch.ones(4, 3)
    for over in (["algo=grpo", "algo.kl.coef=0.01", "algo.kl.placement=loss"], ["algo=grpo", "algo.entropy_coef=0.01"],
                 ["algo=grpo", "algo.epochs=2"], ["algo=grpo", "algo.mini_batches=2"]):
        assert idle_rows(_cfg(*over), Plain(), adv, mask, torch.zeros(4, 3)) is None, over
    assert idle_rows(_cfg("algo=grpo"), object(), adv, mask, None) is None  # DeepSpeed: same passes on every rank


def test_torch_threads_fit_the_cpus_and_the_processes():
    import os

    from rlkit.steps.parts import torch_threads

    cpus = len(os.sched_getaffinity(0))
    assert torch_threads(_cfg(), {}) == cpus
    assert torch_threads(_cfg(), {"LOCAL_WORLD_SIZE": str(cpus)}) == 1  # torchrun: the node's CPUs shared
    assert torch_threads(_cfg(), {"LOCAL_WORLD_SIZE": str(4 * cpus)}) == 1
    assert torch_threads(_cfg(), {"RLKIT_THREADS": "3", "LOCAL_WORLD_SIZE": "2"}) == 3  # a launcher's choice wins
    assert torch_threads(_cfg("trainer.threads=5"), {"RLKIT_THREADS": "3"}) == 5
