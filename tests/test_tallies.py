"""Past tallies.EXACT_LIMIT requests a run without records folds its latencies into histograms:
the percentiles stay within the stated 8.5e-5 of numpy's exact ones, and every other figure of
the report stays what the exact columns give."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from simulator import engine, metrics, tallies
from simulator import scenario as sc

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
BOUND = 2 ** (1 / (2 * tallies.LogHistogram.BINS)) - 1  # half a bucket, relative: 8.5e-5


@pytest.mark.parametrize("values", [
    np.random.default_rng(0).lognormal(-3, 1.5, 20_000),  # spans decades, as latencies do
    np.random.default_rng(1).uniform(0.01, 0.011, 999),  # all in a few buckets
    np.array([0.25]),
    np.array([0.0, 0.0, 0.5, 1.0, 2.0]),  # zeros: a bucket of their own
])
def test_histogram_percentiles_within_half_a_bucket_of_numpy(values):
    h = tallies.LogHistogram()
    h.add_many(values[: len(values) // 2])
    for x in values[len(values) // 2:]:
        h.add(float(x))  # one at a time and in bulk land in the same buckets
    ps = [0, 1, 50, 90, 99, 99.9, 100]
    exact = np.percentile(values, ps)
    for got, want in zip(h.percentiles(ps), exact):
        assert got == pytest.approx(want, rel=BOUND * 1.000001, abs=0)
    assert h.n == len(values) and h.stats()["mean"] == pytest.approx(values.mean(), rel=1e-12)


def test_histogram_is_bounded_by_buckets_not_values():
    h = tallies.LogHistogram()
    h.add_many(np.random.default_rng(2).uniform(1.0, 2.0, 200_000))  # one octave: at most BINS buckets
    assert len(h.counts) <= tallies.LogHistogram.BINS


def test_add_and_add_many_agree_on_bucket_edges():
    edges = 2.0 ** (np.arange(-50, 50) / tallies.LogHistogram.BINS)
    one, many = tallies.LogHistogram(), tallies.LogHistogram()
    for x in edges:
        one.add(float(x))
    many.add_many(edges)
    assert one.counts == many.counts


def _report(spec):
    result = engine.simulate(spec, "test", keep_records=False)
    rep = metrics.report(result, spec.name, spec.strategy.kind)
    rep.pop("sim")
    return rep, result


def _close(a, b, rel):
    """a == b, numbers within rel, recursively."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k], rel)
    elif isinstance(a, float) and isinstance(b, float) and not (math.isnan(a) and math.isnan(b)):
        assert a == pytest.approx(b, rel=rel, abs=0)
    else:
        assert a == b


@pytest.mark.parametrize("name, overrides", [
    ("serving-h100-speculative.yaml", ["workload.requests=400"]),  # batched, with an slo block, many in flight
    ("colocated-h100.yaml", ["workload.requests=150"]),
])
def test_a_folded_run_reports_what_the_exact_columns_give(name, overrides, monkeypatch):
    spec = sc.load(SCENARIOS / name, overrides)
    exact, _ = _report(spec)
    monkeypatch.setattr(tallies, "EXACT_LIMIT", 40)
    folded, result = _report(spec)
    assert result.kept.folded is not None and result.kept._arrival is None  # the arrays went
    latency = folded.pop("latency_s")
    want = exact.pop("latency_s")
    _close(latency, want, BOUND * 1.000001)  # percentiles within half a bucket; means to rounding
    slo, want_slo = folded.pop("slo", None), exact.pop("slo", None)
    if want_slo is not None:
        for k in ("ttft_at_percentile_s", "tpot_at_percentile_s"):
            assert slo.pop(k) == pytest.approx(want_slo.pop(k), rel=BOUND * 1.000001)
        assert slo == want_slo  # attainment, goodput and the verdict are counted, not estimated
    assert folded == exact


def test_requests_in_flight_at_the_fold_are_kept_until_they_finish(monkeypatch):
    spec = sc.load(SCENARIOS / "serving-h100-speculative.yaml", ["workload.requests=200"])
    monkeypatch.setattr(tallies, "EXACT_LIMIT", 30)
    _, result = _report(spec)
    cols = result.kept
    assert not cols._flight  # every request finished and left
    assert cols.folded["ttft"].n == 200
