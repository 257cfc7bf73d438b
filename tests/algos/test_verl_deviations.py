"""Two places where rlkit's losses drifted from verl's reference (issue 29), pinned with hand-computed
numbers: the ±20 log-ratio clamp is verl's in vanilla PPO and SAPO only (gspo, clip_cov, kl_cov and
geo_mean use the raw log-ratio), and GMPO folds token-level IS weights into one geometric mean per
sequence."""
from __future__ import annotations

import functools
import math

import pytest
import torch

from rlkit.algos.aggregate import aggregate
from rlkit.algos.losses import clip_cov, gmpo, gspo, kl_cov, ppo_clip, sapo
from rlkit.algos.offpolicy import seq_geometric_mean
from rlkit.steps.update import _capability


def test_gspo_uses_the_raw_log_ratio_then_clamps_at_10():
    # log r = [30, -10]: verl's sequence log-ratio is mean(30, -10) = 10 -> exp(10) (clamp at 10 inactive);
    # the old ±20 clamp gave mean(20, -10) = 5 -> exp(5). A = -1: the unclipped term -A*s = s is the max.
    old = torch.zeros(1, 2)
    logp = torch.tensor([[30.0, -10.0]])
    loss, m = gspo(logp, old, torch.full((1, 2), -1.0), torch.ones(1, 2))
    assert loss[0].tolist() == pytest.approx([math.exp(10), math.exp(10)], rel=1e-5)
    assert float(m["ppo_kl"]) == pytest.approx(-10.0)  # token k1 mean of -(30, -10): unclamped too


def test_kl_cov_and_clip_cov_use_the_raw_log_ratio():
    # one token, log r = 21: -A * r with A = 1 is -exp(21) (the clamp gave -exp(20)); kl_cov's chosen
    # token adds coef * |log r| = 21
    old, logp, adv, mask = torch.zeros(1, 1), torch.full((1, 1), 21.0), torch.ones(1, 1), torch.ones(1, 1)
    loss, _ = kl_cov(logp, old, adv, mask, kl_cov_ratio=1.0, ppo_kl_coef=1.0)
    assert float(loss) == pytest.approx(-math.exp(21) + 21.0, rel=1e-6)
    # clip_cov, A = -1: max(r, clip(r)) = r = exp(21); (one token: its covariance is 0, outside the band)
    loss, _ = clip_cov(logp, old, -adv, mask)
    assert float(loss) == pytest.approx(math.exp(21), rel=1e-6)


def test_ppo_and_sapo_keep_verls_clamp():
    old, logp, mask = torch.zeros(1, 1), torch.full((1, 1), 21.0), torch.ones(1, 1)
    loss, _ = ppo_clip(logp, old, -torch.ones(1, 1), mask, dual_clip=None)
    assert float(loss) == pytest.approx(math.exp(20), rel=1e-6)  # max(r, clip(r)) with r = exp(20)
    # sapo, A = 1: -(4 / tau) * sigmoid(tau * (r - 1)) = -4 for any huge r, clamped or not: finite
    loss, _ = sapo(logp, old, torch.ones(1, 1), mask)
    assert float(loss) == pytest.approx(-4.0)


def test_gmpo_unclamped_log_ratio():
    # log r = 25 on the only token of a negative-advantage sequence: clip bounds it below (-0.4), the
    # pessimistic side for A < 0 is the larger log r, so the used log-ratio is the raw 25 (was 20)
    loss, _ = gmpo(torch.full((1, 1), 25.0), torch.zeros(1, 1), -torch.ones(1, 1), torch.ones(1, 1))
    assert float(loss) == pytest.approx(math.exp(25), rel=1e-6)


def test_gmpo_token_weights_enter_as_a_geometric_mean_per_sequence():
    """On-policy (ratio 1) the GMPO sequence loss is -A_i; verl multiplies it by the geometric mean of the
    sequence's IS weights: seq 1 (A = 1, w = 4, 1, 0.25) -> (4 * 1 * 0.25)^(1/3) = 1 -> -1; seq 2
    (A = -0.5, w = 2, 8, masked) -> (2 * 8)^(1/2) = 4 -> +2; mean over sequences 0.5. The arithmetic
    means (1.75 and 5) gave -1.75 and 2.5, i.e. 0.375."""
    logp = torch.zeros(2, 3)
    adv = torch.tensor([[1.0, 1.0, 1.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    w = torch.tensor([[4.0, 1.0, 0.25], [2.0, 8.0, 123.0]])
    fn = functools.partial(gmpo, clip_low=0.4, clip_high=0.4)  # as Hydra binds it
    assert _capability(fn, "sequence_weights") and not _capability(functools.partial(ppo_clip), "sequence_weights")
    pg, _ = fn(logp, logp.detach(), adv, mask)
    geo = seq_geometric_mean(w, mask)
    assert geo[:, 0].tolist() == pytest.approx([1.0, 4.0], rel=1e-6)
    loss = aggregate(pg * geo, mask, "seq-mean-token-mean", total_tokens=5.0, total_seqs=2.0, constant=None)
    assert float(loss) == pytest.approx(0.5, rel=1e-6)
    arithmetic = aggregate(pg * w, mask, "seq-mean-token-mean", total_tokens=5.0, total_seqs=2.0, constant=None)
    assert float(arithmetic) == pytest.approx(0.375, rel=1e-6)  # what rlkit computed before
