"""What a report shows: the `report:` block of a sweep file, merged with command-line options.

Schema (every key optional; defaults in brackets):

    report:
      metrics: [val/acc, response_length/mean, ...]   # table columns [held-out accuracy (val/acc and every
                                                      #  val/<group>/acc), response_length/mean,
                                                      #  response_length/clip_ratio, groups/all_correct_frac,
                                                      #  groups/all_wrong_frac, actor/entropy,
                                                      #  actor/kl_loss (else actor/ppo_kl), summary/wall_time_s;
                                                      #  those some run logged]
      rows: [algo, length]          # factors forming the table rows [every factor that varies]; runs that
                                    #  differ only in other factors are pooled into one row
      columns: [length]             # factorial view's column factor(s); its rows = `rows` minus `columns`
                                    #  [with exactly two varying factors: the second one; else no view]
      factorial_metrics: [val/acc]  # metrics shown as two-way tables [the first table metric]
      baseline: {algo: grpo}        # Δ reference; factors not named are matched to the row's own value
                                    #  ("Δ vs grpo at the same length") [the first row]
      step: last                    # last | best | <int>: value read per run [last]
      curves: [critic/score/mean, ...]  # metrics plotted per step [reward, held-out accuracy, length,
                                    #  entropy, clip ratio, all-correct/all-wrong fractions; those logged]
      directions: {actor/entropy: max}  # max | min | none per metric: bold best and `best` step
                                    #  [max for accuracy/score/reward/format; min for clip_ratio, all_wrong,
                                    #  kl, wall_time, timing; none (no bold) otherwise]
      diagnose: {entropy_frac: 0.3, ...}  # thresholds, see rlkit.report.diagnose.Thresholds
      resamples: 10000              # bootstrap resamples for table cells [10000]
      curve_resamples: 1000         # bootstrap resamples for curve bands [1000]
      seed: 0                       # bootstrap seed [0]
      level: 0.95                   # confidence level [0.95]
      interval: t                   # t | bootstrap: run-level cell and Δ intervals [t]
      correction: holm              # holm | bh | none: multiple-comparison adjustment of p-values [holm]
      family: column                # column | table: the comparisons adjusted together [column]
      alpha: 0.05                   # significance level of tests, n.s., bold and power [0.05]
      power: 0.8                    # power for the minimum detectable effect and seeds needed [0.8]
      target_delta: null            # a Δ to plan for (number, or {metric: number}) → seeds needed [none]
      paired_resamples: 2000        # hierarchical bootstrap resamples per paired comparison [2000]
      per_problem: true             # read eval/<suite>/step_N.parquet artifacts when runs have them [true]
      thresholds: {val/acc: 0.8}    # efficiency: steps / wall s / tokens to reach these values [none]
      last_k: 3                     # adds per metric a column "mean of the last k evaluations" (per run the
                                    #  mean of its last k logged values after step 0, then mean [CI] over
                                    #  seeds and Δ with the table's test) [null: off]
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

from rlkit.report.diagnose import Thresholds

VAL_GROUP_ACC = re.compile(r"^val/(?!response_length/).+/acc(/.*)?$")
_MAX = re.compile(r"(^|/)(acc|accuracy)(/|$)|acc/mean|final_val_acc|score|reward|format|throughput|explained_var"
                  r"|/(avg|pass|maj)[@_:]\d+$")
# run-level eval metrics (docs/eval.md: "@" is stored as "_at_"; "_" and ":" accepted too)
EVAL_KEY = re.compile(r"^eval/(?P<suite>[^/]+)/(?P<kind>avg|pass|maj)(?:_at_|[@_:])(?P<k>\d+)$")


# the base model's second evaluation at step 0 under eval.reeval_seed is logged as suite `<suite>_reeval`
# (rlkit/steps/evaluate.py REEVAL_SUFFIX; tests/report check they agree): not a suite of its own in a report
REEVAL_SUFFIX = "_reeval"


def reeval_twin(key: str, available) -> str | None:
    """`eval/<suite>_reeval/<m>` for a key `eval/<suite>/<m>` when some run logged it, else None."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "eval" or parts[1].endswith(REEVAL_SUFFIX):
        return None
    twin = "/".join([parts[0], parts[1] + REEVAL_SUFFIX, *parts[2:]])
    return twin if twin in available else None


def eval_columns(available: list[str]) -> list[str]:
    """Each suite's avg@k, pass@k and maj@k at its largest k (pass@1..k are all logged; one column each);
    never a `<suite>_reeval` twin (the base model's second evaluation, shown in the base-model rows)."""
    best: dict[tuple[str, str], tuple[int, str]] = {}
    for key in available:
        m = EVAL_KEY.match(key)
        if m and m["suite"].endswith(REEVAL_SUFFIX) and \
                f"eval/{m['suite'][:-len(REEVAL_SUFFIX)]}{key[len('eval/' + m['suite']):]}" in available:
            continue
        if m and int(m["k"]) > best.get((m["suite"], m["kind"]), (-1, ""))[0]:
            best[(m["suite"], m["kind"])] = (int(m["k"]), key)
    order = {"avg": 0, "pass": 1, "maj": 2}
    return [best[k][1] for k in sorted(best, key=lambda sk: (sk[0], order[sk[1]]))]
_MIN = re.compile(r"clip_ratio|all_wrong|kl|wall_time|timing_s")


def default_direction(key: str) -> str | None:
    if _MIN.search(key):
        return "min"
    if _MAX.search(key):
        return "max"
    return None


def val_acc_keys(available: list[str]) -> list[str]:
    out = ["val/acc"] if "val/acc" in available else []
    return out + sorted(k for k in available if VAL_GROUP_ACC.match(k) and k != "val/acc")


def default_metrics(available: list[str]) -> list[str]:
    kl = "actor/kl_loss" if "actor/kl_loss" in available else "actor/ppo_kl"
    want = [*val_acc_keys(available), *eval_columns(available), "response_length/mean", "response_length/clip_ratio",
            "groups/all_correct_frac", "groups/all_wrong_frac", "actor/entropy", kl, "summary/wall_time_s"]
    return [k for k in want if k in available]


def default_curves(available: list[str]) -> list[str]:
    want = ["critic/score/mean", *val_acc_keys(available), "response_length/mean", "actor/entropy",
            "response_length/clip_ratio", "groups/all_correct_frac", "groups/all_wrong_frac"]
    return [k for k in want if k in available]


@dataclass(frozen=True)
class ReportSpec:
    metrics: list[str] | None = None
    rows: list[str] | None = None
    columns: list[str] | None = None
    factorial_metrics: list[str] | None = None
    baseline: dict[str, str] = field(default_factory=dict)
    step: str | int = "last"
    curves: list[str] | None = None
    directions: dict[str, str | None] = field(default_factory=dict)
    diagnose: Thresholds = field(default_factory=Thresholds)
    resamples: int = 10_000
    curve_resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    interval: str = "t"
    correction: str = "holm"
    family: str = "column"
    alpha: float = 0.05
    power: float = 0.8
    target_delta: float | dict[str, float] | None = None
    paired_resamples: int = 2000
    per_problem: bool = True
    thresholds: dict[str, float] = field(default_factory=dict)
    last_k: int | None = None

    @classmethod
    def from_dict(cls, d: dict | None) -> ReportSpec:
        return cls().merged(d or {})

    def merged(self, d: dict) -> ReportSpec:
        """This spec with the keys of `d` (a `report:` block or CLI options) replacing its own."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown report key(s) {unknown}; known: {sorted(known)}")
        d = {k: v for k, v in d.items() if v is not None}
        for k in ("metrics", "rows", "columns", "factorial_metrics", "curves"):
            if k in d:
                v = d[k]
                d[k] = [str(x) for x in ([v] if isinstance(v, str) else v)]
        if "baseline" in d:
            b = d["baseline"]
            d["baseline"] = parse_baseline(b) if isinstance(b, str) else {str(k): _tag_str(v) for k, v in b.items()}
        if "step" in d:
            d["step"] = parse_step(d["step"])
        if "directions" in d:
            dirs = {str(k): (None if v in (None, "none") else str(v)) for k, v in d["directions"].items()}
            bad = {k: v for k, v in dirs.items() if v not in (None, "max", "min")}
            if bad:
                raise ValueError(f"directions must be max, min or none, got {bad}")
            d["directions"] = {**self.directions, **dirs}
        if "diagnose" in d:
            d["diagnose"] = _merge_thresholds(self.diagnose, d["diagnose"])
        for k, allowed in (("interval", ("t", "bootstrap")), ("correction", ("holm", "bh", "none")),
                           ("family", ("column", "table"))):
            if k in d and d[k] not in allowed:
                raise ValueError(f"{k} must be one of {list(allowed)}, got {d[k]!r}")
        for k in ("alpha", "power"):
            if k in d and not 0 < float(d[k]) < 1:
                raise ValueError(f"{k} must be in (0, 1), got {d[k]!r}")
        if "target_delta" in d and not isinstance(d["target_delta"], dict):
            d["target_delta"] = float(d["target_delta"])
        if "last_k" in d:
            k = d["last_k"]
            if isinstance(k, bool) or not isinstance(k, int | str) or not str(k).strip().isdigit() or int(k) < 1:
                raise ValueError(f"last_k must be a positive integer (or null: off), got {k!r}")
            d["last_k"] = int(k)
        if "thresholds" in d:
            d["thresholds"] = {str(k): float(v) for k, v in d["thresholds"].items()}
        return replace(self, **d)

    def target_for(self, key: str) -> float | None:
        """The user's target Δ for a metric (`target_delta`: one number for all, or per metric)."""
        t = self.target_delta
        return t.get(key) if isinstance(t, dict) else t

    def direction(self, key: str) -> str | None:
        return self.directions[key] if key in self.directions else default_direction(key)


def _merge_thresholds(base: Thresholds, d) -> Thresholds:
    if isinstance(d, Thresholds):
        return d
    Thresholds.from_dict(d)  # validates the names
    return replace(base, **d)


def _tag_str(v) -> str:
    """YAML scalars as the tag strings MLflow stores (True → 'True', 0.001 → '0.001')."""
    return str(v)


def parse_step(v) -> str | int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    s = str(v).strip()
    if s in ("last", "best", "mean"):
        return s
    try:
        return int(s)
    except ValueError:
        raise ValueError(f"step must be last, best, mean or an integer step, got {v!r}") from None


def parse_baseline(s: str) -> dict[str, str]:
    """'algo=grpo,length=16k' → {'algo': 'grpo', 'length': '16k'}."""
    out = {}
    for part in filter(None, (p.strip() for p in s.split(","))):
        if "=" not in part:
            raise ValueError(f"baseline must look like 'algo=grpo,length=16k', got {s!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


DEFAULTS_FILE = Path(__file__).resolve().parents[2] / "conf" / "report" / "default.yaml"


def load_defaults(path: str | Path | None = None) -> dict:
    """The lab-wide defaults file (conf/report/default.yaml: same keys as a `report:` block); {} if absent."""
    path = Path(path) if path else DEFAULTS_FILE
    if not path.is_file():
        return {}
    with open(path) as fh:
        doc = yaml.safe_load(fh) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping of report keys")
    return doc


def load_sweep_file(path: str | Path) -> dict:
    """The `report:` block of a sweep YAML file ({} if it has none)."""
    with open(path) as fh:
        doc = yaml.safe_load(fh) or {}
    block = doc.get("report") if isinstance(doc, dict) else None
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise ValueError(f"{path}: `report:` must be a mapping, got {type(block).__name__}")
    return block
