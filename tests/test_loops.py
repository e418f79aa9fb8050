"""How a decoding loop runs around its forward passes (strategy.loop): exact timelines on constant
profiles, by hand."""

from __future__ import annotations

import pytest

from helpers import constant_scenario, run


def timeline(loop=None, output=11, gamma=4, alpha=1.0, per_token_draft=0.0, overheads=None):
    data = constant_scenario(draft_ms=1.0, target_ms=10.0, gamma=gamma, alpha=alpha, output=output, prompt=16)
    if loop is not None:
        data["strategy"]["loop"] = loop
    if per_token_draft:
        data["devices"]["gpu"]["profile"]["per_token_ms"] = {"draft": per_token_draft}
    if overheads:
        data["devices"]["gpu"]["overheads"] = overheads
    rep, result = run(data)
    r = result.records[0]
    return r.first_token_s * 1000, r.finish_s * 1000, len(result.steps)


def test_separate_prefill_by_hand():
    """Draft prefill 1 ms, target prefill 10 ms (the first token), then steps of 4 drafts and one
    verification (14 ms) committing 5 each: 10 tokens left take 2 steps."""
    assert timeline() == pytest.approx((11.0, 11.0 + 2 * 14.0, 2))


def test_merged_prefill_by_hand():
    """Hugging Face's loop: no prefills of their own. The first step's draft forwards are the prompt
    and 3 more (4 ms), the target verifies prompt + 4 drafts in one forward (10 ms) and commits 5: the
    first token comes with the first step. 11 tokens: 5, 5, then one the target makes alone."""
    first, finish, steps = timeline({"prefill": "merged"})
    assert (first, finish, steps) == pytest.approx((14.0, 14.0 + 14.0 + 10.0, 3))


def test_the_draft_re_feeds_two_tokens_at_the_cost_of_one_more():
    """With 0.5 ms per draft token in a pass, feeding two tokens costs 0.5 ms more per drafting step:
    under `two` in every step after the first (the first feeds only the target's first token); under
    `catch_up` only after a fully accepted step (alpha 1: the same steps; alpha 0: never)."""
    base = timeline(per_token_draft=0.5, output=31)
    two = timeline({"draft_feed": "two"}, per_token_draft=0.5, output=31)
    catch = timeline({"draft_feed": "catch_up"}, per_token_draft=0.5, output=31)
    assert base[2] == two[2] == catch[2] == 6
    assert two[1] - base[1] == pytest.approx(5 * 0.5)
    assert catch[1] - base[1] == pytest.approx(5 * 0.5)
    never = timeline({"draft_feed": "catch_up"}, per_token_draft=0.5, output=31, alpha=0.0)
    assert never[1] == pytest.approx(timeline(per_token_draft=0.5, output=31, alpha=0.0)[1])


def test_a_draft_call_costs_once_per_drafting_step():
    """draft_call_ms is paid once per step that drafts, not per draft forward and not by the prefill."""
    plain = timeline(output=11)
    called = timeline(output=11, overheads={"draft_call_ms": 3.0})
    assert called[1] - plain[1] == pytest.approx(2 * 3.0) and called[0] == plain[0]
