"""Per-prompt seeded sampling (rollout.seed_per_prompt): a prompt's samples depend only on (seed, step,
its tokens), not on which rank or batch draws it, so one run over several processes samples what one
process would."""
from __future__ import annotations

import hashlib

import torch

from rlkit.rollout.base import Engine, Rollout, SamplingParams, cat_rollouts


def prompt_seed(step_seed: int, prompt: list[int]) -> int:
    blob = f"{step_seed}:{','.join(map(str, prompt))}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & (2**63 - 1)


def step_seed(seed: int, step: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{step}".encode()).digest()[:8], "little") & (2**63 - 1)


class PerPromptSeeds:
    """Engine wrapper: when `params.seed` is set, each prompt's n samples come from a generator seeded
    by (params.seed, the prompt's tokens), so they do not depend on which rank or batch the prompt is
    in. One engine call per prompt (less batching): a reproducibility switch, not the fast path.
    Engines that seed requests themselves (vLLM) are not wrapped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.engine.sync_weights(model)

    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams) -> Rollout:
        if params.seed is None or params.greedy:
            return self.engine.generate(prompts, n, params)
        outs = []
        for p in prompts:
            seed = prompt_seed(params.seed, p)
            if getattr(self.engine, "takes_generator", False):  # its own generator: the global RNG is not touched,
                outs.append(self.engine.generate([p], n, params, generator=torch.Generator().manual_seed(seed)))
                continue  # so generation may run beside training (trainer.overlap); same draws as below
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                outs.append(self.engine.generate([p], n, params))
        return cat_rollouts(outs)
