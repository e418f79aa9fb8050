"""Serving with continuous batching: limits, closed forms, the roofline's batching curve, memory
admission and preemption, speculation-length policies."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from helpers import constant_scenario, run
from typer.testing import CliRunner

from simulator import analytic
from simulator import scenario as sc
from simulator.cli import app

ROOT = Path(__file__).resolve().parent.parent


def batched(data: dict, draft: bool = True, **strategy) -> dict:
    """The scenario's placements served by a batching target."""
    data = copy.deepcopy(data)
    old = data["strategy"]
    data["strategy"] = {"kind": "batched", "target": old["target"], **strategy}
    if draft:
        data["strategy"]["draft"] = old["draft"]
        data["strategy"].setdefault("speculation", {"gamma": old.get("gamma", 4)})
    return data


def same_requests(a, b) -> None:
    for x, y in zip(a.records, b.records, strict=True):
        assert (x.steps, x.drafted, x.accepted) == (y.steps, y.drafted, y.accepted)
        assert x.first_token_s == pytest.approx(y.first_token_s, rel=1e-12)
        assert x.finish_s == pytest.approx(y.finish_s, rel=1e-12)


# ---------------------------------------------------------------- limits


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("split", [False, True])
def test_one_user_is_one_stream(alpha, split):
    """A batch that only ever holds one request is speculative decoding (autoregressive without a draft)."""
    data = constant_scenario(draft_ms=2.0, target_ms=20.0, alpha=alpha, requests=4, output=57, prompt=33, split=split)
    for prof in data["devices"].values():
        prof["profile"]["per_token_ms"] = {"target": 0.3, "draft": 0.05}
    _, one = run(data)
    _, many = run(batched(data, max_batch=8))
    same_requests(one, many)
    plain = copy.deepcopy(data)
    plain["strategy"] = {"kind": "autoregressive", "target": data["strategy"]["target"]}
    _, ar = run(plain)
    _, bar = run(batched(data, draft=False))
    same_requests(ar, bar)


def test_constant_profile_closed_form():
    """U users in a closed loop, no draft, a pass costs f + k x tokens: each cycle is one prefill step
    (U prompts of P in one pass: f + k U P) and N - 1 decode steps of f + k U."""
    f, k, P, N, U, R = 10.0, 0.25, 40, 30, 6, 3
    data = constant_scenario(target_ms=f, output=N, prompt=P, requests=U * R, users=U)
    data["devices"]["gpu"]["profile"]["per_token_ms"] = {"target": k}
    rep, _ = run(batched(data, draft=False))
    cycle_ms = f + k * U * P + (N - 1) * (f + k * U)
    assert rep["simulated_s"] == pytest.approx(R * cycle_ms / 1000, rel=1e-9)
    assert rep["throughput_tokens_per_s"] == pytest.approx(U * N / (cycle_ms / 1000), rel=1e-9)
    assert rep["batching"]["decode_batch_mean"] == U


@pytest.mark.parametrize("rate", [4.0, 40.0])
def test_a_request_joins_at_the_first_step_boundary_after_it_arrives(rate):
    """Every step costs one 10 ms forward (a constant profile, prompt pieces riding the decode's weight
    read): a Poisson arrival joins the first step that starts at or after it, or starts one if the
    server idles, gets its first token as that step ends and then one token every step. At 4 requests
    a second the server idles between most requests; at 40 up to a dozen decode together."""
    data = constant_scenario(target_ms=10.0, output=30, prompt=8, requests=60)
    data["workload"]["arrival"] = {"kind": "poisson", "rate_per_s": rate}
    _, res = run(batched(data, draft=False, prefill="chunked", step_tokens=4096, max_batch=64))
    starts = np.array(sorted({b[0] for b in res.batches}))
    assert max(b[2] for b in res.batches) > (5 if rate > 10 else 0)
    for r in res.records:
        joined = starts[np.searchsorted(starts, r.arrival_s)]  # the first step starting at or after it
        assert r.first_token_s == pytest.approx(joined + 0.010, rel=1e-12, abs=1e-12)
        assert r.finish_s == pytest.approx(r.first_token_s + 29 * 0.010, rel=1e-12)


def test_tokens_per_step_is_leviathans():
    """Batched or not, a request commits (1 - a^(g+1)) / (1 - a) tokens per step under iid acceptance."""
    a, g = 0.7, 4
    data = constant_scenario(alpha=a, gamma=g, output=3000, requests=8, users=8)
    rep, _ = run(batched(data))
    expected = (1 - a ** (g + 1)) / (1 - a)
    assert rep["tokens_per_step"] == pytest.approx(expected, rel=0.02)


def roofline_throughput(users: int) -> float:
    """llama2-7b on a roofline device whose ridge lies near 16 tokens a pass: decoding is memory-bound
    below it (time flat in the batch) and compute-bound above it (time linear in the batch)."""
    data = constant_scenario(output=64, prompt=16, requests=users * 2, users=users)
    data["devices"]["gpu"]["profile"] = {"kind": "roofline", "peak_tflops": 6.0, "memory_bandwidth_gbps": 450,
                                         "compute_efficiency": 1.0, "memory_efficiency": 1.0,
                                         "launch_overhead_us": 0.0}
    rep, _ = run(batched(data, draft=False))
    return rep["throughput_tokens_per_s"]


def test_throughput_rises_with_batch_until_the_profile_saturates():
    tput = {b: roofline_throughput(b) for b in (1, 2, 4, 16, 32, 64)}
    values = list(tput.values())
    assert all(x <= y * (1 + 1e-9) for x, y in zip(values, values[1:]))  # never falls
    assert tput[2] / tput[1] > 1.8  # memory-bound: twice the requests, nearly twice the tokens
    assert tput[64] / tput[32] < 1.15  # compute-bound: the device is saturated


# ---------------------------------------------------------------- memory


def tight(preemption: str, rate: float = 40.0, requests: int = 60) -> dict:
    """llama2-7b (13.5 GB of bf16 weights) on a 14 GB device: room for about 950 KV tokens."""
    data = constant_scenario(target_ms=10.0, draft_ms=1.0, output={"kind": "uniform", "low": 20, "high": 300},
                             prompt={"kind": "uniform", "low": 10, "high": 200}, requests=requests)
    data["devices"]["gpu"]["profile"]["memory_gb"] = 14.0
    data["workload"]["arrival"] = {"kind": "poisson", "rate_per_s": rate}
    return batched(data, draft=False, preemption=preemption)


@pytest.mark.parametrize("preemption", ["none", "recompute"])
def test_no_request_is_lost_when_memory_is_full(preemption):
    rep, result = run(tight(preemption))
    assert rep["requests"] == 60
    assert all(np.isfinite(r.finish_s) and r.first_token_s <= r.finish_s for r in result.records)
    assert rep["output_tokens"] == sum(r.output_tokens for r in result.records)
    assert sum(b.committed for b in result.batches) == rep["output_tokens"]  # committed in steps = requested
    assert rep["batching"]["kv_peak_fraction"] <= 1.0
    if preemption == "recompute":
        assert rep["batching"]["preemptions"] > 0
        assert rep["batching"]["kv_peak_fraction"] > 0.9


def test_admission_reserves_whole_requests_without_preemption():
    """Without preemption no batch holds more requests than memory has room for at their full size."""
    spec = sc.parse(tight("none"), "t")
    from simulator.engine import simulate

    result = simulate(spec)
    capacity = result.serving.capacity
    smallest = 10 + 20 + 1  # prompt + output + 1 at their smallest
    assert max(b.batch for b in result.batches) <= capacity // smallest
    assert result.serving.preemptions == 0


def test_recompute_admits_more_than_reservation():
    none, _ = run(tight("none", rate=1000))
    recompute, _ = run(tight("recompute", rate=1000))
    assert recompute["batching"]["decode_batch_mean"] > none["batching"]["decode_batch_mean"]


def test_a_request_larger_than_memory_is_an_input_error(tmp_path):
    data = tight("none")
    data["workload"]["output_tokens"] = 5000
    path = tmp_path / "s.yaml"
    import yaml

    path.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "workload" in res.output and "KV cache" in res.output
    assert not (tmp_path / "out").exists()


def test_weights_that_do_not_fit_are_an_input_error(tmp_path):
    data = tight("none")
    data["devices"]["gpu"]["memory_gb"] = 10.0
    path = tmp_path / "s.yaml"
    import yaml

    path.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(app, ["run", str(path)])
    assert res.exit_code == 2 and "devices.gpu.memory_gb" in res.output


# ---------------------------------------------------------------- prefill and policies


def test_chunked_prefill_smooths_decoding():
    """Long prompts prefilled in steps of their own stall every running decode; chunks do not."""
    data = constant_scenario(target_ms=10.0, output=100, prompt=1500, requests=80)
    data["devices"]["gpu"]["profile"]["per_token_ms"] = {"target": 0.02}
    data["workload"]["arrival"] = {"kind": "poisson", "rate_per_s": 6}
    separate, _ = run(batched(data, draft=False, prefill="separate", step_tokens=2048))
    chunked, _ = run(batched(data, draft=False, prefill="chunked", step_tokens=512))
    assert chunked["latency_s"]["tpot"]["p99"] < separate["latency_s"]["tpot"]["p99"]
    assert chunked["output_tokens"] == separate["output_tokens"]


def policy_run(policy: str, alpha: float, per_token_ms: float, users: int = 32, gamma: int = 4) -> dict:
    data = constant_scenario(draft_ms=1.0, target_ms=10.0, alpha=alpha, output=200, requests=users * 2, users=users)
    data["devices"]["gpu"]["profile"]["per_token_ms"] = {"target": per_token_ms}
    rep, _ = run(batched(data, speculation={"policy": policy, "gamma": gamma}))
    return rep


def test_goodput_policy_stops_drafting_what_is_rejected():
    bad, fixed = policy_run("goodput", 0.0, 0.0), policy_run("fixed", 0.0, 0.0)
    assert bad["batching"]["drafted_per_request_step"] < 0.2
    assert bad["throughput_tokens_per_s"] > 1.2 * fixed["throughput_tokens_per_s"]
    good = policy_run("goodput", 1.0, 0.0)
    assert good["batching"]["drafted_per_request_step"] > 3.5  # full acceptance, cheap drafts: the cap


def test_goodput_policy_learns_when_acceptance_drops():
    """Drafts all accepted for a while, then none: the estimate follows and drafting stops."""
    data = constant_scenario(draft_ms=1.0, target_ms=10.0, output=300, requests=16, users=8)
    data["acceptance"] = {"kind": "trace", "counts": [4] * 800 + [0] * 1200}
    _, result = run(batched(data, speculation={"policy": "goodput", "gamma": 4}))
    b = np.array(result.batches)
    decoding = b[b[:, 2] > 0]
    early, late = decoding[:30], decoding[-30:]
    assert early[:, 4].sum() / early[:, 2].sum() > 3.5
    assert late[:, 4].sum() / late[:, 2].sum() < 0.5


def test_goodput_policy_is_never_much_worse_than_the_best_fixed_length():
    for alpha, per_tok in ((0.5, 0.3), (0.8, 0.0), (0.8, 0.3)):
        best = max(policy_run("fixed", alpha, per_tok, gamma=g)["throughput_tokens_per_s"] for g in (0, 1, 2, 4))
        assert policy_run("goodput", alpha, per_tok)["throughput_tokens_per_s"] > 0.93 * best


def test_off_under_load_stops_speculating_on_a_compute_bound_batch():
    assert policy_run("off_under_load", 0.8, 2.0)["batching"]["drafted_per_request_step"] == 0
    assert policy_run("off_under_load", 0.8, 0.0)["batching"]["drafted_per_request_step"] > 3.5


def test_adaptive_lengths_follow_acceptance():
    assert policy_run("adaptive", 1.0, 0.0, gamma=8)["batching"]["drafted_per_request_step"] > 7
    assert policy_run("adaptive", 0.0, 0.0, gamma=8)["batching"]["drafted_per_request_step"] < 1.2


@pytest.mark.parametrize("tree", [None, [3, 2, 1]])
def test_estimate_tracks_the_simulation_at_a_steady_batch(tree):
    data = batched(constant_scenario(alpha=0.8, output=400, requests=64, users=16))
    if tree is not None:
        data["strategy"]["speculation"] = {"branching": tree}
        data["devices"]["gpu"]["profile"]["per_token_ms"] = {"target": 0.02}  # a tree's nodes cost something
    spec = sc.parse(data, "t")
    est = analytic.estimate(spec)
    rep, _ = run(data)
    assert est["batch"] == 16
    assert est["throughput_tokens_per_s"] == pytest.approx(rep["throughput_tokens_per_s"], rel=0.1)


def test_without_drafts_a_decode_step_makes_one_token_even_with_recompute():
    """gamma 0: every decode step commits exactly one token per request, so tokens_per_step is 1, also
    when preempted requests prefill again (that prefill's token is not a decode step's)."""
    rep, _ = run(tight("recompute"))
    assert rep["batching"]["preemptions"] > 0
    assert rep["tokens_per_step"] == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------- token trees in the batch


def tree_batched(data: dict, branching, **speculation) -> dict:
    return batched(data, speculation={"branching": branching, "top_k_decay": 0.4, **speculation}, max_batch=8)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_one_user_of_a_tree_batch_is_the_tree_strategy(alpha):
    """A batch that only ever holds one request drafts, verifies and commits as the tree strategy does
    (at alpha 0 and 1 every tree's accepted depth is certain, so the two draw alike)."""
    data = constant_scenario(draft_ms=2.0, target_ms=20.0, alpha=alpha, requests=4, output=57, prompt=33)
    data["devices"]["gpu"]["profile"]["per_token_ms"] = {"target": 0.3, "draft": 0.05}
    tree = copy.deepcopy(data)
    tree["strategy"] = {"kind": "tree", "draft": data["strategy"]["draft"], "target": data["strategy"]["target"],
                        "branching": [3, 2, 1], "top_k_decay": 0.4}
    _, one = run(tree)
    _, many = run(tree_batched(data, [3, 2, 1]))
    same_requests(one, many)


def test_a_width_one_tree_in_the_batch_is_the_chain():
    data = constant_scenario(draft_ms=2.0, target_ms=20.0, alpha=0.7, requests=16, users=4, output=57, prompt=33)
    data["devices"]["gpu"]["profile"]["per_token_ms"] = {"target": 0.3, "draft": 0.05}
    chain, a = run(batched(data, speculation={"gamma": 3}, max_batch=8))
    tree, b = run(tree_batched(data, [1, 1, 1]))
    same_requests(a, b)
    assert tree["throughput_tokens_per_s"] == pytest.approx(chain["throughput_tokens_per_s"], rel=1e-12)


def test_trees_in_the_batch_commit_the_tree_acceptance_mean():
    """Per request and step, 1 + sum over depths of p_1 ... p_i tokens (strategies/tree.py), within
    Monte-Carlo error; each request verifies its tree's 9 nodes and drafts them all."""
    from simulator.strategies.tree import continue_probabilities

    data = constant_scenario(alpha=0.6, requests=60, users=6, output=200, prompt=16)
    rep, res = run(tree_batched(data, [3, 2], gamma=2))
    p = continue_probabilities([0.6, 0.6], [3, 2], 0.4)
    expect = 1 + p[0] + p[0] * p[1]
    assert rep["tokens_per_step"] == pytest.approx(expect, rel=0.03)
    full = [b for b in res.batches if b.drafted][:5]  # early on: no request near its end
    assert full and all(b.drafted == 9 * b.batch for b in full)  # 3 + 3 x 2 nodes a tree


def test_a_tree_batch_reserves_kv_for_its_nodes_and_refuses_what_it_cannot_draft():
    data = constant_scenario(alpha=0.6, requests=4, output=20)
    from simulator.strategies.batched import Batched

    spec = sc.parse(tree_batched(data, [3, 2, 1]), "test").strategy
    assert isinstance(spec, Batched) and spec.speculation.gamma == 3 and spec.lookahead_tokens() == 3 + 6 + 6
    with pytest.raises(Exception, match="cannot be drafted 4 deep"):
        sc.parse(tree_batched(data, [3, 2, 1], gamma=4), "test")
    with pytest.raises(Exception, match="goodput"):
        sc.parse(tree_batched(data, [3, 2, 1], gamma=3, policy="goodput"), "test")


def test_the_goodput_policy_weighs_what_a_step_of_equal_lengths_costs():
    """decode_cost (asked for every g each step) is the draft and verify cost of a step whose
    requests all draft g, on a measured profile: its two parts to the last bit, their sum to rounding."""
    from simulator import engine
    from simulator.batching import Step

    spec = sc.load(ROOT / "scenarios" / "serving-h100-speculative.yaml")  # measured H100, batched
    proc = engine.prepare(spec, "test").strategy
    for b, g, ctx in [(1, 0, 0), (1, 3, 100), (7, 4, 900), (64, 6, 2048), (33, 1, 17)]:
        step = Step(np.arange(b), np.full(b, g, np.int64), ctx, [], 0, b * g, 0, g, g)
        draft, target = proc.costs(step)
        assert draft == proc.draft_s(step.gammas, ctx, g, g)
        assert target == proc.t_fwd.forward_s(b, g + 1, ctx) + proc.t_fwd.step_s
        assert proc.decode_cost(b, g, ctx) == pytest.approx(draft + target, rel=1e-15)
