"""PEARL-style parallel draft and verify against hand-computed timelines and the closed form."""

from __future__ import annotations

import pytest
from helpers import constant_scenario, run

from simulator import analytic
from simulator import scenario as sc


def pearl(**kw) -> dict:
    data = constant_scenario(**kw)
    data["strategy"]["kind"] = "pearl"
    return data


@pytest.mark.parametrize("draft_ms,round_ms", [(1.0, 10.0), (5.0, 20.0)])
def test_perfect_acceptance_rounds_take_the_longer_of_drafting_and_verifying(draft_ms, round_ms):
    """alpha = 1, gamma 4, 202 tokens: the prefill's token, 50 rounds of 4 (each max(4 d, t) long
    once the first block is drafted), the last round's next block empty, then one plain step."""
    t = 10.0
    rep, result = run(pearl(draft_ms=draft_ms, target_ms=t, gamma=4, alpha=1.0, output=202))
    rec = result.records[0]
    assert rec.first_token_s == pytest.approx((draft_ms + t) / 1000)
    by_hand = draft_ms + t + 4 * draft_ms + 49 * round_ms + t + t
    assert rec.finish_s == pytest.approx(by_hand / 1000, rel=1e-12)
    assert rec.steps == 51 and rep["output_tokens"] == 202


def test_overlap_beats_sequential_speculation_when_acceptance_is_high():
    base = dict(draft_ms=2.0, target_ms=10.0, gamma=4, alpha=0.9, output=3000, split=True,
                link={"bandwidth_mbps": 100, "latency_ms": 2})
    par, _ = run(pearl(**base))
    seq, _ = run(constant_scenario(**base))
    assert par["throughput_tokens_per_s"] > 1.1 * seq["throughput_tokens_per_s"]


def test_every_requested_token_is_made():
    data = pearl(gamma=5, alpha=0.6, requests=20, users=2)
    data["workload"]["output_tokens"] = {"kind": "uniform", "low": 1, "high": 200}
    rep, result = run(data)
    made = {r.id: 1 for r in result.records}
    for req, *_rest, c in result.steps:
        made[req] += c
    assert all(made[r.id] == r.output_tokens for r in result.records)


@pytest.mark.parametrize("alpha", [0.5, 0.8, 0.95])
def test_closed_form_agrees_with_one_simulated_stream(alpha):
    data = pearl(draft_ms=2.0, target_ms=10.0, gamma=4, alpha=alpha, output=4000, requests=2)
    rep, _ = run(data)
    est = analytic.estimate(sc.parse(data, "t"))
    assert rep["throughput_tokens_per_s"] == pytest.approx(est["throughput_tokens_per_s"], rel=0.05)
