"""Edge drafters sharing one batching verifier: limits and batching physics."""

from __future__ import annotations

import copy

import pytest
from helpers import constant_scenario, run

from simulator.analytic import expected_tokens_per_step
from simulator.engine import RequestRecord
from simulator.strategies.shared_verifier import choose


def fleet(n_edges: int, users: int, max_batch: int = 64, policy: str = "fcfs", link=None, **kw) -> dict:
    """n edge devices (1 ms per draft forward) and a verifier (10 ms per forward whatever the batch)."""
    data = constant_scenario(draft_ms=1.0, target_ms=10.0, users=users, **kw)
    edge = {"profile": {"kind": "constant", "forward_ms": {"draft": 1.0}}}
    data["devices"] = {f"e{i}": copy.deepcopy(edge) for i in range(n_edges)}
    data["devices"]["gpu"] = {"profile": {"kind": "constant", "forward_ms": {"target": 10.0}}}
    data["links"] = [{"a": f"e{i}", "b": "gpu", **(link or {"bandwidth_mbps": float("inf")})} for i in range(n_edges)]
    data["strategy"] = {"kind": "shared_verifier", "draft_model": "draft", "edges": [f"e{i}" for i in range(n_edges)],
                        "target": {"model": "target", "device": "gpu"}, "gamma": data["strategy"]["gamma"],
                        "policy": policy, "max_batch": max_batch}
    return data


def test_one_edge_one_user_equals_split_speculative():
    link = {"bandwidth_mbps": 20, "latency_ms": 3}
    shared, rs = run(fleet(1, 1, output=200, requests=3, link=link))
    split = constant_scenario(draft_ms=1.0, target_ms=10.0, output=200, requests=3, split=True, link=link)
    single, rp = run(split)
    assert [(r.first_token_s, r.finish_s) for r in rs.records] == [(r.first_token_s, r.finish_s) for r in rp.records]
    assert shared["tokens_per_step"] == single["tokens_per_step"]


def test_full_batches_multiply_throughput_when_a_batch_costs_what_one_does():
    """Four users on four edges, verified only in full batches of four: they move in lockstep, so
    four stream at the speed of one. First-come batches fragment instead (a group that arrives
    while another is being verified waits for it, and the two keep alternating): less than 4x."""
    # alpha 1: every user needs the same steps, so none is left waiting alone for a batch at the end
    one, _ = run(fleet(4, 1, output=4001, requests=1, alpha=1.0))
    data = fleet(4, 4, output=4001, requests=4, max_batch=4, policy="max_batch", alpha=1.0)
    data["strategy"]["max_wait_ms"] = 1000.0
    full, _ = run(data)
    fcfs, _ = run(fleet(4, 4, output=4001, requests=4, alpha=1.0))
    assert full["throughput_tokens_per_s"] == pytest.approx(4 * one["throughput_tokens_per_s"], rel=0.02)
    assert 2 * one["throughput_tokens_per_s"] < fcfs["throughput_tokens_per_s"] < full["throughput_tokens_per_s"]


def test_each_batch_window_waits_its_own_time():
    """max_batch 2, a 20 ms window: edge 0 drafts in 1 ms, edge 1 in 8, so each step the second
    verification arrives 7 ms into the window the first opened and every batch holds both: the
    two users' steps end together, step after step. A window's timer must end its own window only
    (one left from a window a full batch closed would end the next one 20 ms after the old start)."""
    data = fleet(2, 2, max_batch=2, policy="max_batch", output=120, requests=2, gamma=1, alpha=1.0)
    data["devices"]["e1"]["profile"]["forward_ms"]["draft"] = 8.0
    data["strategy"]["max_wait_ms"] = 20.0
    _, result = run(data)
    ends = {u: [s.end_s for s in result.steps if s.request == u] for u in (0, 1)}
    assert len(ends[0]) == len(ends[1]) > 50
    assert ends[0][1:] == ends[1][1:]  # after the first step (the prefills differ by the draft's)


def test_batches_of_one_cap_throughput_at_one_verification_per_forward():
    rep, result = run(fleet(4, 4, max_batch=1, output=300, requests=16))
    e_tokens = expected_tokens_per_step(0.8, 4)
    assert rep["devices"]["gpu"]["utilization"] > 0.98  # the verifier is the bottleneck
    verify_rate = len(result.steps) / rep["simulated_s"]
    assert verify_rate <= 1 / 0.010 * 1.001
    assert rep["throughput_tokens_per_s"] <= e_tokens / 0.010 * 1.05


def test_fair_policy_serves_the_lowest_goodput_first():
    recs = [RequestRecord(i, 8, 8, 0.0, user=u) for i, u in enumerate([0, 1, 2, 3])]
    waiting = [(r, 4, 10, None) for r in recs]
    goodput = {0: 50.0, 1: 10.0, 2: 30.0, 3: 5.0}
    assert choose(waiting, "fair", 2, goodput) == [1, 3]
    assert choose(waiting, "fcfs", 2, goodput) == [0, 1]
    assert choose(waiting, "max_batch", 8, goodput) == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", ["speculative", "shared_verifier"])
def test_edge_drafters_pay_the_draft_overhead_not_the_targets(kind):
    """A device's forward_ms overhead is the target's per forward, draft_forward_ms the drafter's:
    with {forward_ms 5, draft_forward_ms 0}, each 1 ms draft forward costs 1 ms on the edge, under
    shared_verifier as under speculative. The edge's busy time is its prefill and its drafts."""
    overheads = {"forward_ms": 5.0, "draft_forward_ms": 0.0}
    if kind == "speculative":
        data = constant_scenario(draft_ms=1.0, target_ms=10.0, output=40, requests=2, split=True)
        edge = "edge"
    else:
        data, edge = fleet(1, 1, output=40, requests=2), "e0"
    data["devices"][edge]["overheads"] = overheads
    rep, result = run(data)
    draft_forwards = sum(s.drafted for s in result.steps) + len(result.records)  # drafts and prefills
    assert rep["devices"][edge]["busy_s"] == pytest.approx(0.001 * draft_forwards)


@pytest.mark.parametrize("link,saves", [
    ({"bandwidth_mbps": 20, "latency_ms": 3, "jitter_ms": 1.0, "jitter_kind": "uniform"}, True),
    ({"bandwidth_mbps": 20, "latency_ms": 3, "jitter_ms": 0.5, "loss": 0.1}, False),  # lossy: the request sends
    ({"bandwidth_mbps": float("inf"), "latency_ms": 0.0}, False),  # arrival at the verdict's instant: no wait
], ids=["jitter", "lossy", "free"])
def test_a_verdict_posted_by_the_verifier_arrives_as_one_the_request_sends(link, saves, monkeypatch):
    """The verifier posts each verdict down its link as the batch ends (`deliver`); the request
    sending it itself after the verdict gives the very same steps, draws and times, in one event
    more a step where the message takes time on a loss-free link."""
    from simulator import engine
    from simulator import scenario as sc
    from simulator.strategies import shared_verifier as sv

    data = fleet(3, 6, max_batch=4, policy="max_batch", link=link, output=40, requests=12)
    data["strategy"]["max_wait_ms"] = 0.5
    posted = engine.simulate(sc.parse(data, "s"))

    class SelfSent(sv.SharedVerifierProcess):
        verify_brings_result = False

        def deliver(self, r, verdict, k):
            verdict.succeed(k)

    monkeypatch.setattr(sv.SharedVerifier, "build", lambda self, world: SelfSent(self, world))
    sent = engine.simulate(sc.parse(data, "s"))
    assert list(posted.steps) == list(sent.steps)
    assert [(r.first_token_s, r.finish_s) for r in posted.records] == [(r.first_token_s, r.finish_s) for r in sent.records]
    assert (posted.events < sent.events) if saves else (posted.events == sent.events)


@pytest.mark.parametrize("window_ms", [0.05, 0.5, 5.0])
def test_a_window_booked_with_its_verification_gives_what_the_waited_window_does(window_ms, monkeypatch):
    """Where nothing else happens before max_batch's window ends, the verifier takes its batch as the
    window opens and books the verification from the window's end (one timeout for both); the
    window waited on, with its batch taken as it ends, must give the very same steps and times. Short
    windows usually end empty, long ones fill: both paths are taken, and prefills share the server."""
    from simulator import engine
    from simulator import scenario as sc
    from simulator.strategies import shared_verifier as sv

    link = {"bandwidth_mbps": 20, "latency_ms": 3, "jitter_ms": 1.0, "jitter_kind": "uniform"}
    data = fleet(4, 8, max_batch=3, policy="max_batch", link=link, output=60, requests=24)
    data["strategy"]["max_wait_ms"] = window_ms
    booked = engine.simulate(sc.parse(data, "s"))
    monkeypatch.setattr(sv.SharedVerifierProcess, "_ahead", lambda self, v: None)
    waited = engine.simulate(sc.parse(data, "s"))
    assert list(booked.steps) == list(waited.steps)
    assert [(r.first_token_s, r.finish_s) for r in booked.records] == [(r.first_token_s, r.finish_s) for r in waited.records]
    assert booked.world.devices["gpu"].server.busy_s == waited.world.devices["gpu"].server.busy_s
    assert booked.events < waited.events
