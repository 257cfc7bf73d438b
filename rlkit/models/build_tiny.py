"""`python -m rlkit.models.build_tiny [model=tiny] [--ship]`: rebuild a tiny warm start from code.

The recipe behind the shipped base model (rlkit/models/shipped/tiny): tokenizer, model and SFT to
convergence, deterministic (fixed seed and thread count), with a progress bar. It always builds (it
never reads the shipped model or the cache), measures what was built — greedy held-out accuracy overall
and per flaw context, the sampled format/style mix — and writes that into the model's `warmup.json`.
`--ship` copies the result into the package, which is how the shipped model was made.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from rlkit.models.teacher import LAZY_THINK
from rlkit.models.tiny import SHIPPED, prompt_text, warm_up

HELD_OUT = 200          # the default data group's val_size: the same problems as a run's val/acc
SAMPLED_PROMPTS = 128   # prompts x SAMPLES_PER_PROMPT completions at T=1 for the behaviour mix
SAMPLES_PER_PROMPT = 4
BUDGET = 200            # new tokens: enough for every style, so the model is described, not the budget


def format_of(text: str) -> str:
    """The teacher's format a completion follows (rlkit/models/teacher.py), or `other`."""
    if text.startswith(f"<think>{LAZY_THINK}</think>"):
        return "lazy"
    if re.fullmatch(r"<think>[^<]*</think><answer>[^<]*</answer>", text):
        return "think_answer"
    if re.fullmatch(r"<think>[^<]*</think>\n<answer>[^<]*</answer>", text):
        return "think_newline"
    if re.fullmatch(r"[^<]*\n<answer>[^<]*</answer>", text):
        return "no_think"
    if re.fullmatch(r"[^<]*\nThe answer is -?\d+\.", text):
        return "no_tags"
    return "other"


def describe(path: Path | str) -> dict[str, Any]:
    """Greedy held-out accuracy (overall, per flaw context) and the sampled format/style mix of a warm start."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlkit.data.arithmetic import accuracy_by_context, load
    from rlkit.rewards.accuracy import is_correct
    from rlkit.rollout.base import SamplingParams
    from rlkit.rollout.fast import FastEngine

    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    engine = FastEngine(model, tok)
    def greedy_correct(problems: list) -> list[bool]:
        ids = [tok(prompt_text(tok, p.question), add_special_tokens=False)["input_ids"] for p in problems]
        out = engine.generate(ids, 1, SamplingParams(BUDGET, 1.0, 1.0, greedy=True))
        return [bool(is_correct(t, p, answer_from="tag")) for t, p in zip(out.texts, problems)]

    val = load("test", size=HELD_OUT)
    prompts = [tok(prompt_text(tok, p.question), add_special_tokens=False)["input_ids"] for p in val]
    ok = greedy_correct(val)
    # the same measurement on training-distribution problems and on the `ood` probe (answers ending in 0):
    # held-out and train should agree (the split is balanced); ood is the generalisation gap
    train, ood = load("train", size=HELD_OUT, seed=1), load("ood", size=HELD_OUT)
    ok_train, ok_ood = greedy_correct(train), greedy_correct(ood)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sampled = engine.generate(prompts[:SAMPLED_PROMPTS], SAMPLES_PER_PROMPT,
                                  SamplingParams(BUDGET, 1.0, 1.0, greedy=False))
    n = len(sampled.texts)
    formats = Counter(format_of(t) for t in sampled.texts)
    verbose = sum(" write " in t for t in sampled.texts)
    lengths = sampled.lengths.float()
    return {"heldout_greedy_acc": sum(ok) / len(ok),
            "heldout_greedy_acc_by_context": accuracy_by_context(ok, val),
            "heldout_problems": len(val),
            "train_greedy_acc": sum(ok_train) / len(ok_train),
            "train_greedy_acc_by_context": accuracy_by_context(ok_train, train),
            "ood_greedy_acc": sum(ok_ood) / len(ok_ood),
            "ood_greedy_acc_by_context": accuracy_by_context(ok_ood, ood),
            "sampled_formats": {k: formats[k] / n for k in sorted(formats)},
            "sampled_verbose_frac": verbose / n,
            "sampled_length": {"mean": float(lengths.mean()), "max": int(lengths.max()),
                               "p95": float(lengths.quantile(0.95))},
            "sampled_completions": n}


def build(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Build the warm start for `spec` into `out` and record what it is; returns the record."""
    with torch.random.fork_rng(devices=[]):
        record = warm_up(spec, out)
    record["measured"] = describe(out)
    (out / "warmup.json").write_text(json.dumps(record, indent=1))
    return record


def summary(record: dict[str, Any]) -> str:
    m = record["measured"]
    ctx = " ".join(f"{k} {v:.3f}" for k, v in m["heldout_greedy_acc_by_context"].items())
    fmt = " ".join(f"{k} {v:.2f}" for k, v in m["sampled_formats"].items())
    return (f"built in {record['seconds']} s, final SFT loss {record['final_loss']:.4f}, code {record['code_hash']}\n"
            f"greedy held-out acc {m['heldout_greedy_acc']:.3f} (by flaw context: {ctx})\n"
            f"greedy acc on training problems {m.get('train_greedy_acc', float('nan')):.3f}, "
            f"on the ood probe (answers ending in 0) {m.get('ood_greedy_acc', float('nan')):.3f}\n"
            f"sampled formats: {fmt}; verbose {m['sampled_verbose_frac']:.2f}; "
            f"length mean {m['sampled_length']['mean']:.1f} max {m['sampled_length']['max']}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m rlkit.models.build_tiny", description=__doc__.split("\n")[0])
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the model group, e.g. model=tiny_instruct")
    ap.add_argument("--out", type=Path, help="where to write the model (default: a new temporary folder)")
    ap.add_argument("--ship", action="store_true", help="copy the result into rlkit/models/shipped/<model name>")
    args = ap.parse_args(argv)
    from hydra import compose, initialize_config_dir

    from rlkit.models.load import tiny_spec

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=args.overrides)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"rlkit-{cfg.model.name}-"))
    record = build(tiny_spec(cfg.model), out)
    print(f"{cfg.model.name} -> {out}\n{summary(record)}")
    if args.ship:
        dest = SHIPPED / cfg.model.name
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(out, dest)
        print(f"shipped as {dest}")


if __name__ == "__main__":
    main()
