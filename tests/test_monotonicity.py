"""Throughput never rises when acceptance falls, whatever the strategy (one user, same seed).

The acceptance draws are coupled across alphas (each step's count comes from the same uniform
through the inverse CDF), so a lower alpha accepts no more at every step, not only on average.
"""

from __future__ import annotations

import copy

from helpers import constant_scenario, run
from hypothesis import given, settings
from hypothesis import strategies as st


def variants(alpha: float, gamma: int) -> dict[str, dict]:
    base = constant_scenario(draft_ms=1.0, target_ms=10.0, gamma=gamma, alpha=alpha, output=400, requests=2,
                             split=True, link={"bandwidth_mbps": 50, "latency_ms": 2})
    out = {"speculative": base}
    tree = copy.deepcopy(base)
    tree["strategy"] = {"kind": "tree", "draft": base["strategy"]["draft"], "target": base["strategy"]["target"],
                        "branching": [2] + [1] * (gamma - 1), "top_k_decay": 0.5}
    out["tree"] = tree
    pearl = copy.deepcopy(base)
    pearl["strategy"]["kind"] = "pearl"
    out["pearl"] = pearl
    fed = copy.deepcopy(base)
    fed["strategy"] = {"kind": "federated", "draft": base["strategy"]["draft"], "gamma": gamma,
                       "workers": [base["strategy"]["target"]]}
    out["federated"] = fed
    return out


@settings(max_examples=12, deadline=None, derandomize=True)
@given(low=st.floats(0.0, 0.95), step=st.floats(0.02, 0.5), gamma=st.integers(1, 6))
def test_lower_acceptance_never_raises_throughput(low, step, gamma):
    high = min(1.0, low + step)
    worse, better = variants(low, gamma), variants(high, gamma)
    for kind in worse:
        w, _ = run(worse[kind])
        b, _ = run(better[kind])
        assert w["throughput_tokens_per_s"] <= b["throughput_tokens_per_s"] * (1 + 1e-9), kind
