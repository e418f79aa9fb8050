"""A run that keeps no records (no --out) keeps no per-step list and reports the same figures.

Structural, not timed: with keep_records=False the engine's step log is a sink that holds
nothing and no RequestRecord per request is kept, and the report equals the one built from kept
records figure for figure (timing aside). The memory this saves is measured by
benchmarks/memory_flat.py (docs/benchmarks.md), not here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import constant_scenario

from simulator import engine, metrics, tallies
from simulator import scenario as sc

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def _report(spec, keep: bool):
    result = engine.simulate(spec, "test", keep_records=keep)
    rep = metrics.report(result, spec.name, spec.strategy.kind)
    rep.pop("sim")
    return rep, result


def test_no_records_keeps_no_step_list():
    spec = sc.parse(constant_scenario(requests=30, users=3, output=40), "test")
    _, result = _report(spec, keep=False)
    assert not isinstance(result.world.steps, list) and isinstance(result.world.steps, tallies.Discard)
    assert result.records is None
    assert not hasattr(result.world.steps, "__len__")  # nothing to count: nothing is held
    with pytest.raises(ValueError):
        result.steps  # noqa: B018 (asking for what was not kept fails loudly)


@pytest.mark.parametrize("name, overrides", [
    ("colocated-h100.yaml", ["workload.requests=6"]),
    ("serving-h100-speculative.yaml", ["workload.requests=60"]),  # batched, with an slo block
    ("edge-fleet-shared-verifier.yaml", ["workload.requests=8"]),
    ("pipeinfer-jetson-gige.yaml", ["workload.requests=2"]),
])
def test_same_report_with_and_without_records(name, overrides):
    spec = sc.load(SCENARIOS / name, overrides)
    kept, with_records = _report(spec, keep=True)
    lean, without = _report(spec, keep=False)
    assert isinstance(with_records.world.steps, list) and with_records.records
    assert lean == kept


def test_cli_run_without_out_keeps_no_records(monkeypatch):
    from typer.testing import CliRunner

    from simulator.cli import app

    seen = []
    real = engine.simulate

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.append(result.world.keeps_records)
        return result

    monkeypatch.setattr(engine, "simulate", spy)
    assert CliRunner().invoke(app, ["run", "--json", "--set", "workload.requests=3"]).exit_code == 0
    assert seen == [False]
