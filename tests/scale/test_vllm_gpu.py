"""GPU integration (marker `gpu`): a few GRPO steps of the tiny model with the vLLM engine colocated on
one GPU, weights pushed after each update, then the same through 2 GPUs under torchrun with
ZeRO-2. Skipped unless a CUDA device and vllm are present (never on the CPU CI)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from tests.scale.helpers import history, run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None,
                       reason="needs a CUDA device and vllm (pip install 'rlkit[gpu]')"),
]
GPU = ["rollout.engine=vllm", "model.resources.gpus_per_node=1", "rollout.vllm.gpu_memory_utilization=0.2",
       "rollout.vllm.enforce_eager=true", "trainer.prompts_per_step=8", "data.val_size=32", "trainer.eval_every=2"]


def test_grpo_with_vllm_single_gpu(tmp_path, tiny_path):
    r = run(["trainer.steps=4", f"model.path={tiny_path}", *GPU], tmp_path, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    h = history(tmp_path)
    assert sorted(h["actor/pg_loss"]) == [1, 2, 3, 4]
    assert all(0 <= v <= 1 for v in h["val/acc"].values())
    assert h["response_length/mean"][1] > 1  # vLLM returned real responses


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_grpo_with_vllm_two_gpus_zero2(tmp_path, tiny_path):
    r = run(["trainer.steps=4", f"model.path={tiny_path}", "trainer.backend=deepspeed",
             "model.resources.zero_stage=2", *GPU], tmp_path, nproc=2, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(history(tmp_path)["actor/pg_loss"]) == [1, 2, 3, 4]
