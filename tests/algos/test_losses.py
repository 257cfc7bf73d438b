"""PPO clipped loss (clip-higher, dual clip), value loss, KL estimators, entropy: literal numbers."""

from __future__ import annotations

import math

import pytest
import torch

from rlkit.algos.entropy import entropy_from_logprobs
from rlkit.algos.kl import KL_KINDS, kl_estimate
from rlkit.algos.losses import ppo_clip, value_loss


@pytest.mark.parametrize(
    "adv,ratio,low,high,dual,expected,grad_zero",
    [
        (1.0, 1.25, 0.2, 0.2, None, -1.2, True),  # symmetric clip caps the gain at 1.2
        (1.0, 1.25, 0.2, 0.28, None, -1.25, False),  # clip-higher leaves room up to 1.28
        (1.0, 1.5, 0.2, 0.28, None, -1.28, True),
        (-1.0, 0.5, 0.2, 0.28, None, 0.8, True),  # lower clip at 0.8 for negative advantage
        (-2.0, 0.9, 0.2, 0.2, None, 1.8, False),
        (-1.0, 5.0, 0.2, 0.28, None, 5.0, False),  # huge ratio, negative A: unbounded without dual clip
        (-1.0, 5.0, 0.2, 0.28, 3.0, 3.0, True),  # dual clip caps it at -A*c = 3
        (-1.0, 2.0, 0.2, 0.28, 3.0, 2.0, False),  # below c: untouched
        (2.0, 5.0, 0.2, 0.28, 3.0, -2.56, True),  # dual clip never touches positive advantages
    ],
)
def test_ppo_clip_literal(adv, ratio, low, high, dual, expected, grad_zero):
    logp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, _ = ppo_clip(
        logp,
        torch.zeros(1, 1),
        torch.tensor([[adv]]),
        torch.ones(1, 1),
        clip_low=low,
        clip_high=high,
        dual_clip=dual,
    )
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.sum().backward()
    if grad_zero:
        assert logp.grad.item() == 0.0
    else:
        assert logp.grad.item() == pytest.approx(-adv * ratio, abs=1e-5)  # d(-A r)/dlogp = -A r


def test_ppo_clip_metrics_and_padding():
    # valid: ratios 1.25 (A=1, not clipped with 0.28), 1.5 (A=1, clipped), 0.5 (A=-1, clipped) -> clipfrac 2/3
    # ppo_kl = -(ln 1.25 + ln 1.5 + ln 0.5)/3 = 0.0215128 ; 4th position padded with NaN garbage
    logp = torch.tensor([[math.log(1.25), math.log(1.5), math.log(0.5), float("nan")]])
    adv = torch.tensor([[1.0, 1.0, -1.0, float("nan")]])
    mask = torch.tensor([[1.0, 1, 1, 0]])
    loss, metrics = ppo_clip(logp, torch.zeros(1, 4), adv, mask, clip_low=0.2, clip_high=0.28)
    torch.testing.assert_close(loss, torch.tensor([[-1.25, -1.28, 0.8, 0.0]]))
    assert set(metrics) == {"pg_clipfrac", "ppo_kl"}
    assert metrics["pg_clipfrac"].item() == pytest.approx(2 / 3)
    assert metrics["ppo_kl"].item() == pytest.approx(0.0215128, abs=1e-6)
    assert metrics["pg_clipfrac"].dim() == 0 and not metrics["ppo_kl"].requires_grad


def test_value_loss_literal():
    v = torch.tensor([[1.0, 2.5, 2.5]])
    old = torch.tensor([[0.5, 2.0, 2.0]])
    ret = torch.tensor([[2.0, 2.4, 2.4]])
    m = torch.tensor([[1.0, 1, 0]])
    # pos0: v_clip 0.7: max(1, 1.69)/2 = 0.845 ; pos1: v_clip 2.2: max(0.01, 0.04)/2 = 0.02 ; pos2 padded
    torch.testing.assert_close(value_loss(v, old, ret, m, clip=0.2), torch.tensor([[0.845, 0.02, 0.0]]))
    torch.testing.assert_close(value_loss(v, old, ret, m, clip=None), torch.tensor([[0.5, 0.005, 0.0]]))


def test_kl_estimators_literal():
    logp = torch.tensor([-1.0, -2.0, -1.0])
    ref = torch.tensor([-2.0, -1.0, -1.0])
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([1.0, -1.0, 0.0]))
    torch.testing.assert_close(kl_estimate(logp, ref, "k2"), torch.tensor([0.5, 0.5, 0.0]))
    # k3 = e^(ref-logp) - (ref-logp) - 1: e^-1 = 0.3678794 ; e^1 - 2 = 0.7182818 ; 0
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), torch.tensor([0.3678794, 0.7182818, 0.0]))


def test_k3_clamped_like_verl_low_var_kl():
    # ref-logp = -30 -> clamp -20 -> e^-20 + 19 = 19 -> clamp 10 ; +30 -> e^20 - 21 -> clamp 10 ; finite grads
    logp = torch.tensor([0.0, -30.0], requires_grad=True)
    k3 = kl_estimate(logp, torch.tensor([-30.0, 0.0]), "k3")
    torch.testing.assert_close(k3, torch.tensor([10.0, 10.0]))
    k3.sum().backward()
    assert torch.isfinite(logp.grad).all()


def test_kl_unknown_kind_names_valid():
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_estimate(torch.zeros(1), torch.zeros(1), "low_var_kl")
    assert KL_KINDS == ("k1", "k2", "k3")


def test_entropy_from_logprobs_literal_stable_and_differentiable():
    """The update's entropy (from the loss's own log_softmax): the same literal values, finite
    gradients with -inf logits, and equal to Categorical's entropy."""
    logits = torch.tensor(
        [
            [[0.0, 0.0, 0.0, 0.0], [1000.0, 0.0, 0.0, 0.0]],
            [[0.0, float("-inf"), 0.0, float("-inf")], [50.0, 50.0, -50.0, 0]],
        ], requires_grad=True)
    h = entropy_from_logprobs(torch.log_softmax(logits, -1))
    torch.testing.assert_close(h.detach(), torch.tensor([[1.3862944, 0.0], [0.6931472, 0.6931472]]), atol=1e-6, rtol=0)
    h.sum().backward()
    assert torch.isfinite(logits.grad).all()
    z = torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(entropy_from_logprobs(torch.log_softmax(z, -1)),
                               torch.distributions.Categorical(logits=z).entropy())
    out = entropy_from_logprobs(torch.log_softmax(z.bfloat16().float(), -1))  # bf16 logits, upcast as the loss does
    assert out.dtype == torch.float32 and out.shape == (3, 5)
