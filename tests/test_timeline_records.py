"""Job records: what the timeline draws adds up to what the report says."""

from __future__ import annotations

import pytest
from helpers import constant_scenario, run
from typer.testing import CliRunner

from simulator import engine
from simulator import scenario as sc
from simulator.cli import app


def test_job_records_add_up_to_busy_time_and_never_overlap_on_one_server():
    data = constant_scenario(gamma=3, output=40, requests=6, users=3, split=True,
                             link={"bandwidth_mbps": 5, "latency_ms": 2})
    result = engine.simulate(sc.parse(data, "t"), record_jobs=True)
    rep, _ = run(data)
    by_server: dict[str, list] = {}
    for server, start, end, label in result.jobs:
        by_server.setdefault(server, []).append((start, end, label))
    assert rep["devices"]["edge"]["busy_s"] == pytest.approx(sum(e - s for s, e, _ in by_server["edge"]))
    assert rep["devices"]["cloud"]["busy_s"] == pytest.approx(sum(e - s for s, e, _ in by_server["cloud"]))
    for jobs in by_server.values():
        jobs.sort()
        assert all(a[1] <= b[0] + 1e-12 for a, b in zip(jobs, jobs[1:]))  # one job at a time
    assert {label for _, _, label in by_server["edge"]} == {"prefill", "draft"}
    assert {label for _, _, label in by_server["cloud"]} == {"prefill", "verify"}
    assert engine.simulate(sc.parse(data, "t")).jobs is None  # not recorded unless asked


def test_run_draws_a_timeline(tmp_path):
    path = tmp_path / "scenario.yaml"
    import yaml

    path.write_text(yaml.safe_dump(constant_scenario(output=30, requests=2)))
    out = tmp_path / "t.png"
    result = CliRunner().invoke(app, ["run", str(path), "--timeline", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(app, ["run", str(path), "--timeline", str(tmp_path / "t.txt")])
    assert bad.exit_code == 2 and "--timeline must be a .png" in bad.output
