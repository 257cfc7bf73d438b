"""The embedded default model: a tiny Qwen2 built from a config and warmed up by rlkit itself.

No hub is reachable on a CI runner, so rlkit trains a byte-level BPE tokenizer on the task text and
fits the model *to convergence* on the mixture-of-behaviours teacher (rlkit/models/teacher.py).

`model=tiny` itself is *shipped* (rlkit/models/shipped/tiny: weights, tokenizer and a record of how it
was built), so every machine, CPU and library version starts from the same bytes, as researchers start
from one published checkpoint; `python -m rlkit.models.build_tiny` rebuilds it from this code. Any other
spec (`tiny_instruct`, a changed mixture or size) is built on demand and cached under a key that hashes
the spec *and the source of the code that builds it*, so a code change can never be hidden by a cache.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from rlkit.data.arithmetic import _draw
from rlkit.models.teacher import demonstration

SHIPPED = Path(__file__).resolve().parent / "shipped"
BUILD_THREADS = 2  # fixed, so the float reduction order of a build does not depend on the machine's core count
# the code that decides what a warm start is; its source text is part of the cache key
BUILD_CODE = ("rlkit/models/tiny.py", "rlkit/models/teacher.py", "rlkit/data/arithmetic.py")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def cache_root() -> Path:
    return Path(os.environ.get("RLKIT_CACHE_DIR", Path.home() / ".cache" / "rlkit"))


def code_hash() -> str:
    """Hash of the source files that build a warm start (tokenizer, model, teacher, problem draw)."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for rel in BUILD_CODE:
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes())
    return h.hexdigest()[:12]


def cache_key(spec: dict[str, Any]) -> str:
    blob = json.dumps({"code": code_hash(), **spec}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def shipped_path(spec: dict[str, Any]) -> Path | None:
    """The shipped warm start built from exactly this spec, if rlkit ships one."""
    for record in SHIPPED.glob("*/warmup.json"):
        if json.loads(record.read_text())["spec"] == json.loads(json.dumps(spec, default=str)):
            return record.parent
    return None


def build_tokenizer(texts: list[str], vocab_size: int, max_len: int):
    """Byte-level BPE with digits split; think/answer tags are *non-special* added tokens so that
    decode(skip_special_tokens=True) keeps them (transformers 5.x trap, notes/cpu-stack.md §4), and
    left padding is a constructor kwarg because setting it later is not saved."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(TAGS), special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                 pad_token="<|pad|>", padding_side="left", model_max_length=max_len)
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_model(tokenizer, arch: dict[str, Any]):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=len(tokenizer), tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **arch)
    return Qwen2ForCausalLM(cfg)


def prompt_text(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)


def _batch(tokenizer, pairs, rng, mixture):
    """Right-padded SFT batch with loss only on the assistant turn (response + end-of-turn)."""
    ids, labels = [], []
    for a, b in pairs:
        p = tokenizer(prompt_text(tokenizer, f"What is {a} + {b}?"), add_special_tokens=False)["input_ids"]
        r = tokenizer(demonstration(a, b, rng, mixture) + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        ids.append(p + r)
        labels.append([-100] * len(p) + r)
    width = -(-max(map(len, ids)) // 8) * 8  # few distinct shapes: oneDNN caches per shape
    pad = tokenizer.pad_token_id
    x = torch.tensor([s + [pad] * (width - len(s)) for s in ids])
    y = torch.tensor([s + [-100] * (width - len(s)) for s in labels])
    return x, y, (x != pad).long()


def warm_up(spec: dict[str, Any], out: Path, prefix: int | None = None) -> dict[str, Any]:
    """Tokenizer + model + SFT to convergence; saves to `out`, returns the warm-up record. `prefix` stops
    after that many steps (same schedule, same draws), so a test can check the recipe's start cheaply."""
    threads = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        return _warm_up(spec, out, prefix)
    finally:
        torch.set_num_threads(threads)


def _warm_up(spec: dict[str, Any], out: Path, prefix: int | None = None) -> dict[str, Any]:
    w = spec["warmup"]
    torch.manual_seed(w["seed"])
    rng = random.Random(w["seed"])
    pool = _draw("train", w["pool_size"], w.get("min_value", 10), w.get("max_value", 999), w["seed"])
    texts = [f"What is {a} + {b}? " + demonstration(a, b, rng, w["mixture"]) for a, b in pool[:4000]]
    texts += [CHAT_TEMPLATE, "user assistant system The answer is"]
    tokenizer = build_tokenizer(texts, spec["vocab_size"], spec["arch"]["max_position_embeddings"])
    model = build_model(tokenizer, spec["arch"])
    opt = torch.optim.AdamW(model.parameters(), lr=w["lr"], betas=(0.9, 0.98), weight_decay=0.01)
    steps, warm = w["steps"], w["warmup_steps"]

    def lr_at(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    losses: list[float] = []
    t0 = time.time()
    run_steps = steps if prefix is None else min(prefix, steps)
    bar = tqdm(range(run_steps), desc="warm-up (SFT, cached afterwards)", unit="step", dynamic_ncols=True)
    for step in bar:
        pairs = [pool[rng.randrange(len(pool))] for _ in range(w["batch_size"])]
        x, y, m = _batch(tokenizer, pairs, rng, w["mixture"])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=w.get("bf16", False)):
            loss = model(input_ids=x, attention_mask=m, labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {"spec": spec, "code_hash": code_hash(), "versions": versions(), "threads": BUILD_THREADS,
              "seconds": round(time.time() - t0, 1), "final_loss": sum(losses[-50:]) / 50,
              "loss_curve": losses[:: max(1, steps // 100)]}
    (out / "warmup.json").write_text(json.dumps(record, indent=1))
    return record


def versions() -> dict[str, str]:
    import platform

    import tokenizers
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "cpu": platform.machine()}


def ensure_tiny(spec: dict[str, Any]) -> Path:
    """Path of the warm start for `spec`: the shipped one when it matches, else the cached build, building
    it first if absent (atomic rename)."""
    shipped = shipped_path(spec)
    if shipped is not None:
        return shipped
    path = cache_root() / f"tiny-{cache_key(spec)}"
    if (path / "warmup.json").exists():
        return path
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with torch.random.fork_rng(devices=[]):  # the run that builds it samples exactly like the runs that load it
        warm_up(spec, tmp)
    try:
        tmp.rename(path)
    except OSError:  # another process finished first; theirs is identical (deterministic)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return path
