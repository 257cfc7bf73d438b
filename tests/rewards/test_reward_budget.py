"""The per-step reward time budget (trainer.reward_budget_s): a batch of slow completions ends at the
deadline, the completions left score as wrong and are flagged; without a timeout the values are exactly
`score`'s, in-process or in worker processes."""
from __future__ import annotations

import functools
import time

from rlkit.data.problem import Problem
from rlkit.rewards.accuracy import accuracy
from rlkit.rewards.compose import score, score_budgeted
from rlkit.rewards.format import strict


def slow(completion, problem, ctx, *, seconds: float = 0.05) -> float:
    time.sleep(seconds)
    return 1.0


def correct(completion, problem) -> bool:
    return "42" in completion


def test_a_slow_batch_stops_at_the_deadline_and_the_rest_scores_as_wrong():
    comps = {"slow": (1.0, slow)}
    texts = ["42"] * 40  # 40 x 50 ms = 2 s unbounded
    t0 = time.monotonic()
    total, per, ok, late = score_budgeted(comps, texts, [None] * 40, [None] * 40, correct, budget_s=0.5)
    took = time.monotonic() - t0
    assert took < 0.5 + 0.15, took  # at most one call past the deadline
    n_late = sum(late)
    assert 25 <= n_late <= 33, n_late  # ~10 scored in 0.5 s
    assert all(t == 0.0 and not c for t, c, x in zip(total, ok, late) if x)  # timed out: wrong
    assert all(t == 1.0 and c for t, c, x in zip(total, ok, late) if not x)
    assert per["slow"] == total


def test_without_a_timeout_the_values_are_scores_own():
    comps = {"accuracy": (1.0, functools.partial(accuracy, answer_from="tag")), "format": (0.5, strict)}
    prob = Problem("p", "q", "42")
    texts = ["<think>x</think><answer>42</answer>", "<answer>41</answer>", "42", "<think></think><answer>\\frac{84}{2}</answer>"]
    ctxs = [None] * len(texts)
    want_total, want_per = score(comps, texts, [prob] * len(texts), ctxs)
    for workers in (0, 2):
        total, per, ok, late = score_budgeted(comps, texts, [prob] * len(texts), ctxs, correct, 30.0, workers)
        assert (total, per) == (want_total, want_per) and not any(late), workers
        assert ok == [True, False, True, False]
