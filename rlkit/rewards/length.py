r"""Length-shaped rewards. All lengths are in tokens, from `RewardContext` (never re-tokenized here).

cosine             Demystifying Long CoT (Yeo et al. 2025, arXiv 2502.03373) cosine length scaling; it
                   *replaces* binary accuracy as the correctness signal.
overlong_penalty   DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476; verl
                   DAPORewardManager): add to a correctness reward.
light_r1_length    a clipped, late-starting bonus for concise correct answers (Light-R1 style, see below).
repetition_penalty n-gram repetition penalty (Demystifying Long CoT App. C.2; Open-R1
                   `get_repetition_penalty_reward`).
"""
from __future__ import annotations

import math
from typing import Any

from rlkit.rewards.accuracy import DEFAULT_TIMEOUT_S, AnswerFrom, is_correct
from rlkit.rewards.base import RewardContext


def _cap(ctx: RewardContext, max_len: int | None) -> int:
    return int(max_len) if max_len else int(ctx.max_response_tokens)


def cosine(
    completion: str,
    problem: Any,
    ctx: RewardContext,
    *,
    answer_from: AnswerFrom = "tag",
    min_value_wrong: float = -10.0,
    max_value_wrong: float = 0.0,
    min_value_correct: float = 1.0,
    max_value_correct: float = 2.0,
    exceed_length: float | None = -10.0,
    max_len: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> float:
    """Cosine length reward: R = lo + (hi - lo)·(1 + cos(π·L/L_max))/2, L clamped to [0, L_max].

    correct: hi = max_value_correct at L = 0, lo = min_value_correct at L = L_max (short correct is best).
    wrong:   min_value_wrong at L = 0, max_value_wrong at L = L_max (a long wrong attempt is penalised
             less than a short one, so the model is not pushed to give up early).
    exceed_length: returned instead when the generation was truncated (`ctx.truncated`); None disables.
    max_len: L_max; None = `ctx.max_response_tokens`.
    Defaults are the paper's run (eddycmu/demystify-long-cot section 4.2 script: wrong −10→0, correct
    2→1, exceed −10); Open-R1's recipe uses wrong −1→−0.5, correct 1→0.5.
    Range: [min of the five values, max of them] — defaults [−10, 2].
    """
    if exceed_length is not None and ctx.truncated:
        return float(exceed_length)
    l_max = _cap(ctx, max_len)
    frac = 1.0 if l_max <= 0 else min(max(ctx.response_tokens, 0), l_max) / l_max
    if is_correct(completion, problem, answer_from=answer_from, timeout_s=timeout_s):
        at_zero, at_max = max_value_correct, min_value_correct
    else:
        at_zero, at_max = min_value_wrong, max_value_wrong
    return float(at_max + 0.5 * (at_zero - at_max) * (1.0 + math.cos(frac * math.pi)))


def overlong_penalty(
    completion: str,
    problem: Any,
    ctx: RewardContext,
    *,
    buffer: int,
    penalty_factor: float = 1.0,
) -> float:
    """DAPO soft overlong punishment with L_max = ctx.max_response_tokens, L_cache = buffer:

        0                                    if L <= L_max - buffer
        -factor · (L - (L_max - buffer)) / buffer   if L_max - buffer < L <= L_max   (linear to -factor)
        -factor                              if L > L_max

    buffer is clamped to [0, L_max]. Range [-|penalty_factor|, 0].
    """
    factor = abs(penalty_factor)
    l_max = int(ctx.max_response_tokens)
    buf = min(max(int(buffer), 0), max(l_max, 0))
    expected = l_max - buf
    length = int(ctx.response_tokens)
    if length <= expected:
        return 0.0
    if buf == 0 or length > l_max:
        return -factor
    return -factor * (length - expected) / buf


def light_r1_length(
    completion: str,
    problem: Any,
    ctx: RewardContext,
    *,
    answer_from: AnswerFrom = "tag",
    start_frac: float = 0.5,
    coef: float = 1.0,
    clip_low: float = 0.0,
    clip_high: float = 0.5,
    max_len: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> float:
    """Length bonus that never pays for shortness early (RESEARCH §3, Light-R1):

        0                                            if step/total_steps < start_frac or the answer is wrong
        coef · clip(0.5 − min(L, L_max)/L_max, clip_low, clip_high)   otherwise

    Why: early on, correct answers are mostly lucky short shortcuts; rewarding their brevity reinforces
    the collapse to short reasoning (RESEARCH §1, §3), so the bonus starts only after `start_frac` of
    training. It is the Kimi-1.5 length term λ = 0.5 − len/len_max (absolute L_max, since a reward
    function sees one completion, not the group's min/max), paid only to correct answers (no incentive
    to be wrong in any particular length) and clipped at clip_low = 0 so long correct answers are never
    penalised (Light-R1: a 24k cap beat 16k because the model shortened to avoid truncation).
    Range: {0} ∪ coef·[clip_low, clip_high] — defaults [0, 0.5].
    """
    total = max(int(ctx.total_steps), 1)
    if ctx.step / total < start_frac:
        return 0.0
    if not is_correct(completion, problem, answer_from=answer_from, timeout_s=timeout_s):
        return 0.0
    l_max = _cap(ctx, max_len)
    frac = 1.0 if l_max <= 0 else min(max(ctx.response_tokens, 0), l_max) / l_max
    return float(coef * min(max(0.5 - frac, clip_low), clip_high))


def repetition_penalty(
    completion: str,
    problem: Any = None,
    ctx: RewardContext | None = None,
    *,
    ngram_size: int = 3,
    max_penalty: float = -1.0,
) -> float:
    """-|max_penalty| · (1 − distinct n-grams / total n-grams) over lower-cased whitespace words.

    As Open-R1's get_repetition_penalty_reward (defaults from its recipes): 0 for an empty text or fewer
    words than ngram_size. The sign of max_penalty is ignored (always a penalty). Word n-grams, not the
    paper's token n-grams, because rewards see text only. Range [-|max_penalty|, 0].
    """
    if not isinstance(completion, str) or ngram_size < 1:
        return 0.0
    words = completion.lower().split()
    if len(words) < ngram_size:
        return 0.0
    ngrams = list(zip(*[words[i:] for i in range(ngram_size)], strict=False))  # sliding window
    scaling = 1.0 - len(set(ngrams)) / len(ngrams)
    return -abs(max_penalty) * scaling + 0.0  # + 0.0: no "-0.0" in logs
