"""The tracking spool on a real SQLite MLflow store: in order, nothing lost, nothing sent twice when an
earlier process died between sending a record and acknowledging it, a torn last line ignored."""
from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from rlkit import spool
from rlkit.tracking import client


def _run(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    mc = MlflowClient(uri)
    run_id = mc.create_run(mc.create_experiment("s")).info.run_id
    return uri, mc, run_id


def test_values_arrive_once_and_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(spool.Spool, "COMPACT_AFTER", 7)  # (compaction on the way)
    uri, mc, run_id = _run(tmp_path)
    sp = spool.Spool(tmp_path / "sp", uri, client(uri))
    for step in range(1, 31):
        sp.append("metrics", run_id, metrics={"a": step * 0.5, "b": float("nan")}, step=step, ts=1000 + step)
    sp.append("params", run_id, params={"p": "1"})
    sp.append("tags", run_id, tags={"t": "x"})
    sp.append("text", run_id, text="hello", name="n/f.md")
    sp.append("terminate", run_id, status="FINISHED")
    assert sp.close(60)
    assert not (tmp_path / "sp" / spool.LOG).exists()
    hist = mc.get_metric_history(run_id, "a")
    assert sorted(m.step for m in hist) == list(range(1, 31))
    r = mc.get_run(run_id)
    assert r.info.status == "FINISHED" and r.data.params == {"p": "1"} and r.data.tags["t"] == "x"


def test_replay_after_a_death_between_send_and_ack_sends_nothing_twice(tmp_path):
    uri, mc, run_id = _run(tmp_path)
    d = tmp_path / "sp"
    d.mkdir()
    recs = [{"seq": i, "op": "metrics", "run_id": run_id, "metrics": {"a": float(i)}, "step": i, "ts": 5000 + i}
            for i in range(1, 6)]
    for r in recs[:3]:  # sent by the dead process; only the first acknowledged
        spool.apply(mc, r)
    (d / spool.ACKED).write_text("1")
    (d / spool.META).write_text(json.dumps({"uri": uri}))
    (d / spool.LOG).write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"seq": 6, "op": "met')  # torn
    assert spool.replay(d) == 4
    steps = [m.step for m in mc.get_metric_history(run_id, "a")]
    assert sorted(steps) == [1, 2, 3, 4, 5]
    assert spool.replay(d) == 0  # a second replay (rlkit.sync again) has nothing left


def test_a_file_arrives_under_its_own_name_where_the_report_reads_it(tmp_path):
    from rlkit.paths import eval_artifact
    from rlkit.report.paired import list_evals

    uri, mc, run_id = _run(tmp_path)
    src = tmp_path / "step_000030.parquet"
    src.write_bytes(b"PAR1")
    sp = spool.Spool(tmp_path / "sp", uri, client(uri))
    sp.append("file", run_id, path=str(sp.keep(str(src))), artifact_path="eval/tiny_arith")
    assert sp.close(60)
    run = mc.get_run(run_id)
    assert [a.path for a in mc.list_artifacts(run_id, "eval/tiny_arith")] == [eval_artifact("tiny_arith", 30)]
    assert list(list_evals(mc, run_id, run.info.artifact_uri)) == ["tiny_arith"]
