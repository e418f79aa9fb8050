"""Generated valid scenarios, every registered strategy: no crash and the invariants hold.

Each example is a small scenario (constant profiles on one GPU or a tensor-parallel pair, 1-4 requests of up to 40 tokens, random
acceptance, workload, links and the strategy's own options) for one kind of the strategy
registry (simulator.strategies.SPECS), simulated with its records kept. Invariants:

  throughput > 0 (every forward takes time, every request makes a token)
  every device's and link's utilization in [0, 1]
  p50 <= p90 <= p99 of TTFT, TPOT and end-to-end latency
  chain speculation (one chain of at most gamma drafts a step): every step commits between 1
  and gamma + 1 tokens, so tokens_per_step lies in [1, gamma + 1] too
  tokens produced equal tokens requested

The fast version (unmarked) runs SMOKE examples a strategy; the slow one runs PER_KIND, over
2,000 scenarios in all, derandomized so CI sees the same ones every time.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import engine, metrics, strategies
from simulator import scenario as sc

KINDS = list(strategies.SPECS)
SMOKE = 12
PER_KIND = -(-2000 // len(KINDS))  # at least 2,000 scenarios over the registry
CHAIN = {"speculative", "self_speculative", "shared_verifier", "federated", "pipeinfer", "pipeline"}

ms = st.floats(0.05, 20.0)
tokens = st.one_of(st.integers(1, 40), st.tuples(st.integers(1, 20), st.integers(0, 20)).map(
    lambda t: {"kind": "uniform", "low": t[0], "high": t[0] + t[1]}))


@st.composite
def scenarios(draw, kind: str) -> dict:
    gamma = draw(st.integers(0, 6))
    profile = {"kind": "constant", "forward_ms": {"draft": draw(ms), "target": draw(ms) + 0.5, "tiny": draw(ms)}}
    one = ["gpu"]
    place = {"model": "target", "device": "gpu"}
    split = draw(st.booleans())
    drafter = {"model": "draft", "device": "edge" if split else "gpu"}
    devices = ["gpu", "edge"] if split else one
    if kind == "autoregressive":
        strategy, devices = {"target": place}, one
    elif kind == "speculative":
        strategy = {"draft": drafter, "target": place, "gamma": gamma,
                    "draft_payload": draw(st.sampled_from(["ids", "ids_probs", "full_dist"])),
                    "tokens_per_forward": draw(st.integers(1, 4))}
    elif kind == "shared_verifier":
        n_edges, n_more = draw(st.integers(1, 3)), draw(st.integers(0, 2))
        edges = [f"e{i}" for i in range(n_edges)]
        more = [f"v{j}" for j in range(n_more)]
        devices = ["gpu", *edges, *more]
        entries = [e if draw(st.booleans()) else
                   {"device": e, "gamma": draw(st.one_of(st.integers(0, 6), st.just("auto"))), "draft_model": draw(st.sampled_from(["draft", "tiny"])),
                    "alpha": draw(st.one_of(st.none(), st.floats(0, 1))),
                    "reach": draw(st.lists(st.integers(0, n_more), min_size=1, max_size=2, unique=True))}
                   for e in edges]
        strategy = {"draft_model": "draft", "edges": entries, "target": place, "gamma": gamma,
                    "verifiers": [{"model": "target", "device": v} for v in more],
                    "assign": draw(st.sampled_from(["user", "round_robin", "learned"])),
                    "router": draw(st.sampled_from(["round_robin", "random", "jsq", "power_of_two"])),
                    "policy": draw(st.sampled_from(["fcfs", "max_batch", "fair", "proportional", "goodspeed"])),
                    "max_batch": draw(st.integers(1, 4)), "max_wait_ms": draw(st.floats(0, 5)),
                    "verify_tokens": draw(st.integers(1, 20))}
    elif kind == "pearl":
        strategy = {"draft": drafter, "target": place, "gamma": gamma,
                    "verify": draw(st.sampled_from(["post", "pre_post"])),
                    "draft_length": draw(st.sampled_from(["fixed", "adaptive"]))}
    elif kind == "federated":
        workers = [f"w{i}" for i in range(draw(st.integers(1, 3)))]
        devices = ["edge", *workers]
        strategy = {"draft": {"model": "draft", "device": "edge"}, "gamma": gamma, "top_k": draw(st.integers(1, 64)),
                    "workers": [{"model": "target", "device": w} for w in workers]}
    elif kind in ("tree", "staged"):
        strategy = {"draft": drafter, "target": place, "top_k_decay": draw(st.floats(0.01, 1)),
                    "branching": draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))}
        if kind == "staged":
            strategy.update({"draft2": {"model": "tiny", "device": drafter["device"]},
                             "inner_gamma": draw(st.integers(0, 4)), "inner_alpha": draw(st.floats(0, 1))})
    elif kind == "dynamic_tree":
        depth, top_k = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        strategy = {"draft": drafter, "target": place, "depth": depth, "top_k": top_k,
                    "nodes": draw(st.integers(1, top_k + (depth - 1) * top_k ** 2)),
                    "confidence": draw(st.sampled_from([None, 0.5, 4.0])), "top_k_decay": draw(st.floats(0.01, 1)),
                    "stop_below": draw(st.sampled_from([0.0, 0.3]))}
    elif kind == "medusa":
        strategy, devices = {"target": place, "top_k_decay": draw(st.floats(0.01, 1)), "heads_ms": draw(ms),
                             "branching": draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))}, one
    elif kind == "self_speculative":
        strategy, devices = {"target": place, "draft_layers": draw(st.integers(1, 31)), "gamma": gamma}, one
    elif kind in ("pipeline", "pipeinfer"):
        stages = [f"s{i}" for i in range(draw(st.integers(1, 3)))]
        devices = ["head", *stages]
        strategy = {"model": "target", "stages": stages, "gamma": gamma}
        if kind == "pipeinfer" or draw(st.booleans()):
            strategy["draft"] = {"model": "draft", "device": "head"}
        if kind == "pipeinfer":
            strategy["max_in_flight"] = draw(st.integers(1, 4))
    elif kind == "batched":
        strategy, devices = {"target": place, "max_batch": draw(st.integers(1, 8)),
                             "step_tokens": draw(st.integers(64, 512)),
                             "prefill": draw(st.sampled_from(["separate", "chunked"])),
                             "preemption": draw(st.sampled_from(["none", "recompute"])),
                             "speculation": {"policy": draw(st.sampled_from(["fixed", "goodput", "adaptive",
                                                                             "off_under_load"])), "gamma": gamma}}, one
        if draw(st.booleans()) and strategy["speculation"]["policy"] != "goodput":  # a token tree per request
            tree = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
            strategy["speculation"].update(branching=tree, gamma=min(gamma, len(tree)),
                                           top_k_decay=draw(st.floats(0.01, 1)))
        if draw(st.booleans()):
            strategy["draft"] = {"model": "draft", "device": "gpu"}
    else:
        raise AssertionError(f"no generator for strategy kind {kind!r}: add one here")
    link = {"bandwidth_mbps": draw(st.floats(1, 1000)), "latency_ms": draw(st.floats(0, 20)),
            "jitter_ms": draw(st.floats(0, 2)), "loss": draw(st.sampled_from([0.0, 0.0, 0.05]))}
    alpha = draw(st.floats(0, 1))
    acceptance = draw(st.sampled_from([{"kind": "iid", "alpha": alpha},
                                       {"kind": "per_position", "alphas": [alpha, alpha / 2, min(1.0, alpha * 1.2)]}]))
    arrival = draw(st.sampled_from([{"kind": "closed_loop", "users": draw(st.integers(1, 3))},
                                    {"kind": "poisson", "rate_per_s": draw(st.floats(1, 200))}]))
    groups = st.sampled_from([{}, {"gpus": 2, "interconnect": {"bandwidth_gb_s": draw(st.floats(1, 1000)),
                                                                "latency_us": draw(st.floats(0, 50))}}])
    return {
        "name": f"generated-{kind}",
        "seed": draw(st.integers(0, 2**16)),
        "models": {"draft": {"preset": "llama-68m"}, "target": {"preset": "llama2-7b"},
                   "tiny": {"layers": 1, "hidden": 8, "heads": 2, "ffn": 8, "vocab": 32000}},
        "devices": {d: {"profile": profile, **draw(groups)} for d in devices},
        "links": [{"a": a, "b": b, **link} for a, b in itertools.combinations(devices, 2)],
        "strategy": {"kind": kind, **strategy},
        "acceptance": acceptance,
        "workload": {"arrival": arrival, "requests": draw(st.integers(1, 4)), "prompt_tokens": draw(tokens),
                     "output_tokens": draw(tokens)},
    }


def check(data: dict) -> None:
    spec = sc.parse(data, "generated")  # the generator makes valid scenarios only: a refusal is its bug
    result = engine.simulate(spec, "generated")
    rep = metrics.report(result, spec.name, spec.strategy.kind)
    assert rep["output_tokens"] == sum(result.requests.outputs[: rep["requests"]])
    assert rep["throughput_tokens_per_s"] is not None and rep["throughput_tokens_per_s"] > 0
    for name, figures in [*rep["devices"].items(), *rep["links"].items()]:
        assert 0 <= figures["utilization"] <= 1 + 1e-12, (name, figures)
    for key, s in rep["latency_s"].items():
        if s["p50"] is not None:
            assert s["p50"] <= s["p90"] <= s["p99"], (key, s)
    gamma = spec.strategy.lookahead_tokens()  # gamma; for edges of their own gammas, the largest
    if spec.strategy.kind in CHAIN and rep["tokens_per_step"] is not None:
        assert all(1 <= step.committed <= gamma + 1 for step in result.steps), gamma
        assert 1 - 1e-12 <= rep["tokens_per_step"] <= gamma + 1 + 1e-12, (rep["tokens_per_step"], gamma)


def _run(kind: str, examples: int):
    seen = []

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=scenarios(kind))
    def test(data):
        seen.append(data["seed"])
        check(data)

    test()
    assert len(seen) >= examples  # the scenarios claimed were run (none rejected, the space not exhausted)


@pytest.mark.parametrize("kind", KINDS)
def test_generated_scenarios_smoke(kind):
    _run(kind, SMOKE)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_generated_scenarios(kind):
    _run(kind, PER_KIND)


def test_a_draft_still_under_way_when_the_last_request_finishes_is_not_the_runs():
    """Found by the generated scenarios: pipeinfer's head was drafting (7 ms a draft forward) when the
    request's last token arrived, and that forward counted, making the head 107% busy."""
    one = {"kind": "constant", "forward_ms": {"draft": 7.0, "target": 1.5}}
    data = {"name": "tail", "seed": 0, "models": {"draft": {"preset": "llama-68m"}, "target": {"preset": "llama2-7b"}},
            "devices": {"head": {"profile": one}, "s0": {"profile": one}},
            "links": [{"a": "head", "b": "s0", "bandwidth_mbps": 2.0, "latency_ms": 0.0}],
            "strategy": {"kind": "pipeinfer", "model": "target", "stages": ["s0"], "gamma": 1,
                         "draft": {"model": "draft", "device": "head"}, "max_in_flight": 1},
            "acceptance": {"kind": "iid", "alpha": 0.0},
            "workload": {"requests": 1, "prompt_tokens": 1, "output_tokens": 3}}
    spec = sc.parse(data, "tail")
    result = engine.simulate(spec)
    rep = metrics.report(result, spec.name, spec.strategy.kind)
    head = result.world.devices["head"].server
    assert head.busy_s > rep["simulated_s"]  # the draft forward did run past the end
    assert rep["devices"]["head"]["busy_s"] == pytest.approx(head.busy_s - (head.end_s - rep["simulated_s"]))
    assert 0 < rep["devices"]["head"]["utilization"] <= 1
