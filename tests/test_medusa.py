"""Medusa heads: a token tree proposed by heads on the target, with no draft forward. Limiting
cases: a chain of free heads is speculative decoding with a free draft, step for step; the heads'
time enters every step once."""

from __future__ import annotations

import pytest
from helpers import constant_scenario, run


def medusa(branching, heads_ms=0.0, alpha=0.8, output=200, requests=3):
    data = constant_scenario(draft_ms=0.0, target_ms=10.0, alpha=alpha, output=output, requests=requests)
    data["models"] = {"target": data["models"]["target"]}
    data["devices"]["gpu"]["profile"]["forward_ms"] = {"target": 10.0}
    data["strategy"] = {"kind": "medusa", "target": {"model": "target", "device": "gpu"},
                        "branching": branching, "heads_ms": heads_ms, "top_k_decay": 0.3}
    return data


def test_a_chain_of_free_heads_is_speculative_decoding_with_a_free_draft():
    heads, with_heads = run(medusa([1, 1, 1, 1]))
    spec, with_draft = run(constant_scenario(draft_ms=0.0, target_ms=10.0, gamma=4, alpha=0.8, output=200,
                                             requests=3))
    assert [s[3:] for s in with_heads.world.steps] == [s[3:] for s in with_draft.world.steps]
    assert heads["simulated_s"] == spec["simulated_s"]
    assert heads["tokens_per_step"] == spec["tokens_per_step"]


def test_heads_cost_their_time_once_a_step():
    # every draft accepted, a [2, 1] tree: 3 tokens a step; 100 tokens = the prefill's + 33 steps
    free, _ = run(medusa([2, 1], alpha=1.0, output=100, requests=1))
    slow, result = run(medusa([2, 1], heads_ms=0.5, alpha=1.0, output=100, requests=1))
    assert len(result.steps) == 33
    assert slow["simulated_s"] - free["simulated_s"] == pytest.approx(33 * 0.0005)
    assert free["simulated_s"] == pytest.approx(0.010 + 33 * 0.010)  # one prefill: no draft model to fill
