"""Edge drafters of their own (shared_verifier's `edges` entries with a draft model and gamma) and
how a request picks one (`assign`), against runs worked out by hand on constant latencies."""

from __future__ import annotations

import pytest
from helpers import run

from simulator.strategies.shared_verifier import EdgeTally, assign, jain


def fleet(edges, assign_policy="round_robin", requests=2, output=13, alpha=1.0, users=1, **draft_ms):
    profile = {"kind": "constant", "forward_ms": {"target": 10.0, **draft_ms}}
    devices = {"cloud": {"profile": profile}} | {f"e{i}": {"profile": profile} for i in range(len(edges))}
    return {
        "name": "fleet", "seed": 3,
        "models": {"target": {"preset": "llama2-7b"}, "d1": {"preset": "llama-68m"}, "d2": {"preset": "llama-160m"}},
        "devices": devices,
        "links": [{"a": f"e{i}", "b": "cloud", "bandwidth_mbps": float("inf")} for i in range(len(edges))],
        "strategy": {"kind": "shared_verifier", "draft_model": "d1", "edges": edges, "gamma": 3,
                     "target": {"model": "target", "device": "cloud"}, "assign": assign_policy, "max_batch": 1},
        "acceptance": {"kind": "iid", "alpha": alpha},
        "workload": {"arrival": {"kind": "closed_loop", "users": users}, "requests": requests,
                     "prompt_tokens": 16, "output_tokens": output},
    }


def test_each_edge_drafts_with_its_own_model_and_gamma():
    # every draft accepted; 13 tokens: the prefill's, then 12 in steps of gamma + 1, the last cut short.
    # edge 0 (d1, 1 ms, gamma 2): prefills 1 + 10 ms, 4 steps of 2 x 1 + 10 ms: 59 ms.
    # edge 1 (d2, 3 ms, gamma 4): prefills 3 + 10 ms, steps of 4, 4 and 1 drafts: 22 + 22 + 13 ms: 70 ms.
    data = fleet([{"device": "e0", "gamma": 2}, {"device": "e1", "draft_model": "d2", "gamma": 4}], d1=1.0, d2=3.0)
    rep, result = run(data)
    assert rep["simulated_s"] == pytest.approx(0.059 + 0.070)
    assert [r.steps for r in result.records] == [4, 3]
    assert rep["tokens_per_step"] == pytest.approx(24 / 7)
    edges = rep["fleet"]["edges"]
    assert (edges["0"]["gamma"], edges["1"]["gamma"], edges["1"]["draft_model"]) == (2, 4, "d2")
    assert edges["0"]["goodput_tokens_per_s"] == pytest.approx(13 / 0.059)
    assert edges["1"]["goodput_tokens_per_s"] == pytest.approx(13 / 0.070)
    assert rep["devices"]["e0"]["busy_s"] == pytest.approx(0.001 + 4 * 0.002)
    assert rep["devices"]["e1"]["busy_s"] == pytest.approx(0.003 + 9 * 0.003)


def test_plain_device_names_keep_the_strategys_model_and_gamma():
    rep, result = run(fleet(["e0"], requests=1, d1=1.0))  # gamma 3: 12 tokens in 3 steps of 4
    assert [r.steps for r in result.records] == [3]
    assert rep["simulated_s"] == pytest.approx(0.011 + 3 * 0.013)
    assert rep["fleet"]["edges"]["0"] == {"device": "e0", "draft_model": "d1", "gamma": 3, "requests": 1,
                                          "output_tokens": 13, "goodput_tokens_per_s": pytest.approx(13 / 0.050)}


def test_learned_assignment_tries_each_edge_then_keeps_the_faster():
    data = fleet(["e0", {"device": "e1", "draft_model": "d2"}], "learned", requests=10, alpha=0.8, d1=1.0, d2=30.0)
    rep, _ = run(data)
    edges = rep["fleet"]["edges"]
    assert (edges["0"]["requests"], edges["1"]["requests"]) == (9, 1)


def test_assignment_rules():
    class R:
        def __init__(self, id, user):
            self.id, self.user = id, user

    fast, slow, none = EdgeTally(), EdgeTally(), EdgeTally()
    fast.add(100, 1.0)
    slow.add(100, 4.0)
    assert assign("user", R(5, 3), [fast, slow], 0) == 1 and assign("round_robin", R(5, 3), [fast, slow], 0) == 1
    assert [assign("learned", R(i, 0), [none, none, none], i) for i in range(3)] == [0, 1, 2]  # each tried once
    assert assign("learned", R(7, 0), [slow, fast, none], 7) == 1  # then the best so far
    assert assign("learned", R(7, 0), [none, none], 7) == 1  # nothing finished yet: round robin
    tie = EdgeTally()
    tie.add(100, 1.0)
    assert assign("learned", R(7, 0), [slow, fast, tie], 7) == 1  # ties: the first


def test_jains_index():
    assert jain([2.0, 2.0, 2.0]) == pytest.approx(1.0)
    assert jain([1.0, 3.0]) == pytest.approx(16 / 20)
    assert jain([5.0, 0.0, 0.0, 0.0]) == pytest.approx(1 / 4)
    assert jain([]) is None
