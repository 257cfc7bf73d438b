"""vLLM rollout engine (`rollout.engine=vllm`, GPU only, the optional `gpu` extra).

Colocated with training: every training process (rank) owns a vLLM instance on its own GPU(s)
(`distributed_executor_backend="external_launcher"` under torchrun/SLURM tasks, vLLM's mode for
sharing a process with a trainer), limited to `rollout.vllm.gpu_memory_utilization` of the GPU
and, with `rollout.vllm.sleep`, put to sleep after each generation (level 1: KV cache dropped,
weights parked in host memory), so the trainer has the GPU memory during the update. After each update the policy's
weights are pushed in place (LoRA adapters merged first), then the engine wakes for the next
generation. Per-token logprobs of the sampled tokens come back in `Rollout.logprobs`
(vLLM's logprobs: of the distribution before temperature/top-p unless vLLM is told otherwise;
the loop recomputes its own old logprobs, so these are informational).

`vllm` pins its own torch and transformers; it is imported here only, and this module only when
the config chooses it. Everything above the `VLLMEngine` class is plain Python, unit-tested on
the CPU (tests/scale/test_vllm_unit.py): the sampling-parameter mapping, the weight-name
mapping, the split of a tensor-parallel group's gathered prompts, and the outputs -> Rollout batching.
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


# ----------------------------------------------------------------------------------- the engine (GPU)
class VLLMEngine:
    """Engine interface (rlkit.rollout.base.Engine) over a colocated `vllm.LLM`."""

    seeds_prompts = True  # honours SamplingParams.seed per request itself (no PerPromptSeeds wrapper)

    def __init__(self, cfg, tokenizer, dist=None) -> None:
        from rlkit import distributed
        from rlkit.models.load import model_path

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process: weights push in place
        from vllm import LLM

        self.dist = dist or distributed.current()
        v = cfg.rollout.vllm
        self.tp = int(cfg.model.resources.tensor_parallel or 1)
        self.sleep_level = 1 if v.sleep else 0  # (level 2 would discard weights that no push restores before the next eval)
        self.tokenizer = tokenizer
        kwargs: dict[str, Any] = dict(
            model=model_path(cfg.model), tensor_parallel_size=self.tp, seed=int(cfg.seed) + self.dist.rank // self.tp,
            gpu_memory_utilization=float(v.gpu_memory_utilization), enable_sleep_mode=bool(v.sleep),
            max_model_len=int(cfg.model.context_length), enable_prefix_caching=True,
            dtype="bfloat16" if cfg.trainer.bf16 else "auto", enforce_eager=bool(v.enforce_eager))
        if self.dist.world > 1 or self.tp > 1:
            kwargs["distributed_executor_backend"] = "external_launcher"
        self.llm = LLM(**kwargs)
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

        from rlkit.rollout.seeded import prompt_seed

        local = prompts
        if self._tp_group is not None:  # a TP group generates its members' prompts together
            parts: list[Any] = [None] * self.tp
            torch.distributed.all_gather_object(parts, prompts, group=self._tp_group)
            prompts = [p for part in parts for p in part]
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        sps = [VSamplingParams(**sampling_kwargs(params, n, eos, None if params.seed is None else
                                                 prompt_seed(params.seed, p))) for p in prompts]
        self._wake(["weights", "kv_cache"])
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sps, use_tqdm=False)
        self._sleep()
        if self._tp_group is not None:
            rank_in_group = torch.distributed.get_rank(self._tp_group)
            outs = outs[tp_slices([len(x) for x in parts])[rank_in_group]]
        return to_rollout(local, outs, n, eos, pad, self.tokenizer)

    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> None:
        """Push the policy's current weights into vLLM (LoRA merged), in place, then drop cached prefixes."""
        from rlkit.models.lora import merged_weights

        self._wake(["weights"])
        weights = [(name, t.detach()) for name, t in merged_weights(model)]
        self._apply(lambda m: m.load_weights(weights))
        self.llm.reset_prefix_cache()

    def _apply(self, fn) -> None:
        if hasattr(self.llm, "apply_model"):
            self.llm.apply_model(fn)
            return
        executor = self.llm.llm_engine.model_executor  # older vLLM
        worker = executor.driver_worker
        fn(getattr(worker, "worker", worker).model_runner.model)
