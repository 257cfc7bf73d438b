"""One run over several processes (GPUs) and nodes: ranks, rendezvous, sharding and reductions.

Ranks come from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) or, under
SLURM, from the job step's task variables (one task per GPU: `tasks_per_node` x `nodes`; a submitit
job's tasks are such a step), meeting at the step's first node on a port derived from the job id. With one
process nothing is initialised and every helper below returns its input unchanged, so the
single-process path costs nothing.

How a step stays equal to the single-process step on the same data (tests/scale):
* every rank draws the same global batch of P prompts and keeps its contiguous share (P / world
  prompts, each prompt's G samples generated on the same rank, so groups stay whole);
* advantages are computed on the gathered batch (Reinforce++/GAE whitening is batch-wide), then
  each rank keeps its rows;
* the loss aggregation denominators (valid tokens, sequences) are summed over ranks, so each rank's
  loss is its share of the global loss and gradients are *summed* over ranks (not averaged);
* metrics are reduced (sum, token- or sequence-weighted mean, max, min) before rank 0 logs them.
Sampling differs by rank unless `rollout.seed_per_prompt=true`, which seeds each prompt's samples
from (seed, step, prompt tokens) so a prompt gets the same samples on whichever rank draws it.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ collectives (no-ops at world 1)
    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def sum(self, *values: float | torch.Tensor) -> tuple[float, ...]:
        """Sum of each value over ranks (one all-reduce for all of them)."""
        if self.world == 1:
            return tuple(float(v) for v in values)
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return tuple(t.tolist())

    def broadcast_params(self, module: torch.nn.Module) -> None:
        """Rank 0's weights on every rank (random initialisations such as LoRA's differ by rank)."""
        if self.world == 1:
            return
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                torch.distributed.broadcast(t.data, src=0)

    def sum_grads(self, params: list[torch.nn.Parameter]) -> None:
        """All-reduce (sum) the gradients in one flat bucket: the loss of each rank is already its
        share of the global loss (global token/sequence denominators), so summing gives the global gradient."""
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch._utils._flatten_dense_tensors(grads)
        torch.distributed.all_reduce(flat)
        for p, g in zip(params, torch._utils._unflatten_dense_tensors(flat, grads)):
            if p.grad is None:
                p.grad = g
            else:
                p.grad.copy_(g)

    def close(self) -> None:
        """Leave the process group once every rank is done: a group left to interpreter shutdown can abort
        a rank ("terminate called without an active exception") after a run that otherwise succeeded."""
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

    def reseed(self, seed: int) -> None:
        """Ranks other than 0 sample from their own stream (rank 0 keeps the single-process one)."""
        if self.rank:
            torch.manual_seed(seed + 1_000_003 * self.rank)

    def mean(self, value: float) -> float:
        """Mean of a number over ranks."""
        return value if self.world == 1 else self.sum(value)[0] / self.world

    # ------------------------------------------------------------------ data
    def shard(self, items: list) -> list:
        """This rank's contiguous share of a global list (the global order is rank 0's rows, then rank 1's, ...)."""
        if self.world == 1:
            return items
        per = -(-len(items) // self.world)
        return items[self.rank * per: (self.rank + 1) * per]

    def gather_list(self, items: list) -> list:
        """Inverse of shard(): every rank's list, concatenated in rank order."""
        if self.world == 1:
            return items
        return [x for part in self.all_gather_object(items) for x in part]

    def advantages(self, fn, rewards: torch.Tensor, mask: torch.Tensor, group: torch.Tensor,
                   values: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """`fn` on the whole gathered batch (batch-wide whitening sees every rank's tokens); returns
        this rank's rows. Responses are right-padded to the widest rank; padding has mask 0."""
        if self.world == 1:
            return fn(rewards, mask, group, values)
        cpu = lambda t: None if t is None else t.detach().cpu()  # noqa: E731  (never pickle device tensors)
        parts = self.all_gather_object((cpu(rewards), cpu(mask), cpu(group), cpu(values)))
        width = max(p[0].shape[1] for p in parts)
        pad = lambda t: F.pad(t, (0, width - t.shape[1]))  # noqa: E731
        offsets, groups = 0, []
        for p in parts:  # make prompt ids unique across ranks
            groups.append(p[2] + offsets)
            offsets += int(p[2].max()) + 1 if len(p[2]) else 0
        dev = rewards.device
        full = [torch.cat([pad(p[i]) for p in parts]).to(dev) for i in (0, 1)]
        vals = torch.cat([pad(p[3]) for p in parts]).to(dev) if values is not None else None
        adv, ret = fn(full[0], full[1], torch.cat(groups).to(dev), vals)
        start = sum(len(p[2]) for p in parts[: self.rank])
        rows, t = slice(start, start + len(group)), rewards.shape[1]
        return adv[rows, :t], ret[rows, :t]

    # ------------------------------------------------------------------ metrics
    def reduce_metrics(self, m: dict[str, float], n_seqs: float, n_tokens: float) -> dict[str, float]:
        """Each metric reduced over ranks as its producer declared (`declare`); an undeclared metric
        raises at any world size, so a new metric cannot silently get the wrong reduction."""
        ops = {k: reduction(k) for k in m}
        if self.world == 1:
            return m
        parts = self.all_gather_object((m, float(n_seqs), float(n_tokens)))
        out = dict(m)
        for k in m:
            op = ops[k]
            vals = [(p[0][k], p[1], p[2]) for p in parts if k in p[0]]
            if op == "sum":
                out[k] = sum(x for x, _, _ in vals)
            elif op == "max":
                out[k] = max(x for x, _, _ in vals)
            elif op == "min":
                out[k] = min(x for x, _, _ in vals)
            elif op in ("seq-mean", "token-mean"):
                w = [s if op == "seq-mean" else t for _, s, t in vals]
                out[k] = sum(x * wi for (x, _, _), wi in zip(vals, w)) / max(sum(w), 1e-12)
        return out

    # ------------------------------------------------------------------ checkpointed RNG
    def rng_states(self) -> dict | list:
        """This process's RNG state at world 1 (the historic checkpoint format), every rank's otherwise."""
        from rlkit import checkpoint

        state = checkpoint.rng_state()
        return state if self.world == 1 else self.all_gather_object(state)

    def set_rng_states(self, states: dict | list) -> None:
        from rlkit import checkpoint

        if isinstance(states, list):
            states = states[self.rank] if self.rank < len(states) else states[0]
        checkpoint.set_rng_state(states)


REDUCTIONS = ("sum", "max", "min", "token-mean", "seq-mean", "same")
_DECLARED: dict[str, str] = {}  # metric key (or prefix ending in "/") -> reduction


def declare(op: str, *keys: str) -> None:
    """Declare how metrics combine over ranks, next to the code that produces them: `sum` (per-rank
    shares of a global value), `max`/`min`, `token-mean`/`seq-mean` (weighted by each rank's response
    tokens/sequences), `same` (identical on every rank). A key ending in "/" declares a prefix."""
    if op not in REDUCTIONS:
        raise ValueError(f"unknown reduction {op!r}; one of {REDUCTIONS}")
    for k in keys:
        if _DECLARED.get(k, op) != op:
            raise ValueError(f"metric {k!r} declared both {_DECLARED[k]} and {op}")
        _DECLARED[k] = op


def reduction(key: str) -> str:
    """The declared reduction of a metric (an exact key first, then its longest declared prefix)."""
    if key in _DECLARED:
        return _DECLARED[key]
    prefixes = [p for p in _DECLARED if p.endswith("/") and key.startswith(p)]
    if not prefixes:
        raise KeyError(f"metric {key!r} declares no reduction over ranks: call rlkit.distributed.declare(op, "
                       f"{key!r}) where it is produced")
    return _DECLARED[max(prefixes, key=len)]


_STATE: Dist | None = None


def init(cfg=None) -> Dist:
    """Join the job's process group (torchrun, or a SLURM job step of several tasks: a multi-task
    submitit job or `srun python -m rlkit.run`); world 1 otherwise.
    Training runs on CUDA when one is present and the model preset asks for GPUs
    (model.resources.gpus_per_node > 0), on the CPU otherwise."""
    global _STATE
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun (or anything exporting the env:// variables)
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    elif int(env.get("SLURM_STEP_NUM_TASKS", 1)) > 1:
        rv = slurm_rendezvous(env)
        env.update({k: v for k, v in rv.env().items() if k not in env})  # env:// for torch and DeepSpeed
        rank, world, local = rv.rank, rv.world, rv.local_rank
    else:
        rank, world, local = 0, 1, 0
    device = torch.device("cpu")
    if torch.cuda.is_available() and gpus_per_node(cfg) > 0:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    _STATE = Dist(rank, world, local, device)
    return _STATE


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks of a SLURM job step meet, derived from the allocation alone (every task computes
    the same values without talking to the others)."""

    rank: int
    world: int
    local_rank: int
    local_world: int
    master_addr: str
    master_port: int

    def env(self) -> dict[str, str]:
        return {"RANK": str(self.rank), "WORLD_SIZE": str(self.world), "LOCAL_RANK": str(self.local_rank),
                "LOCAL_WORLD_SIZE": str(self.local_world), "MASTER_ADDR": self.master_addr,
                "MASTER_PORT": str(self.master_port)}


def slurm_rendezvous(env: dict[str, str] | os._Environ) -> Rendezvous:
    """Ranks from SLURM's task variables of the job step (SLURM_PROCID / SLURM_STEP_NUM_TASKS /
    SLURM_LOCALID; the batch step also sets SLURM_PROCID and SLURM_NTASKS, so only a step launched by
    srun counts); rank 0 runs on the step's first node, which is the master address; the port is
    derived from the job id (array tasks have consecutive ids, so jobs sharing a node get distinct
    ports) unless MASTER_ADDR / MASTER_PORT are set."""
    world = int(env["SLURM_STEP_NUM_TASKS"])
    nodes = int(env.get("SLURM_STEP_NUM_NODES", env.get("SLURM_JOB_NUM_NODES", 1)))
    first = first_host(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or socket.gethostname())
    addr = env.get("MASTER_ADDR") or node_address(first)
    port = int(env.get("MASTER_PORT") or master_port(env["SLURM_JOB_ID"], env.get("SLURM_STEP_ID", "0")))
    return Rendezvous(int(env["SLURM_PROCID"]), world, int(env.get("SLURM_LOCALID", 0)), max(1, world // nodes), addr,
                      port)


def first_host(nodelist: str) -> str:
    """The first host of a SLURM hostlist expression ("gpu[003-005,9],cpu1" -> "gpu003")."""
    head = re.match(r"([^,\[]*)(?:\[([^\]]*)\])?", nodelist.strip())
    if not head or not head.group(1) and not head.group(2):
        raise ValueError(f"cannot parse SLURM node list {nodelist!r}")
    return head.group(1) + (head.group(2).split(",")[0].split("-")[0] if head.group(2) else "")


def master_port(job_id: str, step_id: str = "0") -> int:
    """A port in [20000, 60000) that every task of the job step derives alike."""
    digits = int(re.sub(r"\D", "", str(job_id)) or 0)
    return 20000 + (digits * 7 + int(re.sub(r"\D", "", str(step_id)) or 0)) % 40000


def node_address(node: str) -> str:
    """The node's name if it resolves, else SLURM's NodeAddr for it (clusters, and the local test
    cluster, where a node name is not a DNS name), else the name (init then fails naming it)."""
    try:
        socket.getaddrinfo(node, None)
        return node
    except OSError:
        pass
    try:
        out = subprocess.run(["scontrol", "show", "node", "-o", node], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return node
    found = re.search(r"\bNodeAddr=(\S+)", out)
    return found.group(1) if found else node


def gpus_per_node(cfg) -> int:
    from omegaconf import OmegaConf

    return 0 if cfg is None else int(OmegaConf.select(cfg, "model.resources.gpus_per_node", default=0) or 0)


def current() -> Dist:
    """The Dist of this process (world 1 until init() joined a group)."""
    return _STATE or Dist()


def check(cfg, dist: Dist) -> None:
    """Before compute: the global batch must split evenly into whole groups per rank."""
    from rlkit.config import ConfigError

    if dist.world > 1 and cfg.trainer.prompts_per_step % dist.world:
        raise ConfigError(f"trainer.prompts_per_step={cfg.trainer.prompts_per_step} must be a multiple of the "
                          f"number of processes ({dist.world}) so each rank gets whole prompt groups")


def to_device(obj, device: torch.device):
    """A dataclass (Batch, Rollout) with its tensor fields on `device`; unchanged on the CPU."""
    if device.type == "cpu":
        return obj
    from dataclasses import fields, is_dataclass, replace

    moved = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, torch.Tensor):
            moved[f.name] = v.to(device)
        elif is_dataclass(v):
            moved[f.name] = to_device(v, device)
    return replace(obj, **moved)
