"""Tensor parallelism: a model split over a device's `gpus` takes one GPU's share of each forward
pass plus its all-reduces, each figure checked against arithmetic done by hand here (the ring
all-reduce's 2 (N - 1) hops, a roofline's halved weight reads, a measured shard grid read straight
from its CSV); one GPU is today's model exactly; bad splits are refused by field."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
from helpers import autoregressive, constant_scenario, run

from simulator import catalog, engine
from simulator import scenario as sc
from simulator.errors import InputError
from simulator.tensor_parallel import Interconnect, allreduce_s, from_other_degree

H200 = Path(__file__).resolve().parent.parent / "hardware_profiles" / "h200-torch-graph-bf16"
NVLINK = {"bandwidth_gb_s": 100.0, "latency_us": 10.0}


def split(data: dict, gpus: int, net=NVLINK) -> dict:
    data = copy.deepcopy(data)
    for dev in data["devices"].values():
        dev.update(gpus=gpus, interconnect=net)
    return data


def test_a_ring_allreduce_is_2_n_minus_1_hops_of_a_1_over_n_share():
    net = Interconnect(bandwidth_gb_s=100.0, latency_us=10.0)
    assert allreduce_s(net, 1, 1e6) == 0.0
    assert allreduce_s(net, 2, 8192) == pytest.approx(2 * (10e-6 + 4096 / 100e9))
    assert allreduce_s(net, 4, 8192) == pytest.approx(6 * (10e-6 + 2048 / 100e9))


def test_a_measured_allreduce_table_is_linear_between_sizes_and_along_its_last_two_beyond():
    net = Interconnect(allreduce={"bytes": [1000, 3000], "ms": [0.01, 0.03]})
    assert allreduce_s(net, 2, 2000) == pytest.approx(20e-6)
    assert allreduce_s(net, 2, 500) == pytest.approx(10e-6)  # below the smallest: its time
    assert allreduce_s(net, 2, 5000) == pytest.approx(50e-6)


def test_autoregressive_on_two_gpus_is_half_the_forward_plus_the_allreduces_worked_by_hand():
    # llama2-7b: 32 blocks of hidden 4096, vocab 32000, 2 bytes; a decode step is 1 token.
    # Two all-reduces a block of 8,192 bytes and half an all-reduce of the 64,000 bytes of logits
    ar_hidden = 2 * (10e-6 + 4096 / 100e9)
    ar_logits = 2 * (10e-6 + 32000 / 100e9)
    step = 10e-3 / 2 + 2 * 32 * ar_hidden + ar_logits / 2
    one = autoregressive(constant_scenario(target_ms=10.0, output=33, prompt=16))
    rep, _ = run(split(one, 2))
    assert rep["latency_s"]["tpot"]["mean"] == pytest.approx(step, rel=1e-12)


def test_one_gpu_is_todays_model_exactly():
    data = constant_scenario(output=40, requests=3)
    plain, _ = run(data)
    one, _ = run(split(data, 1))
    pinned = split(data, 2)
    for role in ("draft", "target"):
        pinned["strategy"][role]["tp"] = 1  # both on one GPU of a pair: no split, no all-reduce
    pinned_rep, _ = run(pinned)
    for rep in (one, pinned_rep):
        assert rep["throughput_tokens_per_s"] == plain["throughput_tokens_per_s"]
        assert rep["latency_s"] == plain["latency_s"]


def test_a_roofline_share_reads_half_the_split_weights_and_all_the_norms():
    roof = {"kind": "roofline", "peak_tflops": 1e6, "memory_bandwidth_gbps": 1000.0, "memory_efficiency": 1.0,
            "launch_overhead_us": 0.0}
    data = autoregressive(constant_scenario(output=2, prompt=1))
    data["devices"]["gpu"]["profile"] = roof
    data = split(data, 2, {"bandwidth_gb_s": 1e9})  # nearly free communication
    setup = engine.prepare(sc.parse(data, "test"))
    a = catalog.PRESETS["llama2-7b"]
    per_gpu = a.layers * (a.hidden * (a.hidden + a.kv_dim + 1.5 * a.ffn) + 2 * a.hidden) + a.vocab * a.hidden / 2
    kv = 2 * a.layers * a.kv_dim / 2 * 2  # one token's keys and values, half the heads, 2 bytes
    expect_s = (per_gpu * 2 + kv) / 1000e9
    got = setup.world.devices["gpu"].forward["target"].forward_s(1, 1, 0)
    assert got == pytest.approx(expect_s, rel=1e-6)


def _grid(path: Path) -> dict:
    with path.open() as f:
        return {(int(r["batch"]), int(r["query_tokens"]), int(r["context_tokens"])): float(r["latency_ms_p50"])
                for r in csv.DictReader(f)}


def test_a_measured_share_grid_is_what_one_gpu_of_the_pair_takes():
    data = {"models": {"target": {"preset": "llama2-13b"}},
            "devices": {"node": {"profile": "h200-torch-graph-bf16", "gpus": 2, "overheads": {},
                                 "interconnect": {"bandwidth_gb_s": 1e9}}},
            "strategy": {"kind": "autoregressive", "target": {"model": "target", "device": "node"}},
            "workload": {"requests": 1, "prompt_tokens": 8, "output_tokens": 8}}
    forward = engine.prepare(sc.parse(data, "test")).world.devices["node"].forward["target"]
    share = _grid(H200 / "llama2-13b.tp2.csv")
    for b, q, c in [(1, 1, 0), (4, 8, 1024), (32, 256, 2048)]:
        assert forward.forward_s(b, q, c) == pytest.approx(share[(b, q, c)] / 1000, rel=1e-6)


def test_a_share_of_another_degree_carries_the_part_that_does_not_split():
    whole = lambda b, q, c: np.full(len(c), 10.0)  # noqa: E731
    two = lambda b, q, c: np.full(len(c), 6.0)  # 10 (1/2 + f/2): f = 0.2 of the time does not split  # noqa: E731
    c = np.arange(3)
    assert from_other_degree(whole, two, 2, 2)(1, 1, c) == pytest.approx(6.0)
    assert from_other_degree(whole, two, 2, 4)(1, 1, c) == pytest.approx(10 * (0.25 + 0.75 * 0.2))


def test_memory_price_and_power_count_every_gpu():
    data = autoregressive(constant_scenario(output=8))
    data["models"]["target"] = {"preset": "llama2-70b"}
    data["devices"]["gpu"]["profile"]["memory_gb"] = 80
    data["devices"]["gpu"]["power_w"] = {"idle": 100.0, "busy": 700.0}
    alone, _ = run(data)
    assert any("exceed its memory" in w for w in alone["warnings"])  # 138 GB of weights on one 80 GB GPU
    pair, result = run(split(data, 2))
    assert not any("exceed its memory" in w for w in pair["warnings"])
    busy, t = pair["devices"]["gpu"]["busy_s"], pair["simulated_s"]
    assert pair["energy"]["joules"] == pytest.approx(2 * (700 * busy + 100 * (t - busy)))
    from simulator import plan

    data["devices"]["gpu"]["cost_per_hour"] = 3.0
    assert plan.usd_per_hour(sc.parse(split(data, 4), "test")) == pytest.approx(12.0)


@pytest.mark.parametrize("change, field", [
    (lambda d: d["devices"]["gpu"].update(gpus=3), "devices.gpu.gpus"),  # 32 heads over 3 GPUs
    (lambda d: d["strategy"]["target"].update(tp=3), "strategy.target.tp"),  # 3 does not divide 4
    (lambda d: d["devices"]["gpu"].pop("interconnect"), "devices.gpu.interconnect"),
    (lambda d: d["strategy"]["draft"].update(model="target", tp=2), "strategy.draft.tp"),  # one split per model
])
def test_bad_splits_are_refused_by_field(change, field):
    data = split(constant_scenario(), 4)
    data["devices"]["gpu"]["profile"]["forward_ms"]["target"] = 10.0
    change(data)
    with pytest.raises(InputError) as err:
        engine.prepare(sc.parse(data, "test"))
    assert err.value.field == field
