"""One request, constant profiles, one draft-transfer-verify round at hand-computed times."""

from __future__ import annotations

import pytest
from helpers import constant_scenario, run


def test_one_round_over_a_link_at_hand_computed_times():
    # 8 Mbit/s moves one byte per microsecond; 5 ms one way; 64-byte headers.
    link = {"bandwidth_mbps": 8, "latency_ms": 5, "header_bytes": 64}
    data = constant_scenario(draft_ms=2, target_ms=10, gamma=2, alpha=1.0, prompt=100, output=4,
                             split=True, link=link)
    rep, result = run(data)
    ms = 1e-3
    draft_prefill = 2 * ms
    prompt_up = (100 * 4 + 64) * 1e-6 + 5 * ms  # 100 token ids of 4 bytes
    target_prefill = 10 * ms
    result_down = (8 + 64) * 1e-6 + 5 * ms  # accepted count and next token id
    first = draft_prefill + prompt_up + target_prefill + result_down
    drafts_up = (2 * 4 + 64) * 1e-6 + 5 * ms
    finish = first + 2 * 2 * ms + drafts_up + 10 * ms + result_down

    rec = result.records[0]
    assert rec.arrival_s == 0
    assert rec.first_token_s == pytest.approx(first, abs=1e-12)
    assert rec.finish_s == pytest.approx(finish, abs=1e-12)
    assert (rec.steps, rec.drafted, rec.accepted) == (1, 2, 2)
    (step,) = result.steps
    assert step[1] == pytest.approx(first, abs=1e-12) and step[2] == pytest.approx(finish, abs=1e-12)
    assert step[3:] == (2, 2, 3)
    assert first == pytest.approx(22.536 * ms, abs=1e-12) and finish == pytest.approx(46.680 * ms, abs=1e-12)

    link_rep = rep["links"]["edge-cloud"]
    assert link_rep["bytes_up"] == (400 + 64) + (8 + 64)
    assert link_rep["bytes_down"] == 2 * (8 + 64)
    assert rep["devices"]["edge"]["busy_s"] == pytest.approx(6 * ms)
    assert rep["devices"]["cloud"]["busy_s"] == pytest.approx(20 * ms)
    assert rep["devices"]["cloud"]["utilization"] == pytest.approx(20 * ms / finish)


def test_two_users_share_one_device_first_come_first_served():
    """Two users arrive together on one device: the second user's prefill waits for the first's."""
    data = constant_scenario(draft_ms=1, target_ms=10, gamma=0, prompt=10, output=2, requests=2, users=2)
    _, result = run(data)
    a, b = result.records
    ms = 1e-3
    # a: prefill 0-10; b: prefill 10-20; a's decode 20-30; b's decode 30-40
    assert (a.first_token_s, b.first_token_s) == pytest.approx((10 * ms, 20 * ms))
    assert (a.finish_s, b.finish_s) == pytest.approx((30 * ms, 40 * ms))
