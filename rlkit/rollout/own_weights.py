"""The generator's own copy of the policy's weights (trainer.overlap on the CPU engines).

An asynchronous trainer's generator (a vLLM server, a second set of GPUs) holds its own weights and
receives the trainer's after each update; that is what lets it generate while the trainer changes the
policy in place. The fast and HF engines read the policy's tensors directly, so under trainer.overlap
they are given a copy: one more model in memory, refreshed by `sync_weights` after every update."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from rlkit.rollout.base import Engine, Rollout, SamplingParams


class OwnWeights:
    def __init__(self, make: Callable[[torch.nn.Module], Engine], model: torch.nn.Module) -> None:
        self.copy = copy.deepcopy(model).eval().requires_grad_(False)
        self.engine = make(self.copy)
        self.takes_generator = getattr(self.engine, "takes_generator", False)

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Copy the trainer's weights into the generator's (in place: tied weights stay tied)."""
        with torch.no_grad():
            self.copy.load_state_dict(model.state_dict())

    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams, **kw: Any) -> Rollout:
        return self.engine.generate(prompts, n, params, **kw)
