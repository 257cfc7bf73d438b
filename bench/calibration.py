"""Calibration of the report's tests, measured: synthetic sweeps written to a real SQLite MLflow store
(per-problem parquet artifacts included), analysed by the report's own `build.analyze`.

    python bench/calibration.py [--null 200] [--planted 100] [--arms 4] [--seeds 3] [--problems 200]
                                [--k 4] [--seed 0] [--db DIR]

World (`rlkit.report.fake.World`): P problems with shared logit difficulty, a seed effect per run, a run ×
problem interaction, k samples per problem. Each sweep = `arms` arms (baseline a0 + arms−1 variants) ×
`seeds` runs, so `arms − 1` comparisons per sweep form one Holm family.

1. No effect (all arms from one distribution), `--null` sweeps: per-comparison false-positive rate at
   α = 0.05 (unadjusted p < α) of the run-level Welch test on `eval/test/avg_<k>` and of the paired
   per-problem test; family-wise error = sweeps with any Holm-adjusted p < α. For comparison only (not used
   by the report): the hierarchical-bootstrap CI excluding 0, and a sign-flip test over problems.
2. Planted effect = the MDE the report prints where that effect is present, a fixed point Δ = E[printed MDE
   | Δ planted] (the printed MDE shrinks as accuracy moves away from 0.5): two rounds of `--pilot` sweeps find
   it (a secant step from the null MDE, then one fixed-point step; `calibrate`), and the main planted sweeps'
   own mean printed MDE is reported beside the planted Δ. The pilot's means are noisy (±4% over 50 sweeps:
   a comparison's MDE rests on 4 df); `--planted-delta D` plants a fixed point measured earlier instead (the
   world's E[printed MDE | Δ] does not depend on the seed), and the run's own printed mean checks it. Every variant arm is shifted so that
   population accuracy rises by that much; `--planted` sweeps; detection rate at the level the MDE is defined
   for (p < α/m, m = arms − 1: Holm's first step) — the target is 0.80 — and with Holm (≥ that).
3. `--json F` saves the rates with hit counts; `--pool F1 F2 F3` pools several runs (seeds, fresh stores).
Prints one line per rate, and returns them (the test in tests/report/test_report_calibration.py runs a
small version).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ALPHA = 0.05


def signflip_p(A: np.ndarray, B: np.ndarray, rng: np.random.Generator, flips: int = 2000) -> float:
    """Sign-flip permutation test over problems of the per-problem arm differences (ignores seeds)."""
    d = A.mean(axis=0) - B.mean(axis=0)
    obs = abs(d.mean())
    signs = rng.choice([-1.0, 1.0], size=(flips, len(d)))
    return float((np.abs((signs * d).mean(axis=1)) >= obs - 1e-12).mean())


def measure(uri: str, names: list[str], spec, rng: np.random.Generator) -> dict[str, list]:
    """The report's numbers for each sweep: per comparison the run-level and paired p (raw, Holm) and
    MDE, the bootstrap CI, and the sign-flip p."""
    from mlflow import MlflowClient

    from rlkit.report import paired
    from rlkit.report.build import analyze

    client = MlflowClient(uri)
    out: dict[str, list] = {k: [] for k in ("run_p", "run_padj", "run_mde", "run_alpha", "run_half", "pair_p",
                                            "pair_padj", "pair_mde", "pair_alpha", "pair_half", "boot_excl",
                                            "flip_p", "sweep")}
    for name in names:
        r = analyze(uri, name, spec, client=client)
        c = r.ablation.cells
        c = c[~c["is_baseline"] & c["p"].notna()]
        pr = r.paired[(r.paired["metric"] == "acc") & r.paired["p"].notna()]
        suite = next(iter(r.suites.values()))
        acc = suite.metric("acc")
        row = {rid: i for i, rid in enumerate(suite.run_ids)}
        base = acc[[row[x] for x in r.ablation.run_lists[r.ablation.base_of[pr["label"].iloc[0]]]]]
        for (_, rc), (_, pc) in zip(c.iterrows(), pr.iterrows(), strict=True):
            assert rc["label"] == pc["label"]
            A = acc[[row[x] for x in r.ablation.run_lists[pc["label"]]]]
            out["run_p"].append(rc["p"])
            out["run_padj"].append(rc["p_adj"])
            out["run_mde"].append(rc["mde"])
            out["pair_p"].append(pc["p"])
            out["pair_padj"].append(pc["p_adj"])
            out["pair_mde"].append(pc["mde"])
            out["run_alpha"].append(rc["mde_alpha"])
            out["pair_alpha"].append(pc["mde_alpha"])
            out["run_half"].append((rc["dhi"] - rc["dlo"]) / 2)
            out["pair_half"].append((pc["hi"] - pc["lo"]) / 2)
            out["boot_excl"].append(bool(pc["lo"] > 0 or pc["hi"] < 0))
            out["flip_p"].append(signflip_p(*paired.shared(A, base), rng))
            out["sweep"].append(name)
    return out


def per_sweep(p: list[float], level: list[float], sweeps: list[str]) -> list[int]:
    """Detections per sweep (in sweep order)."""
    hits: dict[str, int] = {}
    for q, a, s in zip(p, level, sweeps, strict=True):
        hits[s] = hits.get(s, 0) + int(q < a)
    return list(hits.values())


def fwer(padj: list[float], sweeps: list[str]) -> float:
    hit: dict[str, bool] = {}
    for q, s in zip(padj, sweeps, strict=True):
        hit[s] = hit.get(s, False) or q < ALPHA
    return float(np.mean(list(hit.values())))


def calibrate(*, null: int = 200, planted: int = 100, arms: int = 4, seeds: int = 3, problems: int = 200,
              k: int = 4, seed: int = 0, root: str | None = None, verbose: bool = True,
              reuse: bool = False, pilot: int = 30, planted_delta: float | None = None) -> dict[str, float]:
    from mlflow import MlflowClient

    from rlkit.report import fake
    from rlkit.report.spec import ReportSpec

    root = Path(root or tempfile.mkdtemp(prefix="rlkit_calib_"))
    if root.exists() and not reuse:
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.search_experiments()
    world = fake.World(problems=problems, k=k)
    rng = np.random.default_rng(seed)
    spec = ReportSpec.from_dict({"metrics": [f"eval/test/avg_{k}"], "curves": [], "baseline": {"algo": "a0"},
                                 "paired_resamples": 1000, "alpha": ALPHA})
    say = print if verbose else (lambda *a, **kw: None)

    def sweep(name: str, shifts=None) -> str:  # logged unless a reused store already has it
        if reuse and client.get_experiment_by_name(name) is not None:
            return name
        return fake.world_sweep(client, name, world, rng, arms=arms, seeds=seeds, shifts=shifts,
                                artifact_location=str(root / "art"))

    t = time.perf_counter()
    names = [sweep(f"null{i:04d}") for i in range(null)]
    say(f"logged {null} no-effect sweeps ({null * arms * seeds} runs) in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    m = measure(uri, names, spec, rng)
    say(f"analysed them in {time.perf_counter() - t:.0f} s")
    n_cmp = len(m["run_p"])
    res = {"seed": seed, "null_sweeps": null, "null_comparisons": n_cmp,
           "fp_run_hits": int(np.sum(np.array(m["run_p"]) < ALPHA)),
           "fp_paired_hits": int(np.sum(np.array(m["pair_p"]) < ALPHA)),
           "fpr_run_welch": float(np.mean(np.array(m["run_p"]) < ALPHA)),
           "fpr_paired": float(np.mean(np.array(m["pair_p"]) < ALPHA)),
           "fwer_run_holm": fwer(m["run_padj"], m["sweep"]),
           "fwer_paired_holm": fwer(m["pair_padj"], m["sweep"]),
           "fwer_run_hits": int(round(fwer(m["run_padj"], m["sweep"]) * null)),
           "fwer_paired_hits": int(round(fwer(m["pair_padj"], m["sweep"]) * null)),
           "fpr_hier_bootstrap_ci": float(np.mean(m["boot_excl"])),
           "fpr_signflip_problems": float(np.mean(np.array(m["flip_p"]) < ALPHA)),
           "mde_paired": float(np.nanmean(m["pair_mde"])), "mde_run": float(np.nanmean(m["run_mde"]))}

    res["mde_below_ci_half"] = int(np.sum(np.array(m["pair_mde"]) < np.array(m["pair_half"]) - 1e-12)
                                   + np.sum(np.array(m["run_mde"]) < np.array(m["run_half"]) - 1e-12))
    res["mde_alpha"] = float(np.nanmean(m["pair_alpha"]))
    delta = res["mde_paired"]
    if planted_delta is not None:  # a fixed point found earlier (e.g. pooled over other seeds' stores)
        delta = float(planted_delta)
    elif pilot and planted:
        # The MDE the report prints where an effect is planted is smaller than the null one (accuracy moves away
        # from 0.5: its spread shrinks), so "planted at the printed MDE" is a fixed point Δ = E[printed MDE | Δ
        # planted] =: f(Δ). f(0) = the null sweeps' mean. Step 1: pilot sweeps at Δ0 = f(0) give f(Δ0); the
        # secant through (0, f(0)) and (Δ0, f(Δ0)) crosses Δ = f(Δ) at Δ1 = f(0)² / (2 f(0) − f(Δ0)).
        # Step 2: pilot sweeps at Δ1 give f(Δ1), the planted Δ. The main planted sweeps' own mean printed MDE
        # is reported beside it (`mde_paired_planted_mean`): how close the fixed point is.
        f0 = delta
        steps = []
        for step in range(2):
            shift0 = world.shift_for(delta)
            mpil = measure(uri, [sweep(f"pilot{step}_{delta:.4f}_{i:04d}", [0.0] + [shift0] * (arms - 1))
                                 for i in range(pilot)], spec, rng)
            f = float(np.nanmean(mpil["pair_mde"]))
            steps.append({"planted": delta, "printed": f, "detect_paired": float(
                np.mean(np.array(mpil["pair_p"]) < np.array(mpil["pair_alpha"])))})
            delta = f0 ** 2 / (2 * f0 - f) if step == 0 else f
        res.update({"pilot_sweeps": pilot, "pilot_steps": steps})
    shift = world.shift_for(delta)
    t = time.perf_counter()
    pnames = [sweep(f"planted{delta:.4f}_{i:04d}", [0.0] + [shift] * (arms - 1)) for i in range(planted)]
    mp = measure(uri, pnames, spec, rng)
    say(f"logged and analysed {planted} planted-effect sweeps in {time.perf_counter() - t:.0f} s")
    res.update({"planted_sweeps": planted, "planted_comparisons": len(mp["pair_p"]), "planted_delta": delta,
                "planted_logit_shift": shift,
                # at the level the MDE is defined for: α/m, the family's most conservative (Holm's first) step
                "detect_paired": float(np.mean(np.array(mp["pair_p"]) < np.array(mp["pair_alpha"]))),
                "detect_run_welch": float(np.mean(np.array(mp["run_p"]) < np.array(mp["run_alpha"]))),
                "detect_paired_hits": int(np.sum(np.array(mp["pair_p"]) < np.array(mp["pair_alpha"]))),
                "detect_run_hits": int(np.sum(np.array(mp["run_p"]) < np.array(mp["run_alpha"]))),
                "mde_paired_planted_mean": float(np.nanmean(mp["pair_mde"])),
                # hits per sweep: a sweep's comparisons share its baseline arm and problems (correlated), so the
                # rate's standard error is taken over sweeps (`pool`)
                "detect_paired_by_sweep": per_sweep(mp["pair_p"], mp["pair_alpha"], mp["sweep"]),
                "detect_run_by_sweep": per_sweep(mp["run_p"], mp["run_alpha"], mp["sweep"]),
                "detect_paired_holm": float(np.mean(np.array(mp["pair_padj"]) < ALPHA)),
                "detect_run_holm": float(np.mean(np.array(mp["run_padj"]) < ALPHA))})
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--null", type=int, default=200)
    p.add_argument("--planted", type=int, default=100)
    p.add_argument("--pilot", type=int, default=30, help="planted sweeps per round (2 rounds) that find the MDE "
                   "printed under the effect (the main planted sweeps use it); 0 = plant at the null sweeps' mean MDE")
    p.add_argument("--arms", type=int, default=4)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--problems", type=int, default=200)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--planted-delta", type=float, default=None,
                   help="plant this Δ (no pilot): the fixed point Δ = E[printed MDE | Δ planted] measured earlier")
    p.add_argument("--db", default=None, help="store directory [a temp dir, removed first if it exists]")
    p.add_argument("--reuse", action="store_true", help="keep the --db store and re-analyse the sweeps it has")
    p.add_argument("--json", help="also write the rates (with hit counts) to this file")
    p.add_argument("--pool", nargs="+", metavar="JSON", help="no run: pool the counts of earlier --json files")
    a = p.parse_args()
    if a.pool:
        return pool(a.pool)
    t = time.perf_counter()
    res = calibrate(null=a.null, planted=a.planted, arms=a.arms, seeds=a.seeds, problems=a.problems, k=a.k,
                    seed=a.seed, root=a.db, reuse=a.reuse, pilot=a.pilot, planted_delta=a.planted_delta)
    print(f"\n{a.arms} arms x {a.seeds} seeds x {a.problems} problems x {a.k} samples; alpha = {ALPHA}")
    for key, v in res.items():
        print(f"  {key:24s} {v:.4f}" if isinstance(v, float) else f"  {key:24s} {v}")
    n = res["null_comparisons"]
    se = np.sqrt(ALPHA * (1 - ALPHA) / n)
    print(f"  (binomial SE of a rate near 0.05 over {n} comparisons: {se:.3f})")
    ok = (0.03 <= res["fpr_paired"] <= 0.07 and 0.03 <= res["fpr_run_welch"] <= 0.07
          and res["fwer_paired_holm"] <= 0.05 and res["fwer_run_holm"] <= 0.05 and 0.77 <= res["detect_paired"] <= 0.83)
    print(f"targets (FPR in [0.03, 0.07], FWER <= 0.05, detection at MDE in [0.77, 0.83]): {'met' if ok else 'NOT met'}"
          f"  [{time.perf_counter() - t:.0f} s]")
    if a.json:
        import json

        Path(a.json).write_text(json.dumps({**res, "arms": a.arms, "seeds": a.seeds, "problems": a.problems,
                                            "k": a.k}, indent=1))
    return 0


def pool(files: list[str]) -> int:
    """Pooled rates over several runs (each its own seed and fresh store), from their --json files."""
    import json

    rs = [json.loads(Path(f).read_text()) for f in files]
    n0, n1, sw = (sum(r[k] for r in rs) for k in ("null_comparisons", "planted_comparisons", "null_sweeps"))
    print(f"pooled over seeds {[r['seed'] for r in rs]} ({n0} no-effect comparisons in {sw} families, {n1} planted "
          f"comparisons at each run's mean printed MDE {[round(r['planted_delta'], 4) for r in rs]}):")
    for key, name in (("detect_paired_by_sweep", "paired"), ("detect_run_by_sweep", "run-level")):
        if all(key in r for r in rs):  # clustered by sweep: its comparisons share a baseline arm
            per = np.concatenate([np.asarray(r[key], dtype=float) / (r["arms"] - 1) for r in rs])
            print(f"  detection at the printed MDE, {name}: standard error over {len(per)} sweeps (clustered) "
                  f"{per.std(ddof=1) / np.sqrt(len(per)):.3f}")
    for name, key, n in (("false positives, run-level Welch (p < α)", "fp_run_hits", n0),
                         ("false positives, paired (p < α)", "fp_paired_hits", n0),
                         ("family-wise error, run-level, Holm", "fwer_run_hits", sw),
                         ("family-wise error, paired, Holm", "fwer_paired_hits", sw),
                         ("detection at the printed MDE, paired (p < α/m)", "detect_paired_hits", n1),
                         ("detection at the printed MDE, run-level (p < α/m)", "detect_run_hits", n1)):
        hits = sum(r[key] for r in rs)
        rate = hits / n
        print(f"  {name:52s} {hits:5d}/{n:<5d} = {rate:.3f}  (binomial SE {np.sqrt(rate * (1 - rate) / n):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
