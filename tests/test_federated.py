"""Federated verification: one worker on a free link is speculative decoding; uploads grow with K and gamma."""

from __future__ import annotations

import copy

import pytest
from helpers import constant_scenario, run

from simulator import analytic
from simulator import scenario as sc
from simulator.strategies.federated import upload_bytes


def federated(k: int, link=None, top_k: int = 8, **kw) -> dict:
    data = constant_scenario(**kw)
    profile = {"kind": "constant", "forward_ms": {"draft": kw.get("draft_ms", 1.0), "target": kw.get("target_ms", 10.0)}}
    data["devices"] = {"edge": {"profile": copy.deepcopy(profile)}} | {
        f"w{i}": {"profile": copy.deepcopy(profile)} for i in range(k)}
    data["links"] = [{"a": "edge", "b": f"w{i}", **(link or {"bandwidth_mbps": float("inf")})} for i in range(k)]
    data["strategy"] = {"kind": "federated", "draft": {"model": "draft", "device": "edge"}, "top_k": top_k,
                        "workers": [{"model": "target", "device": f"w{i}"} for i in range(k)],
                        "gamma": data["strategy"]["gamma"]}
    return data


def test_one_worker_on_a_free_link_is_speculative_decoding():
    fed, rf = run(federated(1, output=300, requests=3))
    spec, rs = run(constant_scenario(output=300, requests=3, split=True,
                                     link={"bandwidth_mbps": float("inf"), "latency_ms": 0.0}))
    assert [(r.first_token_s, r.finish_s) for r in rf.records] == [(r.first_token_s, r.finish_s) for r in rs.records]


def test_workers_verify_in_parallel():
    """K identical workers on free links take the time of one."""
    one, _ = run(federated(1, output=300, requests=2))
    four, _ = run(federated(4, output=300, requests=2))
    assert four["simulated_s"] == pytest.approx(one["simulated_s"])
    assert all(d["utilization"] == pytest.approx(one["devices"]["w0"]["utilization"])
               for name, d in four["devices"].items() if name.startswith("w"))


@pytest.mark.parametrize("k,gamma,top_k", [(2, 2, 4), (3, 4, 16)])
def test_uploads_grow_with_k_gamma_and_top_k(k, gamma, top_k):
    rep, result = run(federated(k, gamma=gamma, top_k=top_k, output=60, link={"bandwidth_mbps": 100, "header_bytes": 0}))
    uploads = upload_bytes(0, top_k) + sum(upload_bytes(s.drafted, top_k) for s in result.steps)
    for i in range(k):
        assert rep["links"][f"edge-w{i}"]["bytes_down"] == uploads
    assert upload_bytes(gamma, top_k) == (gamma + 1) * top_k * 6


def test_a_slow_uplink_slows_every_step_and_the_estimate_sees_it():
    fast = federated(3, top_k=1000, output=400, requests=2, link={"bandwidth_mbps": 1000, "latency_ms": 2})
    slow = federated(3, top_k=1000, output=400, requests=2, link={"bandwidth_mbps": 10, "latency_ms": 2})
    f, _ = run(fast)
    s, _ = run(slow)
    assert s["throughput_tokens_per_s"] < 0.8 * f["throughput_tokens_per_s"]
    for data, rep in ((fast, f), (slow, s)):
        est = analytic.estimate(sc.parse(data, "t"))
        assert rep["throughput_tokens_per_s"] == pytest.approx(est["throughput_tokens_per_s"], rel=0.05)


def test_each_drafter_drafts_its_users_requests_with_its_own_model_and_gamma():
    """Two drafting edges sharing two workers, a user each, every draft accepted: user 0 drafts on
    edge (draft model, 1 ms, gamma 2): 12 tokens after the prefill's in 4 steps of 3; user 1 on
    edge1 (llama-160m at 3 ms, gamma 4): steps of 5, 5 and 2, 3 steps. However the two queue on
    the workers, each edge's busy time is its own prefill and drafts: 1 + 4 x 2 x 1 ms and 3 + 9 x
    3 ms; every worker verifies all 7 steps and both prefills."""
    data = federated(2, output=13, users=2, requests=2, alpha=1.0, gamma=2)
    data["models"]["mid"] = {"preset": "llama-160m"}
    data["devices"]["edge1"] = {"profile": {"kind": "constant", "forward_ms": {"mid": 3.0}}}
    data["links"] += [{"a": "edge1", "b": f"w{i}", "bandwidth_mbps": float("inf")} for i in range(2)]
    data["strategy"]["drafters"] = [{"model": "mid", "device": "edge1", "gamma": 4}]
    rep, result = run(data)
    assert {r.user: r.steps for r in result.records} == {0: 4, 1: 3}
    assert rep["devices"]["edge"]["busy_s"] == pytest.approx(0.001 + 8 * 0.001)
    assert rep["devices"]["edge1"]["busy_s"] == pytest.approx(0.003 + 9 * 0.003)
    assert all(rep["devices"][w]["busy_s"] == pytest.approx(9 * 0.010) for w in ("w0", "w1"))


def test_a_drafter_without_a_link_to_every_worker_is_refused(tmp_path):
    data = federated(2, output=13, users=2)
    data["devices"]["edge1"] = copy.deepcopy(data["devices"]["edge"])
    data["links"] += [{"a": "edge1", "b": "w0", "bandwidth_mbps": float("inf")}]  # none to w1
    data["strategy"]["drafters"] = [{"model": "draft", "device": "edge1"}]
    with pytest.raises(Exception, match="w1"):
        sc.parse(data, "s")
