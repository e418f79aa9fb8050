"""The simulator against closed forms: Leviathan et al. (2023) and limiting cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import autoregressive, constant_scenario, run
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.analytic import expected_tokens_per_step, speedup


def iid_moments(alpha: float, gamma: int) -> tuple[float, float]:
    """Mean and variance of tokens per step, K + 1, with P(K = k) = a^k (1 - a) for k < g, a^g at g."""
    k = np.arange(gamma + 1)
    pmf = np.where(k < gamma, alpha**k * (1 - alpha), alpha**gamma)
    mean = float((pmf * (k + 1)).sum())
    return mean, float((pmf * (k + 1 - mean) ** 2).sum())


def test_closed_form_itself():
    assert expected_tokens_per_step(0.8, 4) == pytest.approx((1 - 0.8**5) / 0.2)
    assert expected_tokens_per_step(1.0, 4) == 5
    assert expected_tokens_per_step(0.0, 4) == 1
    assert iid_moments(0.8, 4)[0] == pytest.approx(expected_tokens_per_step(0.8, 4))
    # Leviathan: if a > c, some gamma improves by at least (1 + a) / (1 + c)
    assert max(speedup(0.7, g, 0.1) for g in range(1, 20)) >= (1 + 0.7) / (1 + 0.1)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(alpha=st.floats(0.0, 0.98), gamma=st.integers(1, 10), c=st.floats(0.01, 0.5))
def test_leviathan_tokens_per_step_and_speedup(alpha, gamma, c):
    """Tokens per step and speedup over autoregressive within 5 standard errors of the closed forms."""
    target_ms = 10.0
    data = constant_scenario(draft_ms=c * target_ms, target_ms=target_ms, gamma=gamma, alpha=alpha, output=20001)
    rep, result = run(data)
    ar, _ = run(autoregressive(data))
    full = [s for s in result.steps if s.drafted == gamma]  # steps not shortened at the end of the output
    mean, var = iid_moments(alpha, gamma)
    se = math.sqrt(var / len(full)) + 1e-12
    sample = np.mean([s[4] + 1 for s in full])
    assert abs(sample - mean) < 5 * se
    assert abs(rep["tokens_per_step"] - expected_tokens_per_step(alpha, gamma)) < 5 * se + 2 * gamma / len(full)
    simulated_speedup = ar["latency_s"]["tpot"]["mean"] / rep["latency_s"]["tpot"]["mean"]
    assert simulated_speedup == pytest.approx(speedup(alpha, gamma, c), rel=5 * se / mean + 2 * gamma / len(full))


def test_alpha_zero_costs_a_full_draft_per_token():
    """Nothing accepted: every token costs gamma draft forwards plus one verify."""
    d, t, g, out, prompt = 1.0, 10.0, 3, 50, 8
    rep, result = run(constant_scenario(draft_ms=d, target_ms=t, gamma=g, alpha=0.0, output=out, prompt=prompt))
    assert rep["tokens_per_step"] == 1.0
    assert rep["acceptance_rate"] == 0.0
    # steps with `left` tokens still to make draft min(g, left - 1) tokens
    by_hand = d + t + sum(min(g, left - 1) * d + t for left in range(1, out))
    assert result.records[0].finish_s == pytest.approx(by_hand / 1000, rel=1e-12)


def test_gamma_zero_is_autoregressive_exactly():
    data = constant_scenario(gamma=0, output=40, requests=5, users=2)
    spec, _ = run(data)
    ar, _ = run(autoregressive(data))
    for key in ("simulated_s", "throughput_tokens_per_s", "latency_s", "output_tokens"):
        assert spec[key] == ar[key]
    assert spec["tokens_per_step"] == 1.0


def test_gamma_one_makes_one_plus_alpha_tokens_per_step():
    rep, result = run(constant_scenario(gamma=1, alpha=0.6, output=30001))
    n = len(result.steps)
    assert rep["tokens_per_step"] == pytest.approx(1.6, abs=5 * math.sqrt(0.24 / n))


def test_perfect_acceptance_matches_hand_computed_cost():
    """alpha = 1, gamma 4, 256 tokens: the prefill's token, then 51 steps of 5 tokens each."""
    d, t = 1.5, 12.0
    rep, result = run(constant_scenario(draft_ms=d, target_ms=t, gamma=4, alpha=1.0, output=256))
    rec = result.records[0]
    assert rec.steps == 51 and rec.accepted == 51 * 4 and rep["tokens_per_step"] == 5.0
    assert rec.first_token_s == pytest.approx((d + t) / 1000, rel=1e-12)
    assert rec.finish_s == pytest.approx((d + t + 51 * (4 * d + t)) / 1000, rel=1e-12)


def test_free_link_equals_colocation():
    """A zero-latency, infinite-bandwidth link between two devices changes nothing for one user."""
    base = constant_scenario(output=300, requests=3)
    split = constant_scenario(output=300, requests=3, split=True,
                              link={"bandwidth_mbps": float("inf"), "latency_ms": 0.0})
    a, ra = run(base)
    b, rb = run(split)
    assert [(r.first_token_s, r.finish_s) for r in ra.records] == [(r.first_token_s, r.finish_s) for r in rb.records]
    assert a["latency_s"] == b["latency_s"] and a["tokens_per_step"] == b["tokens_per_step"]


def test_slower_link_costs_exactly_its_round_trips():
    """Latency L on the link adds 2L to the first token and 2L to every step, nothing else."""
    lat = 7.0
    fast = constant_scenario(output=200, split=True, link={"bandwidth_mbps": float("inf")})
    slow = constant_scenario(output=200, split=True, link={"bandwidth_mbps": float("inf"), "latency_ms": lat})
    _, rf = run(fast)
    _, rs = run(slow)
    f, s = rf.records[0], rs.records[0]
    assert f.steps == s.steps  # same acceptance draws: streams are independent of the link
    assert s.first_token_s - f.first_token_s == pytest.approx(2 * lat / 1000)
    assert s.finish_s - f.finish_s == pytest.approx(2 * lat / 1000 * (1 + s.steps))


@pytest.mark.parametrize("alpha,gamma", [(0.5, 2), (0.8, 4), (0.9, 8)])
def test_estimate_agrees_with_simulation_for_one_stream(alpha, gamma):
    """The closed-form estimate and the simulation share the latency model: one stream agrees."""
    from simulator import analytic
    from simulator import scenario as sc

    data = constant_scenario(gamma=gamma, alpha=alpha, output=5000, requests=4)
    rep, _ = run(data)
    est = analytic.estimate(sc.parse(data, "test"))
    assert est["tokens_per_step"] == pytest.approx(expected_tokens_per_step(alpha, gamma))
    assert rep["throughput_tokens_per_s"] == pytest.approx(est["throughput_tokens_per_s"], rel=0.05)
