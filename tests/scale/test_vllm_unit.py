"""The pure-Python parts of the vLLM engine (no vLLM, no GPU): sampling-parameter mapping, weight-name
mapping, the split of a tensor-parallel group's gathered prompts, batching of vLLM outputs into a
Rollout with per-token logprobs, the `vllm.LLM` arguments and request seeds behind the five defects
found when the engine first ran (docs/vllm.md), the device/sleep resolution; and vLLM stays out of the
default install and imports. The engine itself runs on vLLM's CPU build in test_vllm_cpu.py."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace as NS

import pytest
import torch

from rlkit.config import ConfigError, resolve_vllm_device, vllm_build, vllm_sleep
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.seeded import prompt_seed
from rlkit.rollout.vllm import engine_kwargs, hf_name, request_seeds, sampling_kwargs, to_rollout, tp_slices
from tests.conftest import REPO, run_rlkit


def test_sampling_parameters_map_to_vllm():
    kw = sampling_kwargs(SamplingParams(512, temperature=0.7, top_p=0.95), n=8, eos_id=2)
    assert kw == {"n": 8, "max_tokens": 512, "stop_token_ids": [2], "logprobs": 0, "skip_special_tokens": True,
                  "detokenize": False, "temperature": 0.7, "top_p": 0.95, "top_k": -1, "min_p": 0.0}
    greedy = sampling_kwargs(SamplingParams(64, temperature=0.7, greedy=True), n=1, eos_id=2)
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0 and greedy["n"] == 1
    assert "seed" not in kw and sampling_kwargs(SamplingParams(8), 1, 2, seed=123)["seed"] == 123


@pytest.mark.parametrize(("name", "want"), [
    ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.weight"),
    ("module.model.embed_tokens.weight", "model.embed_tokens.weight"),                          # DeepSpeed / DDP
    ("base_model.model.model.layers.3.mlp.down_proj.base_layer.weight", "model.layers.3.mlp.down_proj.weight"),  # peft
    ("base_model.model.model.layers.3.mlp.down_proj.lora_A.default.weight", None),              # merged, not pushed
    ("base_model.model.model.layers.3.mlp.down_proj.lora_B.default.weight", None),
    ("module.base_model.model.lm_head.weight", "lm_head.weight"),
    ("model.norm.weight", "model.norm.weight"),
])
def test_weight_names_map_to_the_transformers_checkpoint(name, want):
    assert hf_name(name) == want


def test_tensor_parallel_group_split():
    assert tp_slices([3, 0, 2]) == [slice(0, 3), slice(3, 3), slice(3, 5)]
    outs = list("abcde")
    assert [outs[s] for s in tp_slices([3, 0, 2])] == [list("abc"), [], list("de")]


def _completion(tokens, lps, reason):
    return NS(token_ids=tokens, logprobs=[{t: NS(logprob=lp), 999: NS(logprob=-9.0)} for t, lp in zip(tokens, lps)],
              finish_reason=reason)


def test_outputs_become_a_rollout_with_logprobs(tiny_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    a = tok("<answer>5</answer>", add_special_tokens=False)["input_ids"]
    b = tok("12", add_special_tokens=False)["input_ids"]
    outputs = [
        NS(outputs=[_completion(a + [eos], [-0.5] * (len(a) + 1), "stop"),   # EOS kept in the ids
                    _completion(b, [-1.0] * len(b), "stop")]),               # stopped at EOS but EOS left out
        NS(outputs=[_completion(b + b + b, [-2.0] * 3 * len(b), "length"),   # hit max_tokens: truncated
                    _completion(a, [-0.1] * len(a), "stop")]),
    ]
    prompts = [[5, 6, 7], [8]]
    r = to_rollout(prompts, outputs, 2, eos, pad, tok)
    B, T = r.response_ids.shape
    assert B == 4 and T == max(len(a) + 1, 3 * len(b))
    assert r.group.tolist() == [0, 0, 1, 1]
    assert r.prompt_ids[:, -3:].tolist()[0] == [5, 6, 7] and r.prompt_mask.tolist()[2] == [0, 0, 1]
    assert r.lengths.tolist() == [len(a) + 1, len(b) + 1, 3 * len(b), len(a) + 1]
    assert r.truncated.tolist() == [False, False, True, False]
    assert r.texts[0] == "<answer>5</answer>" and r.texts[1] == "12"
    assert r.logprobs.shape == (B, T)
    assert torch.allclose(r.logprobs[0, : len(a)], torch.tensor(-0.5)) and r.logprobs[0, len(a) + 1:].eq(0).all()
    assert r.logprobs[1, len(b)] == 0.0  # the appended EOS has no reported logprob
    assert (r.logprobs * (1 - r.response_mask)).eq(0).all()


def test_vllm_is_never_imported_by_default():
    code = ("import sys, rlkit.run, rlkit.train, rlkit.rollout.vllm, rlkit.distributed, rlkit.backends; "
            "assert 'vllm' not in sys.modules; assert 'deepspeed' not in sys.modules; assert 'peft' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    tomllib = pytest.importorskip("tomllib")  # (Python >= 3.11)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith(("vllm", "deepspeed", "peft")) for d in deps["dependencies"])
    assert any(d.startswith("vllm") for d in deps["optional-dependencies"]["gpu"])


def test_vllm_engine_fails_before_compute_where_it_cannot_run(tmp_path):
    """Without vLLM: 'needs vLLM'. With the CPU build and no CUDA device: device=cuda is refused, and
    sleep mode (which the CPU build lacks) is refused naming rollout.vllm.sleep. Exit 2, nothing created."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    build = vllm_build()
    cases = {None: [(["rollout.engine=vllm"], "needs vLLM")],
             "cpu": [(["rollout.engine=vllm", "rollout.vllm.device=cuda"], "rollout.vllm.device=cuda"),
                     (["rollout.engine=vllm", "rollout.vllm.sleep=true"], "rollout.vllm.sleep")],
             "cuda": [(["rollout.engine=vllm"], "no CUDA")]}[build]
    for overrides, says in cases:
        r = run_rlkit(overrides, tmp_path, timeout=120)
        assert r.returncode == 2, r.stderr[-2000:]
        assert says in r.stderr
        assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(("setting", "build", "cuda", "want"), [
    ("auto", "cpu", False, "cpu"), ("cpu", "cpu", False, "cpu"), ("auto", "cpu", True, "cpu"),
    ("auto", "cuda", True, "cuda"), ("cuda", "cuda", True, "cuda"),
    ("auto", None, False, "needs vLLM"), ("auto", "cuda", False, "no CUDA device"),
    ("cpu", "cuda", True, "needs vLLM's CPU build"), ("cuda", "cpu", True, "CPU build"),
    ("cuda", "cuda", False, "no CUDA device"), ("tpu", "cuda", True, "invalid"),
])
def test_vllm_device_resolution(setting, build, cuda, want):
    if want in ("cpu", "cuda"):
        assert resolve_vllm_device(setting, build, cuda) == want
    else:
        with pytest.raises(ConfigError, match=want):
            resolve_vllm_device(setting, build, cuda)


def _cfg(sleep, overlap=False):
    from omegaconf import OmegaConf

    return OmegaConf.create({"rollout": {"vllm": {"sleep": sleep}}, "trainer": {"overlap": overlap}})


def test_sleep_mode_resolution():
    assert vllm_sleep(_cfg(None), "cuda") is True and vllm_sleep(_cfg(None), "cpu") is False
    assert vllm_sleep(_cfg(None, overlap=True), "cuda") is False  # overlap: vLLM generates during the update
    assert vllm_sleep(_cfg(False), "cuda") is False and vllm_sleep(_cfg(True), "cuda") is True
    with pytest.raises(ConfigError, match=r"rollout.vllm.sleep=true: vLLM's CPU build has no sleep mode"):
        vllm_sleep(_cfg(True), "cpu")
    with pytest.raises(ConfigError, match="trainer.overlap=true"):
        vllm_sleep(_cfg(True, overlap=True), "cuda")


def _kwargs(**over):
    kw = dict(device="cpu", dtype=torch.float32, seed=3, tp=1, world=1, sleep=False, gpu_memory_utilization=0.3,
              cpu_kv_cache_gb=1.0, max_model_len=256, enforce_eager=False)
    return engine_kwargs("m", **{**kw, **over})


def test_engine_arguments_fix_the_measured_defects():
    kw = _kwargs()
    assert kw["logprobs_mode"] == "processed_logprobs"  # behaviour logprobs after temperature (raw: off by 3 nats)
    assert kw["dtype"] == "float32"                      # the policy's dtype, not "auto" (bf16 from a fp32 checkpoint)
    assert kw["enable_chunked_prefill"] is False         # CPU runner: a split seeded prefill raises, then hangs
    assert kw["kv_cache_memory_bytes"] == 2**30 and "gpu_memory_utilization" not in kw  # not 30% of host RAM
    assert "distributed_executor_backend" not in kw and kw["seed"] == 3
    assert _kwargs(dtype=torch.bfloat16)["dtype"] == "bfloat16"
    gpu = _kwargs(device="cuda", sleep=True, tp=2, world=2)
    assert gpu["gpu_memory_utilization"] == 0.3 and gpu["enable_sleep_mode"] is True
    assert "enable_chunked_prefill" not in gpu and "kv_cache_memory_bytes" not in gpu
    assert gpu["distributed_executor_backend"] == "external_launcher" and gpu["tensor_parallel_size"] == 2


def test_request_seeds_agree_across_a_tensor_parallel_group():
    """Without per-prompt seeds each request still gets a seed from (engine seed, call count, index): two ranks
    of one TP group (same engine seed, same calls, different process RNG) send identical seeds."""
    prompts, params = [[1, 2], [3], [1, 2]], SamplingParams(8)
    torch.manual_seed(0)
    rank0 = request_seeds(prompts, params, engine_seed=7, call=4)
    torch.manual_seed(1_000_003)  # rlkit reseeds rank 1 differently (distributed.reseed)
    rank1 = request_seeds(prompts, params, engine_seed=7, call=4)
    assert rank0 == rank1 and None not in rank0
    assert len(set(rank0)) == 3                             # a repeated prompt still gets its own draws
    assert request_seeds(prompts, params, 7, 5) != rank0     # the next call draws afresh
    assert request_seeds(prompts, params, 8, 4) != rank0     # another data-parallel group draws its own
    seeded = SamplingParams(8, seed=11)
    assert request_seeds(prompts, seeded, 7, 4) == [prompt_seed(11, p) for p in prompts]  # rollout.seed_per_prompt
    assert request_seeds(prompts, SamplingParams(8, greedy=True), 7, 4) == [None] * 3
