"""Dynamic token trees (EAGLE-2): limiting cases worked out by hand or by theory: a chain of
calibrated confidences is Leviathan's chain whatever their spread, a full-width tree is the static
tree, confidence stopping cuts the chain where the product of confidences falls below the
threshold, and the closed form is the simulation's mean step."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import constant_scenario, run

from simulator import analytic, closed_form, engine
from simulator import scenario as sc
from simulator.acceptance import build
from simulator.errors import InputError
from simulator.strategies.tree import mean_tokens_per_step


def dynamic(data: dict, **strategy) -> dict:
    data = copy.deepcopy(data)
    old = data["strategy"]
    data["strategy"] = {"kind": "dynamic_tree", "draft": old["draft"], "target": old["target"], **strategy}
    return data


@pytest.mark.parametrize("confidence", [None, 0.7, 5.0])
def test_a_chain_of_calibrated_confidences_is_leviathans_chain(confidence):
    """top_k 1: one child a level, accepted with its confidence q; E[q] = alpha at every depth, so
    tokens per step are (1 - a^(g+1)) / (1 - a) however spread q is; a full step is 4 draft
    forwards and one verification (1 ms each and 10 ms on the constant profile)."""
    data = constant_scenario(alpha=0.7, output=400, requests=30)
    rep, res = run(dynamic(data, depth=4, top_k=1, nodes=4, confidence=confidence))
    assert rep["tokens_per_step"] == pytest.approx(closed_form.expected_tokens_per_step(0.7, 4), rel=0.03)
    full = [s for s in res.steps if s.drafted == 4]
    assert full and all(s.end_s - s.start_s == pytest.approx(0.014, rel=1e-9) for s in full)


def test_a_full_width_tree_is_the_static_tree():
    """top_k 3, depth 2, every node kept: the tree [3, 3] with the same rank model."""
    data = constant_scenario(alpha=0.6, output=400, requests=30)
    rep, res = run(dynamic(data, depth=2, top_k=3, nodes=12, confidence=None, top_k_decay=0.4))
    chain = build(sc.Iid(kind="iid", alpha=0.6), np.random.default_rng(0))
    assert rep["tokens_per_step"] == pytest.approx(mean_tokens_per_step(chain, [3, 3], 0.4), rel=0.03)
    assert {s.drafted for s in res.steps} <= {0, 3, 12}  # near the end, one level; else all 12 nodes


def test_confidence_stopping_cuts_the_chain_where_the_product_falls_below_the_threshold():
    """q = 0.8 always: the best frontier score before level i + 1 is 0.8^i, and 0.8^3 = 0.512 >= 0.5 >
    0.8^4, so the drafter grows 4 levels of its 8."""
    data = constant_scenario(alpha=0.8, output=200, requests=5)
    _, res = run(dynamic(data, depth=8, top_k=1, nodes=8, confidence=None, stop_below=0.5))
    assert max(s.drafted for s in res.steps) == 4
    assert sum(s.drafted == 4 for s in res.steps) > 0.8 * len(res.steps)


def test_the_closed_form_is_the_simulated_mean_step():
    data = constant_scenario(alpha=0.7, output=300, requests=40)
    data["devices"]["gpu"]["profile"]["per_token_ms"] = {"target": 0.1, "draft": 0.05}
    case = dynamic(data, depth=5, top_k=3, nodes=20, confidence=2.0)
    rep, _ = run(case)
    est = analytic.estimate(sc.parse(case, "t"))
    assert est["tokens_per_step"] == pytest.approx(rep["tokens_per_step"], rel=0.03)
    assert est["throughput_tokens_per_s"] == pytest.approx(rep["throughput_tokens_per_s"], rel=0.05)


def test_more_verified_nodes_never_accept_less_on_average():
    data = constant_scenario(alpha=0.7, output=400, requests=30)
    means = [run(dynamic(data, depth=5, top_k=3, nodes=n, confidence=1.0))[0]["tokens_per_step"] for n in (5, 15, 39)]
    assert means[0] < means[1] < means[2]


def test_what_the_tree_cannot_hold_is_refused():
    data = dynamic(constant_scenario(), depth=2, top_k=2, nodes=7)  # 2 + 4 nodes at most
    with pytest.raises(InputError, match="at most 6 nodes"):
        engine.prepare(sc.parse(data, "t"))


def test_lower_acceptance_never_raises_throughput_on_average():
    """The trees' draws are not coupled across alphas step by step (a walk draws as far as it goes),
    so the property holds for the mean over many steps, well apart from the noise."""
    rates = []
    for alpha in (0.3, 0.6, 0.9):
        data = constant_scenario(alpha=alpha, output=300, requests=20)
        rates.append(run(dynamic(data, depth=4, top_k=3, nodes=16, confidence=2.0))[0]["throughput_tokens_per_s"])
    assert rates[0] < rates[1] < rates[2]
