"""The staged strategy's second stage at a cost of its own (draft2_ms_per_token), on any device:
worked out by hand on a chain with constant latencies."""

from __future__ import annotations

import pytest
from helpers import run


def staged(ms_per_token, draft2_device="gpu"):
    profile = {"kind": "constant", "forward_ms": {"draft": 1.0, "target": 10.0, "ngram": 5.0}}
    return {
        "name": "staged", "seed": 2,
        "models": {"draft": {"preset": "llama-68m"}, "target": {"preset": "llama2-7b"}, "ngram": {"preset": "llama-68m"}},
        "devices": {"gpu": {"profile": profile}, "host": {"profile": profile}},
        "links": [{"a": "gpu", "b": "host", "bandwidth_mbps": float("inf")}],
        "strategy": {"kind": "staged", "draft": {"model": "draft", "device": "gpu"},
                     "target": {"model": "target", "device": "gpu"},
                     "draft2": {"model": "ngram", "device": draft2_device},
                     "branching": [1, 1, 1, 1], "inner_gamma": 3, "inner_alpha": 1.0,
                     "draft2_ms_per_token": ms_per_token},
        "acceptance": {"kind": "iid", "alpha": 1.0},
        "workload": {"arrival": {"kind": "closed_loop", "users": 1}, "requests": 1, "prompt_tokens": 16,
                     "output_tokens": 21},
    }


@pytest.mark.parametrize("where", ["gpu", "host"])
def test_second_stage_costs_its_own_time_per_token(where):
    # a chain of 4, everything accepted: 20 tokens in 4 steps of 5. Each step: draft2 proposes 3
    # levels (3 forwards of one token, c each), the draft checks them in one forward (1 ms), the
    # target verifies (10 ms). A request: draft2's prefill (16 c), the draft's (1 ms), the target's.
    c = 0.2
    rep, result = run(staged(c, where))
    assert [s.accepted for s in result.steps] == [4, 4, 4, 4]
    assert rep["devices"]["gpu"]["busy_s"] == pytest.approx((16 * c + 1 + 10 + 4 * (3 * c + 1 + 10)) / 1000)
    assert rep["devices"]["host"]["busy_s"] == 0.0  # draft2's time is spent inside the draft's job
    free, _ = run(staged(0.0, where))
    assert rep["simulated_s"] - free["simulated_s"] == pytest.approx((16 * c + 4 * 3 * c) / 1000)


def test_without_its_own_cost_the_second_stage_takes_its_devices_forward_times():
    rep, _ = run(staged(None))  # ngram at 5 ms a forward on the gpu's constant profile
    assert rep["devices"]["gpu"]["busy_s"] == pytest.approx((5 + 1 + 10 + 4 * (3 * 5 + 1 + 10)) / 1000)
