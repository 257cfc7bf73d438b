"""The collectives and reductions of rlkit.distributed on a real 2-process gloo group (spawned here, a
few seconds), and the per-prompt seeded sampling that makes multi-process runs reproducible."""
from __future__ import annotations

import os
import pickle
import socket

import pytest
import torch
import torch.multiprocessing as mp

import rlkit.train  # noqa: F401  (its steps declare how the loop's metrics reduce over ranks)
from rlkit import distributed
from rlkit.algos.advantages import grpo, reinforce_pp
from rlkit.rollout.base import Rollout, SamplingParams, cat_rollouts
from rlkit.rollout.seeded import PerPromptSeeds, step_seed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch():
    """A global batch of 4 prompts x 2 samples with ragged responses, and its rank split (prompts 0-1 | 2-3)."""
    torch.manual_seed(0)
    T = [3, 5, 2, 4, 6, 1, 3, 2]
    mask = torch.zeros(8, 6)
    for i, t in enumerate(T):
        mask[i, :t] = 1
    rewards = torch.zeros(8, 6)
    rewards[torch.arange(8), torch.tensor(T) - 1] = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.5])
    rewards -= 0.01 * torch.rand(8, 6) * mask  # a KL-like penalty on every token
    group = torch.arange(4).repeat_interleave(2)
    return rewards, mask, group


def _worker(rank: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    dist = distributed.Dist(rank, 2)
    rewards, mask, group = _batch()
    rows = slice(0, 4) if rank == 0 else slice(4, 8)
    width = int(mask[rows].sum(-1).max())  # each rank's responses are only as wide as its longest
    mine = [rewards[rows, :width], mask[rows, :width], group[rows] - 2 * rank]  # local prompt ids 0..1
    res = {}
    for name, fn in (("rpp", reinforce_pp), ("grpo", grpo)):
        adv, ret = dist.advantages(fn, *mine, None)
        res[name] = (adv, ret)
    res["sum"] = dist.sum(rank + 1.0, 10.0)
    m = {"actor/pg_loss": 0.25 * (rank + 1), "response_length/max": 3.0 + rank, "response_length/min": 1.0 + rank,
         "critic/score/mean": float(rank), "critic/advantages/mean": float(rank), "actor/grad_norm": 7.0,
         "timing_s/gen": 1.0 + rank}
    res["metrics"] = dist.reduce_metrics(m, n_seqs=4 if rank == 0 else 2, n_tokens=10 if rank == 0 else 30)
    grads = torch.nn.Linear(2, 1)
    grads.weight.grad = torch.full_like(grads.weight, rank + 1.0)
    dist.sum_grads([grads.weight, grads.bias])  # bias has no grad on either rank: becomes zeros
    res["grad"] = (grads.weight.grad.clone(), grads.bias.grad.clone())
    res["shard"] = dist.shard(list("abcdefgh"))
    res["gathered"] = dist.gather_list(res["shard"])
    out.put(pickle.dumps((rank, res)))  # plain pickle: tensors by value, not shared memory of a dying process
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks():
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    res = dict(pickle.loads(out.get(timeout=120)) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return res


def test_advantages_use_the_whole_batch(two_ranks):
    rewards, mask, group = _batch()
    for name, fn in (("rpp", reinforce_pp), ("grpo", grpo)):
        want_adv, want_ret = fn(rewards, mask, group, None)
        for rank, rows in ((0, slice(0, 4)), (1, slice(4, 8))):
            adv, ret = two_ranks[rank][name]
            w = adv.shape[1]
            torch.testing.assert_close(adv, want_adv[rows, :w], rtol=0, atol=1e-6)
            torch.testing.assert_close(ret, want_ret[rows, :w], rtol=0, atol=1e-6)
            assert not want_adv[rows, w:].any()  # nothing lost beyond this rank's width
    # whitening over one rank's shard alone would give different advantages
    own = reinforce_pp(rewards[:4], mask[:4], group[:4], None)[0]
    assert not torch.allclose(own, reinforce_pp(rewards, mask, group, None)[0][:4], atol=1e-3)


def test_metric_reductions(two_ranks):
    m = two_ranks[0]["metrics"]
    assert m["actor/pg_loss"] == pytest.approx(0.75)          # shares of the global loss: summed
    assert m["response_length/max"] == 4.0 and m["response_length/min"] == 1.0
    assert m["critic/score/mean"] == pytest.approx(2 / 6)     # per-sequence mean: weighted by sequences (4, 2)
    assert m["critic/advantages/mean"] == pytest.approx(30 / 40)  # per-token mean: weighted by tokens (10, 30)
    assert m["actor/grad_norm"] == 7.0 and m["timing_s/gen"] == 2.0
    assert two_ranks[0]["sum"] == (3.0, 20.0)


def test_gradients_summed_and_data_sharded(two_ranks):
    for rank in (0, 1):
        w, b = two_ranks[rank]["grad"]
        assert torch.equal(w, torch.full_like(w, 3.0)) and torch.equal(b, torch.zeros_like(b))
    assert two_ranks[0]["shard"] == list("abcd") and two_ranks[1]["shard"] == list("efgh")
    assert two_ranks[0]["gathered"] == two_ranks[1]["gathered"] == list("abcdefgh")


def test_reduction_table():
    r = distributed.reduction
    assert [r("actor/kl_loss"), r("perf/throughput"), r("timing_s/step"), r("critic/score/max"),
            r("critic/score/min"), r("actor/kl_ref"), r("rewards/format/mean"), r("val/acc"), r("actor/lr")] == \
        ["sum", "sum", "max", "max", "min", "token-mean", "seq-mean", "same", "same"]


def test_a_metric_without_a_declared_reduction_fails_at_any_world_size():
    with pytest.raises(KeyError, match="declares no reduction"):
        distributed.Dist().reduce_metrics({"my/new_metric": 1.0}, 1, 1)
    with pytest.raises(ValueError, match="declared both"):
        distributed.declare("max", "actor/pg_loss")


def test_world_one_is_a_pass_through():
    d = distributed.Dist()
    x = [1, 2, 3]
    assert d.shard(x) is x and d.gather_list(x) is x and d.sum(2, 3) == (2.0, 3.0)
    m = {"critic/score/mean": 1.0}
    assert d.reduce_metrics(m, 1, 1) is m
    assert distributed.to_device(m, torch.device("cpu")) is m


class _Counter:
    """An engine whose samples are uniform draws: shows which RNG stream a prompt got."""

    def sync_weights(self, model) -> None: ...

    def generate(self, prompts, n, params):
        B = len(prompts) * n
        draws = torch.rand(B, 3)
        ids = torch.tensor([p for p in prompts for _ in range(n)])
        return Rollout(ids, torch.ones_like(ids), (draws * 100).long(), torch.ones(B, 3), torch.zeros(B, dtype=torch.bool),
                       [str(d.tolist()) for d in draws], torch.arange(len(prompts)).repeat_interleave(n))


def test_per_prompt_seeds_make_samples_independent_of_the_batch():
    eng = PerPromptSeeds(_Counter())
    p = SamplingParams(8, seed=step_seed(0, 5))
    whole = eng.generate([[1, 2], [3, 4], [5, 6], [7, 8]], 2, p)
    halves = [eng.generate([[1, 2], [3, 4]], 2, p), eng.generate([[5, 6], [7, 8]], 2, p)]
    assert whole.texts == halves[0].texts + halves[1].texts
    assert whole.group.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    other_step = eng.generate([[1, 2]], 2, SamplingParams(8, seed=step_seed(0, 6)))
    assert other_step.texts != whole.texts[:2]
    state = torch.get_rng_state()
    eng.generate([[1, 2]], 2, p)
    assert torch.equal(state, torch.get_rng_state())  # the global stream is left alone
    unseeded = eng.generate([[1, 2]], 2, SamplingParams(8))
    assert unseeded.texts != whole.texts[:2]


def test_cat_rollouts_pads_both_sides():
    a = Rollout(torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long), torch.tensor([[1, 2]]),
                torch.ones(1, 2), torch.tensor([False]), ["x"], torch.tensor([0]))
    b = Rollout(torch.tensor([[8]]), torch.ones(1, 1, dtype=torch.long), torch.tensor([[3, 4, 9]]),
                torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([True]), ["y"], torch.tensor([0]))
    c = cat_rollouts([a, b])
    assert c.prompt_ids.tolist() == [[5, 6, 7], [0, 0, 8]] and c.prompt_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert c.response_ids.tolist() == [[1, 2, 0], [3, 4, 9]] and c.response_mask.tolist() == [[1, 1, 0], [1, 1, 0]]
    assert c.group.tolist() == [0, 1] and c.texts == ["x", "y"] and c.truncated.tolist() == [False, True]
    # DAPO's kept rows: the dropped part adds no width, prompts are re-padded to the longest kept one
    k = cat_rollouts([a, b, a], [torch.tensor([False]), torch.tensor([True]), torch.tensor([True])])
    assert k.prompt_ids.tolist() == [[0, 0, 8], [5, 6, 7]] and k.response_ids.tolist() == [[3, 4, 9], [1, 2, 0]]
    assert k.group.tolist() == [0, 1] and k.texts == ["y", "x"]
