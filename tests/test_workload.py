"""The drawn workload: how many requests a closed loop with a duration draws, and their lengths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import constant_scenario, run

from simulator import workload


@pytest.mark.parametrize("think_ms, duration_s", [(100.0, 1.05), (300.0, 2.05), (1700.0, 6.0)])
def test_a_closed_loop_with_a_duration_draws_what_its_users_can_issue(think_ms, duration_s):
    """With next to no service time each user issues a request every think time, the k-th at about
    (k - 1) x think, and none after the duration: floor(duration / think) + 1 each, within the bound
    the lengths are drawn for (and far below the million drawn before)."""
    users = 3
    data = constant_scenario(draft_ms=1e-6, target_ms=1e-6, output=2, prompt=1, requests=None, users=users)
    data["workload"]["arrival"]["think_ms"] = think_ms
    data["workload"]["duration_s"] = duration_s
    data["workload"]["output_tokens"] = {"kind": "uniform", "low": 2, "high": 9}
    _, result = run(data)
    per_user = math.floor(duration_s / (think_ms / 1000)) + 1
    assert len(result.records) == users * per_user
    bound = workload.closed_loop_bound(users, think_ms / 1000, duration_s)
    assert len(result.records) <= bound <= users * (per_user + 1)
    assert all(2 <= r.output_tokens <= 9 for r in result.records)


def test_without_think_time_the_bound_is_the_old_million():
    assert workload.closed_loop_bound(4, 0.0, 60.0) == workload.UNBOUNDED_REQUESTS


def test_the_longest_length_is_the_largest_drawn():
    rng = np.random.default_rng(3)
    drawn = workload.lengths(workload.sc.Uniform(kind="uniform", low=5, high=900), 10_001, rng)
    assert workload.longest(drawn) == max(list(drawn))
    assert workload.longest(workload.Same(7, 3)) == 7
