"""rlkit.steps.update logs every metric a policy loss returns under actor/, weighted by the micro-batch's
token share, with pg_clipfrac / ppo_kl always present (the names the golden loop and reports read)."""

from __future__ import annotations

import pytest
import torch

from rlkit import distributed
from rlkit.steps.update import loss_metrics


def test_every_metric_is_logged_token_weighted():
    got = loss_metrics(
        {"pg_clipfrac": torch.tensor(0.5), "ppo_kl": torch.tensor(-0.2), "gate_frac": torch.tensor(0.8)}, 0.25
    )
    assert got == pytest.approx({"actor/pg_clipfrac": 0.125, "actor/ppo_kl": -0.05, "actor/gate_frac": 0.2})
    assert distributed.reduction("actor/gate_frac") == "sum"  # shares of a global token mean, over ranks


def test_the_two_standard_metrics_default_to_zero():
    assert loss_metrics({}, 1.0) == {"actor/pg_clipfrac": 0.0, "actor/ppo_kl": 0.0}


def test_a_loss_cannot_shadow_the_loops_own_metrics():
    with pytest.raises(ValueError, match="actor/entropy is the loop's own"):
        loss_metrics({"entropy": torch.tensor(1.0)}, 1.0)
