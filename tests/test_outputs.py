"""A command's --out files are one unit: all of them whole, or nothing new (simulator/outputs.py).

A write that fails, or an interruption, part way through leaves neither the target folder nor a
temporary folder or file behind; a target folder that exists already keeps everything until the
new unit is complete, then has its earlier outputs replaced (stale ones of the same command
removed) and every other file left alone.
"""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import autoregressive, constant_scenario, stderr_of
from typer.testing import CliRunner

from simulator import metrics, outputs, plan, sweep
from simulator.cli import app

SMALL = constant_scenario(requests=4, users=2, output=8, prompt=8)


def _scenario(tmp_path, data=SMALL, name="scenario.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _leftovers(folder) -> list[str]:
    """Hidden entries (temporary folders, .tmp files), anywhere below `folder`."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def _fail_on(monkeypatch, module, name: str, exc: BaseException, after: int = 0):
    """Make module.name raise `exc` on its call number after + 1 (the earlier calls run)."""
    real, calls = getattr(module, name), []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


def _commands(tmp_path):
    scenario = _scenario(tmp_path)
    md1 = autoregressive(constant_scenario(target_ms=20, output=1, prompt=16, requests=20))
    md1["models"] = {"target": md1["models"]["target"]}
    md1["devices"]["gpu"]["profile"]["forward_ms"] = {"target": 20}
    return {
        "run": (["run", scenario, "--json"], None, "put_steps"),
        "sweep": (["sweep", scenario, "--grid", "strategy.gamma=1,2", "--workers", "1"], sweep, "plot"),
        "plan": (["plan", _scenario(tmp_path, md1, "md1.yaml"),
                  "--slo-ttft-ms", "200", "--workers", "1", "--tolerance", "0.2"], plan, "plot"),
    }


def _break_steps_csv(monkeypatch, exc):
    """requests.csv and report.json are written, then steps.csv fails."""
    real = metrics.write_outputs

    def write(folder, rep, result, *scenario):
        class Broken(list):
            def __iter__(self):
                raise exc
        result.world.steps = Broken(result.world.steps)
        return real(folder, rep, result, *scenario)

    monkeypatch.setattr(metrics, "write_outputs", write)


@pytest.mark.parametrize("command", ["run", "sweep", "plan"])
def test_a_failed_write_leaves_no_folder_and_no_temporary_files(tmp_path, monkeypatch, command):
    args, module, name = _commands(tmp_path)[command]
    if command == "run":
        _break_steps_csv(monkeypatch, OSError(28, "No space left on device"))
    else:
        _fail_on(monkeypatch, module, name, OSError(28, "No space left on device"))  # after the csv files
    result = _invoke(*args, "--out", tmp_path / "out" / "deeper")
    assert result.exit_code == 2, (result.output, result.exception)
    assert "cannot write outputs (No space left on device)" in stderr_of(result)
    assert not (tmp_path / "out").exists()  # not even the parent it would have made
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("command", ["run", "sweep", "plan"])
def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch, command):
    args, module, name = _commands(tmp_path)[command]
    if command == "run":
        _break_steps_csv(monkeypatch, KeyboardInterrupt())
    else:
        _fail_on(monkeypatch, module, name, KeyboardInterrupt())
    result = _invoke(*args, "--out", tmp_path / "out")
    assert result.exit_code == 130, (result.output, result.exception)
    assert stderr_of(result).strip().splitlines()[-1] == "interrupted"
    assert not (tmp_path / "out").exists()
    assert _leftovers(tmp_path) == []


def test_a_failed_write_leaves_an_existing_folder_as_it_was(tmp_path, monkeypatch):
    scenario, out = _scenario(tmp_path), tmp_path / "out"
    assert _invoke("run", scenario, "--out", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _break_steps_csv(monkeypatch, OSError(5, "Input/output error"))
    assert _invoke("run", scenario, "--set", "seed=9", "--out", out).exit_code == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []


def test_an_existing_folder_gets_the_new_unit_and_keeps_other_files(tmp_path):
    scenario, out = _scenario(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "batches.csv").write_text("from an earlier batched run")  # not written by this run: removed
    result = _invoke("run", scenario, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.json", "requests.csv", "scenario.yaml",
                                                        "steps.csv"]
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "report.json").read_text())["requests"] == 4
    assert _leftovers(tmp_path) == []


def test_a_sweep_into_its_old_folder_drops_plots_of_keys_no_longer_swept(tmp_path):
    scenario, out = _scenario(tmp_path), tmp_path / "out"
    assert _invoke("sweep", scenario, "--grid", "strategy.gamma=1,2", "--workers", "1", "--out", out).exit_code == 0
    assert (out / "plot-strategy.gamma.png").exists()
    result = _invoke("sweep", scenario, "--grid", "acceptance.alpha=0.5,0.9", "--workers", "1", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["plot-acceptance.alpha.png", "runs.csv", "scenario.yaml",
                                                        "summary.csv"]


def test_a_new_folder_has_the_usual_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        outputs.write(tmp_path / "out", ["a.txt"], lambda folder: [_put(folder / "a.txt")])
    finally:
        os.umask(mask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_an_empty_folder_is_replaced_by_one_rename(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    written = outputs.write(out, ["a.txt"], lambda folder: [_put(folder / "a.txt")])
    assert written == [out / "a.txt"] and (out / "a.txt").read_text() == "x"
    assert _leftovers(tmp_path) == []


def _put(path):
    path.write_text("x")
    return path
