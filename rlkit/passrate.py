"""`python -m rlkit.passrate data=<group> model=<model> [passrate.k=8]`: the offline difficulty filter.

Samples k responses per prompt with the chosen model (same engine and template as training),
stores per-prompt pass rates in `${paths.cache}/passrate-<model>-<data>-k<k>.json` (cached: a second
call with the same model, data and k only prints), and shows the histogram. A data group then keeps
a band with `rlkit.data.filter_source.filtered` (see conf/data/arith_band.yaml), as Light-R1 kept
prompts with pass rate 0.2-0.625.
"""
from __future__ import annotations

import sys

import hydra
import torch
from omegaconf import DictConfig

from rlkit.data import difficulty


def compute_rates(cfg: DictConfig) -> dict[str, float]:
    from rlkit.data.stream import load_group
    from rlkit.models.load import load_policy
    from rlkit.rollout.base import SamplingParams
    from rlkit.steps.parts import make_engine, set_threads
    from rlkit.steps.sample import prompt_ids, response_budget

    set_threads(cfg)
    torch.manual_seed(cfg.seed)
    group = load_group(cfg.data)
    problems = (group.train if cfg.passrate.split == cfg.data.train_split else group.val)[: cfg.passrate.limit]
    model, tok = load_policy(cfg.model)
    model.eval()
    engine = make_engine(cfg, model, tok)
    cache: dict = {}
    rates: dict[str, float] = {}
    for i in range(0, len(problems), 64):
        chunk = problems[i:i + 64]
        prompts = prompt_ids(tok, cache, group.template, chunk)
        params = SamplingParams(response_budget(cfg, prompts), cfg.passrate.temperature, cfg.rollout.top_p)
        r = engine.generate(prompts, cfg.passrate.k, params)
        for j, p in enumerate(chunk):
            texts = r.texts[j * cfg.passrate.k:(j + 1) * cfg.passrate.k]
            rates[p.id] = difficulty.pass_rates([[bool(group.correct(t, p)) for t in texts]])[0]
    return rates


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    path = difficulty.cache_path(cfg.paths.cache, cfg.model.name, cfg.data.name, cfg.passrate.k)
    if path.exists():
        rates = difficulty.load_rates(path)
        print(f"[rlkit] cached pass rates: {path}", file=sys.stderr)
    else:
        rates = compute_rates(cfg)
        difficulty.save_rates(path, rates, {"model": cfg.model.name, "data": cfg.data.name, "k": cfg.passrate.k,
                                            "split": cfg.passrate.split, "n": len(rates)})
        print(f"[rlkit] wrote {len(rates)} pass rates to {path}", file=sys.stderr)
    print(difficulty.histogram(rates))
    print(f"mean pass rate {sum(rates.values()) / len(rates):.3f} over {len(rates)} prompts; "
          f"in band 0.2-0.625: {sum(0.2 <= r <= 0.625 for r in rates.values())}")


if __name__ == "__main__":
    main()
