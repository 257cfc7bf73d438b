"""`python -m bench.rl_bench` (or `python -m rlkit.bench`) [options] [hydra overrides]: where an RL step's time goes,
and rlkit vs TRL.

Outside the rlkit package (nothing in rlkit imports it). It runs the real loop, `rlkit.train.train`,
and reads the loop's own explicit timers (`timing_s/gen|reward|old_log_prob|ref|values|adv|update_actor|step`)
from the metrics handed to the tracker it passes in; nothing in rlkit is patched.

Sections (--only, comma-separated; default step,rollout,startup):

step      seconds per RL step of rlkit's real loop: `rlkit.train.train` itself with a recorder as its
          tracker that keeps its `timing_s/*` metrics, broken down into generation / reward / old+ref
          logprobs / advantage (+ bookkeeping) / update, with generated tokens/s, CPU-seconds and peak RSS.
          With --trl (`pip install 'rlkit[bench]' torch==2.13.0`) TRL's GRPOTrainer runs in the same
          process on the very same model files, prompts (rlkit's own prompt stream, in order), group
          size, max new tokens, learning rate and warm-up, weight decay, grad clip, clip range,
          temperature/top-p, token-mean loss ("dapo"), group-std advantages and no KL (TRL's default
          beta=0, so rlkit gets algo.kl.coef=0); TRL's gradient checkpointing is off (rlkit does not
          recompute). The two alternate *step by step* (rlkit in a worker thread, TRL in the main
          thread, never computing at the same time), so both see the same machine load; each round
          starts with the other side. Peak RSS comes from a separate 3-step process per side.
rollout   generated tokens/s of rlkit's FastEngine vs HF `generate` alone (HFEngine): same model,
          prompts and batch (prompts x group, 64 by default), sampling, interleaved repetitions.
startup   `python -m rlkit.run trainer.steps=1 ...` in a subprocess: seconds from the command to its
          first training step (the step's metric timestamp read back from the MLflow store), a
          `-X importtime` breakdown, and the run's own step-0 timers (setup: model, engine, rewards;
          the evaluation before step 1).
threads   rlkit alone at each --threads value, runs alternating.

Model (--model): `warm` (default) is the embedded default itself (model=tiny's cached warm start),
which answers in ~35 tokens, so 64 and 256 new tokens differ little. `random` is a random-init model
with the same architecture and tokenizer (positions widened to fit 256 new tokens), saved once under
the rlkit cache: it emits EOS at ~1/vocab per token, so 64 or 256 new tokens are really generated on
both sides without min_new_tokens or EOS suppression (the long-generation regime). Both sides load
the same directory. The step table's last row is the share of all-equal groups, whose rows rlkit's
update skips (trainer.skip_idle_rows: an exactly-zero loss, so the same gradient). The random model
scores 0 everywhere, so every group is all-equal: compare it with trainer.skip_idle_rows=false.

    python -m bench.rl_bench --only step --trl --tokens 64 256 --threads 1   # the rlkit/TRL table
    python -m bench.rl_bench --only rollout --tokens 64 256 --threads 1      # tok/s: fast loop vs HF generate
    python -m bench.rl_bench --only startup trainer.threads=1                # command -> first step
    python -m bench.rl_bench --only threads --threads 1 2 --tokens 64        # thread settings
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_OVERRIDES = [
    "algo.kl.coef=0",                  # TRL's default beta=0: no reference model on either side
    "trainer.eval_every=1000000",      # no evaluation inside measured steps (the last step evaluates: dropped)
    "trainer.checkpoint_every=1000000",
    "data.val_size=16",                # the evaluation before step 1 only (not timed)
    "eval=none",                       # no eval suite at step 0 or the end (TRL has none)
    "model.context_length=null",       # do not clamp max new tokens by the context
]
PARTS = ("generation", "reward", "old/ref logprobs", "advantage+other", "update")


# --------------------------------------------------------------------------------------------- utils
def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: unlike ru_maxrss it is not inherited across fork+exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class GCTime:
    """Seconds spent in Python's garbage collector (a pause that lands in whatever phase triggers it)."""

    total = 0.0
    _t = 0.0

    @classmethod
    def cb(cls, phase: str, info: dict) -> None:
        if phase == "start":
            cls._t = time.perf_counter()
        else:
            cls.total += time.perf_counter() - cls._t


gc.callbacks.append(GCTime.cb)


def med(xs) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


@dataclass
class Run:
    """Per-step records of one training run (one side, one round)."""

    side: str
    tokens: int
    threads: int
    steps: list[dict] = field(default_factory=list)
    setup_s: float = 0.0


def compose(overrides: list[str]):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hcompose("config", overrides=overrides)


def random_model_dir(warm_dir: Path, max_positions: int, seed: int = 0) -> Path:
    """A random-init copy of the warm start's architecture + tokenizer (cached; deterministic)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from rlkit.paths import cache_root

    cfg = AutoConfig.from_pretrained(warm_dir)
    cfg.max_position_embeddings = max(cfg.max_position_embeddings, max_positions)
    out = cache_root() / f"bench-random-{warm_dir.name}-s{seed}-p{cfg.max_position_embeddings}"
    if (out / "config.json").exists():
        return out
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(warm_dir, padding_side="left").save_pretrained(tmp)
    try:
        tmp.rename(out)
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


def model_dirs(kind: str, max_tokens: int) -> tuple[Path, list[str]]:
    """(directory both sides load, rlkit overrides that point at it)."""
    from omegaconf import OmegaConf

    from rlkit.models.load import tiny_spec
    from rlkit.models.tiny import ensure_tiny

    warm = ensure_tiny(tiny_spec(OmegaConf.load(REPO / "conf" / "model" / "tiny.yaml")))
    if kind == "warm":
        return warm, []
    path = random_model_dir(warm, 64 + max_tokens)
    return path, [f"model.path={path}"]


# ------------------------------------------------------------------------------------ turn taking
class Baton:
    """Two runs in one process taking turns step by step (rlkit in a worker thread, TRL in the main
    thread): never both computing at once, and both see the same machine load over time."""

    def __init__(self, first: str) -> None:
        self.cv = threading.Condition()
        self.turn = first
        self.done: set[str] = set()
        self.error: BaseException | None = None

    @staticmethod
    def other(side: str) -> str:
        return "trl" if side == "rlkit" else "rlkit"

    def wait(self, side: str) -> None:
        with self.cv:
            self.cv.wait_for(lambda: self.turn == side or self.other(side) in self.done)

    def give(self, side: str) -> None:
        with self.cv:
            self.turn = self.other(side)
            self.cv.notify_all()

    def finish(self, side: str) -> None:
        with self.cv:
            self.done.add(side)
            self.turn = self.other(side)
            self.cv.notify_all()


class _Solo:
    """No other side: turns are free."""

    def wait(self, side: str) -> None:
        pass

    give = finish = wait


# --------------------------------------------------------------------------------------- rlkit side
class Recorder:
    """The tracker the benchmark hands to train(): each step's metrics, with the loop's own timers, become
    a record. A step ends at its log; the turn passes to TRL there."""

    run_id = "bench"

    def __init__(self, run: Run, baton) -> None:
        self.run, self.baton = run, baton
        self._mark()

    def _mark(self) -> None:
        self.t, self.cpu, self.gc = time.perf_counter(), time.process_time(), GCTime.total

    def log(self, m: dict, step: int) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if "timing_s/setup" in m:  # step 0: models, engine, rewards built (the evaluation before step 1 follows)
            self.run.setup_s = m["timing_s/setup"]
        if "timing_s/step" in m:
            step_s = m["timing_s/step"]
            parts = {"generation": m.get("timing_s/gen", 0.0), "reward": m.get("timing_s/reward", 0.0),
                     "old/ref logprobs": sum(m.get(f"timing_s/{k}", 0.0) for k in ("old_log_prob", "ref", "values")),
                     "update": m.get("timing_s/update_actor", 0.0)}
            parts["advantage+other"] = step_s - sum(parts.values())  # timing_s/adv + metrics, weight sync, prompts
            self.run.steps.append({"step": step_s, "wall": now - self.t, "cpu": cpu - self.cpu, **parts,
                                   "gen_tokens": round(m.get("perf/throughput", 0.0) * step_s),
                                   "len": m.get("response_length/mean"), "gc": GCTime.total - self.gc,
                                   "score_fn": parts["reward"], "idle": m.get("groups/filtered_frac", float("nan"))})
        self.baton.give("rlkit")
        self.baton.wait("rlkit")
        self._mark()

    def log_text(self, text: str, name: str) -> None:
        pass

    def log_file(self, path: str, artifact_path: str) -> None:
        pass


def run_rlkit(cfg, threads: int, tokens: int, baton=None) -> Run:
    """rlkit.train.train() itself, with the benchmark's recorder as its tracker and no progress bar."""
    from rlkit.config import check_curriculum
    from rlkit.data.stream import load_data
    from rlkit.train import train

    baton = baton or _Solo()
    run = Run("rlkit", tokens, threads)
    baton.wait("rlkit")
    try:
        with tempfile.TemporaryDirectory() as ck:
            train(cfg, Recorder(run, baton), Path(ck), *load_data(cfg, check_curriculum(cfg)), progress=False)
    finally:
        baton.finish("rlkit")
    return run


# ----------------------------------------------------------------------------------------- TRL side
def stream_problems(cfg, group, steps: int) -> list:
    """The prompts rlkit's loop sees at steps 0..steps-1, in order (for TRL's unshuffled dataset)."""
    from rlkit.data.stream import PromptStream

    stream = PromptStream([(group, None)], cfg.trainer.prompts_per_step, cfg.seed)
    return [p for s in range(steps) for p in stream.next(s)[1]]


def trl_trainer(cfg, model_dir: Path, tokens: int, steps: int, cur: dict):
    """GRPOTrainer set to do rlkit's step: same model files, prompts (in order), G, max new tokens,
    lr/warm-up/weight decay/grad clip, clip range, temperature/top-p, token-mean loss, group-std
    advantages, no KL; gradient checkpointing off (rlkit does not recompute either)."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlkit.data.stream import load_group
    from rlkit.data.templates import render
    from rlkit.rewards.base import RewardContext
    from rlkit.rewards.compose import build_components, score

    t, a = cfg.trainer, cfg.algo
    P, G = t.prompts_per_step, t.group_size
    group = load_group(cfg.data)
    problems = stream_problems(cfg, group, steps)
    components = build_components(cfg.reward.components)
    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    eos = tok.eos_token_id

    def reward(prompts, completions, completion_ids, idx, trainer_state=None, **kw):
        """rlkit's reward components (and its correctness rule, which the loop also computes)."""
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        ps = [problems[i] for i in idx]
        step = trainer_state.global_step if trainer_state else 0
        ctxs = [RewardContext(len(ids), tokens, eos not in ids, step, steps) for ids in completion_ids]
        s = time.perf_counter()
        total, _ = score(components, texts, ps, ctxs)
        cur["score_fn"] += time.perf_counter() - s
        [bool(group.correct(x, p)) for x, p in zip(texts, ps)]
        cur["tokens"] += sum(map(len, completion_ids))
        cur["seqs"] += len(completion_ids)
        return total

    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="rlkit-bench-trl-"), use_cpu=True, max_steps=steps,
        per_device_train_batch_size=P * G, gradient_accumulation_steps=1, num_generations=G,
        max_completion_length=tokens, learning_rate=t.lr, lr_scheduler_type="constant_with_warmup",
        warmup_steps=t.warmup_steps, weight_decay=t.weight_decay, max_grad_norm=t.grad_clip,
        temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, top_k=0, beta=0.0,
        epsilon=a.policy_loss.clip_low, epsilon_high=a.policy_loss.clip_high, loss_type="dapo", scale_rewards="group",
        num_iterations=1, logging_steps=1, report_to="none", save_strategy="no", gradient_checkpointing=False,
        bf16=bool(t.get("bf16", False)), fp16=False,  # trainer.bf16=true: both sides under bf16 autocast
        shuffle_dataset=False, seed=cfg.seed, disable_tqdm=True, dataloader_num_workers=0, log_completions=False)
    data = Dataset.from_list([{"prompt": render(group.template, p), "idx": i} for i, p in enumerate(problems)])
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=reward, args=args, train_dataset=data,
                          processing_class=tok)
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    return trainer


def run_trl(cfg, model_dir: Path, threads: int, tokens: int, steps: int, baton=None) -> Run:
    import torch
    from transformers import TrainerCallback

    baton = baton or _Solo()
    run = Run("trl", tokens, threads)
    baton.wait("trl")
    t_setup = time.perf_counter()
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    keys = ("gen", "reward", "logp_prep", "prep", "tokens", "seqs", "score_fn")
    cur = dict.fromkeys(keys, 0)
    cur.update(in_prep=False, prompt_ids=None)
    try:
        trainer = trl_trainer(cfg, model_dir, tokens, steps, cur)
        assert next(trainer.model.parameters()).dtype == torch.float32

        def timed(fn, key):
            def wrapper(*x, **k):
                s = time.perf_counter()
                out = fn(*x, **k)
                dt = time.perf_counter() - s
                if key == "logp":  # only the no-grad passes before the update (old/ref), not the loss's own
                    cur["logp_prep"] += dt if cur["in_prep"] else 0.0
                else:
                    cur[key] += dt
                if key == "gen" and cur["prompt_ids"] is None:
                    cur["prompt_ids"] = [list(map(int, p)) for p in x[0]]
                return out
            return wrapper

        prep = trainer._prepare_inputs

        def prepare(*x, **k):  # generation + scoring + advantages (TRL generates inside training_step)
            cur["in_prep"] = True
            s = time.perf_counter()
            try:
                return prep(*x, **k)
            finally:
                cur["prep"] += time.perf_counter() - s
                cur["in_prep"] = False

        trainer._prepare_inputs = prepare
        trainer._generate_single_turn = timed(trainer._generate_single_turn, "gen")
        trainer._calculate_rewards = timed(trainer._calculate_rewards, "reward")
        trainer._get_per_token_logps_and_entropies = timed(trainer._get_per_token_logps_and_entropies, "logp")

        class Steps(TrainerCallback):
            """A step is on_step_begin..on_step_end; the turn passes to rlkit at the next step's
            begin (so TRL's logging and data loading stay inside TRL's turn)."""

            started = False

            def _close(self) -> None:
                if run.steps:
                    run.steps[-1]["wall"] = time.perf_counter() - self.t_begin
                    run.steps[-1]["cpu"] = time.process_time() - self.c_begin

            def on_step_begin(self, *x, **k):
                if self.started:
                    self._close()
                    baton.give("trl")
                    baton.wait("trl")
                else:
                    run.setup_s = time.perf_counter() - t_setup
                self.started = True
                self.t_begin, self.c_begin, self.gc0 = time.perf_counter(), time.process_time(), GCTime.total
                cur.update(dict.fromkeys(keys, 0))

            def on_step_end(self, args, state, control, **k):
                step = time.perf_counter() - self.t_begin
                parts = {"generation": cur["gen"], "reward": cur["reward"], "old/ref logprobs": cur["logp_prep"],
                         "update": step - cur["prep"]}
                parts["advantage+other"] = cur["prep"] - cur["gen"] - cur["reward"] - cur["logp_prep"]
                run.steps.append({"step": step, "wall": step, "cpu": time.process_time() - self.c_begin, **parts,
                                  "gen_tokens": cur["tokens"], "len": cur["tokens"] / max(1, cur["seqs"]),
                                  "gc": GCTime.total - self.gc0, "score_fn": cur["score_fn"]})

            def on_train_end(self, *x, **k):
                self._close()

        trainer.add_callback(Steps())
        trainer.train()
        run.prompt_ids = cur["prompt_ids"]  # type: ignore[attr-defined]
        del trainer
    finally:
        baton.finish("trl")
    gc.collect()
    return run


def run_pair(cfg, model_dir: Path, threads: int, tokens: int, trl_steps: int, first: str) -> tuple[Run, Run]:
    """rlkit (worker thread) and TRL (main thread: transformers' Trainer may install signal handlers)
    alternating step by step."""
    # import everything both sides use before the second thread starts (transformers' lazy module
    # attributes are not safe to resolve from two threads at once)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: F401
    from trl import GRPOConfig, GRPOTrainer  # noqa: F401

    import rlkit.train  # noqa: F401
    from rlkit.rollout import fast, hf, logprobs  # noqa: F401

    baton = Baton(first)
    box: dict = {}

    def worker() -> None:
        try:
            box["run"] = run_rlkit(cfg, threads, tokens, baton)
        except BaseException as e:  # noqa: BLE001 (re-raised in the main thread)
            box["error"] = e

    th = threading.Thread(target=worker, name="rlkit-bench")
    th.start()
    try:
        trl = run_trl(cfg, model_dir, threads, tokens, trl_steps, baton)
    finally:
        th.join()
    if "error" in box:
        raise box["error"]
    return box["run"], trl


# ---------------------------------------------------------------------------------------- reporting
def measured(run: Run, warmup: int) -> list[dict]:
    """Steps after the first `warmup` ones; rlkit's last step is dropped too (train() evaluates in it)."""
    s = run.steps[warmup:]
    return s[:-1] if run.side == "rlkit" else s


def summarize(runs: list[Run], side: str, warmup: int) -> dict:
    mine = [r for r in runs if r.side == side]
    steps = [x for r in mine for x in measured(r, warmup)]
    out = {k: med(x[k] for x in steps) for k in ("step", "wall", "cpu", *PARTS, "gc", "score_fn")}
    out.update(n=len(steps), gen_tok_s=med(x["gen_tokens"] / x["generation"] for x in steps if x["generation"] > 0),
               step_tok_s=med(x["gen_tokens"] / x["step"] for x in steps if x["step"] > 0),
               len=med(x["len"] for x in steps), setup_s=med(r.setup_s for r in mine),
               per_round=[med(x["step"] for x in measured(r, warmup)) for r in mine],
               idle=med(x.get("idle", float("nan")) for x in steps),
               steps_raw=[x["step"] for x in steps])
    return out


ROWS = [("step time, wall (s)", "step"), ("  generation", "generation"), ("  reward", "reward"),
        ("  old/ref logprobs", "old/ref logprobs"), ("  advantage + bookkeeping", "advantage+other"),
        ("  update (fwd+bwd+clip+AdamW)", "update"), ("  (in reward: score())", "score_fn"),
        ("  (anywhere: Python GC pauses)", "gc"), ("wall per step incl. logging (s)", "wall"),
        ("CPU-seconds per step", "cpu"), ("generated tok/s (generation)", "gen_tok_s"),
        ("generated tok/s (whole step)", "step_tok_s"), ("mean completion length", "len"),
        ("setup before step 1 (s)", "setup_s"),
        ("share of all-equal groups", "idle")]


def _fmt(x: float) -> str:
    return f"{x:10.0f}" if abs(x) >= 100 else f"{x:10.3f}"


def step_table(tokens: int, threads: int, rl: dict, trl: dict | None, mem: dict | None = None) -> str:
    head = f"max_new_tokens={tokens}, threads={threads}: medians over {rl['n']} rlkit" + \
        (f" / {trl['n']} TRL steps" if trl else " steps")
    lines = [head, f"  {'':34s} {'rlkit':>10s}" + (f" {'TRL':>10s} {'rlkit/TRL':>10s}" if trl else "")]
    for label, key in ROWS:
        a = rl[key]
        line = f"  {label:34s} {_fmt(a)}"
        if trl:
            b = trl[key]
            line += f" {_fmt(b)}" + (f" {a / b:10.2f}" if b and b == b and a == a and abs(b) > 1e-3 else f" {'-':>10s}")
        lines.append(line)
    if mem:
        a, b = mem.get("rlkit", float("nan")), mem.get("trl", float("nan"))
        lines.append(f"  {'peak RSS of a 3-step run (MB)':34s} {_fmt(a)}" + (f" {_fmt(b)} {a / b:10.2f}" if trl else ""))
    if trl and rl.get("idle", 0) >= 0.25:
        lines.append(f"  note: {rl['idle']:.0%} of the groups were all-equal; their rows have an exactly-zero loss and "
                     "rlkit skips their backward (trainer.skip_idle_rows=true) while TRL computes it — "
                     "pass trainer.skip_idle_rows=false for a like-for-like update")
    if trl:
        lines.append("  per-round median step, rlkit/TRL: " + ", ".join(
            f"{x:.3f}/{y:.3f}={x / y:.2f}" for x, y in zip(rl["per_round"], trl["per_round"])))
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- step
def step_cfg(model_over: list[str], T: int, threads: int, overrides: list[str], steps: int):
    """The benchmarked config: BENCH_OVERRIDES, the model, T new tokens, `steps` (+1: the last evaluates)."""
    from rlkit.config import validate

    cfg = compose(BENCH_OVERRIDES + model_over + [f"trainer.steps={steps + 1}", f"length.max_response_tokens={T}",
                                                  f"trainer.threads={threads}"] + overrides)
    validate(cfg)
    return cfg


def bench_step(ns, overrides: list[str]) -> list[dict]:
    results = []
    model_dir, model_over = model_dirs(ns.model, max(ns.tokens))
    n = ns.warmup + ns.steps
    for threads in ns.threads:
        for T in ns.tokens:
            cfg = step_cfg(model_over, T, threads, overrides, n)
            runs: list[Run] = []
            mode = ns.interleave or ("step" if threads == 1 else "run")
            for r in range(ns.rounds):
                first = "rlkit" if r % 2 == 0 else "trl"
                print(f"[bench] T={T} threads={threads} round {r + 1}/{ns.rounds}: "
                      f"{'rlkit and TRL, alternating ' + mode + 's' if ns.trl else 'rlkit'} ...", file=sys.stderr,
                      flush=True)
                if ns.trl and mode == "step":
                    runs += run_pair(cfg, model_dir, threads, T, n, first)
                elif ns.trl:  # whole runs, ABBA, both in the main thread
                    for side in (first, Baton.other(first)):
                        runs.append(run_rlkit(cfg, threads, T) if side == "rlkit"
                                    else run_trl(cfg, model_dir, threads, T, n))
                        gc.collect()
                else:
                    runs.append(run_rlkit(cfg, threads, T))
                gc.collect()
            mem = bench_memory(ns, model_over, T, threads, overrides) if ns.memory else None
            rl = summarize(runs, "rlkit", ns.warmup)
            trl = summarize(runs, "trl", ns.warmup) if ns.trl else None
            print(step_table(T, threads, rl, trl, mem) + (f"\n  (rlkit and TRL alternating {mode} by {mode})" if ns.trl else ""), flush=True)
            if ns.trl:
                check_same_prompts(cfg, runs)
            results.append({"tokens": T, "threads": threads, "interleave": mode, "rlkit": rl, "trl": trl, "peak_rss_mb": mem,
                            "raw": [{"side": r.side, "steps": r.steps} for r in runs]})
    return results


def bench_threads(ns, overrides: list[str]) -> list[dict]:
    """rlkit alone at each thread count, runs alternating (ABBA) so every setting sees the same load."""
    model_dir, model_over = model_dirs(ns.model, max(ns.tokens))
    n = ns.warmup + ns.steps
    out = []
    for T in ns.tokens:
        runs: dict[int, list[Run]] = {th: [] for th in ns.threads}
        for r in range(ns.rounds):
            for th in (ns.threads if r % 2 == 0 else ns.threads[::-1]):
                print(f"[bench] threads: T={T} round {r + 1}/{ns.rounds} threads={th} ...", file=sys.stderr, flush=True)
                runs[th].append(run_rlkit(step_cfg(model_over, T, th, overrides, n), th, T))
        rows = {th: summarize(rs, "rlkit", ns.warmup) for th, rs in runs.items()}
        base = rows[ns.threads[0]]
        print(f"rlkit step vs torch threads, max_new_tokens={T} (medians, runs alternating):\n"
              f"  {'threads':>7s} {'step s':>8s} {'gen s':>8s} {'update s':>8s} {'CPU s':>8s} {'gen tok/s':>9s} "
              f"{'vs ' + str(ns.threads[0]):>7s}\n" + "\n".join(
                  f"  {th:7d} {x['step']:8.3f} {x['generation']:8.3f} {x['update']:8.3f} {x['cpu']:8.3f} "
                  f"{x['gen_tok_s']:9.0f} {x['step'] / base['step']:7.2f}" for th, x in rows.items()), flush=True)
        out.append({"tokens": T, **{str(th): x for th, x in rows.items()}})
    return out


def check_same_prompts(cfg, runs: list[Run]) -> None:
    """TRL's first step must have generated from exactly the token ids of rlkit's first step."""
    from transformers import AutoTokenizer

    from rlkit.data.stream import load_group
    from rlkit.models.load import model_path
    from rlkit.steps.sample import prompt_ids

    trl = next((r for r in runs if r.side == "trl"), None)
    if trl is None or getattr(trl, "prompt_ids", None) is None:
        return
    tok = AutoTokenizer.from_pretrained(model_path(cfg.model), padding_side="left")
    group = load_group(cfg.data)
    ours = prompt_ids(tok, {}, group.template, stream_problems(cfg, group, 1))
    ours = [p for p in ours for _ in range(cfg.trainer.group_size)]
    print(f"  same prompt token ids as TRL's first step: {'yes' if ours == trl.prompt_ids else 'NO'}", flush=True)


def bench_memory(ns, model_over, T: int, threads: int, overrides: list[str]) -> dict:
    """Peak RSS (VmHWM) of each side alone, in its own process: 3 training steps, imports included."""
    out = {}
    for side in ("rlkit", "trl") if ns.trl else ("rlkit",):
        cmd = [sys.executable, "-m", "bench.rl_bench", "--_side", side, "--model", ns.model, "--tokens", str(T),
               "--threads", str(threads), *overrides]
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        line = [x for x in p.stdout.splitlines() if x.startswith("{")]
        if p.returncode != 0 or not line:
            print(p.stderr[-2000:], file=sys.stderr)
            out[side] = float("nan")
            continue
        out[side] = json.loads(line[-1])["maxrss_mb"]
    return out


def side_alone(ns) -> None:
    """--_side: one side's 3-step run in this process; prints its peak RSS as JSON."""
    model_dir, model_over = model_dirs(ns.model, max(ns.tokens))
    cfg = step_cfg(model_over, ns.tokens[0], ns.threads[0], ns.overrides, 3)
    if ns._side == "rlkit":
        run_rlkit(cfg, ns.threads[0], ns.tokens[0])
    else:
        run_trl(cfg, model_dir, ns.threads[0], ns.tokens[0], 3)
    print(json.dumps({"maxrss_mb": peak_rss_mb()}))


# ----------------------------------------------------------------------------------------- rollout
def bench_rollout(ns, overrides: list[str]) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlkit.data.stream import load_group
    from rlkit.rollout.base import SamplingParams
    from rlkit.rollout.fast import FastEngine
    from rlkit.rollout.hf import HFEngine
    from rlkit.steps.sample import prompt_ids

    model_dir, model_over = model_dirs(ns.model, max(ns.tokens))
    cfg = compose(BENCH_OVERRIDES + model_over + overrides)
    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    group = load_group(cfg.data)
    P, G = cfg.trainer.prompts_per_step, cfg.trainer.group_size
    prompts = prompt_ids(tok, {}, group.template, stream_problems(cfg, group, 1))
    out = []
    for threads in ns.threads:
        torch.set_num_threads(threads)
        for T in ns.tokens:
            params = SamplingParams(T, cfg.rollout.temperature, cfg.rollout.top_p)
            engines = {"fast": FastEngine(model, tok), "hf_generate": HFEngine(model, tok)}
            rec = {k: [] for k in engines}
            for eng in engines.values():  # warm-up (first-call allocations)
                eng.generate(prompts, G, SamplingParams(8, cfg.rollout.temperature, cfg.rollout.top_p))
            for r in range(ns.reps):
                for name in (list(engines) if r % 2 == 0 else list(engines)[::-1]):
                    s = time.perf_counter()
                    ro = engines[name].generate(prompts, G, params)
                    dt = time.perf_counter() - s
                    rec[name].append((int(ro.lengths.sum()), dt))
            row = {"tokens": T, "threads": threads, "batch": P * G}
            for name, xs in rec.items():
                row[name] = {"tok_s": med(n / dt for n, dt in xs), "s": med(dt for _, dt in xs),
                             "generated": med(n for n, _ in xs)}
            out.append(row)
            print(f"rollout batch {P * G} ({P} prompts x {G}), max_new_tokens={T}, threads={threads}, "
                  f"{ns.reps} interleaved reps, medians:\n"
                  f"  {'':14s} {'tokens':>8s} {'seconds':>8s} {'tok/s':>8s}\n" + "\n".join(
                      f"  {n:14s} {row[n]['generated']:8.0f} {row[n]['s']:8.3f} {row[n]['tok_s']:8.0f}" for n in rec)
                  + f"\n  fast/HF tok/s: {row['fast']['tok_s'] / row['hf_generate']['tok_s']:.2f}x", flush=True)
    return out


# ----------------------------------------------------------------------------------------- startup
IMPORT_GROUPS = ("torch", "transformers", "hydra", "omegaconf", "mlflow", "sqlalchemy", "alembic", "reasoning_gym",
                 "math_verify", "sympy", "latex2sympy2_extended", "pandas", "numpy", "pyarrow", "tqdm", "optuna",
                 "submitit", "tokenizers", "safetensors", "huggingface_hub", "peft", "deepspeed", "matplotlib", "rlkit")


def first_step_time(db: Path, experiment: str) -> tuple[float, float]:
    """(unix time the first step's metrics were logged, its timing_s/step) from a SQLite MLflow store."""
    import sqlite3

    with sqlite3.connect(db) as con:
        row = con.execute(
            "SELECT m.timestamp, m.value FROM metrics m JOIN runs r ON m.run_uuid = r.run_uuid "
            "JOIN experiments e ON r.experiment_id = e.experiment_id "
            "WHERE m.key = 'timing_s/step' AND e.name = ? ORDER BY m.step LIMIT 1", (experiment,)).fetchone()
    return row[0] / 1000.0, float(row[1])


def import_breakdown(stderr: str) -> dict[str, float]:
    """Seconds per package from `-X importtime` output: the cumulative time of the line that first
    imports the package itself (its dependencies not already loaded included)."""
    out: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if name in IMPORT_GROUPS:
            out[name] = max(out.get(name, 0.0), int(parts[1]) / 1e6)
    return out


def step0_timers(db: Path, experiment: str) -> dict[str, float]:
    """The run's own step-0 timers (timing_s/setup: models, engine, rewards; timing_s/eval: the evaluation
    before step 1) from a SQLite MLflow store."""
    import sqlite3

    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT m.key, m.value FROM metrics m JOIN runs r ON m.run_uuid = r.run_uuid "
            "JOIN experiments e ON r.experiment_id = e.experiment_id "
            "WHERE m.step = 0 AND m.key LIKE 'timing_s/%' AND e.name = ?", (experiment,)).fetchall()
    return dict(rows)


def bench_startup(ns, overrides: list[str]) -> dict:
    model_dirs(ns.model, 256)  # the cache is warm before timing (the brief: model cached)
    results = []
    with tempfile.TemporaryDirectory() as d:
        for r in range(ns.startup_reps + 1):
            importtime = r == ns.startup_reps  # with -X importtime (slower; reported separately)
            fresh = r == 0                       # the first run creates the MLflow store (migrations)
            env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{d}/mlflow.db", "RLKIT_CHECKPOINT_DIR": f"{d}/ck",
                   "TQDM_DISABLE": "1"}
            run_args = ["trainer.steps=1", f"hydra.run.dir={d}/out{r}", f"sweep.name=startup{r}", *overrides]
            cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "rlkit.run", *run_args]
            t0 = time.time()
            p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
            total = time.time() - t0
            if p.returncode != 0:
                print(p.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"startup run failed ({p.returncode}): {' '.join(cmd)}")
            logged, step_s = first_step_time(Path(d) / "mlflow.db", f"startup{r}")
            res = {"to_first_step_logged_s": logged - t0, "to_first_step_start_s": logged - t0 - step_s,
                   "first_step_s": step_s, "process_wall_s": total,
                   "kind": "importtime" if importtime else ("fresh store" if fresh else "plain"),
                   "step0": step0_timers(Path(d) / "mlflow.db", f"startup{r}")}
            if importtime:
                res["imports_s"] = import_breakdown(p.stderr)
            results.append(res)
    plain = [x for x in results if x["kind"] == "plain"]
    keys = ("to_first_step_start_s", "to_first_step_logged_s", "first_step_s", "process_wall_s")
    summary = {k: med(x[k] for x in plain) for k in keys}
    fresh = next(x for x in results if x["kind"] == "fresh store")
    summary["fresh_store"] = {k: fresh[k] for k in keys}
    summary["runs"] = results
    print(f"start-up: `python -m rlkit.run trainer.steps=1 {' '.join(overrides)}` (model cached), "
          f"median of {len(plain)} runs with an existing MLflow store (first run, creating it: "
          f"{fresh['to_first_step_start_s']:.2f} s to the first step):\n"
          f"  command -> first step starts   {summary['to_first_step_start_s']:6.2f} s\n"
          f"  command -> first step logged   {summary['to_first_step_logged_s']:6.2f} s  "
          f"(the step itself {summary['first_step_s']:.2f} s, incl. the final evaluation of a 1-step run)\n"
          f"  whole process (1 step + exit)  {summary['process_wall_s']:6.2f} s", flush=True)
    imp = next(x for x in results if x["kind"] == "importtime")["imports_s"]
    print("  imports (-X importtime: cumulative s of each package's first import, deps not yet loaded "
          "included):\n" + "\n".join(f"    {k:24s} {v:6.2f}" for k, v in sorted(imp.items(), key=lambda kv: -kv[1])
                                      if v >= 0.01), flush=True)
    step0 = {k: med(x["step0"].get(k) for x in plain) for k in ("timing_s/setup", "timing_s/eval")}
    summary["step0"] = step0
    print(f"  inside train() (the run's own step-0 timers, medians): setup (models, engine, rewards) "
          f"{step0['timing_s/setup']:.2f} s, evaluation before step 1 {step0['timing_s/eval']:.2f} s", flush=True)
    return summary


# -------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.rl_bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the benchmarked config (e.g. trainer.group_size=4)")
    ap.add_argument("--only", default="step,rollout,startup",
                    help="comma list of sections: step,rollout,startup,threads (threads: rlkit alone at each --threads)")
    ap.add_argument("--trl", action="store_true", help="also run TRL's GRPOTrainer in the same process (step section)")
    ap.add_argument("--tokens", type=int, nargs="+", default=[64, 256], help="max new tokens (default: 64 256)")
    ap.add_argument("--threads", type=int, nargs="+", default=[0], help="torch threads (0: trainer.threads rule)")
    ap.add_argument("--model", choices=("warm", "random"), default="warm")
    ap.add_argument("--steps", type=int, default=4, help="measured steps per run")
    ap.add_argument("--warmup", type=int, default=1, help="steps dropped at the start of each run")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of rlkit + TRL (each round starts with the other)")
    ap.add_argument("--interleave", choices=("step", "run"),
                    help="alternate rlkit and TRL step by step (rlkit in a worker thread; default at 1 thread) or "
                         "run by run (default at >1 thread: each Python thread gets its own OpenMP pool, whose "
                         "spinning workers would steal cores from the other side's)")
    ap.add_argument("--reps", type=int, default=5, help="rollout section: interleaved repetitions")
    ap.add_argument("--startup-reps", type=int, default=3)
    ap.add_argument("--no-memory", dest="memory", action="store_false",
                    help="skip the per-side peak-RSS subprocesses of the step section")
    ap.add_argument("--json", type=Path, help="write all results here")
    ap.add_argument("--_side", choices=("rlkit", "trl"), help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    # (no global TQDM_DISABLE: a warm start built on first use must show its progress; the loop's bar is off)
    ns.threads = [t or int(os.environ.get("RLKIT_THREADS", 0)) or os.cpu_count() or 1 for t in ns.threads]
    if ns._side:
        side_alone(ns)
        return {}
    sections = set(ns.only.split(","))
    results: dict = {"argv": sys.argv[1:], "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()}
    t0 = time.time()
    if "startup" in sections:  # first: nothing of ours is imported or warm yet in the children
        results["startup"] = bench_startup(ns, ns.overrides)
    if "rollout" in sections:
        results["rollout"] = bench_rollout(ns, ns.overrides)
    if "step" in sections:
        results["step"] = bench_step(ns, ns.overrides)
    if "threads" in sections:
        results["threads"] = bench_threads(ns, ns.overrides)
    results["load_avg_end"] = os.getloadavg()
    results["process_peak_rss_mb"] = peak_rss_mb()
    print(f"[bench] done in {time.time() - t0:.0f} s; load average {results['load_avg_start'][0]:.1f} -> "
          f"{results['load_avg_end'][0]:.1f} on {os.cpu_count()} cores", flush=True)
    if ns.json:
        ns.json.write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
