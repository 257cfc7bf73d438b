"""Prompt templates: `TEMPLATES[name](problem) -> chat messages` (list of {"role", "content"} dicts).

The template is a data-group key, not part of the reward, because the right wording depends on the
model (base vs instruct, see RESEARCH.md §2) and is itself an ablation axis. Chat messages (not raw
strings) let each model's tokenizer apply its own chat template. Logic-RL prefilled the assistant turn
with "<think>"; that is a rollout choice and is not done here.
"""

from __future__ import annotations

from collections.abc import Callable

from rlkit.data.problem import Problem

Messages = list[dict[str, str]]

# Logic-RL's system prompt (verl data/kk/instruct), without its KK-specific tail.
R1_SYSTEM = (
    "You are a helpful assistant. The assistant first thinks about the reasoning process in the mind and "
    "then provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think><answer> answer here </answer>."
)

# DeepSeek-R1-Zero / Open-R1 / OpenRLHF MATH-report template.
R1_CONVERSATION = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think><answer> answer here "
    "</answer>."
)
BOXED_INSTRUCTION = "Please put your final answer within \\boxed{}."

# Logic-RL's KK system prompt, verbatim (including its "and<answer>" and double space) apart from the
# example term, which follows the item's own term pair.
KK_SYSTEM = (
    "You are a helpful assistant. The assistant first thinks about the reasoning process in the mind and "
    "then provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and<answer> </answer> tags, respectively, i.e., <think> reasoning process here "
    "</think><answer> answer here </answer>.  Now the user asks you to solve a logical reasoning problem. "
    "After thinking, when you finally reach a conclusion, clearly state the identity of each character "
    "within <answer> </answer> tags. i.e., <answer> (1) Zoey is {a_good}\n(2) ... </answer>."
)


def _with_article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def plain(problem: Problem) -> Messages:
    """Just the question: for instruct models' own habits and the embedded tiny model."""
    return [{"role": "user", "content": problem.question}]


def r1(problem: Problem) -> Messages:
    """R1 tag format explained in a system prompt (Logic-RL wording)."""
    return [{"role": "system", "content": R1_SYSTEM}, {"role": "user", "content": problem.question}]


def r1_boxed(problem: Problem) -> Messages:
    """R1-Zero conversation template + boxed-answer instruction (the OpenRLHF MATH runs)."""
    return [
        {"role": "system", "content": R1_CONVERSATION},
        {"role": "user", "content": f"{problem.question}\n{BOXED_INSTRUCTION}"},
    ]


def kk(problem: Problem) -> Messages:
    """Logic-RL's KK instruction: numbered "(1) Name is a knight" lines inside <answer>."""
    good = (problem.meta.get("terms") or ("knight", "knave"))[0]
    return [
        {"role": "system", "content": KK_SYSTEM.format(a_good=_with_article(str(good)))},
        {"role": "user", "content": problem.question},
    ]


TEMPLATES: dict[str, Callable[[Problem], Messages]] = {
    "r1": r1,
    "r1_boxed": r1_boxed,
    "plain": plain,
    "kk": kk,
    "tiny": plain,  # the embedded tiny model sees the bare question
}


def render(name: str, problem: Problem) -> Messages:
    """`TEMPLATES[name](problem)` with an error that lists the valid names (a YAML typo is the usual cause)."""
    try:
        fn = TEMPLATES[name]
    except KeyError:
        raise ValueError(
            f"unknown template {name!r}; valid templates: {', '.join(sorted(TEMPLATES))}"
        ) from None
    return fn(problem)
