"""Latency models: exact at measured points, linear between, flagged outside, roofline physics."""

from __future__ import annotations

import itertools
from dataclasses import replace
import re

import numpy as np
import pytest
from helpers import constant_scenario, run

from simulator import catalog, profiles
from simulator.profiles import ForwardTime, Overheads, RooflineSpec

HEADER = "batch,query_tokens,context_tokens,latency_ms_p50,latency_ms_p10,latency_ms_p90,samples\n"


def grid_latency(b, q, c):
    # deliberately not monotone in query: 3 tokens slower than 5 (as measured on a CPU)
    return 1.0 + 0.5 * b + {1: 0.0, 3: 2.0, 5: 1.0}[q] + 0.001 * c


def write_profile(folder, batches=(1, 4), queries=(1, 3, 5), contexts=(0, 512, 1024), skip=None):
    folder.mkdir(parents=True)
    (folder / "profile.yaml").write_text(
        "device: test box\nprovenance: measured\nmethod: synthetic grid for tests\ndtype: fp32\nmemory_gb: 16\n")
    rows = [f"{b},{q},{c},{grid_latency(b, q, c)},0,0,5"
            for b, q, c in itertools.product(batches, queries, contexts) if (b, q, c) != skip]
    (folder / "llama-68m.csv").write_text(HEADER + "\n".join(rows) + "\n")
    return folder


def grid_fn(tmp_path):
    prof = profiles.open_profile(str(write_profile(tmp_path / "box")), "devices.x.profile", "t.yaml")
    return prof, prof.ms_fn("m", "llama-68m", catalog.PRESETS["llama-68m"])


def test_exact_at_grid_points_and_not_assumed_monotone(tmp_path):
    prof, fn = grid_fn(tmp_path)
    for b, q, c in itertools.product((1, 4), (1, 3, 5), (0, 512, 1024)):
        assert fn(b, q, np.array([c]))[0] == pytest.approx(grid_latency(b, q, c), abs=1e-12)
    assert fn(1, 3, np.array([0]))[0] > fn(1, 5, np.array([0]))[0]
    assert not prof.warnings


def test_linear_between_grid_points(tmp_path):
    _, fn = grid_fn(tmp_path)
    assert fn(1, 1, np.array([256]))[0] == pytest.approx(grid_latency(1, 1, 256))
    assert fn(2, 1, np.array([0]))[0] == pytest.approx((grid_latency(1, 1, 0) * 2 + grid_latency(4, 1, 0)) / 3)
    assert fn(1, 4, np.array([0]))[0] == pytest.approx((grid_latency(1, 3, 0) + grid_latency(1, 5, 0)) / 2)


def test_outside_the_grid_scales_as_documented_and_warns(tmp_path):
    prof, fn = grid_fn(tmp_path)
    # context beyond 1024: linear from the last two context points
    assert fn(1, 1, np.array([2048]))[0] == pytest.approx(grid_latency(1, 1, 2048))
    assert any("context up to 2048" in w for w in prof.warnings.values())
    # batch 8 beyond 4: proportional to tokens
    assert fn(8, 1, np.array([0]))[0] == pytest.approx(2 * grid_latency(4, 1, 0))
    assert any("scaled by token count" in w for w in prof.warnings.values())


def test_extrapolation_warning_reaches_the_report(tmp_path):
    folder = write_profile(tmp_path / "box")
    data = constant_scenario(gamma=2, prompt=1000, output=100)
    data["models"]["draft"] = {"preset": "llama-68m"}
    data["models"]["target"] = {"preset": "llama-68m"}
    data["devices"]["gpu"] = {"profile": str(folder)}
    rep, _ = run(data)
    assert any("beyond the measured grid" in w for w in rep["warnings"])


def test_incomplete_grid_is_refused(tmp_path):
    from simulator.errors import InputError

    folder = write_profile(tmp_path / "box", skip=(4, 3, 512))
    prof = profiles.open_profile(str(folder), "devices.x.profile", "t.yaml")
    with pytest.raises(InputError, match=r"missing \(4, 3, 512\)"):
        prof.ms_fn("m", "llama-68m", catalog.PRESETS["llama-68m"])


def test_forward_time_tables_match_the_profile():
    spec = RooflineSpec(peak_tflops=100, memory_bandwidth_gbps=1000)
    fn = profiles._roofline(spec, catalog.PRESETS["llama2-7b"])
    ft = ForwardTime(fn, max_context=100)
    assert ft.forward_s(1, 1, 50) == pytest.approx(fn(1, 1, np.array([50]))[0] / 1000)
    assert ft.consecutive_s(1, 1, 10, 4) == pytest.approx(sum(fn(1, 1, np.arange(10, 14))) / 1000)
    assert ft.forward_s(1, 1, 5000) == pytest.approx(fn(1, 1, np.array([5000]))[0] / 1000)  # grows its table
    assert ft.prefill_s(1, 777, 0) == pytest.approx(fn(1, 777, np.array([0]))[0] / 1000)


def test_a_rooflines_single_point_is_its_table_to_the_last_bit():
    """A prompt's forward is looked up at one point, in plain floats: the very double the table gives,
    memory- and compute-bound points, with and without quantised weights or a per-forward overhead."""
    rng = np.random.default_rng(0)
    for arch in (catalog.PRESETS["llama2-7b"], replace(catalog.PRESETS["llama-68m"], weight_bits=4)):
        spec = RooflineSpec(peak_tflops=312, memory_bandwidth_gbps=2039, fixed_overhead_ms=0.5)
        fn = profiles._roofline(spec, arch)
        for batch, query, context in zip(rng.integers(1, 65, 200), rng.integers(1, 4097, 200), rng.integers(0, 4097, 200)):
            assert fn.point(int(batch), int(query), int(context)) == fn(int(batch), int(query), np.array([context]))[0]
        ft = ForwardTime(fn, 100, Overheads(forward_ms=0.37))
        assert ft.prefill_s(3, 700, 21) == (fn(3, 700, np.array([21])) + 0.37)[0] / 1000


def test_roofline_physics():
    """Decode is memory-bound (weights over bandwidth), a long prefill compute-bound (2 x params x tokens
    over FLOP/s), and the profile says which from the datasheet numbers alone."""
    arch = catalog.PRESETS["llama2-7b"]
    spec = RooflineSpec(peak_tflops=1000, memory_bandwidth_gbps=2000, compute_efficiency=1, memory_efficiency=1,
                        launch_overhead_us=0, fixed_overhead_ms=0)
    fn = profiles._roofline(spec, arch)
    decode_ms = fn(1, 1, np.array([0]))[0]
    assert decode_ms == pytest.approx(1000 * (arch.matmul_params() * 2 + arch.kv_bytes_per_token()) / 2000e9)
    prefill_ms = fn(1, 4096, np.array([0]))[0]
    assert prefill_ms == pytest.approx(1000 * 2 * arch.matmul_params() * 4096 / 1000e12, rel=0.2)
    faster_memory = profiles._roofline(spec.model_copy(update={"memory_bandwidth_gbps": 4000}), arch)
    assert faster_memory(1, 1, np.array([0]))[0] == pytest.approx(decode_ms / 2, rel=1e-3)
    assert faster_memory(1, 4096, np.array([0]))[0] == pytest.approx(prefill_ms)  # compute-bound: unchanged


def test_presets_have_their_published_sizes():
    assert catalog.PRESETS["llama2-7b"].params() / 1e9 == pytest.approx(6.74, abs=0.01)
    assert catalog.PRESETS["llama2-13b"].params() / 1e9 == pytest.approx(13.0, abs=0.02)
    assert catalog.PRESETS["llama2-70b"].params() / 1e9 == pytest.approx(69.0, abs=0.1)
    assert catalog.PRESETS["tinyllama-1.1b"].params() / 1e9 == pytest.approx(1.10, abs=0.01)
    assert catalog.PRESETS["llama3-8b"].params() / 1e9 == pytest.approx(8.03, abs=0.01)
    assert catalog.PRESETS["llama3.2-1b"].params() / 1e9 == pytest.approx(1.24, abs=0.01)


def test_every_shipped_profile_loads_and_says_where_it_comes_from():
    found = profiles.available()
    assert len(found) >= 8
    for name, folder in found.items():
        meta = profiles.read_meta(folder)
        assert meta.method and (meta.provenance == "measured" or meta.sources), name


def _grid(tmp_path, skip):
    from simulator.measured_grid import Grid as _Grid

    rows = ["batch,query_tokens,context_tokens,latency_ms_p50"]
    rows += [f"{b},{q},{c},{b * q + c / 10}" for b in (1, 2) for q in (1, 2, 4) for c in (0, 10) if not skip(b, q)]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    warnings: dict = {}
    return _Grid(tmp_path / "m.csv", "m", warnings), warnings


def test_a_grid_may_stop_short_of_its_largest_queries_at_large_batches(tmp_path):
    """Points over a step's token budget are not measured: each is filled in proportion to tokens from
    the largest measured query at its batch and context, and a run that uses one is warned."""
    grid, warnings = _grid(tmp_path, lambda b, q: b == 2 and q == 4)
    assert list(grid(1, 4, np.array([10]))) == pytest.approx([5.0]) and not warnings  # measured
    assert list(grid(2, 4, np.array([0, 10]))) == pytest.approx([4.0 * 2, 5.0 * 2])  # t(2, 2, c) x 4 / 2
    assert "tokens_budget" in " ".join(warnings)


def test_a_hole_inside_a_grid_is_refused(tmp_path):
    from simulator.errors import InputError

    with pytest.raises(InputError, match=r"missing \(2, 2, 0\)"):
        _grid(tmp_path, lambda b, q: b == 2 and q == 2)


def test_a_grid_lookup_made_once_per_process_still_warns_every_profile_that_asks():
    """Lookups are kept per grid file (every plan trial opens its profile again); the warnings of a
    kept lookup reach each profile that makes it."""
    from pathlib import Path

    import numpy as np

    from simulator.measured_grid import Grid

    path = Path(__file__).parent.parent / "hardware_profiles" / "h200-torch-graph-bf16" / "llama2-13b.csv"
    first, second = {}, {}
    a = Grid(path, "one/llama2-13b", first)(128, 1, np.array([100.0, 3000.0]))
    b = Grid(path, "two/llama2-13b", second)(128, 1, np.array([100.0, 3000.0]))
    assert a is b and not a.flags.writeable
    assert set(first) == {"one/llama2-13b:tokens", "one/llama2-13b:context_hi"}
    assert {k.replace("two", "one") for k in second} == set(first)
    third = {}
    Grid(path, "three/llama2-13b", third)(32, 1, np.array([100.0]))  # inside the grid: nothing to say
    assert third == {}


def test_a_profile_yaml_changed_on_disk_is_read_again(tmp_path):
    """profile.yaml is parsed once per process while unchanged; a fit that writes new overheads into it
    (calibrate fit --write) is seen by the next read in the same process."""
    import shutil

    folder = tmp_path / "p"
    shutil.copytree(profiles.find("h100-sxm-torch-bf16"), folder)
    first = profiles.read_meta(folder)
    assert profiles.read_meta(folder) is first  # unchanged: the same parsed object
    text = (folder / "profile.yaml").read_text()
    (folder / "profile.yaml").write_text(re.sub(r"(?m)^memory_gb: .*$", "memory_gb: 12.5", text))
    assert first.memory_gb != 12.5 and profiles.read_meta(folder).memory_gb == 12.5
