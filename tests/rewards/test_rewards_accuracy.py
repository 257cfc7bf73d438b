"""(b) math-verify equivalences and answer_from variants; (c) threads, subprocesses, pathological inputs."""
from __future__ import annotations

import multiprocessing as mp
import threading
import time

import pytest

from rlkit.data.problem import Problem
from rlkit.rewards import accuracy as A
from rlkit.rewards.accuracy import accuracy, extract_boxed, extract_tag, is_correct
from rlkit.rewards.base import RewardContext

CTX = RewardContext(response_tokens=10, max_response_tokens=100, truncated=False)


def P(answer: str) -> Problem:
    return Problem(id="t", question="q", answer=answer)


def tag(s: str) -> str:
    return f"<think>work</think><answer>{s}</answer>"


EQUIVALENT = [  # (gold, prediction in the answer tag)
    ("42", "42"),
    ("42", " 42 "),
    ("42", "42.0"),
    ("42", "$42$"),
    ("1000", "1,000"),
    ("1,000", "1000"),
    ("-3", "-3"),
    ("0.5", "1/2"),
    ("0.5", "\\frac{1}{2}"),
    ("\\frac{1}{2}", "0.5"),
    ("\\frac{1}{2}", "\\dfrac{2}{4}"),
    ("\\frac12", "\\frac{1}{2}"),
    ("3\\sqrt{13}", "3\\sqrt{13}"),
    ("3\\sqrt{13}", "\\sqrt{117}"),
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
    ("(1, 2]", "(1,2]"),
    ("(-\\infty, 2]", "(-\\infty,2]"),
    ("\\{1, 2\\}", "\\{2, 1\\}"),
    ("x^2+2x+1", "(x+1)^2"),
    ("5", "x = 5"),
    ("5", "5 cm"),
    ("5", "5\\text{ cm}"),
    ("\\text{(C)}", "C"),
    ("\\$40", "40"),
    ("\\$15,\\!000", "15000"),
    ("-\\$0.50", "-0.5"),
    ("50\\%", "50"),
    ("90^\\circ", "90"),
    ("\\pi/2", "\\frac{\\pi}{2}"),
    ("7", "\\boxed{7}"),
]

NOT_EQUIVALENT = [
    ("42", "41"),
    ("42", "4 2"),
    ("42", ""),
    ("42", "forty-two"),
    ("0.5", "0.55"),
    ("12", "1,2"),
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("3\\sqrt{13}", "3\\sqrt{12}"),
    ("(1, 2]", "[1, 2]"),
    ("x^2+2x+1", "(x-1)^2"),
    ("\\text{(C)}", "B"),
    ("2", "3"),
]


@pytest.mark.parametrize("gold,pred", EQUIVALENT)
def test_equivalent_forms(gold, pred):
    assert accuracy(tag(pred), P(gold), CTX) == 1.0


@pytest.mark.parametrize("gold,pred", NOT_EQUIVALENT)
def test_not_equivalent_forms(gold, pred):
    assert accuracy(tag(pred), P(gold), CTX) == 0.0


def test_answer_from_variants():
    p = P("\\frac{1}{2}")
    tagged = "<think>so \\boxed{3}</think><answer>0.5</answer>"
    boxed = "We get \\boxed{\\frac{1}{2}}."
    plain = "After simplifying, the result is $\\frac{1}{2}$."
    assert is_correct(tagged, p, answer_from="tag")
    assert not is_correct(tagged, p, answer_from="boxed")  # the boxed 3 is what boxed mode sees
    assert is_correct(tagged, p, answer_from="any")  # tag first
    assert not is_correct(boxed, p, answer_from="tag")
    assert is_correct(boxed, p, answer_from="boxed")
    assert is_correct(boxed, p, answer_from="any")
    assert not is_correct(plain, p, answer_from="tag")
    assert not is_correct(plain, p, answer_from="boxed")
    assert is_correct(plain, p, answer_from="any")  # math-verify's own extraction
    with pytest.raises(ValueError):
        is_correct(tagged, p, answer_from="last")


def test_extraction_edges():
    assert extract_tag("<answer>1</answer> then <answer>2</answer>") == "2"
    assert extract_tag("<answer>1</answer> then <answer>2") == "1"  # last complete pair
    assert extract_tag("<answer><answer>x</answer></answer>") == "x"  # innermost
    assert extract_tag("no tags") is None
    assert extract_boxed("\\boxed{1} and \\boxed{\\frac{a}{b}}") == "\\frac{a}{b}"
    assert extract_boxed("\\boxed{\\{1,2\\}}") == "\\{1,2\\}"
    assert extract_boxed("\\boxed{\\left\\{ x \\right.}") == "\\left\\{ x \\right."
    assert extract_boxed("\\boxed{2} then \\boxed{unclosed") == "2"  # last balanced one
    assert extract_boxed("\\boxed {5}") == "5"
    assert extract_boxed("\\fbox{5}") == "5"
    assert extract_boxed("nothing") is None


def test_numeric_hot_path_is_microseconds():
    p = P("42")
    completions = [tag(str(i % 97)) for i in range(20000)]
    t0 = time.perf_counter()
    hits = sum(is_correct(c, p) for c in completions)
    per_call = (time.perf_counter() - t0) / len(completions)
    assert hits == sum(1 for i in range(20000) if i % 97 == 42)
    assert per_call < 100e-6, per_call  # ~10 µs on an idle core; generous for a shared machine


PATHOLOGICAL = [
    "2^2^2^2^2^2^2^2",
    "2^{2^{2^{2^{2^{2}}}}}",
    "10^{10^{10}}",
    "9^{9^{9^{9}}}",
    "{" * 5000 + "1" + "}" * 5000,
    "\\frac{1}{" * 35 + "2" + "}" * 35,
    "1+" * 400 + "1",
    "x" * 100_000,
]


@pytest.mark.parametrize("pred", PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_pathological_is_bounded_in_main_thread(pred):
    for answer_from in ("tag", "any"):
        t0 = time.perf_counter()
        assert accuracy(tag(pred), P("42"), CTX, answer_from=answer_from) == 0.0
        assert time.perf_counter() - t0 < 1.0


def test_pathological_any_mode_whole_text():
    t0 = time.perf_counter()
    assert not is_correct("2^{2^{2^{2^{2^{2}}}}} " * 3 + "x" * 100_000, P("42"), answer_from="any")
    assert time.perf_counter() - t0 < 1.0


def _in_thread(fn):
    out: list = []
    th = threading.Thread(target=lambda: out.append(fn()))
    th.start()
    th.join(timeout=120)
    assert not th.is_alive()
    return out[0]


def test_works_in_worker_thread():
    # warm-up: starts the helper process (first use from a thread pays its start-up)
    assert _in_thread(lambda: is_correct(tag("\\dfrac{3}{6}"), P("0.5")))
    assert _in_thread(lambda: is_correct(tag("3\\sqrt{13}"), P("\\sqrt{117}")))
    assert not _in_thread(lambda: is_correct(tag("\\frac{1}{3}"), P("0.5")))
    assert _in_thread(lambda: is_correct(tag("17"), P("17")))  # fast path, no helper

    def timed():
        t0 = time.perf_counter()
        ok = is_correct(tag("7^{7^{7^{7^{7}}}}"), P("42"))
        return ok, time.perf_counter() - t0

    ok, elapsed = _in_thread(timed)
    assert not ok and elapsed < 1.0, elapsed
    # the helper recovers (or was restarted) and keeps answering
    assert _in_thread(lambda: is_correct(tag("0.25"), P("\\frac{1}{4}")))


def _timed_check(args):
    completion, gold = args
    t0 = time.perf_counter()
    ok = is_correct(completion, P(gold))
    return ok, time.perf_counter() - t0


def test_works_in_multiprocessing_worker():
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(is_correct, (tag("\\frac{2}{4}"), P("0.5")))
        assert not pool.apply(is_correct, (tag("0.3"), P("0.5")))
        ok, elapsed = pool.apply(_timed_check, ((tag("8^{8^{8^{8^{8}}}}"), "42"),))
        assert not ok and elapsed < 1.0


def test_never_raises_on_odd_inputs():
    for completion in [None, 42, b"<answer>42</answer>", "<answer>\x00</answer>", "<answer>\ud800</answer>"]:
        assert accuracy(completion, P("42"), CTX) == 0.0  # type: ignore[arg-type]
    assert accuracy(tag("42"), P(""), CTX) == 0.0
    assert accuracy(tag("\\frac{"), P("\\frac{1}{2}"), CTX) == 0.0


def test_timeouts_are_retried_once_then_remembered(monkeypatch):
    calls = []

    def fake(gold, pred, raw, timeout_s):
        calls.append(pred)
        return None  # always times out

    monkeypatch.setattr(A, "_mv_equal_main", fake)
    A._mv_equal_cached.cache_clear()
    A._timeouts.clear()
    for _ in range(5):
        assert not is_correct(tag("\\sin(1)"), P("0.8414709848"))
    assert len(calls) == A.MAX_TIMEOUTS
    A._timeouts.clear()
