"""The run's trace (Chrome trace-event JSON, for Perfetto) and the PNG timeline drawn from the same jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulator import engine, timeline
from simulator import scenario as sc
from simulator.cli import app

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def run_with_trace(tmp_path, name: str) -> tuple[dict, dict]:
    trace, out = tmp_path / "trace.json", tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(SCENARIOS / name), "--trace", str(trace), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(trace.read_text()), json.loads((out / "report.json").read_text())


def test_trace_events_follow_the_format_and_add_up_to_the_reported_utilization(tmp_path):
    data, rep = run_with_trace(tmp_path, "edge-draft-cloud-verify.yaml")
    assert data["displayTimeUnit"] == "ms"
    meta = [e for e in data["traceEvents"] if e["ph"] == "M"]
    jobs = [e for e in data["traceEvents"] if e["ph"] == "X"]
    names = {e["tid"]: e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    assert set(names.values()) == {"cloud", "edge", "edge-cloud:down", "edge-cloud:up"}
    for e in jobs:  # the fields a complete event needs, of the types the format gives them
        assert isinstance(e["name"], str) and e["pid"] == 1 and e["tid"] in names
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0 and isinstance(e["dur"], (int, float)) and e["dur"] >= 0
    span_us = rep["simulated_s"] * 1e6
    for tid, name in names.items():
        mine = sorted((e["ts"], e["ts"] + e["dur"]) for e in jobs if e["tid"] == tid)
        if ":" not in name:  # a device does one job at a time; a link may carry several messages
            assert all(a[1] <= b[0] + 1e-3 for a, b in zip(mine, mine[1:])), name
            busy = sum(b - a for a, b in mine)
            assert busy / span_us == pytest.approx(rep["devices"][name]["utilization"], rel=1e-6)


def test_a_batching_servers_steps_carry_their_batch(tmp_path):
    data, rep = run_with_trace(tmp_path, "serving-h100-speculative.yaml")
    steps = [e for e in data["traceEvents"] if e["ph"] == "X" and e["name"] == "batch"]
    assert steps and all(e["args"]["batch"] >= 1 or e["args"]["prefill_tokens"] > 0 for e in steps)
    spec = sc.load(SCENARIOS / "serving-h100-speculative.yaml", [])
    assert max(e["args"]["batch"] for e in steps) <= spec.strategy.max_batch
    import csv

    with (tmp_path / "out" / "requests.csv").open() as f:
        made = sum(int(r["output_tokens"]) for r in csv.DictReader(f))
    assert sum(e["args"]["committed"] for e in steps) == made  # every step matched to its record, none twice


def test_trace_path_must_be_json_in_a_folder(tmp_path):
    result = CliRunner().invoke(app, ["run", "--trace", str(tmp_path / "trace.txt")])
    assert result.exit_code == 2 and "--trace must be a .json file" in result.output
    result = CliRunner().invoke(app, ["run", "--trace", str(tmp_path / "no" / "trace.json")])
    assert result.exit_code == 2 and not (tmp_path / "no").exists()


def test_the_timeline_draws_one_collection_per_row_and_kind(tmp_path, monkeypatch):
    spec = sc.load(SCENARIOS / "edge-draft-cloud-verify.yaml", [])
    result = engine.simulate(spec, "s", record_jobs=True)
    figures = []
    monkeypatch.setattr(timeline, "save_png", lambda fig, path: figures.append(fig) or path)
    timeline.draw(result.jobs, tmp_path / "t.png", "t")
    (fig,) = figures
    ax = fig.axes[0]
    until = timeline.span_s(result.jobs)
    kinds = {(j[0], j[3]) for j in result.jobs if j[1] <= until}
    assert len(ax.collections) == len(kinds)
    assert sum(1 for j in result.jobs if j[1] <= until) >= timeline.SHOWN_JOBS  # the default span shows 60 jobs
    colours = [tuple(c.get_facecolor()[0]) for c in ax.collections]
    labels = {label for _, label in kinds}
    assert len(set(colours)) == len(labels)  # each kind of job its own colour: decode, verify, transfer apart
    assert len(set(timeline.COLORS.values())) == len(timeline.COLORS)
