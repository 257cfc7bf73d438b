"""Held-out accuracy: greedy (or sampled) answers to each evaluation group's held-out problems."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from rlkit import distributed
from rlkit.data.arithmetic import accuracy_by_context
from rlkit.rollout.base import SamplingParams
from rlkit.steps.sample import response_budget

if TYPE_CHECKING:
    from rlkit.eval.suite import Suite
    from rlkit.steps.log import StepLog
    from rlkit.steps.parts import RunParts

distributed.declare("same", "val/", "val_ctx/")  # computed from answers gathered over ranks
distributed.declare("same", "eval/")  # every rank runs the whole suite with the same seed and weights


@torch.no_grad()
def evaluate(p: RunParts, step: int) -> tuple[dict[str, float], list[str]]:
    """(metrics, sample completions): `val/acc` is the first group's, `val/<group>/acc` each group's when
    there are several, `val_ctx/<flaw>/acc` per flaw context of the tiny default. Each rank answers its
    share of the held-out problems; the answers are gathered in order."""
    cfg, dist = p.cfg, p.dist
    metrics: dict[str, float] = {}
    samples: list[str] = []
    for gi, g in enumerate(p.eval_groups):
        params = SamplingParams(response_budget(cfg, p.prompt_ids(g.template, g.val)),
                                cfg.rollout.temperature, cfg.rollout.top_p, greedy=cfg.rollout.val_greedy)
        val = dist.shard(g.val)
        prompts = p.prompt_ids(g.template, val)
        outs = [p.engine.generate(prompts[i:i + 256], 1, params) for i in range(0, len(prompts), 256)]
        texts = [t for o in outs for t in o.texts]
        lengths = torch.tensor(dist.gather_list([int(n) for o in outs for n in o.lengths])).float()
        correct = dist.gather_list([bool(g.correct(t, x)) for t, x in zip(texts, val)])
        texts = dist.gather_list(texts)
        prefix = "val" if gi == 0 else f"val/{g.name}"
        metrics[f"{prefix}/acc"] = sum(correct) / len(correct)
        metrics[f"{prefix}/response_length/mean"] = float(lengths.mean())
        if len(p.eval_groups) > 1:
            metrics[f"val/{g.name}/acc"] = metrics[f"{prefix}/acc"]
        for ctx, acc in accuracy_by_context(correct, g.val).items():
            metrics[f"val_ctx/{ctx}/acc"] = acc  # accuracy per flaw context of the tiny default
        samples += [f"### step {step} {g.name} [{'correct' if c else 'wrong'}]\nQ: {x.question}\nA: {t}\n"
                    for t, x, c in list(zip(texts, g.val, correct))[: cfg.tracking.log_samples]]
    return metrics, samples


def suite_due(p: RunParts, step: int) -> bool:
    """The eval suite runs on the base model (step 0), at the last step, and every `eval.every` steps."""
    every = int(p.cfg.eval.get("every") or 0) if p.suite is not None else 0
    return p.suite is not None and (step in (0, p.cfg.trainer.steps) or (every > 0 and step % every == 0))


@torch.no_grad()
def evaluate_suite(p: RunParts, step: int, log: StepLog) -> dict[str, float]:
    """`eval/<suite>/...` metrics (avg@k, pass@k, maj@k, ...) and the per-problem artifact
    `eval/<suite>/step_<N:06d>.parquet` (rlkit/eval/suite.py)."""
    import tempfile

    from rlkit.eval.suite import run_suite, save_table

    assert p.suite is not None
    suites = [p.suite]
    if step == 0 and p.suite.cfg.get("reeval_seed") is not None:
        suites.append(reevaluation(p.suite))
    out: dict[str, float] = {}
    for suite in suites:
        metrics, table = run_suite(suite, p.engine, p.prompt_ids, lambda prompts: response_budget(p.cfg, prompts))
        with tempfile.TemporaryDirectory() as d:
            log.log_file(str(save_table(table, d, suite.name, step)), f"eval/{suite.name}")
        out.update({f"eval/{suite.name}/{k}": v for k, v in metrics.items()})
    return out


REEVAL_SUFFIX = "_reeval"


def reevaluation(suite: Suite) -> Suite:
    """The same suite under its independent `reeval_seed`, logged as `<suite>_reeval` at step 0: the base
    model scored twice, so a report shows evaluation-only noise beside the seed noise of training."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(suite.cfg, {"seed": int(suite.cfg.reeval_seed), "reeval_seed": None})
    return replace(suite, name=suite.name + REEVAL_SUFFIX, cfg=cfg)
