"""Rollout/training mismatch metrics and the IS corrections (none, TIS, masked IS, sequence TIS): hand
numbers, capped and masked tokens counted, padded positions ignored."""

from __future__ import annotations

import math

import pytest
import torch

from rlkit.algos.offpolicy import mis, mismatch, no_correction, seq_tis, tis

LN = math.log


def _pair(ratios):
    """(train_logp, rollout_logp) with train - rollout = ln(ratio); rollout at ln 0.3."""
    rollout = torch.full((1, len(ratios)), LN(0.3))
    return rollout + torch.tensor([[LN(r) for r in ratios]]), rollout


def test_tis_caps_and_counts():
    train, rollout = _pair([0.5, 1.0, 3.0, 50.0])  # the last position is padding
    mask = torch.tensor([[1.0, 1, 1, 0]])
    w, m = tis(train, rollout, mask, cap=2.0)
    torch.testing.assert_close(w[:, :3], torch.tensor([[0.5, 1.0, 2.0]]))
    assert m["capped_frac"].item() == pytest.approx(1 / 3) and m["masked_frac"].item() == 0.0
    assert not w.requires_grad


def test_masked_is_drops_tokens_outside_the_band():
    train, rollout = _pair([0.4, 1.0, 3.0, 1.5, 0.1])  # the last position is padding
    mask = torch.tensor([[1.0, 1, 1, 1, 0]])
    w, m = mis(train, rollout, mask, low=0.5, high=2.0)
    torch.testing.assert_close(w[:, :4], torch.tensor([[0.0, 1.0, 0.0, 1.5]]))
    assert m["masked_frac"].item() == pytest.approx(2 / 4) and m["capped_frac"].item() == 0.0


def test_sequence_tis_one_weight_per_sequence():
    # row 0: ratios 2 x 2 -> sequence ratio 4, capped at 2 on both tokens; row 1: 0.5 then padding
    rollout = torch.full((2, 2), LN(0.3))
    train = rollout + torch.tensor([[LN(2.0), LN(2.0)], [LN(0.5), 9.0]])
    mask = torch.tensor([[1.0, 1], [1, 0]])
    w, m = seq_tis(train, rollout, mask, cap=2.0)
    torch.testing.assert_close(w[0], torch.tensor([2.0, 2.0]))
    assert w[1, 0].item() == pytest.approx(0.5)
    assert m["capped_frac"].item() == pytest.approx(2 / 3)


def test_no_correction_is_ones():
    train, rollout = _pair([0.5, 3.0])
    w, m = no_correction(train, rollout, torch.ones(1, 2))
    assert torch.equal(w, torch.ones(1, 2)) and m["capped_frac"].item() == 0.0 and m["masked_frac"].item() == 0.0


def test_mismatch_k3_and_ratios():
    # ratios 2 and 0.5: k3 = r - 1 - ln r = 0.306853 and 0.193147, mean 0.25; ratio mean 1.25, max 2; pad ignored
    train, rollout = _pair([2.0, 0.5, 100.0])
    mm = mismatch(train, rollout, torch.tensor([[1.0, 1, 0]]))
    assert mm["kl"].item() == pytest.approx(0.25, abs=1e-6)
    assert mm["ratio_mean"].item() == pytest.approx(1.25) and mm["ratio_max"].item() == pytest.approx(2.0)
    same = mismatch(rollout, rollout, torch.ones(1, 3))
    assert same["kl"].item() == 0.0 and same["ratio_mean"].item() == 1.0 and same["ratio_max"].item() == 1.0
