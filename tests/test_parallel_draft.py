"""A drafter that makes k tokens a forward (ParallelSpec-style, `tokens_per_forward`): k = 1 is the
plain chain to the bit, and k > 1 costs ceil(g / k) forwards a step, in the run and the closed form."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import constant_scenario, run

from simulator import analytic
from simulator import scenario as sc
from simulator.strategies.speculative import parallel_draft_s

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def test_one_token_a_forward_is_the_plain_chain():
    base = constant_scenario(output=200, requests=3, users=2)
    same = constant_scenario(output=200, requests=3, users=2)
    same["strategy"]["tokens_per_forward"] = 1
    a, ra = run(base)
    b, rb = run(same)
    a.pop("sim"), b.pop("sim")
    assert a == b and ra.steps == rb.steps


@pytest.mark.parametrize("k, forwards", [(2, 2), (3, 2), (4, 1), (8, 1)])
def test_a_step_takes_ceil_gamma_over_k_draft_forwards(k, forwards):
    # constant latencies, every draft accepted: 4 drafts a step, ceil(4 / k) draft forwards of 1 ms and a
    # 10 ms verification; 5 tokens a step, so 20 steps after the prefill's token for 101 tokens
    data = constant_scenario(draft_ms=1.0, target_ms=10.0, gamma=4, alpha=1.0, output=101)
    data["strategy"]["tokens_per_forward"] = k
    rep, result = run(data)
    assert len(result.steps) == 20
    assert rep["simulated_s"] == pytest.approx((1 + 10 + 20 * (forwards * 1 + 10)) / 1000)
    assert analytic.estimate(sc.parse(data, "test"))["step_s"] == pytest.approx((forwards * 1 + 10) / 1000)


def test_wider_forwards_cost_what_the_profile_says_for_their_query():
    from simulator import engine

    fwd = engine.prepare(sc.load(SCENARIOS / "parallel-draft-h100.yaml")).world.devices["gpu"].forward["draft"]
    assert parallel_draft_s(fwd, 8, 4, 300) == pytest.approx(fwd.forward_s(1, 4, 300) + fwd.forward_s(1, 4, 304))
    assert parallel_draft_s(fwd, 6, 4, 300) == pytest.approx(fwd.forward_s(1, 4, 300) + fwd.forward_s(1, 2, 304))
