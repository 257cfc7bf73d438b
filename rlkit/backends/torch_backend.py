"""trainer.backend=torch: plain AdamW in each process; at world > 1 the gradients are summed over
ranks (one flat all-reduce) before clipping, so every rank takes the identical step. At world 1 this
is exactly the loop's historic code path: `loss.backward()`, `clip_grad_norm_`, `opt.step()`."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch


class Autocast(torch.nn.Module):
    """Forward passes under bf16 autocast (trainer.bf16); the weights stay fp32. rlkit.rollout.logprobs reads
    `module` and `autocast_dtype` to run its shared-prefix path under the same autocast."""

    autocast_dtype = torch.bfloat16

    def __init__(self, module: torch.nn.Module, device_type: str) -> None:
        super().__init__()
        self.module, self.device_type = module, device_type

    def forward(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=self.autocast_dtype):
            return self.module(*args, **kwargs)


class TorchTrained:
    can_skip_rows = True  # rows with a zero loss may skip forward/backward (train.idle_rows)

    def __init__(self, module: torch.nn.Module, lr: float, weight_decay: float, dist, bf16: bool) -> None:
        self.dist = dist
        self.module = module.to(dist.device)
        dist.broadcast_params(self.module)  # same start on every rank (LoRA's A is random)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay)
        self.model = Autocast(self.module, dist.device.type) if bf16 else self.module

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self, grad_clip: float) -> float:
        if all(p.grad is None for p in self.params):  # every row skipped (a zero loss): AdamW still steps
            for p in self.params:
                p.grad = torch.zeros_like(p)
        self.dist.sum_grads(self.params)
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, grad_clip))
        self.optimizer.step()
        return norm

    def gathered(self):
        return nullcontext()

    def save(self, ckpt_dir: Path, step: int, name: str, opt_name: str) -> dict[str, Any]:
        if not self.dist.is_main:  # replicated: rank 0's copy is the state
            return {}
        return {name: self.module.state_dict(), opt_name: self.optimizer.state_dict()}

    def load(self, ckpt_dir: Path, state: dict[str, Any], name: str, opt_name: str) -> None:
        self.module.load_state_dict(state[name])
        self.optimizer.load_state_dict(state[opt_name])


class TorchBackend:
    def __init__(self, cfg, dist) -> None:
        self.dist, self.bf16 = dist, bool(cfg.trainer.bf16)

    def trainer(self, module: torch.nn.Module, lr: float, weight_decay: float) -> TorchTrained:
        return TorchTrained(module, lr, weight_decay, self.dist, self.bf16)

    def frozen(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.to(self.dist.device)
