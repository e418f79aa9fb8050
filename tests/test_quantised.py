"""Quantised weights (`weight_bits`): the limiting case, the roofline's physics and the memory check.

A model's `weight_bits` sizes its weights (memory, and the weight bytes a roofline forward reads);
activations, the KV cache and payloads keep `dtype_bytes`. The expected numbers here come from the
roofline formula of docs/model.md and from parameter counts written out by hand, not from the
implementation's helpers.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import autoregressive, constant_scenario, run
from typer.testing import CliRunner

from simulator import engine, metrics, profiles
from simulator import scenario as sc
from simulator.cli import app
from simulator.errors import InputError
from simulator.profiles import RooflineSpec

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

# llama2-70b by hand: 80 blocks of hidden 8192, 64 heads of 128, 8 KV heads (kv_dim 1024), MLP 28672
L70, H70, KV70, FFN70, VOCAB = 80, 8192, 8 * 128, 28672, 32000
BLOCKS_70 = L70 * (H70 * (2 * H70 + 2 * KV70) + 3 * H70 * FFN70 + 2 * H70)
MATMUL_70 = BLOCKS_70 + VOCAB * H70  # blocks + LM head: what a forward reads
PARAMS_70 = MATMUL_70 + VOCAB * H70 + H70  # + input embedding + final norm
KV_TOKEN_70 = 2 * L70 * KV70 * 2  # bytes per token of bf16 KV cache


def _everything(data: dict) -> tuple[str, str, str]:
    """The report (timing fields aside), every request record and every job of a run, as text."""
    scenario = sc.parse(data, "test")
    result = engine.simulate(scenario, record_jobs=True)
    rep = metrics.report(result, scenario.name, scenario.strategy.kind)
    rep.pop("sim")
    return json.dumps(rep, sort_keys=True), repr(result.records), repr(result.jobs)


@pytest.mark.parametrize("name", ["custom-model-rtx4090.yaml", "pipeline-jetson-gige.yaml",
                                  "vidur-llama2-7b-a100.yaml"])
def test_weight_bits_of_the_dtype_change_nothing(name):
    """Limiting case: every model's weight_bits = 8 x its dtype_bytes gives the same report, request
    records and device/link timeline, byte for byte, as leaving weight_bits unset (roofline profiles:
    inline, derived, and a batching server that admits by memory)."""
    data = yaml.safe_load((SCENARIOS / name).read_text())
    same = copy.deepcopy(data)
    for key, model in same["models"].items():
        model["weight_bits"] = 8 * sc.parse(data, "t").models[key].architecture().dtype_bytes
    assert _everything(same) == _everything(data)
    half = copy.deepcopy(same)  # and the comparison can fail: other bits change the run
    for model in half["models"].values():
        model["weight_bits"] = 8
    assert _everything(half)[0] != _everything(data)[0]


def _decode_ms(bits: float | None, context: int = 0, batch: int = 1, query: int = 1) -> float:
    spec = RooflineSpec(peak_tflops=1e6, memory_bandwidth_gbps=1000, compute_efficiency=1, memory_efficiency=1,
                        launch_overhead_us=0, fixed_overhead_ms=0)  # compute free: memory-bound
    arch = sc.ModelSpec(preset="llama2-70b", weight_bits=bits).architecture()
    return float(profiles._roofline(spec, arch)(batch, query, np.array([context]))[0])


@pytest.mark.parametrize("bits", [16, 8, 4.5, 2])
def test_memory_bound_decode_reads_the_quantised_weights(bits):
    """time = (P x bits / 8 + batch x (context + query) x kv_token) / bandwidth, the KV part at bf16."""
    context = 1000
    expected = 1000 * (MATMUL_70 * bits / 8 + (context + 1) * KV_TOKEN_70) / 1000e9
    assert _decode_ms(bits, context) == pytest.approx(expected, rel=1e-12)


def test_halving_the_weight_bytes_halves_the_weight_read():
    at16, at8 = _decode_ms(16), _decode_ms(8)
    kv_ms = 1000 * KV_TOKEN_70 / 1000e9  # context 0, one query token
    assert at16 - at8 == pytest.approx(1000 * MATMUL_70 * 1 / 1000e9, rel=1e-9)  # one byte per weight less
    assert (at8 - kv_ms) == pytest.approx((at16 - kv_ms) / 2, rel=1e-9)
    assert _decode_ms(None) == at16  # bf16 preset


def test_compute_bound_prefill_is_unchanged():
    """FLOPs are the matmuls' whatever the weights' format: a long prefill on a compute-poor device."""
    spec = RooflineSpec(peak_tflops=10, memory_bandwidth_gbps=1000)
    fn = {b: profiles._roofline(spec, sc.ModelSpec(preset="llama2-7b", weight_bits=b).architecture())
          for b in (16, 4.5)}
    assert fn[4.5](1, 2048, np.array([0]))[0] == fn[16](1, 2048, np.array([0]))[0]


def test_simulated_tpot_drops_by_the_weight_read():
    """Autoregressive on a memory-bound roofline: every decode forward is P x (16 - 4.5) / 8 bytes
    shorter, so the mean TPOT is too (the KV reads of both runs are the same)."""
    profile = {"kind": "roofline", "peak_tflops": 1e6, "memory_bandwidth_gbps": 1000, "compute_efficiency": 1,
               "memory_efficiency": 1, "launch_overhead_us": 0, "fixed_overhead_ms": 0, "memory_gb": 1000}
    data = autoregressive(constant_scenario(output=32, prompt=16))
    data["models"]["target"] = {"preset": "llama2-70b"}
    data["devices"]["gpu"]["profile"] = profile
    quant = copy.deepcopy(data)
    quant["models"]["target"]["weight_bits"] = 4.5
    bf16, q = run(data)[0], run(quant)[0]
    saved_s = MATMUL_70 * (16 - 4.5) / 8 / 1000e9
    assert bf16["latency_s"]["tpot"]["mean"] - q["latency_s"]["tpot"]["mean"] == pytest.approx(saved_s, rel=1e-6)


def test_footprint_scales_and_the_kv_cache_does_not():
    arch = {b: sc.ModelSpec(preset="llama2-70b", weight_bits=b).architecture() for b in (None, 16, 8, 4.5)}
    assert arch[None].weight_bytes() == arch[16].weight_bytes() == PARAMS_70 * 2
    assert arch[8].weight_bytes() == PARAMS_70
    assert arch[4.5].weight_bytes() == math.ceil(PARAMS_70 * 4.5 / 8)
    assert {a.kv_bytes_per_token() for a in arch.values()} == {KV_TOKEN_70}
    assert {a.hidden_state_bytes(3) for a in arch.values()} == {3 * H70 * 2}


def test_a_quantised_draft_sends_the_same_bytes():
    """Payloads are activations: a full draft distribution is vocab x dtype_bytes whatever the weights."""
    data = constant_scenario(split=True, link={"bandwidth_mbps": 100, "latency_ms": 5}, output=40)
    data["strategy"]["draft_payload"] = "full_dist"
    quant = copy.deepcopy(data)
    quant["models"]["draft"]["weight_bits"] = 4.5
    assert _everything(quant) == _everything(data)  # constant profiles: nothing else changes either


# ---------------------------------------------------------------- does it fit?


def _seventy_b_on_80gb(bits: float | None, kind: str = "autoregressive") -> dict:
    data = autoregressive(constant_scenario(output=16, prompt=64))
    data["models"]["target"] = {"preset": "llama2-70b", **({} if bits is None else {"weight_bits": bits})}
    data["devices"]["gpu"]["profile"] = {"kind": "roofline", "peak_tflops": 312, "memory_bandwidth_gbps": 2039,
                                         "memory_gb": 80}
    if kind == "batched":
        data["strategy"] = {"kind": "batched", "target": data["strategy"]["target"]}
    return data


def test_a_4_5_bit_70b_fits_where_bf16_does_not():
    bf16, _ = run(_seventy_b_on_80gb(None))
    q4, _ = run(_seventy_b_on_80gb(4.5))
    over = [w for w in bf16["warnings"] if "exceed its memory" in w]
    assert len(over) == 1 and f"weights ({PARAMS_70 * 2 / 1e9:.1f} GB)" in over[0]  # 138.0 GB
    assert not [w for w in q4["warnings"] if "exceed its memory" in w]  # 38.8 GB


def test_a_batching_server_admits_by_the_quantised_weights():
    with pytest.raises(InputError, match="devices.gpu.memory_gb"):
        run(_seventy_b_on_80gb(None, "batched"))
    scenario = sc.parse(_seventy_b_on_80gb(4.5, "batched"), "test")
    result = engine.simulate(scenario)
    assert result.serving.capacity == (80e9 - math.ceil(PARAMS_70 * 4.5 / 8)) // KV_TOKEN_70


def test_a_measured_grid_warns_that_weight_bits_leave_its_times_alone():
    data = yaml.safe_load((SCENARIOS / "measured-h100-gamma.yaml").read_text())
    quant = copy.deepcopy(data)
    quant["models"]["target"]["weight_bits"] = 4.5
    rep, q = run(data)[0], run(quant)[0]
    assert q["latency_s"] == rep["latency_s"]
    assert [w for w in q["warnings"] if "weight_bits" in w] and not [w for w in rep["warnings"] if "weight_bits" in w]


@pytest.mark.parametrize("value, rule", [(0, "greater than 0"), (-4, "greater than 0"),
                                         (33, "less than or equal to 32"), (float("inf"), "finite number"),
                                         ("4.5", "valid number")])
def test_bad_weight_bits_name_the_field_and_the_rule(tmp_path, value, rule):
    data = _seventy_b_on_80gb(4.5)
    data["models"]["target"]["weight_bits"] = value
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(app, ["run", str(path)])
    assert res.exit_code == 2
    assert "models.target.weight_bits" in res.output and rule in res.output and str(path) in res.output
