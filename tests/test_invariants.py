"""Invariants and queueing physics that hold whatever the scenario."""

from __future__ import annotations

import json

import pytest
from helpers import autoregressive, constant_scenario, run


def poisson(data: dict, rate: float, requests: int) -> dict:
    data["workload"]["arrival"] = {"kind": "poisson", "rate_per_s": rate}
    data["workload"]["requests"] = requests
    return data


def test_tokens_produced_equal_tokens_requested():
    data = constant_scenario(gamma=5, alpha=0.7, requests=40, users=3)
    data["workload"]["output_tokens"] = {"kind": "uniform", "low": 1, "high": 300}
    rep, result = run(data)
    per_request = {r.id: 1 for r in result.records}  # the prefill's token
    for req, _s, _e, drafted, accepted, committed in result.steps:
        assert 1 <= committed <= accepted + 1 and accepted <= drafted <= 5
        per_request[req] += committed
    assert all(per_request[r.id] == r.output_tokens for r in result.records)
    assert rep["output_tokens"] == sum(r.output_tokens for r in result.records)
    assert len(result.records) == 40


def test_littles_law_on_request_records():
    """Time-average requests in system (tracked by the engine) = arrival rate x mean time in system."""
    rep, result = run(poisson(constant_scenario(gamma=3, output=20, requests=2000), rate=8.0, requests=2000))
    lam = len(result.records) / rep["simulated_s"]
    assert rep["requests_in_system_mean"] == pytest.approx(lam * rep["latency_s"]["e2e"]["mean"], rel=1e-9)
    assert rep["requests_in_system_mean"] > 0.5  # loaded enough for the check to mean something


def test_closed_loop_keeps_its_users_in_the_system():
    rep, _ = run(constant_scenario(gamma=3, output=50, requests=400, users=4))
    # four users always in the system, except while the last few requests drain
    assert 3.9 <= rep["requests_in_system_mean"] <= 4.0


def test_utilization_bounds_and_work_conservation():
    """Utilization lies in [0, 1]; a single device with work always waiting is busy all the time."""
    rep, _ = run(constant_scenario(gamma=3, output=50, requests=50, users=3))
    assert rep["devices"]["gpu"]["utilization"] == pytest.approx(1.0)
    rep, _ = run(constant_scenario(gamma=3, output=50, requests=50, split=True,
                                   link={"bandwidth_mbps": 1, "latency_ms": 3}))
    for d in list(rep["devices"].values()) + list(rep["links"].values()):
        assert 0 <= d["utilization"] <= 1


def test_md1_queue_waiting_time():
    """Requests of one prefill each on a constant-time device under Poisson arrivals form an M/D/1
    queue: mean wait = rho D / (2 (1 - rho)) (Pollaczek-Khinchine)."""
    d_ms, rho = 10.0, 0.6
    data = autoregressive(poisson(constant_scenario(target_ms=d_ms, output=1), rate=rho / (d_ms / 1000),
                                  requests=40000))
    rep, _ = run(data)
    wait = rep["latency_s"]["ttft"]["mean"] - d_ms / 1000
    assert wait == pytest.approx(rho * d_ms / 1000 / (2 * (1 - rho)), rel=0.06)
    assert rep["devices"]["gpu"]["utilization"] == pytest.approx(rho, rel=0.03)


def test_same_seed_same_report_and_different_seed_differs():
    data = poisson(constant_scenario(gamma=4, alpha=0.7, output=64, split=True,
                                     link={"bandwidth_mbps": 20, "latency_ms": 4, "jitter_ms": 1}),
                   rate=20, requests=200)
    a, _ = run(data)
    b, _ = run(data)
    a.pop("sim"), b.pop("sim")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    data["seed"] = 2
    c, _ = run(data)
    c.pop("sim")
    assert json.dumps(a, sort_keys=True) != json.dumps(c, sort_keys=True)


def test_changing_gamma_keeps_the_workload():
    """Common random numbers: the workload's draws do not depend on the strategy."""
    data = poisson(constant_scenario(gamma=2), rate=5, requests=50)
    data["workload"]["output_tokens"] = {"kind": "lognormal", "median": 100, "sigma": 0.5}
    _, r1 = run(data)
    data["strategy"]["gamma"] = 6
    _, r2 = run(data)
    assert [(r.arrival_s, r.output_tokens) for r in r1.records] == [(r.arrival_s, r.output_tokens) for r in r2.records]


def test_more_users_raise_throughput_until_the_device_saturates():
    """One user keeps the verifier busy for 10 ms of each 53 ms step (3 ms of drafts at the edge, two
    20 ms trips): two users fit beside each other, so throughput doubles; eight ask for 80 ms of
    each 53, so the verifier saturates: busy all the time, at its capacity of tokens per step per
    10 ms verify, short of eightfold."""
    tput, util = [], []
    for users in (1, 2, 8):
        data = constant_scenario(gamma=3, output=100, requests=40, users=users, split=True,
                                 link={"bandwidth_mbps": float("inf"), "latency_ms": 20})
        rep, _ = run(data)
        tput.append(rep["throughput_tokens_per_s"])
        util.append(rep["devices"]["cloud"]["utilization"])
    steps = rep["tokens_per_step"]  # at 8 users
    assert tput[1] == pytest.approx(2 * tput[0], rel=0.05)
    assert util[2] > 0.97 and tput[2] == pytest.approx(steps / 0.010, rel=0.05) and tput[2] < 7 * tput[0]
