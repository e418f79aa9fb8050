"""Token trees, self-speculative and staged speculation against theory and limiting cases."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from helpers import autoregressive, constant_scenario, run
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import acceptance, analytic
from simulator import scenario as sc
from simulator.analytic import speedup
from simulator.errors import InputError
from simulator.strategies.staged import inner_plan
from simulator.strategies.tree import (
    draft_forwards,
    mean_tokens_per_step,
    tree_levels,
    tree_survival,
)


def as_tree(data: dict, branching, decay=0.5) -> dict:
    data = copy.deepcopy(data)
    s = data["strategy"]
    data["strategy"] = {"kind": "tree", "draft": s["draft"], "target": s["target"], "branching": list(branching),
                        "top_k_decay": decay, **({"draft_payload": s["draft_payload"]} if "draft_payload" in s else {})}
    return data


def as_staged(data: dict, branching, decay=0.5, inner_gamma=4, inner_alpha=0.5, draft2_ms=0.0) -> dict:
    data = as_tree(data, branching, decay)
    data["strategy"].update(kind="staged", inner_gamma=inner_gamma, inner_alpha=inner_alpha,
                            draft2={"model": "ngram", "device": data["strategy"]["draft"]["device"]})
    data["models"]["ngram"] = {"layers": 1, "hidden": 8, "heads": 1, "ffn": 8}
    for dev in data["devices"].values():
        dev["profile"]["forward_ms"]["ngram"] = draft2_ms
    return data


def p_continue(alpha: float, branching, decay: float) -> np.ndarray:
    """alpha (1 + r + ... + r^(b - 1)), r = min(d, 1 - alpha): the rank shares of tree.py, summed term by term."""
    r = min(decay, 1.0 - alpha)
    return np.array([alpha * sum(r**j for j in range(b)) for b in branching])


def without_timing(rep: dict) -> dict:
    return {k: v for k, v in rep.items() if k not in ("sim", "strategy")}


# ---------------------------------------------------------------- tree


@pytest.mark.parametrize("split", [False, True])
def test_tree_of_width_one_is_speculative_exactly(split):
    """[1] * g draws the same counts as speculative with gamma g and costs the same: same report."""
    link = {"bandwidth_mbps": 20.0, "latency_ms": 3.0, "jitter_ms": 0.5}
    for alpha, g in ((0.7, 3), (0.9, 5)):
        data = constant_scenario(gamma=g, alpha=alpha, output=300, requests=4, users=2, split=split, link=link)
        data["strategy"]["draft_payload"] = "ids_probs"
        spec, rs = run(data)
        tree, rt = run(as_tree(data, [1] * g))
        assert without_timing(tree) == without_timing(spec)
        assert rt.steps == rs.steps
        assert tree["strategy"] == "tree"


def test_wide_tree_tokens_per_step_matches_theory():
    """E[tokens per step] = 1 + sum_i p_1 ... p_i, p_i = alpha sum_{j<b_i} r^j, r = min(d, 1 - alpha) (here
    d = 1 - alpha: the cap is just reached), within 5 s.e."""
    alpha, branching, d = 0.6, [3, 2, 2, 1], 0.4
    _, result = run(as_tree(constant_scenario(alpha=alpha, output=20001), branching, d))
    p = p_continue(alpha, branching, d)
    surv = np.cumprod(np.concatenate([[1.0], p]))
    theory = 1 + surv[1:].sum()
    pmf = np.append(surv, 0.0)[:-1] - np.append(surv, 0.0)[1:]
    var = float((pmf * (np.arange(len(pmf)) + 1 - theory) ** 2).sum())
    nodes = sum(tree_levels(branching)[1:])
    full = [s for s in result.steps if s.drafted == nodes]
    se = math.sqrt(var / len(full))
    assert abs(np.mean([s[4] + 1 for s in full]) - theory) < 5 * se
    p1 = 0.6 * (1 + 0.4 + 0.16)  # three children at depth 1, two at depths 2 and 3, one at depth 4
    assert theory == pytest.approx(1 + p1 + p1 * 0.84 + p1 * 0.84**2 + p1 * 0.84**2 * 0.6)
    est = analytic.estimate(sc.parse(as_tree(constant_scenario(alpha=alpha), branching, d), "test"))
    assert est["tokens_per_step"] == pytest.approx(theory)


def test_tree_acceptance_uses_the_models_conditional_acceptance():
    """Per-position alphas enter as alpha_i at depth i; an empirical histogram through its survival."""
    alphas = [0.9, 0.5, 0.3]
    acc = acceptance.build(sc.PerPosition(kind="per_position", alphas=alphas), np.random.default_rng(0))
    assert acceptance.conditional(acc.survival(3)) == pytest.approx(alphas)
    surv = tree_survival(acc.survival(3), [2, 2, 1], 0.5)
    # depth 1: r = min(0.5, 1 - 0.9) = 0.1, so 0.9 (1 + 0.1) = 0.99 (the old rule clipped it to 1)
    assert surv == pytest.approx(np.cumprod([1, 0.9 * 1.1, 0.5 * 1.5, 0.3]))
    assert acceptance.conditional([1.0, 0.5, 0.0, 0.0]) == pytest.approx([0.5, 0.0, 0.0])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(branching=st.lists(st.integers(1, 3), min_size=1, max_size=4), where=st.integers(0, 3),
       extra=st.integers(1, 2), alphas=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
       decay=st.floats(0.05, 1.0))
def test_a_wider_tree_never_accepts_fewer(branching, where, extra, alphas, decay):
    """Widening any depth of a tree never lowers P(K >= i) for any i, so never lowers tokens per step."""
    wider = list(branching)
    wider[where % len(wider)] += extra
    acc = acceptance.build(sc.PerPosition(kind="per_position", alphas=alphas), np.random.default_rng(0))
    g = len(branching)
    assert np.all(tree_survival(acc.survival(g), wider, decay) >= tree_survival(acc.survival(g), branching, decay) - 1e-12)
    assert mean_tokens_per_step(acc, wider, decay) >= mean_tokens_per_step(acc, branching, decay) - 1e-12


@settings(max_examples=8, deadline=None, derandomize=True)
@given(branching=st.lists(st.integers(1, 3), min_size=1, max_size=3), widen=st.integers(0, 2))
def test_a_wider_tree_never_makes_fewer_tokens_per_step_in_simulation(branching, widen):
    """The simulated tokens per step of a wider tree (same seed) is not below the narrower tree's,
    beyond Monte-Carlo tolerance (both draw by inverse CDF from the same uniforms; their steps differ
    in length, so the coupling is not per step)."""
    wider = list(branching)
    wider[widen % len(wider)] += 1
    base = constant_scenario(alpha=0.6, output=3000)
    narrow_rep, _ = run(as_tree(base, branching, 0.5))
    wide_rep, _ = run(as_tree(base, wider, 0.5))
    exact = (mean_tokens_per_step(acceptance.build(sc.Iid(kind="iid", alpha=0.6), np.random.default_rng(0)),
                                  wider, 0.5))
    assert wide_rep["tokens_per_step"] >= narrow_rep["tokens_per_step"] - 0.15 * exact


def test_query_sizes_are_the_tree_nodes():
    """Per-token constant profiles (1 ms per token in the pass): a verify costs 1 + N ms, level i of
    the draft n_(i-1) ms, so a full step of [3, 2, 2] costs (1 + 3 + 6) + (1 + 3 + 6 + 12) ms."""
    branching = [3, 2, 2]
    data = as_tree(constant_scenario(draft_ms=0.0, target_ms=0.0, alpha=0.5, output=200), branching)
    data["devices"]["gpu"]["profile"]["per_token_ms"] = {"draft": 1.0, "target": 1.0}
    _, result = run(data)
    levels = tree_levels(branching)
    nodes = sum(levels[1:])
    left = 199  # tokens after the prefill's; a step drafts min(3, left - 1) levels
    for step in result.steps:
        g = min(len(branching), left - 1)
        assert step.drafted == sum(levels[1:g + 1])  # every step: the nodes of the levels it drafts
        if g == len(branching):  # a full step's time is its tree's
            assert (step.end_s - step.start_s) * 1000 == pytest.approx(sum(levels[:-1]) + 1 + nodes)
        left -= step.committed
    assert left == 0 and any(s.drafted == nodes for s in result.steps)
    assert draft_forwards(levels, 3, 100) == [(1, 100, 1), (3, 101, 1), (6, 104, 1)]
    assert draft_forwards([1, 1, 1, 2], 4, 10) == [(1, 10, 3), (2, 13, 1)]


def test_tree_link_messages_are_sized_by_nodes():
    """Split over a link: each step's upload is N x per-token payload + header."""
    branching = [2, 2]
    link = {"bandwidth_mbps": 100.0, "latency_ms": 1.0, "header_bytes": 10}
    data = as_tree(constant_scenario(alpha=0.0, output=3, prompt=5, split=True, link=link), branching)
    rep, result = run(data)
    # prompt (4 x 5 + 10) up, prefill result (8 + 10) down; two steps (left 2, then 1: 1 level, then 0)
    nodes_first = 2  # left = 2: only the first level is drafted
    up = 4 * 5 + 10 + (4 * nodes_first + 10) + (0 + 10)
    assert rep["links"]["edge-cloud"]["bytes_up"] == up
    assert [s.drafted for s in result.steps] == [nodes_first, 0]


def test_wide_tree_with_trace_acceptance_is_refused():
    data = as_tree(constant_scenario(), [2, 1])
    data["acceptance"] = {"kind": "trace", "counts": [1, 2]}
    with pytest.raises(InputError, match="acceptance.kind"):
        sc.parse(data, "test")
    data = as_tree(constant_scenario(), [64] * 3)
    with pytest.raises(InputError, match="branching"):
        sc.parse(data, "test")


# ---------------------------------------------------------------- self-speculative


def self_spec(data: dict, draft_layers: int, gamma: int) -> dict:
    data = copy.deepcopy(data)
    data["strategy"] = {"kind": "self_speculative", "target": data["strategy"]["target"],
                        "draft_layers": draft_layers, "gamma": gamma}
    del data["models"]["draft"]
    del data["devices"]["gpu"]["profile"]["forward_ms"]["draft"]
    return data


@pytest.mark.parametrize("alpha,gamma,layers", [(0.8, 4, 8), (0.6, 2, 16), (0.9, 6, 4)])
def test_self_speculative_matches_leviathan(alpha, gamma, layers):
    """Draft = the target's first k of 32 layers: Leviathan's speedup with c = k / 32."""
    base = constant_scenario(target_ms=10.0, alpha=alpha, gamma=gamma, output=20001)
    rep, result = run(self_spec(base, layers, gamma))
    ar, _ = run(autoregressive(base))
    c = layers / 32
    full = [s for s in result.steps if s.drafted == gamma]
    k = np.arange(gamma + 1)
    pmf = np.where(k < gamma, alpha**k * (1 - alpha), alpha**gamma)
    mean = float((pmf * (k + 1)).sum())
    se = math.sqrt(float((pmf * (k + 1 - mean) ** 2).sum()) / len(full))
    simulated = ar["latency_s"]["tpot"]["mean"] / rep["latency_s"]["tpot"]["mean"]
    assert simulated == pytest.approx(speedup(alpha, gamma, c), rel=5 * se / mean + 2 * gamma / len(full))
    est = analytic.estimate(sc.parse(self_spec(base, layers, gamma), "test"))
    assert est["cost_ratio_c"] == c and est["leviathan_speedup"] == pytest.approx(speedup(alpha, gamma, c))


def test_self_speculative_memory_counts_the_target_only():
    base = self_spec(constant_scenario(output=100, prompt=28), 8, 4)
    arch = sc.parse(base, "test").models["target"].architecture()
    need = arch.weight_bytes() + arch.kv_bytes_per_token() * (28 + 100 + 4 + 1)
    for factor, warned in ((1.001, False), (0.999, True)):
        data = copy.deepcopy(base)
        data["devices"]["gpu"]["memory_gb"] = need * factor / 1e9
        rep, result = run(data)
        assert list(result.world.devices["gpu"].forward) == ["target"]
        assert any("exceed its memory" in w for w in rep["warnings"]) == warned
        assert rep["links"] == {}


def test_self_speculative_needs_fewer_draft_layers_than_the_target():
    with pytest.raises(InputError, match="strategy.draft_layers"):
        sc.parse(self_spec(constant_scenario(), 32, 4), "test")


# ---------------------------------------------------------------- staged


def test_staged_limit_is_tree_output_at_one_draft_forward_per_step():
    """Free second stage, inner_alpha 1, inner_gamma >= depth - 1: the tree's tokens, and a full
    step costs t_draft(1 + N - n_D) + t_target(1 + N) (per-token profiles: query in ms)."""
    branching = [3, 2, 1]
    base = constant_scenario(draft_ms=0.5, target_ms=2.0, alpha=0.7, output=400, requests=3)
    base["devices"]["gpu"]["profile"]["per_token_ms"] = {"draft": 0.25, "target": 0.5}
    tree, rt = run(as_tree(base, branching))
    staged, rs = run(as_staged(base, branching, inner_gamma=len(branching) - 1, inner_alpha=1.0))
    assert [s[3:] for s in rs.steps] == [s[3:] for s in rt.steps]  # nodes, accepted, committed
    assert staged["tokens_per_step"] == tree["tokens_per_step"]
    levels = tree_levels(branching)
    nodes = sum(levels[1:])
    formula_ms = (0.5 + 0.25 * (1 + nodes - levels[-1])) + (2.0 + 0.5 * (1 + nodes))
    full = [s for s in rs.steps if s.drafted == nodes]
    assert full
    for _, start, end, *_ in full:
        assert (end - start) * 1000 == pytest.approx(formula_ms)
    assert staged["simulated_s"] < tree["simulated_s"]


@pytest.mark.parametrize("inner_gamma", [1, 3])
def test_staged_with_nothing_accepted_inside_costs_more_than_tree(inner_gamma):
    branching = [2, 2, 1]
    base = constant_scenario(draft_ms=0.5, target_ms=2.0, alpha=0.7, output=300)
    tree, rt = run(as_tree(base, branching))
    staged, rs = run(as_staged(base, branching, inner_gamma=inner_gamma, inner_alpha=0.0, draft2_ms=0.05))
    assert [s[3:] for s in rs.steps] == [s[3:] for s in rt.steps]
    assert staged["simulated_s"] > tree["simulated_s"]


def test_inner_plan_by_hand():
    levels = tree_levels([2, 2, 1])  # 1, 2, 4, 4
    # all accepted: draft2 proposes levels 1 and 2, the draft checks 1 + 2 + 4 tokens at once
    assert inner_plan(levels, 3, 50, 4, lambda h: h) == [("draft2", 1, 50), ("draft2", 2, 51), ("draft", 7, 50)]
    # nothing accepted, inner gamma 1: one level per inner step
    assert inner_plan(levels, 3, 50, 1, lambda h: 0) == [
        ("draft2", 1, 50), ("draft", 3, 50), ("draft2", 2, 51), ("draft", 6, 51), ("draft", 4, 53)]


@pytest.mark.parametrize("kind", ["tree", "staged", "self_speculative"])
def test_estimate_agrees_with_simulation_for_one_stream(kind):
    base = constant_scenario(alpha=0.7, gamma=3, output=4000, requests=3)
    data = {"tree": lambda: as_tree(base, [3, 2, 1]), "staged": lambda: as_staged(base, [3, 2, 1], inner_alpha=0.6,
            inner_gamma=2, draft2_ms=0.05), "self_speculative": lambda: self_spec(base, 8, 3)}[kind]()
    rep, _ = run(data)
    est = analytic.estimate(sc.parse(data, "test"))
    assert rep["throughput_tokens_per_s"] == pytest.approx(est["throughput_tokens_per_s"], rel=0.05)
