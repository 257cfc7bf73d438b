"""Advantage estimators against hand-computed numbers (written as literals) and a slow GAE reference."""

from __future__ import annotations

import pytest
import torch

from rlkit.algos.advantages import gae, grpo, masked_mean, masked_var, masked_whiten, reinforce_pp, rloo


def outcome_batch(scores: list[float], lengths: list[int], T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """token_rewards [B,T] with each score on the last valid token of a right-padded sequence; mask [B,T]."""
    B = len(scores)
    rewards, mask = torch.zeros(B, T), torch.zeros(B, T)
    for b, (s, n) in enumerate(zip(scores, lengths, strict=True)):
        mask[b, :n] = 1.0
        rewards[b, n - 1] = s
    return rewards, mask


# ------------------------------------------------------------------------------------------------ GRPO
def test_grpo_mixed_equal_and_singleton_groups():
    # group 0: scores 1,0,0,1 -> mean .5, unbiased std sqrt(1/3)=0.5773503; adv = +-0.5/(0.5773503+1e-6)
    # group 1: all 1 -> 0; group 2 (size 1): verl mean 0, std 1 -> 0.7/(1+1e-6)
    r, m = outcome_batch([1, 0, 0, 1, 1, 1, 1, 0.7], [3, 1, 2, 3, 2, 3, 1, 2], T=3)
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2])
    adv, ret = grpo(r, m, g)
    a, z, s = 0.8660239, 0.0, 0.6999993
    expected = torch.tensor(
        [[a, a, a], [-a, 0, 0], [-a, -a, 0], [a, a, a], [z, z, 0], [z, z, z], [z, 0, 0], [s, s, 0]]
    )
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(ret, adv)
    assert (adv[4:7] == 0).all()  # exactly zero, not ~1e-3


def test_grpo_all_equal_nonround_scores_exactly_zero():
    r, m = outcome_batch([0.1, 0.1, 0.1], [2, 2, 2], T=2)
    adv, _ = grpo(r, m, torch.tensor([5, 5, 5]))
    assert (adv == 0).all()


def test_grpo_interleaved_noncontiguous_group_ids():
    r, m = outcome_batch([1, 3, 0, 5], [1, 1, 1, 1], T=1)
    adv, _ = grpo(r, m, torch.tensor([7, 42, 7, 42]), norm_by_std=False)
    torch.testing.assert_close(adv, torch.tensor([[0.5], [-1.0], [-0.5], [1.0]]))


def test_dr_grpo_no_std():
    r, m = outcome_batch([1, 0, 0, 1, 2, 2, 0.7], [2, 1, 2, 2, 1, 2, 2], T=2)
    adv, _ = grpo(r, m, torch.tensor([0, 0, 0, 0, 1, 1, 2]), norm_by_std=False)
    expected = torch.tensor([[0.5, 0.5], [-0.5, 0], [-0.5, -0.5], [0.5, 0.5], [0, 0], [0, 0], [0.7, 0.7]])
    torch.testing.assert_close(adv, expected)


def test_grpo_score_sums_kl_in_reward():
    # token rewards: -0.1 KL on each token + outcome on last -> scores 0.8 and -0.2, mean 0.3 -> +-0.5
    r = torch.tensor([[-0.1, 0.9], [-0.1, -0.1]])
    adv, _ = grpo(r, torch.ones(2, 2), torch.tensor([0, 0]), norm_by_std=False)
    torch.testing.assert_close(adv, torch.tensor([[0.5, 0.5], [-0.5, -0.5]]))


# ------------------------------------------------------------------------------------------------ RLOO
def test_rloo_leave_one_out_and_all_equal():
    # group 0: 1,0,0,0.5 -> 1-0.5/3, 0-1.5/3, 0-1.5/3, 0.5-1/3 ; group 1: 2,2,2 -> 0 ; group 2 singleton
    r, m = outcome_batch([1, 0, 0, 0.5, 2, 2, 2, 0.3], [2, 2, 1, 2, 2, 2, 2, 1], T=2)
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1, 9])
    adv, ret = rloo(r, m, g)
    expected = torch.tensor(
        [
            [0.8333333, 0.8333333],
            [-0.5, -0.5],
            [-0.5, 0],
            [0.1666667, 0.1666667],
            [0, 0],
            [0, 0],
            [0, 0],
            [0.3, 0],
        ]
    )
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(ret, adv)
    assert (adv[4:7] == 0).all()


# ------------------------------------------------------------------------------------------- Reinforce++
def test_reinforce_pp_token_weighted_whitening():
    # seq0: 1 token, reward 2 ; seq1: 3 tokens, outcome 1 -> returns {2, 1, 1, 1}
    # token-weighted mean 1.25, Bessel var (0.5625 + 3*0.0625)/3 = 0.25 -> std 0.5: 2 -> 1.5, 1 -> -0.5
    # (a per-sequence weighting would give mean 1.5 and different numbers)
    r = torch.tensor([[2.0, 0, 0], [0, 0, 1.0]])
    m = torch.tensor([[1.0, 0, 0], [1, 1, 1]])
    adv, ret = reinforce_pp(r, m, torch.tensor([0, 1]))
    torch.testing.assert_close(adv, torch.tensor([[1.5, 0, 0], [-0.5, -0.5, -0.5]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(ret, torch.tensor([[2.0, 0, 0], [1, 1, 1]]))


def test_reinforce_pp_discounted_return_with_kl_reward():
    # gamma .5: [.25, .5, 1] and [-.1 + .5*.35, -.1 + .5*.9, .9] = [.075, .35, .9]
    r = torch.tensor([[0, 0, 1.0], [-0.1, -0.1, 0.9]])
    m = torch.ones(2, 3)
    _, ret = reinforce_pp(r, m, torch.tensor([0, 0]), gamma=0.5)
    torch.testing.assert_close(ret, torch.tensor([[0.25, 0.5, 1.0], [0.075, 0.35, 0.9]]))
    _, ret1 = reinforce_pp(r, m, torch.tensor([0, 0]), gamma=1.0)
    torch.testing.assert_close(ret1, torch.tensor([[1.0, 1.0, 1.0], [0.7, 0.8, 0.9]]))


def test_reinforce_pp_baseline_group_mean_then_whiten():
    # group 0: scores 1, 0 -> centred +-0.5 ; group 1: 1, 1 -> 0. Eight tokens {.5,.5,-.5,-.5,0,0,0,0}:
    # mean 0, Bessel var 1/7 -> +-0.5*sqrt(7) = +-1.3228757
    r, m = outcome_batch([1, 0, 1, 1], [2, 2, 2, 2], T=3)
    adv, ret = reinforce_pp(r, m, torch.tensor([0, 0, 1, 1]), group_baseline=True)
    a = 1.3228757
    torch.testing.assert_close(
        adv, torch.tensor([[a, a, 0], [-a, -a, 0], [0, 0, 0], [0, 0, 0]]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(ret, torch.tensor([[0.5, 0.5, 0], [-0.5, -0.5, 0], [0, 0, 0], [0, 0, 0]]))


def test_reinforce_pp_baseline_subtracts_on_last_token_before_return():
    # scores 0.8, -0.2 (KL -0.1 per token) -> mean 0.3 subtracted from the last valid token, then RTG
    r = torch.tensor([[-0.1, 0.9], [-0.1, -0.1]])
    _, ret = reinforce_pp(r, torch.ones(2, 2), torch.tensor([0, 0]), group_baseline=True)
    torch.testing.assert_close(ret, torch.tensor([[0.5, 0.6], [-0.5, -0.4]]))
    # different lengths: the baseline lands on each sequence's own last valid token
    r2, m2 = outcome_batch([1, 0], [1, 3], T=3)
    _, ret2 = reinforce_pp(r2, m2, torch.tensor([0, 0]), group_baseline=True)
    torch.testing.assert_close(ret2, torch.tensor([[0.5, 0, 0], [-0.5, -0.5, -0.5]]))


# --------------------------------------------------------------------------------------------------- GAE
def test_gae_literal():
    # deltas: t2 1-0.7=0.3, t1 0.7-0.6=0.1, t0 0.6-0.5=0.1 ; A2=0.3, A1=0.1+0.95*0.3=0.385,
    # A0=0.1+0.95*0.385=0.46575 ; returns = A+V ; padded 4th position -> 0
    r = torch.tensor([[0, 0, 1.0, 0]], dtype=torch.float64)
    v = torch.tensor([[0.5, 0.6, 0.7, 9.0]], dtype=torch.float64)
    m = torch.tensor([[1.0, 1, 1, 0]], dtype=torch.float64)
    adv, ret = gae(r, m, torch.tensor([0]), v, gamma=1.0, lam=0.95, whiten=False)
    torch.testing.assert_close(adv, torch.tensor([[0.46575, 0.385, 0.3, 0]], dtype=torch.float64))
    torch.testing.assert_close(ret, torch.tensor([[0.96575, 0.985, 1.0, 0]], dtype=torch.float64))


def _slow_gae(r, v, m, gamma, lam):
    B, T = len(r), len(r[0])
    adv = [[0.0] * T for _ in range(B)]
    for b in range(B):
        idx = [t for t in range(T) if m[b][t] > 0]
        running = 0.0
        for k in reversed(range(len(idx))):
            t = idx[k]
            next_v = v[b][idx[k + 1]] if k + 1 < len(idx) else 0.0
            delta = r[b][t] + gamma * next_v - v[b][t]
            running = delta + gamma * lam * running
            adv[b][t] = running
    ret = [[(adv[b][t] + v[b][t]) if m[b][t] > 0 else 0.0 for t in range(T)] for b in range(B)]
    vals = [adv[b][t] for b in range(B) for t in range(T) if m[b][t] > 0]
    mean = sum(vals) / len(vals)
    var = sum((x - mean) ** 2 for x in vals) / (len(vals) - 1)
    white = [
        [(adv[b][t] - mean) / (var + 1e-8) ** 0.5 if m[b][t] > 0 else 0.0 for t in range(T)] for b in range(B)
    ]
    return adv, ret, white


def _masks(gen: torch.Generator, B: int, T: int) -> dict[str, torch.Tensor]:
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    right = (torch.arange(T) < lengths[:, None]).double()
    holes = (torch.rand(B, T, generator=gen) > 0.3).double()
    holes[0] = 1.0
    with_empty = right.clone()
    with_empty[1] = 0.0
    return {
        "right": right,
        "left": right.flip(-1),
        "holes": holes,
        "empty_row": with_empty,
        "full": torch.ones(B, T),
    }


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0)])
def test_gae_matches_slow_reference(gamma, lam):
    gen = torch.Generator().manual_seed(0)
    B, T = 5, 7
    for name, m in _masks(gen, B, T).items():
        r = torch.randn(B, T, generator=gen, dtype=torch.float64)
        v = torch.randn(B, T, generator=gen, dtype=torch.float64)
        ref_adv, ref_ret, ref_white = _slow_gae(r.tolist(), v.tolist(), m.tolist(), gamma, lam)
        adv, ret = gae(r, m, torch.zeros(B, dtype=torch.long), v, gamma=gamma, lam=lam, whiten=False)
        torch.testing.assert_close(adv, torch.tensor(ref_adv, dtype=torch.float64), msg=name)
        torch.testing.assert_close(ret, torch.tensor(ref_ret, dtype=torch.float64), msg=name)
        white, ret_w = gae(r, m, torch.zeros(B, dtype=torch.long), v, gamma=gamma, lam=lam)
        torch.testing.assert_close(white, torch.tensor(ref_white, dtype=torch.float64), msg=name)
        torch.testing.assert_close(ret_w, ret, msg=name)


def test_gae_requires_values():
    with pytest.raises(ValueError, match="critic"):
        gae(torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1, dtype=torch.long))


# ----------------------------------------------------------------------------------- shared conventions
@pytest.mark.parametrize(
    "fn,kw",
    [
        (grpo, {}),
        (grpo, {"norm_by_std": False}),
        (rloo, {}),
        (reinforce_pp, {}),
        (reinforce_pp, {"group_baseline": True}),
        (gae, {}),
    ],
)
def test_padding_is_zero_and_ignored(fn, kw):
    gen = torch.Generator().manual_seed(1)
    B, T = 6, 5
    m = (torch.arange(T) < torch.tensor([5, 3, 1, 4, 2, 5])[:, None]).float()
    r = torch.randn(B, T, generator=gen)
    v = torch.randn(B, T, generator=gen)
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    adv, ret = fn(r, m, g, v, **kw)
    assert (adv[m == 0] == 0).all() and (ret[m == 0] == 0).all()
    # garbage in padded rewards/values changes nothing
    noisy_r = torch.where(m > 0, r, torch.full_like(r, 1e6))
    noisy_v = torch.where(m > 0, v, torch.full_like(v, -1e6))
    adv2, ret2 = fn(noisy_r, m, g, noisy_v, **kw)
    torch.testing.assert_close(adv2, adv)
    torch.testing.assert_close(ret2, ret)
    assert not adv.requires_grad


def test_masked_helpers_literal():
    x = torch.tensor([[1.0, 2, 3, 100]])
    m = torch.tensor([[1.0, 1, 1, 0]])
    assert masked_mean(x, m).item() == pytest.approx(2.0)
    assert masked_var(x, m).item() == pytest.approx(1.0)  # (1+0+1)/3 * 3/2
    assert masked_var(x, m, unbiased=False).item() == pytest.approx(2 / 3)
    torch.testing.assert_close(masked_whiten(x, m), torch.tensor([[-1.0, 0, 1, 0]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(masked_mean(x, m, dim=-1), torch.tensor([2.0]))
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0  # empty mask: 0, not NaN
