"""The one request in the world runs its steps without an event per job (SpeculativeProcess._solo),
and its run is the event-per-job run to the bit: the same requests, steps, busy times, timeline
jobs and report; only the count of SimPy events differs. Each case is run both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import constant_scenario

from simulator import engine, metrics
from simulator import scenario as sc
from simulator.strategies.speculative import SpeculativeProcess

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def _run(spec, solo: bool, monkeypatch):
    with monkeypatch.context() as m:
        if not solo:
            m.setattr(SpeculativeProcess, "_solo", None)  # a call would fail: the event-per-job loop must run
            m.setattr("simulator.strategies.speculative.alone", lambda world: False)
            m.setattr("simulator.strategies.self_speculative.alone", lambda world: False)
        result = engine.simulate(spec, "test", record_jobs=True)
    rep = metrics.report(result, spec.name, spec.strategy.kind)
    events = rep.pop("sim")["events"]
    return rep, result, events


CASES = {
    "chain": (SCENARIOS / "colocated-h100.yaml", ["workload.requests=5"]),
    "tree (its own draft job)": (SCENARIOS / "tree-h100.yaml", ["workload.requests=3"]),
    "staged": (SCENARIOS / "staged-h100.yaml", ["workload.requests=3"]),
    "self-speculative": (SCENARIOS / "self-speculative-h100.yaml", ["workload.requests=3"]),
    "think time and a duration": (SCENARIOS / "colocated-h100.yaml",
                                  ["workload.arrival={kind: closed_loop, users: 1, think_ms: 250}",
                                   "workload.duration_s=4", "workload.requests=null"]),
}


@pytest.mark.parametrize("name", CASES)
def test_solo_steps_are_the_event_per_job_steps(name, monkeypatch):
    path, overrides = CASES[name]
    spec = sc.load(path, overrides)
    fast, fast_result, fast_events = _run(spec, True, monkeypatch)
    slow, slow_result, slow_events = _run(spec, False, monkeypatch)
    assert fast == slow
    assert fast_result.steps == slow_result.steps and fast_result.records == slow_result.records
    assert fast_result.jobs == slow_result.jobs  # every job on every server, with its times and label
    assert fast_events < slow_events / 4  # the point of it: far fewer events


@pytest.mark.parametrize("draft_ms, target_ms", [(0.0, 0.0), (0.0, 10.0), (1e-9, 1e6), (3.0, 7.0)])
def test_solo_clock_is_exact_at_any_scale(draft_ms, target_ms, monkeypatch):
    """Free jobs, a first step longer than all time before it, and steps of mixed size: the clock
    lands where SimPy's own sums put it."""
    spec = sc.parse(constant_scenario(draft_ms=draft_ms, target_ms=target_ms, output=300, requests=4), "test")
    fast, fast_result, _ = _run(spec, True, monkeypatch)
    slow, slow_result, _ = _run(spec, False, monkeypatch)
    assert fast == slow and fast_result.steps == slow_result.steps and fast_result.jobs == slow_result.jobs


def test_two_users_or_a_link_keep_the_event_per_job_loop(monkeypatch):
    monkeypatch.setattr(SpeculativeProcess, "_solo", None)  # would fail if called
    for data in (constant_scenario(users=2, requests=4, output=20),
                 constant_scenario(split=True, link={"bandwidth_mbps": 100.0}, output=20)):
        engine.simulate(sc.parse(data, "test"))
