"""MLflow → tidy pandas tables: one row per child run, and the long metric history.

A sweep is found by the name given on the command line (see `find_sweep`):
1. an experiment of that name (the default experiment of a sweep is its name): the sweep is the one of
   the newest parent run (`rlkit.role=parent`) in it, unless `sweep_id` is given; an experiment without
   parent runs (single runs) is taken whole;
2. else a `sweep_id` tag equal to the name, in any experiment;
3. else a `sweep` tag equal to the name (newest parent's `sweep_id` again).

Child runs are the runs carrying the sweep's `sweep_id` tag or the parent's id as `mlflow.parentRunId`,
parent runs excluded. Status = tag `rlkit.status` (running|finished|failed), else MLflow's own status
lower-cased (running, finished, failed, killed, scheduled): SLURM reports a job whose Python raised inside
Hydra as COMPLETED, so rlkit's own tag wins.

Factors are the group tags (`algo reward length model data launcher`) and the `override.*` tags whose values
differ across the child runs (a tag missing on some runs counts as the value "(default)"); `seed` never is,
nor are `override.tracking.*` / `override.paths.*` (where a job logs and checkpoints).

Histories are read with one bulk SQL query per chunk of runs when the tracking URI is a database
(sqlite/postgresql/mysql/mssql: MLflow's `metrics` table), because `MlflowClient.get_metric_history` costs
2-3 ms per (run, metric) on SQLite (1,000 runs x 15 metrics = 40 s). Other URIs (an `mlflow server`) use
`get_metric_history` in a thread pool.
"""
from __future__ import annotations

import gc
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlparse

import numpy as np
import pandas as pd
from mlflow import MlflowClient

log = logging.getLogger(__name__)

GROUP_TAGS = ("algo", "reward", "length", "model", "data", "launcher")
OVERRIDE_PREFIX = "override."
# overrides that say where a job logs or checkpoints, never what it trains: not factors even when they vary
BOOKKEEPING = ("override.tracking.", "override.paths.", "override.hydra.")
STATUS_TAG = "rlkit.status"
ROLE_TAG = "rlkit.role"
PARENT_TAG = "mlflow.parentRunId"
UNSET = "(default)"
DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_SQL_CHUNK = 500


class SweepNotFound(LookupError):
    """No experiment, sweep_id or sweep tag matches; the message lists the sweeps that exist."""


@dataclass
class Sweep:
    """A sweep's identity and its child runs (history is loaded separately, for the keys needed)."""

    name: str
    sweep_id: str | None
    experiment_ids: list[str]
    parent_run_id: str | None
    runs: pd.DataFrame  # run_id, run_name, status, mlflow_status, seed, start_time, end_time, artifact_uri,
    #                     git_sha, git_dirty, <group/override tags>, variant
    factors: list[str] = field(default_factory=list)
    metric_keys: list[str] = field(default_factory=list)  # every metric key logged by some child run
    params: dict[str, dict[str, str]] = field(default_factory=dict)  # run_id → logged params (resolved config)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # run_id → all tags


def natural_key(value: object) -> tuple:
    """Sort key that orders '2ppl' < '10ppl', '16k' < '24k', '0.001' < '0.01' and puts (default) first."""
    s = str(value)
    if s == UNSET:
        return ((0, 0.0, ""),)
    try:
        return ((1, float(s), ""),)
    except ValueError:
        pass
    parts = re.split(r"(\d+(?:\.\d+)?)", s)
    return tuple((1, float(p), "") if i % 2 else (2, 0.0, p) for i, p in enumerate(parts) if p != "")


def factor_label(factor: str) -> str:
    """`override.algo.entropy_coef` → `algo.entropy_coef`; group tags unchanged."""
    return factor[len(OVERRIDE_PREFIX):] if factor.startswith(OVERRIDE_PREFIX) else factor


def variant_label(values: dict[str, str]) -> str:
    return ", ".join(f"{factor_label(k)}={v}" for k, v in values.items()) or "all runs"


def _search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str, order_by=None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=5000, order_by=order_by,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _all_experiment_ids(client: MlflowClient) -> list[str]:
    ids, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        ids.extend(e.experiment_id for e in page)
        token = page.token
        if not token:
            return ids


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def existing_sweeps(client: MlflowClient) -> list[str]:
    """Human-readable list of what could be reported: experiments with runs, and parent runs' sweeps."""
    out = []
    for exp_id in _all_experiment_ids(client):
        exp = client.get_experiment(exp_id)
        parents = _search_all(client, [exp_id], f"tags.`{ROLE_TAG}` = 'parent'",
                              order_by=["attributes.start_time DESC"])
        if parents:
            for p in parents:
                out.append(f"{exp.name} (sweep_id={p.data.tags.get('sweep_id', '?')})")
        elif client.search_runs([exp_id], "", max_results=1):
            out.append(exp.name)
    return out


def find_sweep(client: MlflowClient, target: str, sweep_id: str | None = None) -> Sweep:
    """Resolve `target` (experiment name, sweep_id or sweep tag) to a `Sweep` with its child runs."""
    exp = client.get_experiment_by_name(target)
    parent = None
    if exp is not None:
        exp_ids = [exp.experiment_id]
        parents = _search_all(client, exp_ids, f"tags.`{ROLE_TAG}` = 'parent'",
                              order_by=["attributes.start_time DESC"])
        if sweep_id is not None:
            parents = [p for p in parents if p.data.tags.get("sweep_id") == sweep_id]
        if parents:
            parent = parents[0]
            sweep_id = parent.data.tags.get("sweep_id", sweep_id)
        name = target
    else:
        all_ids = _all_experiment_ids(client)
        by_id = _search_all(client, all_ids, f"tags.sweep_id = {_quote(target)}")
        if by_id:
            sweep_id = target
        else:
            by_name = _search_all(client, all_ids, f"tags.sweep = {_quote(target)}",
                                  order_by=["attributes.start_time DESC"])
            if sweep_id is not None:
                by_name = [r for r in by_name if r.data.tags.get("sweep_id") == sweep_id]
            if not by_name:
                sweeps = existing_sweeps(client)
                listing = "\n  ".join(sweeps) if sweeps else "(none: the store has no runs)"
                raise SweepNotFound(
                    f"no sweep named {target!r}: no experiment of that name and no run tagged "
                    f"sweep_id={target!r} or sweep={target!r}. Sweeps in this store:\n  {listing}")
            by_id = by_name
            parents_ = [r for r in by_name if r.data.tags.get(ROLE_TAG) == "parent"]
            sweep_id = (parents_ or by_name)[0].data.tags.get("sweep_id", sweep_id)
        exp_ids = sorted({r.info.experiment_id for r in by_id})
        parents = [r for r in _search_all(client, exp_ids, f"tags.sweep_id = {_quote(sweep_id)}")
                   if r.data.tags.get(ROLE_TAG) == "parent"] if sweep_id else []
        parent = max(parents, key=lambda r: r.info.start_time) if parents else None
        name = (parent or by_id[0]).data.tags.get("sweep") or client.get_experiment(exp_ids[0]).name

    if sweep_id is not None:
        children = _search_all(client, exp_ids, f"tags.sweep_id = {_quote(sweep_id)}")
    else:
        children = _search_all(client, exp_ids, "")
    if parent is not None and not [r for r in children if r.data.tags.get(ROLE_TAG) != "parent"]:
        # children that lack the sweep_id tag (contracts.md says they have it): find them by parent id
        seen = {r.info.run_id for r in children}
        children += [r for r in _search_all(client, exp_ids, f"tags.`{PARENT_TAG}` = {_quote(parent.info.run_id)}")
                     if r.info.run_id not in seen]
    children = [r for r in children if r.data.tags.get(ROLE_TAG) != "parent"]
    if sweep_id is None and children:
        # an experiment without parent runs: the newest run's sweep_id, if the runs carry one
        newest = max(children, key=lambda r: r.info.start_time or 0)
        sid = newest.data.tags.get("sweep_id")
        if sid is not None:
            sweep_id = sid
            children = [r for r in children if r.data.tags.get("sweep_id") == sid]
    runs = runs_table(children)
    factors = varying_factors(runs)
    runs = add_variants(runs, factors)
    keys = sorted({k for r in children for k in r.data.metrics})
    return Sweep(name=name, sweep_id=sweep_id, experiment_ids=list(exp_ids),
                 parent_run_id=parent.info.run_id if parent is not None else None,
                 runs=runs, factors=factors, metric_keys=keys,
                 params={r.info.run_id: dict(r.data.params) for r in children},
                 tags={r.info.run_id: dict(r.data.tags) for r in children})


def runs_table(runs: list) -> pd.DataFrame:
    """One row per run: ids, status, seed, times, and every group/override tag (missing → "(default)")."""
    tag_keys = list(GROUP_TAGS) + sorted({k for r in runs for k in r.data.tags if k.startswith(OVERRIDE_PREFIX)})
    rows = []
    for r in runs:
        tags = r.data.tags
        status = (tags.get(STATUS_TAG) or r.info.status or "unknown").lower()
        row = {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": status,
            "mlflow_status": r.info.status,
            "seed": tags.get("seed", r.info.run_id[:8]),
            "start_time": r.info.start_time,
            "end_time": r.info.end_time,
            "artifact_uri": r.info.artifact_uri,
            "git_sha": tags.get("git_sha", ""),
            "git_dirty": tags.get("git_dirty", ""),
        }
        for k in tag_keys:
            row[k] = tags.get(k, UNSET)
        tokens, full = r.data.params.get("length.max_response_tokens"), r.data.params.get("length.full_scale_tokens")
        if row.get("length", UNSET) != UNSET and tokens and full and tokens != full:  # scaled: `16k (44 tok)`
            row["length"] = f"{row['length']} ({tokens} tok)"
        rows.append(row)
    cols = ["run_id", "run_name", "status", "mlflow_status", "seed", "start_time", "end_time", "artifact_uri",
            "git_sha", "git_dirty", *tag_keys]
    return pd.DataFrame(rows, columns=cols)


def varying_factors(runs: pd.DataFrame) -> list[str]:
    """Group tags then override tags (sorted) whose values differ across the runs; never `seed` nor the
    bookkeeping overrides (`tracking.*`, `paths.*`)."""
    cands = [c for c in runs.columns
             if c in GROUP_TAGS or (c.startswith(OVERRIDE_PREFIX) and not c.startswith(BOOKKEEPING))]
    return [c for c in cands if c != "seed" and runs[c].nunique(dropna=False) > 1]


def add_variants(runs: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    runs = runs.copy()
    if not factors or runs.empty:
        runs["variant"] = "all runs"
        return runs
    label = None
    for f in factors:
        part = f"{factor_label(f)}=" + runs[f].astype(str)
        label = part if label is None else label + ", " + part
    runs["variant"] = label.astype(object)
    return runs


@lru_cache(maxsize=8)
def _engine(uri: str):
    import sqlalchemy

    return sqlalchemy.create_engine(uri)


def sqlite_path(uri: str) -> str | None:
    """File path of a `sqlite:///path` URI (None for in-memory or non-sqlite URIs)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return path if path and path != ":memory:" else None


class _NoGC:
    """Pause the cyclic garbage collector while millions of result tuples are created (they hold no cycles;
    with GC on, its repeated passes over the young objects cost more than the fetch itself)."""

    def __enter__(self):
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was:
            gc.enable()


Columns = tuple  # (run_id object array, key str | object array, step int64, timestamp int64, value float64)


def _columns(rows: list[tuple], key: str | None = None) -> Columns:
    """Rows (run_id, [key,] step, timestamp, value) → column arrays; a NULL value (is_nan) → NaN."""
    cols = list(zip(*rows, strict=True))
    if key is None:
        key = np.array(cols.pop(1), dtype=object)
    run, step, ts, val = cols
    if None in ts:
        ts = [0 if t is None else t for t in ts]
    return (np.array(run, dtype=object), key, np.array(step, dtype=np.int64), np.array(ts, dtype=np.int64),
            np.array(val, dtype=float))


def _history_sqlite(path: str, run_ids: list[str], keys: list[str]) -> list[Columns]:
    """Plain sqlite3, read-only, one query per (key, 500 runs), an index lookup per (run, key): ~3.5 s for
    2.4M points on the project machine. SQLAlchemy's row handling made the same read ~7x slower, and
    without the index hint SQLite may walk the whole store's rows of that key."""
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    parts: list[Columns] = []
    hints = ["INDEXED BY index_metrics_run_uuid_key_step ", ""]
    try:
        with _NoGC():
            for key in keys:
                for i in range(0, len(run_ids), _SQL_CHUNK):
                    chunk = run_ids[i:i + _SQL_CHUNK]
                    while True:
                        sql = (f"SELECT run_uuid, step, timestamp, CASE WHEN is_nan THEN NULL ELSE value END "
                               f"FROM metrics {hints[0]}WHERE key = ? AND run_uuid IN ({','.join('?' * len(chunk))})")
                        try:
                            rows = con.execute(sql, [key, *chunk]).fetchall()
                            break
                        except sqlite3.OperationalError as exc:  # an older schema without that index
                            if len(hints) == 1 or "index" not in str(exc):
                                raise
                            hints.pop(0)
                    if rows:
                        parts.append(_columns(rows, key))
    finally:
        con.close()
    return parts


def _history_sqlalchemy(uri: str, run_ids: list[str], keys: list[str]) -> list[Columns]:
    import sqlalchemy

    query = sqlalchemy.text(
        "SELECT run_uuid, key, step, timestamp, CASE WHEN is_nan THEN NULL ELSE value END FROM metrics "
        "WHERE run_uuid IN :runs AND key IN :keys"
    ).bindparams(sqlalchemy.bindparam("runs", expanding=True), sqlalchemy.bindparam("keys", expanding=True))
    parts: list[Columns] = []
    with _engine(uri).connect() as conn, _NoGC():
        for i in range(0, len(run_ids), _SQL_CHUNK):
            rows = [tuple(r) for r in conn.execute(query, {"runs": run_ids[i:i + _SQL_CHUNK], "keys": keys})]
            if rows:
                parts.append(_columns(rows))
    return parts


def _history_api(client: MlflowClient, run_ids: list[str], keys: list[str], workers: int = 8) -> list[Columns]:
    def one(pair):
        run_id, key = pair
        return [(run_id, key, m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)]

    pairs = [(r, k) for r in run_ids for k in keys]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = [row for chunk in pool.map(one, pairs) for row in chunk]
    return [_columns(rows)] if rows else []


def _tidy(parts: list[Columns]) -> pd.DataFrame:
    """Columns → one table sorted by run_id, key, step (both categorical); of several values logged at
    one step the last (by timestamp, then arrival) wins."""
    if not parts:
        return pd.DataFrame({"run_id": pd.Series(dtype=object), "key": pd.Series(dtype=object),
                             "step": pd.Series(dtype="int64"), "value": pd.Series(dtype="float64")})
    run = np.concatenate([p[0] for p in parts])
    key = np.concatenate([np.full(len(p[0]), p[1], dtype=object) if isinstance(p[1], str) else p[1] for p in parts])
    step = np.concatenate([p[2] for p in parts])
    ts = np.concatenate([p[3] for p in parts])
    val = np.concatenate([p[4] for p in parts])
    rc, runs = pd.factorize(run, sort=True)
    kc, keys = pd.factorize(key, sort=True)
    order = np.lexsort((np.arange(len(run)), ts, step, kc, rc))
    rc, kc, step, val = rc[order], kc[order], step[order], val[order]
    keep = np.ones(len(order), dtype=bool)
    keep[:-1] = ~((rc[1:] == rc[:-1]) & (kc[1:] == kc[:-1]) & (step[1:] == step[:-1]))
    # categoricals: 2.4M run-id strings as pandas (arrow) strings cost seconds, as codes nothing
    return pd.DataFrame({"run_id": pd.Categorical.from_codes(rc[keep], categories=pd.Index(runs, dtype=object)),
                         "key": pd.Categorical.from_codes(kc[keep], categories=pd.Index(keys, dtype=object)),
                         "step": step[keep], "value": val[keep]})


def load_history(tracking_uri: str, run_ids: list[str], keys: list[str], *, bulk: bool | None = None) -> pd.DataFrame:
    """Long table (run_id, key, step, value), one value per (run, key, step) — the last logged one; NaN
    where MLflow stored NaN — sorted by run_id, key, step. `bulk=None` picks a bulk SQL read for database
    URIs (plain sqlite3 for `sqlite:///file`), the client API otherwise; `bulk=False` forces the API."""
    run_ids, keys = list(run_ids), sorted(set(keys))
    if not run_ids or not keys:
        return _tidy([])
    use_sql = (urlparse(tracking_uri).scheme.split("+")[0] in DB_SCHEMES) if bulk is None else bulk
    if use_sql:
        try:
            path = sqlite_path(tracking_uri)
            if path is not None:
                return _tidy(_history_sqlite(path, run_ids, keys))
            return _tidy(_history_sqlalchemy(tracking_uri, run_ids, keys))
        except Exception as exc:  # schema drift or driver trouble: the API path is always right
            if bulk:
                raise
            log.warning("bulk SQL history read failed (%s); falling back to get_metric_history", exc)
    return _tidy(_history_api(MlflowClient(tracking_uri), run_ids, keys))


def values_at(history: pd.DataFrame, keys: list[str], step: str | int,
              directions: dict[str, str] | None = None) -> pd.DataFrame:
    """Wide table run_id × key of the value read at `step`:
    "last" = value at the last logged step; "best" = the max over steps (the min for a metric whose
    direction is "min"); "mean" = the average of the logged values over the run (a metric logged every
    step: its time-average, "over the run"); an int N = value at step N, or the last one logged before N.
    `summary/*` metrics are logged once at the end and are always read as "last"."""
    directions = directions or {}
    h = history[history["key"].isin(keys)]
    is_summary = h["key"].isin([k for k in keys if k.startswith("summary/")])
    if isinstance(step, str) and step == "last":
        picked = h
    elif isinstance(step, str) and step in ("best", "mean"):
        picked = h[is_summary]
    else:
        picked = h[(h["step"] <= int(step)) | is_summary]
    parts = [picked.groupby(["run_id", "key"], sort=False, observed=True)["value"].last(skipna=False)]
    if isinstance(step, str) and step == "best":
        b = h[~is_summary]
        sign = np.where(b["key"].isin([k for k in keys if directions.get(k) == "min"]).to_numpy(), -1.0, 1.0)
        best = b.assign(v=b["value"] * sign, s=sign).groupby(["run_id", "key"], sort=False, observed=True)[
            ["v", "s"]].max()
        parts.append(best["v"] * best["s"])
    if isinstance(step, str) and step == "mean":
        parts.append(h[~is_summary].groupby(["run_id", "key"], sort=False, observed=True)["value"].mean())
    out = pd.concat(parts)
    wide = out.unstack("key") if len(out) else pd.DataFrame(index=pd.Index([], name="run_id"))
    wide.index = wide.index.astype(object)
    wide.columns = wide.columns.astype(object)
    return wide.reindex(columns=list(keys))


def values_last_k(history: pd.DataFrame, keys: list[str], k: int) -> pd.DataFrame:
    """Wide table run_id × key of the mean of each run's last `k` logged values after step 0 (step 0 is the
    base model, not the run's training; a run with fewer than k such values: the mean of those it has).
    `summary/*` metrics are logged once: their last value. Why: averaging the last few evaluations cuts
    evaluation noise (Ai2, "Signal and Noise", arXiv 2508.13144)."""
    if k < 1:
        raise ValueError(f"last_k must be ≥ 1, got {k}")
    h = history[history["key"].isin(keys)]
    is_summary = h["key"].isin([x for x in keys if x.startswith("summary/")])
    trained = h[(h["step"] > 0) & ~is_summary]
    tail = trained.groupby(["run_id", "key"], sort=False, observed=True).tail(k)  # sorted by step: the last k
    parts = [tail.groupby(["run_id", "key"], sort=False, observed=True)["value"].mean(),
             h[is_summary].groupby(["run_id", "key"], sort=False, observed=True)["value"].last(skipna=False)]
    out = pd.concat(parts)
    wide = out.unstack("key") if len(out) else pd.DataFrame(index=pd.Index([], name="run_id"))
    wide.index = wide.index.astype(object)
    wide.columns = wide.columns.astype(object)
    return wide.reindex(columns=list(keys))


def window_counts(history: pd.DataFrame, keys: list[str], k: int) -> dict[str, int]:
    """Per key: the fewest values after step 0 any run logged (< k: its last-k mean is over fewer)."""
    h = history[history["key"].isin(keys) & (history["step"] > 0)]
    c = h.groupby(["run_id", "key"], sort=False, observed=True).size()
    return {str(key): int(v.min()) for key, v in c.groupby(level="key", observed=True)} if len(c) else {}
