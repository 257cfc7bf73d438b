"""The pure-Python parts of the vLLM engine (no vLLM, no GPU): sampling-parameter mapping, weight-name
mapping, the split of a tensor-parallel group's gathered prompts, batching of vLLM outputs into a
Rollout with per-token logprobs; and vLLM stays out of the default install and imports."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace as NS

import pytest
import torch

from rlkit.rollout.base import SamplingParams
from rlkit.rollout.vllm import hf_name, sampling_kwargs, to_rollout, tp_slices
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


def test_vllm_engine_fails_before_compute_without_a_gpu(tmp_path):
    pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = run_rlkit(["rollout.engine=vllm"], tmp_path, timeout=120)
    assert r.returncode == 2
    assert "rollout.engine=vllm" in r.stderr and ("rlkit[gpu]" in r.stderr or "CUDA" in r.stderr)
    assert not (tmp_path / "mlflow.db").exists()
