"""Links: asymmetric bandwidth, jitter kinds, loss with retransmission, shared media, payload sizes.

Each claim is checked against a hand-computed time or a closed form (means within Monte-Carlo
error); the defaults must reproduce the plain link exactly.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import payloads
from simulator import scenario as sc
from simulator.metrics import TIMING_KEYS
from simulator.network import Link
from simulator.strategies.speculative import payload_bytes

from helpers import constant_scenario, run


def spec(**kw) -> sc.LinkSpec:
    return sc.LinkSpec(**{"a": "x", "b": "y", "bandwidth_mbps": 8, "header_bytes": 0, **kw})


def arrivals(link_specs: list[sc.LinkSpec], sends: list[tuple[int, str, int]], seed=0) -> list[float]:
    """Arrival time of each (link index, source device, payload bytes) message, all sent at time 0."""
    env, media, rng = simpy.Environment(), {}, np.random.default_rng(seed)
    links = [Link(env, s, rng, media) for s in link_specs]
    done = [math.nan] * len(sends)

    def send(i, k, src, n):
        yield from links[k].send(src, n)
        done[i] = env.now

    for i, (k, src, n) in enumerate(sends):
        env.process(send(i, k, src, n))
    env.run()
    return done


# ---------------------------------------------------------------- defaults


def test_defaults_are_the_plain_link():
    s = sc.LinkSpec(a="x", b="y", bandwidth_mbps=8)
    assert (s.up_mbps, s.down_mbps, s.jitter_kind, s.loss, s.retransmit_ms, s.medium) == \
        (None, None, "normal", 0.0, None, None)
    # 1000 + 64 header bytes at 8 Mbit/s, 10 ms latency; the second message queues behind the first
    t = arrivals([spec(latency_ms=10, header_bytes=64)], [(0, "x", 1000), (0, "x", 1000), (0, "y", 1000)])
    assert t == pytest.approx([1064e-6 + 0.010, 2 * 1064e-6 + 0.010, 1064e-6 + 0.010])


def test_default_jitter_is_a_normal_delay_clipped_at_zero():
    """Normal jitter: delay = max(0, L + s Z). With L = 2 ms and s = 3 ms a share Phi(-L/s) of the
    delays is 0 and the mean is L Phi(L/s) + s phi(L/s); both within four standard errors, over
    20,000 draws at each of three seeds (their means)."""
    from scipy.stats import norm

    lat, sd = 0.002, 0.003
    zero, mean = [], []
    for seed in (5, 6, 7):
        link = Link(simpy.Environment(), spec(latency_ms=2, jitter_ms=3), np.random.default_rng(seed))
        d = np.array([link.delay_s() for _ in range(20_000)])
        assert d.min() >= 0
        zero.append(np.mean(d == 0))
        mean.append(d.mean())
    p0 = norm.cdf(-lat / sd)
    assert np.mean(zero) == pytest.approx(p0, abs=4 * math.sqrt(p0 * (1 - p0) / 60_000))
    expected = lat * norm.cdf(lat / sd) + sd * norm.pdf(lat / sd)
    assert np.mean(mean) == pytest.approx(expected, abs=4 * sd / math.sqrt(60_000))


def test_report_with_explicit_defaults_is_identical():
    link = {"bandwidth_mbps": 20, "latency_ms": 5, "jitter_ms": 2}
    explicit = {**link, "up_mbps": 20, "down_mbps": 20, "jitter_kind": "normal", "loss": 0.0,
                "retransmit_ms": 10.0}
    reps = [run(constant_scenario(split=True, link=lk, output=64, requests=3))[0] for lk in (link, explicit)]
    for rep in reps:
        for key in TIMING_KEYS:
            rep.pop(key)
    assert json.dumps(reps[0]) == json.dumps(reps[1])
    assert "media" not in reps[0] and reps[0]["links"]["edge-cloud"]["retransmissions"] == 0


# ---------------------------------------------------------------- asymmetric bandwidth


def test_each_direction_takes_its_own_time():
    s = spec(latency_ms=10, up_mbps=8, down_mbps=1)  # 1000 B: 1 ms up, 8 ms down
    assert arrivals([s], [(0, "x", 1000)]) == pytest.approx([0.011])
    assert arrivals([s], [(0, "y", 1000)]) == pytest.approx([0.018])
    assert arrivals([s], [(0, "x", 1000), (0, "y", 1000)]) == pytest.approx([0.011, 0.018])  # full duplex
    only_down = spec(down_mbps=2)  # up keeps bandwidth_mbps
    assert arrivals([only_down], [(0, "x", 1000), (0, "y", 1000)]) == pytest.approx([0.001, 0.004])


def test_asymmetric_link_in_a_scenario():
    """Drafts and results take their own direction's time: a slow downlink slows the run."""
    base = {"bandwidth_mbps": 1, "latency_ms": 1, "header_bytes": 0}
    t = {}
    for name, extra in {"sym": {}, "fast_up": {"up_mbps": 1000}, "fast_down": {"down_mbps": 1000}}.items():
        rep, _ = run(constant_scenario(split=True, link={**base, **extra}, output=40, gamma=4, alpha=1.0))
        t[name] = rep["simulated_s"]
    assert t["fast_up"] < t["sym"] and t["fast_down"] < t["sym"]
    # alpha 1: 8 steps of 4 drafts (16 B up, 8 B down): the uplink saves more, and so does the prompt
    assert t["fast_up"] < t["fast_down"]


# ---------------------------------------------------------------- jitter kinds


@pytest.mark.parametrize("kind,lat,jit", [
    ("normal", 20, 3), ("normal", 1, 50), ("exponential", 20, 3), ("exponential", 0, 5),
    ("uniform", 20, 3), ("uniform", 0, 5),
])
def test_jitter_kinds_have_their_documented_means(kind, lat, jit):
    link = Link(simpy.Environment(), spec(latency_ms=lat, jitter_ms=jit, jitter_kind=kind), np.random.default_rng(3))
    d = np.array([link.delay_s() for _ in range(40000)])
    assert d.min() >= 0
    assert d.mean() == pytest.approx(link.mean_delay_s(), abs=5 * d.std() / np.sqrt(d.size))
    if kind != "normal":
        assert link.mean_delay_s() == pytest.approx((lat + jit) / 1000)
        assert d.min() >= lat / 1000
    if kind == "uniform":
        assert d.max() <= (lat + 2 * jit) / 1000
        assert d.std() == pytest.approx(2 * jit / 1000 / math.sqrt(12), rel=0.03)
    if kind == "exponential":
        assert d.std() == pytest.approx(jit / 1000, rel=0.03)
    if kind == "normal" and lat > 5 * jit:
        assert link.mean_delay_s() == pytest.approx(lat / 1000, rel=1e-6)


# ---------------------------------------------------------------- loss and retransmission


@pytest.mark.parametrize("loss", [0.1, 0.5])
def test_loss_attempts_and_time_match_the_geometric_closed_form(loss):
    """One message at a time (no queueing): attempts N ~ Geometric(1 - p), mean 1 / (1 - p);
    time = N T + (N - 1) R + L, mean T / (1 - p) + R p / (1 - p) + L, sd (T + R) sqrt(p) / (1 - p)."""
    T, R, L, n = 0.001, 0.004, 0.010, 20000
    env = simpy.Environment()
    link = Link(env, spec(latency_ms=10, loss=loss, retransmit_ms=4), np.random.default_rng(11))
    times = []

    def sender():
        for _ in range(n):
            start = env.now
            yield from link.send("x", 1000)
            times.append(env.now - start)

    env.process(sender())
    env.run()
    attempts = (n + link.retransmissions) / n
    sd_attempts = math.sqrt(loss) / (1 - loss)
    assert attempts == pytest.approx(1 / (1 - loss), abs=5 * sd_attempts / math.sqrt(n))
    mean_t = T / (1 - loss) + R * loss / (1 - loss) + L
    assert link.mean_message_s(1000, "x") == pytest.approx(mean_t)
    assert np.mean(times) == pytest.approx(mean_t, abs=5 * (T + R) * sd_attempts / math.sqrt(n))
    assert link.bytes["up"] == 1000 * (n + link.retransmissions)  # every attempt is on the wire
    assert link.busy_s["up"] == pytest.approx(T * (n + link.retransmissions))


def test_retransmission_waits_default_to_a_round_trip_and_hold_the_wire_again():
    env = simpy.Environment()
    link = Link(env, spec(latency_ms=10, loss=0.5), np.random.default_rng(0))
    assert link.retransmit_s == pytest.approx(0.020)
    # with a message lost k times: k + 1 transfers of 1 ms, k waits of 20 ms, then 10 ms
    rng = np.random.default_rng(0).spawn(1)[0]  # the link's own loss stream
    lost = int(math.log(1 - rng.random()) / math.log(0.5))
    done = []

    def one():
        yield from link.send("x", 1000)
        done.append(env.now)

    env.process(one())
    env.run()
    assert link.retransmissions == lost
    assert done == pytest.approx([(lost + 1) * 0.001 + lost * 0.020 + 0.010])


def test_a_loss_changes_no_delay_drawn():
    """Losses draw from the link's own stream: the same seed gives every message the same one-way
    delay whatever the loss (common random numbers), so a lossier link never draws shorter delays."""

    def delays(loss: float) -> list[float]:
        env = simpy.Environment()
        link = Link(env, spec(latency_ms=5, jitter_ms=3, jitter_kind="exponential", loss=loss, retransmit_ms=0),
                    np.random.default_rng(3))
        out = []

        def many():
            for _ in range(50):
                start, before = env.now, link.retransmissions
                yield from link.send("x", 10)
                attempts = 1 + link.retransmissions - before
                out.append(env.now - start - attempts * link.transfer_s(10, "x"))

        env.process(many())
        env.run()
        return out

    lossless, lossy = delays(0.0), delays(0.3)
    assert lossy == pytest.approx(lossless) and len(set(lossless)) == 50  # drawn, and drawn alike


def test_loss_in_a_scenario_is_counted_in_the_report():
    rep, _ = run(constant_scenario(split=True, output=64, requests=3,
                                   link={"bandwidth_mbps": 100, "latency_ms": 2, "loss": 0.2}))
    entry = rep["links"]["edge-cloud"]
    assert entry["retransmissions"] > 0
    # attempts per message near 1 / (1 - 0.2) = 1.25 (a few hundred messages)
    assert (entry["messages"] + entry["retransmissions"]) / entry["messages"] == pytest.approx(1.25, abs=0.1)


def test_loss_validation():
    with pytest.raises(ValueError):
        spec(loss=1.0)
    with pytest.raises(ValueError):
        spec(loss=-0.1)


# ---------------------------------------------------------------- shared media


def test_links_on_one_medium_serialise_simultaneous_uploads():
    wifi = [sc.LinkSpec(a=f"e{i}", b="ap", bandwidth_mbps=8, latency_ms=5, header_bytes=0, medium="wifi")
            for i in (1, 2)]
    assert arrivals(wifi, [(0, "e1", 1000), (1, "e2", 1000)]) == pytest.approx([0.006, 0.007])
    # downloads use the medium's other transmitter: they do not wait for the uploads
    assert arrivals(wifi, [(0, "e1", 1000), (1, "e2", 1000), (0, "ap", 1000)]) == pytest.approx([0.006, 0.007, 0.006])


def test_links_on_separate_media_do_not_contend():
    for media in ((None, None), ("wifi1", "wifi2")):
        links = [sc.LinkSpec(a=f"e{i}", b="ap", bandwidth_mbps=8, latency_ms=5, header_bytes=0, medium=m)
                 for i, m in zip((1, 2), media)]
        assert arrivals(links, [(0, "e1", 1000), (1, "e2", 1000)]) == pytest.approx([0.006, 0.006])


def test_media_in_the_report():
    data = constant_scenario(split=True, output=32, link={"bandwidth_mbps": 1, "latency_ms": 1, "medium": "air"})
    rep, _ = run(data)
    assert rep["media"] == {"air": {"utilization": rep["links"]["edge-cloud"]["utilization"], "links": ["edge-cloud"]}}
    assert list(rep).index("media") == list(rep).index("links") + 1
    # three edges on one medium: the medium is busier than any one of its links
    shared = shared_verifier_scenario(medium=True)
    rep, _ = run(shared)
    busiest = max(v["utilization"] for v in rep["links"].values())
    assert rep["media"]["wifi"]["links"] == ["e0-gpu", "e1-gpu", "e2-gpu"]
    assert busiest < rep["media"]["wifi"]["utilization"] <= 1
    assert rep["media"]["wifi"]["utilization"] == pytest.approx(
        sum(v["utilization"] for v in rep["links"].values()), rel=1e-9)  # one direction carries the load


def shared_verifier_scenario(medium: bool) -> dict:
    data = constant_scenario(users=3, requests=6, output=32)
    profile = data["devices"]["gpu"]["profile"]
    data["devices"] = {"gpu": {"profile": profile}} | {f"e{i}": {"profile": copy.deepcopy(profile)} for i in range(3)}
    data["strategy"] = {"kind": "shared_verifier", "draft_model": "draft", "edges": ["e0", "e1", "e2"],
                        "target": {"model": "target", "device": "gpu"}, "gamma": 4, "draft_payload": "full_dist"}
    data["links"] = [{"a": f"e{i}", "b": "gpu", "bandwidth_mbps": 100, "latency_ms": 2, "down_mbps": 1000,
                      **({"medium": "wifi"} if medium else {})} for i in range(3)]
    return data


def test_a_shared_medium_slows_edges_that_upload_together():
    alone, _ = run(shared_verifier_scenario(medium=False))
    shared, _ = run(shared_verifier_scenario(medium=True))
    assert shared["simulated_s"] > alone["simulated_s"]


def test_waiting_until_a_time_lands_on_it_exactly():
    """wait_until(t) ends with the clock at t to the bit, from any clock, however far t lies ahead."""
    from simulator.server import wait_until

    rng = np.random.default_rng(5)
    for _ in range(300):
        env = simpy.Environment()
        start = float(rng.choice([0.0, rng.exponential(), rng.exponential(1e-6), rng.exponential(1e4)]))
        t = start + float(rng.exponential(10.0 ** rng.integers(-9, 6)))

        def go():
            if start > 0:
                yield env.timeout(start)
            yield from wait_until(env, t)

        env.process(go())
        env.run()
        assert env.now == t


@pytest.mark.parametrize("medium", [False, True])
def test_a_reserved_wire_gives_what_waiting_for_it_gives(monkeypatch, medium):
    """A loss-free wire is reserved (one event a message); forced onto the waiting path (serve, then
    the flight) the same fleet, its uploads queueing on one medium, gives the same times to the
    bit, the same busy time on every wire and link, and the same jobs, with fewer events. (The
    links' latencies differ: where two events fall on one instant exactly, as three identical edges
    make them, the two paths may take them in another order.)"""
    from simulator import engine, metrics

    data = shared_verifier_scenario(medium=medium)
    for link, ms in zip(data["links"], (2.0, 2.3, 2.7)):
        link["latency_ms"] = ms

    def simulate():
        scenario = sc.parse(data, "test")
        result = engine.simulate(scenario, record_jobs=True)
        return metrics.report(result, scenario.name, scenario.strategy.kind), result

    rep_a, a = simulate()
    init = Link.__init__

    def waiting(self, *args, **kw):
        init(self, *args, **kw)
        for w in self.wire.values():
            w.lossy = True

    monkeypatch.setattr(Link, "__init__", waiting)
    rep_b, b = simulate()
    assert [(r.first_token_s, r.finish_s, r.steps) for r in a.records] == \
        [(r.first_token_s, r.finish_s, r.steps) for r in b.records]
    assert (rep_a["links"], rep_a.get("media"), rep_a["devices"]) == (rep_b["links"], rep_b.get("media"), rep_b["devices"])
    assert sorted(a.jobs) == sorted(b.jobs)
    assert a.events < b.events


# ---------------------------------------------------------------- payload sizes


def test_payload_sizes():
    assert payloads.token_ids(5) == 20
    assert payloads.ids_with_probs(5) == 40
    assert payloads.full_distributions(2, 32000, 2) == 2 * (4 + 64000)
    assert payloads.top_k_probs(5, 8) == 5 * 8 * 6
    assert payloads.hidden_states(3, 4096, 2) == 3 * 4096 * 2
    assert payloads.step_result() == payloads.RESULT_BYTES == 8
    assert [payload_bytes(k, 32000, 2) for k in ("ids", "ids_probs", "full_dist")] == [4, 8, 4 + 64000]


# ---------------------------------------------------------------- a worse link never helps


def _throughput(link: dict) -> float:
    rep, _ = run(constant_scenario(split=True, link=link, output=24, requests=2, gamma=3, alpha=0.7))
    return rep["throughput_tokens_per_s"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mbps=st.floats(0.05, 1000), latency=st.floats(0, 50), jitter=st.floats(0, 10),
    kind=st.sampled_from(["normal", "exponential", "uniform"]), loss=st.floats(0, 0.8),
    retransmit=st.one_of(st.none(), st.floats(0, 50)),
    worse=st.sampled_from(["latency", "bandwidth", "loss"]), factor=st.floats(1.0, 10.0),
)
def test_throughput_never_rises_on_a_worse_link(mbps, latency, jitter, kind, loss, retransmit, worse, factor):
    link = {"bandwidth_mbps": mbps, "latency_ms": latency, "jitter_ms": jitter, "jitter_kind": kind,
            "loss": loss, "retransmit_ms": retransmit}
    bad = dict(link)
    if worse == "latency":
        bad["latency_ms"] = latency * factor + (factor - 1)
    elif worse == "bandwidth":
        bad["bandwidth_mbps"] = mbps / factor
    else:
        bad["loss"] = min(0.95, loss + (1 - loss) * (factor - 1) / 10)
    assert _throughput(bad) <= _throughput(link) * (1 + 1e-12)


def test_each_end_adds_its_host_time_to_every_message():
    """message_ms on each device (edge 0.3 ms, cloud 0.2 ms): every message arrives 0.5 ms later,
    and nothing else moves. alpha 1, 40 tokens, gamma 4: the prompt up, the first token down, then
    8 steps of one message each way, all on the critical path: 18 messages, 9 ms."""
    base = constant_scenario(split=True, link={"bandwidth_mbps": 10, "latency_ms": 2}, output=41, gamma=4, alpha=1.0)
    plain, _ = run(base)
    costly = copy.deepcopy(base)
    costly["devices"]["edge"]["overheads"] = {"message_ms": 0.3}
    costly["devices"]["cloud"]["overheads"] = {"message_ms": 0.2}
    rep, _ = run(costly)
    assert rep["links"]["edge-cloud"]["messages"] == 18
    assert rep["simulated_s"] - plain["simulated_s"] == pytest.approx(18 * 0.0005)
    assert rep["devices"]["edge"]["busy_s"] == pytest.approx(plain["devices"]["edge"]["busy_s"])


def test_uniform_jitter_drawn_a_block_at_a_time_is_the_same_draws():
    """Links on one stream that all jitter uniformly (or not at all) draw their delays a block at a
    time, across block ends: the very doubles single draws give, in the same order; a stream a link
    of another jitter kind draws from is drawn one at a time."""
    from simulator.network import block_uniforms, uniform_draws

    ref, rng = np.random.default_rng(8), np.random.default_rng(8)
    draws = block_uniforms(rng, block=7)
    assert [next(draws) for _ in range(40)] == [ref.random() for _ in range(40)]
    specs = [spec(latency_ms=2, jitter_ms=1, jitter_kind="uniform"), spec(latency_ms=2)]
    assert uniform_draws(rng, specs) != rng.random
    assert uniform_draws(rng, specs + [spec(latency_ms=2, jitter_ms=1, jitter_kind="normal")]) == rng.random
