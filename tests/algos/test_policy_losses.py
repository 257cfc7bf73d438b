"""The 2025 policy losses (GSPO, CISPO, SAPO, Clip-Cov, KL-Cov, GMPO): values and gradients worked out by
hand, with a padded position in every batch and a case where each loss's clip (or gate/penalty) acts."""

from __future__ import annotations

import math

import pytest
import torch

from rlkit.algos.aggregate import aggregate
from rlkit.algos.losses import cispo, clip_cov, gmpo, gspo, kl_cov, ppo_clip, sapo

LN = math.log


def _leaf(values):
    return torch.tensor(values, requires_grad=True)


def test_gspo_sequence_ratio_clip_and_padding():
    # row 0: token ratios 1.1, 0.9 (+ a pad) -> s = sqrt(0.99) = 0.994987, below 1 - 3e-4 but A > 0: unclipped
    # row 1: ratios 1.2 x3 -> s = 1.2 > 1 + 4e-4 with A > 0: clipped to 1.0004 (no gradient)
    old = torch.zeros(2, 3)
    logp = _leaf([[LN(1.1), LN(0.9), 7.0], [LN(1.2), LN(1.2), LN(1.2)]])
    adv = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 1]])
    loss, m = gspo(logp, old, adv, mask, clip_low=3e-4, clip_high=4e-4)
    s0 = math.sqrt(0.99)
    torch.testing.assert_close(loss.detach(), torch.tensor([[-s0, -s0, 0.0], [-1.0004, -1.0004, -1.0004]]))
    assert m["pg_clipfrac"].item() == pytest.approx(3 / 5)
    assert m["ppo_kl"].item() == pytest.approx(-(LN(1.1) + LN(0.9) + 3 * LN(1.2)) / 5)
    loss.sum().backward()
    # GSPO-token: d/dlogp_t of -A * sg(s) * exp(logp_t - sg(logp_t)) = -A * s; clipped sequence: 0; pad: 0
    torch.testing.assert_close(logp.grad, torch.tensor([[-s0, -s0, 0.0], [0.0, 0.0, 0.0]]))


def test_cispo_clipped_weight_keeps_the_gradient():
    # token 0: r = 0.6/0.4 = 1.5, A = 1 -> weight clipped to 1.28, loss = -1.28 * ln 0.6, grad -1.28 (not 0)
    # token 1: r = 0.2/0.4 = 0.5, A = -1, no lower bound -> weight 0.5, loss = 0.5 * ln 0.2, grad 0.5; token 2 pad
    old = torch.tensor([[LN(0.4), LN(0.4), 0.0]])
    adv = torch.tensor([[1.0, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 0]])
    logp = _leaf([[LN(0.6), LN(0.2), -3.0]])
    loss, m = cispo(logp, old, adv, mask, clip_low=None, clip_high=0.28)
    torch.testing.assert_close(loss.detach(), torch.tensor([[-1.28 * LN(0.6), 0.5 * LN(0.2), 0.0]]))
    assert m["pg_clipfrac"].item() == pytest.approx(1 / 2)
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.28, 0.5, 0.0]]))
    # a lower bound 1 - 0.2 = 0.8 clips token 1 too
    loss, m = cispo(logp.detach(), old, adv, mask, clip_low=0.2, clip_high=0.28)
    assert loss[0, 1].item() == pytest.approx(0.8 * LN(0.2)) and m["pg_clipfrac"].item() == 1.0


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_sapo_soft_gate():
    # A = 1, r = 1.5, tau_pos 1: loss = -(4/1) sig(0.5); A = -1, r = 0.5, tau_neg 1.05: loss = (4/1.05) sig(-0.525)
    # A = 2, r = 1 (on-policy): loss = -2 * 4 * 0.5 = -4 and gradient -A (PPO's); last position padded
    old = torch.zeros(1, 4)
    logp = _leaf([[LN(1.5), LN(0.5), 0.0, 5.0]])
    adv = torch.tensor([[1.0, -1.0, 2.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 1, 0]])
    loss, m = sapo(logp, old, adv, mask, tau_pos=1.0, tau_neg=1.05)
    want = [-4 * _sig(0.5), (4 / 1.05) * _sig(-0.525), -4.0, 0.0]
    torch.testing.assert_close(loss.detach(), torch.tensor([want]))
    loss.sum().backward()
    # d/dlogp of -A (4/tau) sig(tau (r - 1)) = -A * 4 sig (1 - sig) * r
    g0 = -1 * 4 * _sig(0.5) * (1 - _sig(0.5)) * 1.5
    g1 = 1 * 4 * _sig(-0.525) * (1 - _sig(-0.525)) * 0.5
    torch.testing.assert_close(logp.grad, torch.tensor([[g0, g1, -2.0, 0.0]]))
    # gate weight 4 s (1 - s) r: 1.5 * 0.9400 = 1.41 and 0.5 * 0.9327 = 0.47 (< 0.5) and 1 -> 1 of 3 "clipped"
    assert m["pg_clipfrac"].item() == pytest.approx(1 / 3)


def test_clip_cov_detaches_high_covariance_tokens():
    # A = [2, 2, -2, -2], logp = [-0.5, -3, -0.5, -3] (mean A 0, mean logp -1.75) -> covariance
    # [2.5, -2.5, -2.5, 2.5]: tokens 0 and 3 lie in (1, 5). On-policy (old = logp): nothing ratio-clipped.
    lp = [[-0.5, -3.0, 0.0], [-0.5, -3.0, 0.0]]  # column 2 is padding
    adv = torch.tensor([[2.0, 2.0, 0.0], [-2.0, -2.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 0]])
    logp = _leaf(lp)
    loss, m = clip_cov(logp, torch.tensor(lp), adv, mask, clip_cov_ratio=0.5)  # 0.5 * 4 tokens = both
    torch.testing.assert_close(loss.detach(), torch.tensor([[-2.0, -2.0, 0.0], [2.0, 2.0, 0.0]]))
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -2.0, 0.0], [2.0, 0.0, 0.0]]))
    assert m["pg_clipfrac"].item() == pytest.approx(2 / 4)
    # the paper's ratio: max(1, int(2e-4 * 4)) = 1 of the two candidates, drawn at random
    logp = _leaf(lp)
    loss, m = clip_cov(logp, torch.tensor(lp), adv, mask)
    loss.sum().backward()
    assert int((logp.grad == 0).logical_and(mask > 0).sum()) == 1 and m["pg_clipfrac"].item() == pytest.approx(1 / 4)
    # ratio clip active too: token 1 at r = 1.5 with A = 2 > 0 is clipped (PPO), so it is no candidate
    old = torch.tensor(lp)
    old[0, 1] = -3.0 - LN(1.5)
    loss, m = clip_cov(_leaf(lp), old, adv, mask, clip_cov_ratio=0.5)
    assert loss[0, 1].item() == pytest.approx(-2 * 1.2) and m["pg_clipfrac"].item() == pytest.approx(3 / 4)


def test_kl_cov_penalises_the_top_covariance_token():
    # logp = [-0.4, -3, -0.5, -3] (token 0 has log r = 0.1), A = [2, 2, -2, -2]: mean logp -1.725,
    # covariance [2.65, -2.55, -2.45, 2.55] -> top-1 (ratio 0.25 of 4) is token 0: loss -2 e^0.1 + |0.1|
    logp = _leaf([[-0.4, -3.0, 9.0], [-0.5, -3.0, 9.0]])
    old = torch.tensor([[-0.5, -3.0, 0.0], [-0.5, -3.0, 0.0]])
    adv = torch.tensor([[2.0, 2.0, 0.0], [-2.0, -2.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 0]])
    loss, m = kl_cov(logp, old, adv, mask, kl_cov_ratio=0.25, ppo_kl_coef=1.0)
    torch.testing.assert_close(loss.detach(), torch.tensor([[-2 * math.exp(0.1) + 0.1, -2.0, 0.0], [2.0, 2.0, 0.0]]))
    assert m["pg_clipfrac"].item() == pytest.approx(1 / 4)
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-2 * math.exp(0.1) + 1.0, -2.0, 0.0], [2.0, 2.0, 0.0]]))


def test_gmpo_geometric_mean_with_clipping():
    # row 0: A = 1, log r = [0.6, -0.6] -> the upper side clips: [0.4, -0.6], mean -0.1 -> loss -e^-0.1
    # row 1: A = -1, log r = [0.6, -0.6] -> the lower side clips: [0.6, -0.4], mean 0.1 -> loss +e^0.1; pads
    logp = _leaf([[0.6, -0.6, 3.0], [0.6, -0.6, 3.0]])
    adv = torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 0]])
    loss, m = gmpo(logp, torch.zeros(2, 3), adv, mask, clip_low=0.4, clip_high=0.4)
    a, b = math.exp(-0.1), math.exp(0.1)
    torch.testing.assert_close(loss.detach(), torch.tensor([[-a, -a, 0.0], [b, b, 0.0]]))
    assert m["pg_clipfrac"].item() == pytest.approx(2 / 4)
    total = aggregate(loss, mask, "seq-mean-token-mean")  # the paper's mean over sequences
    assert total.item() == pytest.approx((-a + b) / 2)
    total.backward()
    # d/dlogp_t of 1/2 * (-A exp(mean used)) = -A/2 * exp(.) * 1/2 on unclipped tokens, 0 on clipped ones
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -a / 4, 0.0], [b / 4, 0.0, 0.0]]))


@pytest.mark.parametrize("loss_fn", [gspo, cispo, sapo, clip_cov, kl_cov, gmpo])
def test_on_policy_gradient_equals_ppo(loss_fn):
    """Ratio 1 (one update per batch): every loss has PPO's per-token gradient -A (GMPO: -A / n per
    token of its sequence, the same after its seq-mean-token-mean aggregation)."""
    lp = [[-1.0, -2.0, -0.5], [-0.3, -1.5, 0.0]]
    adv = torch.tensor([[1.5, 1.5, 1.5], [-0.5, -0.5, 0.0]])
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
    kw = {"clip_cov_ratio": 1e-9, "clip_cov_lb": 100.0} if loss_fn is clip_cov else {}  # no token detached
    grads = []
    for fn, extra in ((loss_fn, kw), (ppo_clip, {})):
        logp = _leaf(lp)
        loss, _ = fn(logp, torch.tensor(lp), adv, mask, **extra)
        aggregate(loss, mask, "seq-mean-token-mean").backward()
        grads.append(logp.grad)
    torch.testing.assert_close(grads[0], grads[1])
