"""LoRA through peft on the tiny model: the reference is the adapter switched off (no weights of its
own), generation samples from base + adapter, the merged checkpoint pushed to vLLM computes what the
LoRA model computes, and a short GRPO run with LoRA raises held-out accuracy."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from rlkit.models import lora
from rlkit.models.load import Critic, load_policy, reference
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.fast import FastEngine
from tests.conftest import REPO
from tests.scale.helpers import history, run

peft = pytest.importorskip("peft")


def tiny_cfg(rank: int = 32):
    cfg = OmegaConf.load(REPO / "conf" / "model" / "tiny.yaml")
    cfg.lora.rank = rank
    return cfg


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _perturb(policy):
    """Give the adapter a non-zero B (a fresh adapter computes exactly the base model), large enough to change
    the converged warm start's greedy answers."""
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)


def test_lora_policy_and_reference_without_a_copy(tiny_path):
    base, _ = load_policy(tiny_cfg(0))
    policy, tok = load_policy(tiny_cfg(32))
    assert lora.is_lora(policy)
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    targets = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert {int(p.shape[0]) for n, p in policy.named_parameters() if "lora_A" in n} == {32}

    ref = reference(policy)
    assert isinstance(ref, lora.AdapterDisabled)
    assert list(ref.parameters()) == [] and ref.state_dict() == {}  # the reference costs no weights
    ids = torch.tensor([tok("What is 12 + 34?")["input_ids"]])
    _perturb(policy)
    torch.testing.assert_close(_logits(ref, ids), _logits(base, ids))  # adapter off = the base model
    assert not torch.allclose(_logits(policy, ids), _logits(base, ids), atol=1e-4)
    # and switching it off is temporary
    assert not torch.allclose(_logits(policy, ids), _logits(ref, ids), atol=1e-4)
    # the critic's backbone is the transformers backbone (with the adapter layers)
    c = Critic(policy)
    assert c(ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None]).shape == ids.shape


def test_merged_weights_load_into_a_plain_model(tiny_path):
    """What the vLLM engine pushes: transformers names, LoRA merged, loadable strictly into the base model."""
    policy, tok = load_policy(tiny_cfg(32))
    _perturb(policy)
    plain, _ = load_policy(tiny_cfg(0))
    weights = dict(lora.merged_weights(policy))
    assert not any("lora" in k or "base_layer" in k for k in weights)
    missing, unexpected = plain.load_state_dict(weights, strict=False)
    assert not unexpected and all(k == "lm_head.weight" for k in missing)  # tied to the embeddings
    ids = torch.tensor([tok("What is 40 + 2?")["input_ids"]])
    merged, adapted = _logits(plain, ids), _logits(policy, ids)
    base, _ = load_policy(tiny_cfg(0))
    assert (adapted - _logits(base, ids)).abs().max() > 0.1  # the adapter moves the logits this much ...
    # ... and the merged weights reproduce them to fp32 rounding of W + s*BA against xW + s*(xA)B (1.5e-5 on an
    # Intel Xeon's kernels, under 1e-5 on an AMD EPYC's)
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=5e-5)


def test_generation_samples_from_the_adapter(tiny_path):
    policy, tok = load_policy(tiny_cfg(32))
    _perturb(policy)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    engine = lora.MergedForGeneration(FastEngine(lora.hf_model(policy), tok), policy)
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": f"What is {a} + {a + 7}?"}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False)["input_ids"]
               for a in (11, 25, 48)]
    greedy = SamplingParams(24, greedy=True)
    got = engine.generate(prompts, 1, greedy)
    merged, _ = load_policy(tiny_cfg(0))
    merged.load_state_dict(dict(lora.merged_weights(policy)), strict=False)
    want = FastEngine(merged, tok).generate(prompts, 1, greedy)
    assert got.texts == want.texts
    plain = FastEngine(lora.hf_model(policy), tok).generate(prompts, 1, greedy)  # reads base weights only
    assert plain.texts != got.texts
    for n, p in policy.named_parameters():  # unmerged afterwards (equal up to float rounding)
        torch.testing.assert_close(p, before[n], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_lora_grpo_raises_heldout_accuracy(tmp_path, tiny_path):
    """rank 32 / alpha 64 on every projection (the GSM8K report's setting), lr 6e-4, 20 steps: measured on the
    shipped warm start val/acc 0.625 -> 0.70 (step 10) -> 0.91 (step 20) on 64 held-out problems (at 3e-4:
    0.625 -> 0.72 only; the converged warm start needs larger steps, as full fine-tuning does: model.rl_lr)."""
    r = run(["model.lora.rank=32", "trainer.lr=6e-4", "trainer.steps=20", "trainer.prompts_per_step=8",
             "data.val_size=64", "trainer.eval_every=10", "trainer.threads=1"], tmp_path, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    h = history(tmp_path)
    acc = h["val/acc"]
    print("val/acc by step:", acc)
    assert acc[20] >= acc[0] + 0.1, acc
    assert max(h["actor/kl_loss"].values()) > 0  # the disabled-adapter reference differs from the policy
