"""Energy: a device with power figures (`power_w: {idle, busy}` in W) gets busy W x busy seconds +
idle W x the rest of the run, checked against a run whose busy and idle time are known by hand;
plan ranks by tokens per joule; bad figures are refused like any other input."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import autoregressive, constant_scenario, run, stderr_of
from typer.testing import CliRunner

from simulator import plan
from simulator.cli import app

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def test_energy_is_busy_power_while_busy_and_idle_power_between():
    # autoregressive, 10 ms a forward whatever its shape: a request of 8 tokens is a prefill and 7
    # decode steps, 80 ms busy; 5 requests with 20 ms of thinking between them: 400 ms busy, 80 idle
    data = autoregressive(constant_scenario(target_ms=10.0, output=8, prompt=16, requests=5))
    data["workload"]["arrival"]["think_ms"] = 20.0
    data["devices"]["gpu"]["power_w"] = {"idle": 10.0, "busy": 100.0}
    rep, _ = run(data)
    assert rep["simulated_s"] == pytest.approx(0.48)
    assert rep["devices"]["gpu"]["busy_s"] == pytest.approx(0.40)
    e = rep["energy"]
    assert e["joules"] == pytest.approx(100 * 0.40 + 10 * 0.08)
    assert e["joules_per_token"] == pytest.approx(40.8 / 40) and e["tokens_per_joule"] == pytest.approx(40 / 40.8)
    assert e["joules_per_request"] == pytest.approx(40.8 / 5) and e["devices"] == ["gpu"]
    assert rep["devices"]["gpu"]["energy_j"] == pytest.approx(40.8)


def test_only_devices_with_power_figures_count_and_none_means_no_block():
    data = constant_scenario(split=True, output=20)
    rep, _ = run(data)
    assert "energy" not in rep and "energy_j" not in rep["devices"]["cloud"]
    data["devices"]["edge"]["power_w"] = {"idle": 2.0, "busy": 15.0}
    rep, _ = run(data)
    assert rep["energy"]["devices"] == ["edge"] and "energy_j" not in rep["devices"]["cloud"]
    busy = rep["devices"]["edge"]["busy_s"]
    assert rep["energy"]["joules"] == pytest.approx(15 * busy + 2 * (rep["simulated_s"] - busy))


def test_plan_ranks_by_tokens_per_joule_only_where_every_device_has_power():
    rows = [{"throughput_tokens_per_s": 10.0, "joules_per_token": j} for j in (2.0, 0.5, None)]
    job = plan.Job("s", [], [{}, {}, {}], None,
                   [plan.Search({"workload": {"requests": 10}}, "s", ".", None, 1.0, 0, 0.02, 1e-3)] * 3,
                   [None] * 3, {})
    found = [{"feasible": True, "bounded": True, "sustained_rate_per_s": 1.0, "trials": 1,
              "e2e_at_percentile_s": 1.0, **r} for r in rows]
    ranked = plan.rank(job, found)
    assert [r["tokens_per_joule"] for r in ranked] == [0.5, 2.0, None]
    assert [r["rank_tokens_per_joule"] for r in ranked] == [2, 1, None]


def test_a_plan_with_power_writes_tokens_per_joule(tmp_path):
    out = tmp_path / "plan"
    res = CliRunner().invoke(app, ["plan", str(SCENARIOS / "colocated-h100.yaml"), "--slo-ttft-ms", "200",
                                   "--slo-tpot-ms", "10", "--set", "workload.output_tokens=16", "--set",
                                   "devices.gpu.power_w={idle: 70, busy: 700}", "--search", "strategy.gamma=2,4",
                                   "--workers", "1", "--out", str(out)])
    assert res.exit_code == 0, stderr_of(res)
    text = (out / "plan.csv").read_text().splitlines()
    header = text[0].split(",")
    assert "tokens_per_joule" in header and "rank_tokens_per_joule" in header
    values = [line.split(",")[header.index("tokens_per_joule")] for line in text[1:]]
    assert all(float(v) > 0 for v in values)


@pytest.mark.parametrize("power, rule", [("{idle: 700, busy: 70}", "must be at least idle"),
                                         ("{idle: .nan, busy: 70}", "power_w.idle"),
                                         ("{idle: -1, busy: 70}", "power_w.idle"),
                                         ("{busy: 70}", "power_w.idle")])
def test_bad_power_figures_exit_2_with_one_line(power, rule, tmp_path):
    res = CliRunner().invoke(app, ["run", str(SCENARIOS / "colocated-h100.yaml"), "--set",
                                   f"devices.gpu.power_w={power}", "--out", str(tmp_path / "out")])
    err = stderr_of(res).strip()
    assert res.exit_code == 2 and len(err.splitlines()) == 1 and rule in err and "colocated-h100.yaml" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
