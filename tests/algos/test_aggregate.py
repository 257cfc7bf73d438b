"""Aggregation modes on a literal 2x3 matrix, padding invariance, gradient accumulation with totals."""

from __future__ import annotations

import pytest
import torch

from rlkit.algos.advantages import grpo
from rlkit.algos.aggregate import MODES, aggregate
from rlkit.algos.kl import kl_estimate
from rlkit.algos.losses import ppo_clip

X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
M = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("token-mean", 3.6),  # (1+2+4+5+6)/5
        ("seq-mean-token-sum", 9.0),  # (3 + 15)/2
        ("seq-mean-token-mean", 3.25),  # (1.5 + 5)/2
        ("seq-mean-token-sum-norm", 2.25),  # 18 / (2 * 4)
    ],
)
def test_modes_literal(mode, expected):
    assert aggregate(X, M, mode, constant=4.0).item() == pytest.approx(expected)


def test_modes_with_totals_literal():
    # row 0 alone as a micro-batch of a 2-sequence, 5-token mini-batch: 3/5, 3/2, 1.5/2, 3/(2*4)
    x, m = X[:1], M[:1]
    got = [aggregate(x, m, mode, total_tokens=5, total_seqs=2, constant=4.0).item() for mode in MODES]
    assert got == pytest.approx([0.6, 1.5, 0.75, 0.375])


def test_unknown_mode_and_missing_constant():
    with pytest.raises(
        ValueError, match="token-mean, seq-mean-token-sum, seq-mean-token-mean, seq-mean-token-sum-norm"
    ):
        aggregate(X, M, "seq-sum")
    with pytest.raises(ValueError, match="constant"):
        aggregate(X, M, "seq-mean-token-sum-norm")
    assert MODES == ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def test_padding_is_ignored_even_if_nan():
    x = X.clone()
    x[0, 2] = float("nan")
    assert aggregate(x, M, "token-mean").item() == pytest.approx(3.6)


def _batch(seed: int = 0, B: int = 5, T: int = 6):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([6, 2, 4, 1, 3])
    mask = (torch.arange(T) < lengths[:, None]).float()
    logp = -torch.rand(B, T, generator=gen) * 2
    old = logp + 0.3 * torch.randn(B, T, generator=gen)
    ref = logp + 0.3 * torch.randn(B, T, generator=gen)
    scores = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
    rewards = torch.zeros(B, T)
    rewards[torch.arange(B), lengths - 1] = scores
    adv, _ = grpo(rewards, mask, torch.tensor([0, 0, 0, 1, 1]))
    return logp, old, ref, adv, mask


def _loss(logp, old, ref, adv, mask, mode, **totals):
    pg, _ = ppo_clip(logp, old, adv, mask, clip_low=0.2, clip_high=0.28, dual_clip=3.0)
    kl = kl_estimate(logp, ref, "k3")
    return aggregate(pg, mask, mode, constant=8.0, **totals) + 0.1 * aggregate(
        kl, mask, mode, constant=8.0, **totals
    )


@pytest.mark.parametrize("mode", MODES)
def test_padding_width_invariance(mode):
    logp, old, ref, adv, mask = _batch()
    short = _loss(logp, old, ref, adv, mask, mode)

    def pad(x, value):
        return torch.cat([x, torch.full((x.shape[0], 4), value)], dim=1)

    long = _loss(pad(logp, float("nan")), pad(old, 0.0), pad(ref, 0.0), pad(adv, 0.0), pad(mask, 0.0), mode)
    torch.testing.assert_close(long, short)


@pytest.mark.parametrize("mode", MODES)
def test_gradient_accumulation_equals_full_batch(mode):
    logp0, old, ref, adv, mask = _batch()
    full_param = logp0.clone().requires_grad_(True)
    full = _loss(full_param, old, ref, adv, mask, mode)
    full.backward()

    acc_param = logp0.clone().requires_grad_(True)
    totals = {"total_tokens": mask.sum(), "total_seqs": mask.shape[0]}
    acc = torch.zeros(())
    for rows in (slice(0, 2), slice(2, 5)):
        width = int(mask[rows].sum(-1).max())  # each micro-batch re-padded to its own width
        cut = (rows, slice(0, width))
        micro = _loss(acc_param[cut], old[cut], ref[cut], adv[cut], mask[cut], mode, **totals)
        micro.backward()
        acc = acc + micro.detach()
    torch.testing.assert_close(acc, full.detach())
    torch.testing.assert_close(acc_param.grad, full_param.grad)
