"""Fitting a serving loop's step overhead on streams, and profiles that share another's grids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from simulator import profiles
from simulator.calibration import fit, streams
from simulator.errors import InputError
from simulator.profiles import Overheads

GRAPH = "h200-torch-graph-bf16"
SHIPPED = Path(__file__).parent.parent / "hardware_profiles"


def synthetic(step_ms: float) -> list[streams.ServingStream]:
    """Streams whose 'measured' times are the simulator's own with a step overhead of `step_ms`: six
    configurations (load x gamma) of eight requests each, two repeats each."""
    kept = profiles.read_meta(SHIPPED / GRAPH).overheads
    out = []
    for rate, gamma in ((20.0, 0), (20.0, 3), (200.0, 0), (200.0, 3), (80.0, 2), (80.0, 4)):
        reqs = [(a, 64, 16 + 4 * i, a + 0.01, a + 1.0) for i in range(8) for a in [0.05 * i * 20 / rate]]  # times: placeholders
        base = streams.ServingStream(kind="serving", target="llama2-7b", draft="llama-68m" if gamma else None,
                                     gamma=gamma, alpha=0.7, max_batch=4, step_tokens=512, target_profile=GRAPH,
                                     requests=reqs, rate_per_s=rate)
        pred = streams.predict(base, overheads=kept.model_copy(update={"step_ms": step_ms}))
        sim = sorted(pred.records, key=lambda r: r[0])
        out += [base.model_copy(update={"requests": sim})] * 2
    return out


def test_the_fit_recovers_the_step_overhead_that_made_the_streams():
    served = synthetic(1.5)
    result = fit.fit_streams(served, GRAPH)
    assert result.overheads.step_ms == pytest.approx(1.5, abs=0.02)
    assert len(result.train) == 4 and len(result.held_out) == 8  # every third of six configurations trains
    held = streams.summarize(result.after["held_out"])
    assert held["tpot_s"]["median_abs_error"] < 0.005 and held["tpot_s"]["repeat_spread"] == 0
    assert streams.summarize(result.before["held_out"])["tpot_s"]["median_abs_error"] > 0.05


def test_a_profile_reads_the_grids_of_the_one_it_names(tmp_path, monkeypatch):
    folder = tmp_path / "loop"
    folder.mkdir()
    meta = yaml.safe_load((SHIPPED / GRAPH / "profile.yaml").read_text())
    meta.pop("pass_disagreement")
    (folder / "profile.yaml").write_text(yaml.safe_dump(meta | {"grid_from": GRAPH, "overheads": {"step_ms": 2.0}}))
    from simulator.catalog import PRESETS

    arch = PRESETS["llama2-7b"]
    mine = profiles.open_profile(str(folder), "profile", "s.yaml")
    theirs = profiles.open_profile(GRAPH, "profile", "s.yaml")
    assert mine.overheads.step_ms == 2.0
    ctx = np.array([300, 40])
    assert list(mine.ms_fn("t", "llama2-7b", arch)(2, 1, ctx)) == list(theirs.ms_fn("t", "llama2-7b", arch)(2, 1, ctx))
    (folder / "profile.yaml").write_text(yaml.safe_dump(meta | {"grid_from": "no-such-profile"}))
    with pytest.raises(InputError, match="grid_from: unknown profile 'no-such-profile'"):
        profiles.open_profile(str(folder), "profile", "s.yaml")


def test_fit_stores_nothing_unless_told(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from simulator.cli import app

    shutil.copytree(SHIPPED / GRAPH, tmp_path / "mine")
    monkeypatch.setenv("SPECSIM_PROFILE_PATH", str(tmp_path))
    runs = Path(__file__).parent.parent / "calibration" / "measurements" / "runs-h200-graph-a.jsonl"
    lines = [json.loads(line) | {"target_profile": "mine", "draft_profile": "mine"} for line in runs.read_text().splitlines()]
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines[:40]))
    before = (tmp_path / "mine" / "profile.yaml").read_text()
    result = CliRunner().invoke(app, ["calibrate", "fit", str(tmp_path / "runs.jsonl"), "--profile", "mine"])
    assert result.exit_code == 0, result.output
    assert "not stored" in result.output and (tmp_path / "mine" / "profile.yaml").read_text() == before
    result = CliRunner().invoke(app, ["calibrate", "fit", str(tmp_path / "runs.jsonl"), "--profile", "mine", "--write"])
    assert result.exit_code == 0 and (tmp_path / "mine" / "profile.yaml").read_text() != before
