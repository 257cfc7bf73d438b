"""Training backends: how a module's gradients become an optimizer step (trainer.backend).

* ``torch``      this process's AdamW; at world > 1 gradients are summed over ranks in one bucket
                 before clipping and every rank takes the same step (replicated, like DDP).
* ``deepspeed``  DeepSpeed ZeRO stage ``model.resources.zero_stage`` (0-3), optional CPU optimizer
                 offload (``trainer.offload_optimizer``), bf16 (``trainer.bf16``), checkpoints through
                 DeepSpeed's own save/load_checkpoint (every rank writes its ZeRO shard).
* ``auto``       (the default) deepspeed when the model preset asks for ZeRO (zero_stage > 0), else torch:
                 a model-size sweep stays one dial.

The loop sees one small interface, `Trained` (below): ``model`` to call for forward passes,
``module`` (the raw module: generation, state dicts), ``optimizer`` (the torch optimizer the LR
schedule drives), ``zero_grad``, ``backward(loss)``, ``step(grad_clip) -> grad norm``,
``gathered()`` (full weights on every rank: ZeRO-3 generation and weight pushes), ``save``/``load``.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

BACKENDS = ("auto", "torch", "deepspeed")


def resolve(cfg: DictConfig) -> str:
    """The backend trainer.backend names (auto: deepspeed iff model.resources.zero_stage > 0)."""
    name = cfg.trainer.backend
    if name == "auto":
        return "deepspeed" if zero_stage(cfg) > 0 else "torch"
    return name


def zero_stage(cfg: DictConfig) -> int:
    return int(OmegaConf.select(cfg, "model.resources.zero_stage", default=0) or 0)


class Trained(Protocol):
    model: Any        # what forward passes call (the module, or its DeepSpeed engine)
    module: Any       # the raw module
    optimizer: Any    # the torch optimizer (the LR scheduler wraps it)

    def zero_grad(self) -> None: ...

    def backward(self, loss) -> None: ...

    def step(self, grad_clip: float) -> float: ...

    def gathered(self) -> AbstractContextManager: ...

    def save(self, ckpt_dir: Path, step: int, name: str, opt_name: str) -> dict[str, Any]: ...

    def load(self, ckpt_dir: Path, state: dict[str, Any], name: str, opt_name: str) -> None: ...


def make_backend(cfg: DictConfig, dist):
    """The backend object: .trainer(module, lr, weight_decay) -> Trained, .frozen(module) -> module."""
    if resolve(cfg) == "deepspeed":
        from rlkit.backends.deepspeed_backend import DeepSpeedBackend

        return DeepSpeedBackend(cfg, dist)
    from rlkit.backends.torch_backend import TorchBackend

    return TorchBackend(cfg, dist)
