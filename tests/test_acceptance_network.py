"""Acceptance models against their exact means; links against bytes over bandwidth."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from simulator import acceptance
from simulator import scenario as sc
from simulator.network import Link


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("spec,gamma,mean", [
    (sc.Iid(kind="iid", alpha=0.7), 4, sum(0.7**j for j in range(1, 5))),
    (sc.PerPosition(kind="per_position", alphas=[0.9, 0.5]), 3, 0.9 + 0.9 * 0.5 + 0.9 * 0.5 * 0.5),
    (sc.Empirical(kind="empirical", counts=[1, 1, 2]), 5, (1 * 1 + 2 * 2) / 4),
    (sc.Empirical(kind="empirical", counts=[1, 1, 2]), 1, (1 + 2) / 4),  # clipped at gamma
])
def test_exact_mean_and_sample_mean(spec, gamma, mean):
    model = acceptance.build(spec, rng())
    assert model.mean_accepted(gamma) == pytest.approx(mean)
    pmf = model.pmf(gamma)
    assert pmf.sum() == pytest.approx(1) and (pmf >= 0).all()
    draws = np.array([model.draw(gamma) for _ in range(40000)])
    assert draws.min() >= 0 and draws.max() <= gamma
    assert draws.mean() == pytest.approx(mean, abs=5 * draws.std() / np.sqrt(len(draws)) + 1e-9)
    assert np.bincount(draws, minlength=gamma + 1) / len(draws) == pytest.approx(pmf, abs=0.01)


def test_trace_replays_in_order_clipped(tmp_path):
    path = tmp_path / "acc.csv"
    path.write_text("step,accepted\n0,3\n1,0\n2,5\n")
    model = acceptance.build(sc.TraceAcceptance(kind="trace", path=str(path)), rng())
    assert [model.draw(4) for _ in range(6)] == [3, 0, 4, 3, 0, 4]
    assert model.mean_accepted(4) == pytest.approx(7 / 3)


def transfer_times(spec: sc.LinkSpec, sizes: list[int]) -> list[float]:
    env = simpy.Environment()
    link = Link(env, spec, rng())
    done = []

    def send(n):
        yield from link.send(spec.a, n)
        done.append(env.now)

    for n in sizes:
        env.process(send(n))
    env.run()
    return done


def test_message_occupies_the_link_for_its_bits_then_flies():
    spec = sc.LinkSpec(a="x", b="y", bandwidth_mbps=8, latency_ms=10, header_bytes=0)
    assert transfer_times(spec, [1000]) == pytest.approx([1000e-6 + 0.010])


def test_concurrent_messages_share_the_bandwidth():
    spec = sc.LinkSpec(a="x", b="y", bandwidth_mbps=8, latency_ms=10, header_bytes=0)
    # both start at once: the second waits for the first to leave the wire
    assert sorted(transfer_times(spec, [1000, 1000])) == pytest.approx([0.011, 0.012])


def test_jitter_is_centered_and_never_negative():
    env = simpy.Environment()
    link = Link(env, sc.LinkSpec(a="x", b="y", bandwidth_mbps=1, latency_ms=20, jitter_ms=3), rng())
    delays = np.array([link.delay_s() for _ in range(20000)])
    assert delays.min() >= 0 and delays.mean() == pytest.approx(0.020, rel=0.01)
    assert delays.std() == pytest.approx(0.003, rel=0.03)
    link0 = Link(env, sc.LinkSpec(a="x", b="y", bandwidth_mbps=1, latency_ms=1, jitter_ms=50), rng())
    assert min(link0.delay_s() for _ in range(1000)) == 0.0
