"""trainer.backend=deepspeed: ZeRO stage 0-3 (model.resources.zero_stage), optional CPU offload of the
optimizer state (trainer.offload_optimizer, DeepSpeedCPUAdam), bf16 (trainer.bf16), ZeRO buffer sizes
(trainer.deepspeed.*: "auto" sizes them from the model instead of DeepSpeed's GPU-sized defaults; zero_sizes).

Gradient accumulation uses DeepSpeed's unmanaged mode (`managed_gradient_accumulation: false`,
DeepSpeed >= 0.19): `backward()` only accumulates, `step()` is the boundary that reduces and
updates, so the loop's variable number of micro-batches per mini-batch needs no bookkeeping.
DeepSpeed averages gradients over data-parallel ranks; the loop's losses are already shares of the
global loss (global token/sequence denominators), so each backward is scaled by the world size.

Checkpoints go through `engine.save_checkpoint` / `load_checkpoint` (each rank writes its ZeRO
partition of the optimizer state; rank 0 writes the module states) under
`<ckpt_dir>/deepspeed/<name>/<tag>`; rlkit's own state.pt (written by rank 0) records the tag. The
two newest tags are kept, so the tag state.pt names always exists.

Verified on CPU with gloo under `torchrun --nproc_per_node 2` (DeepSpeed 0.19.8): ZeRO-2 and ZeRO-3
match the single-process torch backend and resume (tests/scale/test_distributed.py).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import socket
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from rlkit.backends import zero_stage


def numel(p: torch.nn.Parameter) -> int:
    """A parameter's full size, also once ZeRO-3 has partitioned it (then its local tensor is empty)."""
    return int(getattr(p, "ds_numel", p.numel()))


def model_sizes(module: torch.nn.Module) -> tuple[int, int]:
    """(hidden size, parameters of the largest repeated block): what the "auto" ZeRO buffer sizes scale with."""
    config = getattr(module, "config", None) or getattr(getattr(module, "module", None), "config", None)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    blocks = [sum(numel(p) for p in child.parameters()) for ml in module.modules()
              if isinstance(ml, torch.nn.ModuleList) for child in ml]
    block = max(blocks, default=0) or sum(numel(p) for p in module.parameters())
    if not hidden:  # no transformers config (e.g. the critic wrapper's head): the square root of a block
        hidden = max(1, int((block / 12) ** 0.5))
    return hidden, block


def zero_sizes(settings: dict[str, Any], hidden: int, block: int) -> dict[str, int]:
    """ZeRO buffer sizes in elements. DeepSpeed's defaults are sized for GPUs and large models:
    `reduce_bucket_size` 5e8 elements is a 2 GB fp32 bucket per rank, and `stage3_max_live_parameters` /
    `max_reuse_distance` 1e9 keep a whole sub-1B model gathered on every rank through the update. "auto"
    sizes them from the model as transformers' DeepSpeed integration does for the first three (h*h,
    0.9*h*h, 10*h) and keeps at most two blocks (decoder layers) gathered; the optimizer steps in sub-groups of
    1e8 elements. An integer setting is used as it is."""
    auto = {"reduce_bucket_size": hidden * hidden, "prefetch_bucket_size": int(0.9 * hidden * hidden),
            "param_persistence_threshold": 10 * hidden, "max_live_parameters": 2 * block,
            "max_reuse_distance": 2 * block, "sub_group_size": 10**8}
    keys = {"reduce_bucket_size": "reduce_bucket_size", "prefetch_bucket_size": "stage3_prefetch_bucket_size",
            "param_persistence_threshold": "stage3_param_persistence_threshold",
            "max_live_parameters": "stage3_max_live_parameters", "max_reuse_distance": "stage3_max_reuse_distance",
            "sub_group_size": "sub_group_size"}
    unknown = set(settings) - set(auto)
    if unknown:
        raise ValueError(f"trainer.deepspeed: unknown keys {sorted(unknown)}; valid: {sorted(auto)}")
    return {keys[k]: int(auto[k] if settings.get(k, "auto") == "auto" else settings[k]) for k in auto}


def ds_config(cfg, micro_batch: int, module: torch.nn.Module | None = None) -> dict[str, Any]:
    stage = zero_stage(cfg)
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": False}
    if module is not None:
        settings = OmegaConf.to_container(cfg.trainer.deepspeed) if cfg.trainer.get("deepspeed") else {}
        zero.update(zero_sizes(settings, *model_sizes(module)))
    if cfg.trainer.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": float(cfg.trainer.grad_clip),
        "zero_optimization": zero,
        "bf16": {"enabled": bool(cfg.trainer.bf16)},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc; a no-op elsewhere). glibc raises its mmap threshold as
    large blocks are freed, so the full weights ZeRO-3 gathers on every rank for generation, once released,
    stay resident as free heap: +1.2 GB per rank per gather on the 0.5B shape (docs/scale.md), which two
    ranks on one 24 GB host cannot afford. malloc_trim after each release costs milliseconds."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


_libc: Any = None


def init_distributed(dist) -> None:
    """DeepSpeed needs a process group even for one process (then a local one-rank gloo/nccl group)."""
    import deepspeed

    if not torch.distributed.is_initialized():
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        if "MASTER_PORT" not in os.environ:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    deepspeed.init_distributed(dist_backend="nccl" if dist.device.type == "cuda" else "gloo",
                               auto_mpi_discovery=False, verbose=False)


class DeepSpeedTrained:
    def __init__(self, module: torch.nn.Module, lr: float, weight_decay: float, cfg, dist) -> None:
        import deepspeed

        self.dist, self.stage = dist, zero_stage(cfg)
        params = [p for p in module.parameters() if p.requires_grad]
        if cfg.trainer.offload_optimizer:
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            opt = DeepSpeedCPUAdam(params, lr=lr, weight_decay=weight_decay, adamw_mode=True)
        else:
            opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        self.engine, *_ = deepspeed.initialize(model=module, model_parameters=params, optimizer=opt,
                                               config=ds_config(cfg, int(cfg.trainer.micro_batch_size), module))
        if not hasattr(self.engine, "managed_gradient_accumulation"):
            raise RuntimeError(f"deepspeed {deepspeed.__version__} lacks unmanaged gradient accumulation; "
                               "install deepspeed>=0.19 (pip install 'rlkit[deepspeed]')")
        self.optimizer = opt  # the base optimizer: the LR schedule sets its param_groups' lr
        self.module, self.model = self.engine.module, self.engine
        self.kept_tags: list[str] = []
        if dist.device.type == "cpu":
            trim_heap()  # the full weights the partitioning released

    def zero_grad(self) -> None:
        pass  # DeepSpeed clears the gradients at each step() boundary

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss * self.dist.world, scale_wrt_gas=False)

    def step(self, grad_clip: float) -> float:  # clipping is DeepSpeed's (gradient_clipping in the config)
        self.engine.step()
        if self.dist.device.type == "cpu":
            trim_heap()  # the step's transient fp32 buffers
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def gathered(self):
        """Full parameters on every rank while inside (ZeRO-3 partitions them otherwise). Collective."""
        if self.stage < 3:
            return nullcontext()
        return self._gathered()

    @contextmanager
    def _gathered(self):
        import deepspeed

        try:
            with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
                yield
        finally:
            if self.dist.device.type == "cpu":
                trim_heap()  # the released full weights (and the engine's fused copies of them)

    def save(self, ckpt_dir: Path, step: int, name: str, opt_name: str) -> dict[str, Any]:
        tag = f"step{step + 1:07d}"
        root = Path(ckpt_dir) / "deepspeed" / name
        self.engine.save_checkpoint(str(root), tag=tag)  # collective: every rank writes its shard
        self.kept_tags = (self.kept_tags + [tag])[-2:]
        if self.dist.is_main:
            for old in root.iterdir():
                if old.is_dir() and old.name not in self.kept_tags:
                    shutil.rmtree(old, ignore_errors=True)
        return {name: {"deepspeed": tag}, opt_name: None}

    def load(self, ckpt_dir: Path, state: dict[str, Any], name: str, opt_name: str) -> None:
        ref = state[name]
        if not isinstance(ref, dict) or "deepspeed" not in ref:
            raise RuntimeError(f"checkpoint {ckpt_dir} was written by trainer.backend=torch; resume it with that backend")
        path, _ = self.engine.load_checkpoint(str(Path(ckpt_dir) / "deepspeed" / name), tag=ref["deepspeed"],
                                              load_optimizer_states=True, load_lr_scheduler_states=False)
        if path is None:
            raise FileNotFoundError(f"DeepSpeed checkpoint {ref['deepspeed']} not found under {ckpt_dir}/deepspeed/{name}")
        self.kept_tags = [ref["deepspeed"]]


class DeepSpeedBackend:
    def __init__(self, cfg, dist) -> None:
        init_distributed(dist)
        self.cfg, self.dist = cfg, dist

    def trainer(self, module: torch.nn.Module, lr: float, weight_decay: float) -> DeepSpeedTrained:
        return DeepSpeedTrained(module, lr, weight_decay, self.cfg, self.dist)

    def frozen(self, module: torch.nn.Module) -> torch.nn.Module:
        """A frozen model (the reference): partitioned like the policy under ZeRO-3 (inference-only
        engine, no optimizer), otherwise a plain replica. A module without parameters of its own (the
        LoRA policy with its adapter disabled) is returned as it is."""
        if self.stage < 3 or not any(True for _ in module.parameters()):
            return module.to(self.dist.device)
        import deepspeed

        full = ds_config(self.cfg, int(self.cfg.trainer.micro_batch_size), module)
        zero = {k: v for k, v in full["zero_optimization"].items() if k != "offload_optimizer"}
        config = {"train_micro_batch_size_per_gpu": full["train_micro_batch_size_per_gpu"],
                  "zero_optimization": zero, "bf16": full["bf16"], "steps_per_print": 10**9}
        engine, *_ = deepspeed.initialize(model=module, config=config)
        engine.eval()
        if self.dist.device.type == "cpu":
            trim_heap()
        return engine

    @property
    def stage(self) -> int:
        return zero_stage(self.cfg)
