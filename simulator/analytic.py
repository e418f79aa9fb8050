"""Closed forms: Leviathan et al. (2023) for one stream, operational laws for many.

`estimate` predicts a scenario without simulating it, from the same latency model the
simulator uses, evaluated at the workload's mean lengths and mid-output context:

  step_s         = g t_draft + t_verify(g + 1) + link time up and down      (per step)
                   link time of a message = its mean wire time (transfer x 1 / (1 - loss)) plus
                   its mean flight time (retransmit waits and mean one-way delay): network.py
  tokens_per_step = E[accepted] + 1
  request_s      = prefill_s + (output - 1) / tokens_per_step x step_s       (one user, no queueing)
  demand_s[X]    = busy seconds a request costs device or link direction X
  throughput     = min(offered load, 1 / max demand) requests per second, where the offered
                   load is users / (request_s + think_s) for a closed loop and the arrival rate
                   for open arrivals.

What it leaves out (queueing delays, end-of-output effects, the spread of jitter and of
retransmissions, interleaving of requests, contention on a shared medium) is what the
simulation adds. Each strategy's own closed form (step_s, tokens_per_step, prefill, demands) is in
its module in strategies/ (`spec.estimate(frame)`); this module sets the frame up and applies the
operational laws to what comes back.
"""

from __future__ import annotations

import math

from typing import TYPE_CHECKING


from .closed_form import Frame, expected_tokens_per_step, speedup  # noqa: F401 (the formulas' public home)
from . import workload
from .scenario import Scenario

if TYPE_CHECKING:
    from .engine import Setup


def estimate(scenario: Scenario, source: str = "scenario", setup: Setup | None = None) -> dict:
    """The closed-form prediction of a scenario, on `setup`'s world if given (it may have run:
    the closed form reads latency tables and mean figures only, never a random stream)."""
    return _estimate(scenario, source, setup)[0]


def capacity_per_s(scenario: Scenario, source: str = "scenario") -> float:
    """Requests per second the closed form's bottleneck device or link serves at the scenario's load
    (a batching server's batch follows the load); inf where nothing takes time."""
    return _estimate(scenario, source, None)[1]


def _estimate(scenario: Scenario, source: str, setup: Setup | None) -> tuple[dict, float]:
    if setup is None:
        from .engine import prepare

        setup = prepare(scenario, source)
    reqs, strat = setup.requests, scenario.strategy
    prompt, output = workload.mean(reqs.prompts), workload.mean(reqs.outputs)
    t_fwd = setup.world.devices[strat.reference_target().device].forward[strat.reference_target().model]
    ctx = int(round(prompt + output / 2))
    ar_token_s = t_fwd.forward_s(1, 1, ctx) + t_fwd.step_s  # per-step overhead: one step per token
    frame = Frame(scenario, setup.world, reqs, ctx, int(round(prompt)), output, ar_token_s)
    closed = strat.estimate(frame)
    out = {"autoregressive_tokens_per_s": _per(1.0, ar_token_s), **closed.report}
    demand = frame.demand
    request_s = closed.ttft + closed.tpot * (output - 1)
    bottleneck = max(demand, key=demand.get)
    capacity = 1 / demand[bottleneck] if demand[bottleneck] > 0 else float("inf")
    arrival = scenario.workload.arrival
    if arrival.kind == "closed_loop":
        cycle = request_s + arrival.think_ms / 1000
        offered = arrival.users / cycle if cycle > 0 else float("inf")
    else:
        offered = len(reqs.arrivals_s) / max(reqs.arrivals_s[-1], 1e-12)
    rate = min(offered, capacity)  # infinite where nothing takes time: no rate exists, reported as null
    busy = closed.busy_s if closed.busy_s is not None else demand
    out.update({
        "throughput_tokens_per_s": rate * output if math.isfinite(rate) else None,
        "stream_tokens_per_s": _per(output, request_s),
        "latency_s": {"ttft": closed.ttft, "tpot": closed.tpot, "e2e": request_s},
        "bottleneck": bottleneck,
        "utilization": {k: min(1.0, v * rate) if math.isfinite(rate) else None for k, v in busy.items()},
        "saturated": offered > capacity * (1 + 1e-9),
    })
    return out, capacity


def _per(x: float, seconds: float) -> float | None:
    """x per second of `seconds`; None where no time passes (a zero-time what-if: no rate exists)."""
    return x / seconds if seconds > 0 else None
