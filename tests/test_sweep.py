"""specsim sweep: one row per run, seeds per repeat, Student-t intervals, and the same figures on
every backend (in this process, a local process pool, a real dask.distributed LocalCluster).

Bad input (grid syntax, an unknown key, a value one configuration refuses, a bad option) ends
with exit code 2 and one line `error: FILE: FIELD: RULE` before any run starts and before any
output exists.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
import yaml
from helpers import constant_scenario, stderr_of
from scipy import stats
from typer.testing import CliRunner

from simulator import grid
from simulator import sweep as sw
from simulator.cli import app

# Random acceptance (iid 0.8), so repeats with different seeds give different figures.
SMALL = constant_scenario(requests=6, users=2, output=12, prompt=8)


def _scenario(tmp_path: Path, data: dict = SMALL) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _sweep(tmp_path: Path, *args: str, out: str = "out"):
    result = CliRunner().invoke(app, ["sweep", str(_scenario(tmp_path)), "--out", str(tmp_path / out), *args])
    return result, tmp_path / out


def _csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_runs_csv_has_one_row_per_run_and_a_column_per_key_and_figure(tmp_path):
    result, out = _sweep(tmp_path, "--grid", "strategy.gamma=0,3", "--grid", "acceptance.alpha=0.5,0.9",
                         "--repeats", "2", "--workers", "1")
    assert result.exit_code == 0, result.output
    rows = _csv(out / "runs.csv")
    assert len(rows) == 2 * 2 * 2
    header = list(rows[0])
    assert header[:5] == ["config", "strategy.gamma", "acceptance.alpha", "repeat", "seed"]
    assert {"throughput_tokens_per_s", "latency_s.ttft.p99", "latency_s.tpot.mean", "latency_s.e2e.p50",
            "devices.gpu.utilization", "requests", "acceptance_rate"} <= set(header)
    assert not any(h.startswith("sim.") for h in header)  # wall time differs between identical runs
    combos = [(r["strategy.gamma"], r["acceptance.alpha"], r["repeat"]) for r in rows]
    assert len(set(combos)) == len(rows)
    assert all(int(r["seed"]) == SMALL["seed"] + int(r["repeat"]) for r in rows)
    assert all(int(r["requests"]) == 6 for r in rows)
    summary = _csv(out / "summary.csv")
    assert [(s["strategy.gamma"], s["acceptance.alpha"]) for s in summary] == [
        ("0", "0.5"), ("0", "0.9"), ("3", "0.5"), ("3", "0.9")]
    assert {p.name for p in out.iterdir()} == {"runs.csv", "summary.csv", "scenario.yaml", "plot-strategy.gamma.png",
                                               "plot-acceptance.alpha.png"}
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temporary file left behind


def test_repeats_vary_the_seed_and_summary_holds_95_percent_student_t_intervals(tmp_path):
    result, out = _sweep(tmp_path, "--grid", "strategy.gamma=4", "--repeats", "4", "--workers", "1")
    assert result.exit_code == 0, result.output
    rows = _csv(out / "runs.csv")
    assert [int(r["seed"]) for r in rows] == [1, 2, 3, 4]
    x = [float(r["throughput_tokens_per_s"]) for r in rows]
    assert len(set(x)) > 1, "different seeds should draw different acceptances"
    (row,) = _csv(out / "summary.csv")
    n = len(x)
    mean = sum(x) / n
    half = stats.t.ppf(0.975, n - 1) * math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1)) / math.sqrt(n)
    assert int(row["runs"]) == 4
    assert float(row["throughput_tokens_per_s.mean"]) == pytest.approx(mean, rel=1e-12)
    assert float(row["throughput_tokens_per_s.ci95"]) == pytest.approx(half, rel=1e-9)
    assert float(row["latency_s.ttft.p99.ci95"]) >= 0


def test_every_backend_gives_the_same_files(tmp_path):
    """In this process, two local processes, and a real dask LocalCluster (threads, so it starts
    in about a second) reached by its address, as a remote scheduler would be."""
    from distributed import LocalCluster

    args = ("--grid", "strategy.gamma=1,3,5", "--set", "workload.arrival.users=3", "--repeats", "2")
    inproc, out1 = _sweep(tmp_path, *args, "--workers", "1", out="inproc")
    pool, out2 = _sweep(tmp_path, *args, "--workers", "2", out="pool")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        dask, out3 = _sweep(tmp_path, *args, "--cluster", cluster.scheduler_address, out="dask")
    for result in (inproc, pool, dask):
        assert result.exit_code == 0, (result.output, result.exception)
    for name in ("runs.csv", "summary.csv"):
        assert (out1 / name).read_text() == (out2 / name).read_text() == (out3 / name).read_text(), name
    assert len(_csv(out1 / "runs.csv")) == 6


def test_grid_values_split_at_commas_outside_brackets_and_quotes():
    axis = grid.parse_axis("workload.arrival={kind: poisson, rate_per_s: 2},{kind: closed_loop, users: 4}")
    assert axis.values == ({"kind": "poisson", "rate_per_s": 2}, {"kind": "closed_loop", "users": 4})
    assert grid.parse_axis("acceptance.alphas=[0.9, 0.8],[0.7]").values == ([0.9, 0.8], [0.7])
    assert grid.parse_axis("name='a,b',c").values == ("a,b", "c")
    assert grid.parse_axis("strategy.gamma=2, 4 ,8").raws == ("2", "4", "8")
    assert grid.configurations([grid.parse_axis("a=1,2"), grid.parse_axis("b=x,y")]) == [
        {"a": "1", "b": "x"}, {"a": "1", "b": "y"}, {"a": "2", "b": "x"}, {"a": "2", "b": "y"}]


BAD = [
    # (id, arguments, source, field, rule fragment)
    ("grid_without_equals", ("--grid", "strategy.gamma"), "--grid", "strategy.gamma", "expected dotted.key=v1,v2"),
    ("grid_without_values", ("--grid", "strategy.gamma="), "--grid", "strategy.gamma=", "expected dotted.key=v1,v2"),
    ("grid_empty_value", ("--grid", "strategy.gamma=2,,4"), "--grid", "strategy.gamma", "empty value"),
    ("grid_repeated_value", ("--grid", "strategy.gamma=2,2"), "--grid", "strategy.gamma", "listed twice"),
    ("grid_repeated_key", ("--grid", "strategy.gamma=2", "--grid", "strategy.gamma=4"), "--grid", "strategy.gamma",
     "given twice"),
    ("grid_value_not_yaml", ("--grid", "acceptance.alpha=[0.5"), "--grid", "acceptance.alpha", "not valid YAML"),
    ("grid_unknown_key", ("--grid", "strategy.gama=2,4"), "scenario.yaml", "strategy.gama", "unknown key"),
    ("grid_bad_value_in_one_configuration", ("--grid", "strategy.gamma=2,-1"), "scenario.yaml", "strategy.gamma",
     "greater than or equal to 0 (in the configuration strategy.gamma=-1)"),
    ("grid_into_a_scalar", ("--grid", "strategy.gamma.x=1"), "--grid", "strategy.gamma.x", "not a mapping or list"),
    ("set_unknown_key", ("--set", "strategy.gama=2"), "scenario.yaml", "strategy.gama", "unknown key"),
    ("repeats_zero", ("--repeats", "0"), "--repeats", "", "must be >= 1"),
    ("workers_zero", ("--workers", "0"), "--workers", "", "must be >= 1"),
]


@pytest.mark.parametrize("args,source,field,rule", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_exits_2_before_running_and_writes_nothing(tmp_path, monkeypatch, args, source, field, rule):
    ran = []
    monkeypatch.setattr(sw, "run_one", lambda run: ran.append(run) or {})
    result, out = _sweep(tmp_path, "--workers", "1", *args)
    message = [ln for ln in stderr_of(result).splitlines() if ln.strip()]
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output + stderr_of(result)
    assert len(message) == 1 and message[0].startswith("error: "), message
    assert message[0].startswith(f"error: {tmp_path / source if source.endswith('.yaml') else source}: "), message
    if field:
        assert f": {field}: " in message[0], message
    assert rule in message[0], message
    assert ran == [] and not out.exists()


def test_cluster_without_distributed_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    result, out = _sweep(tmp_path, "--cluster", "local")
    assert result.exit_code == 2, result.output
    (line,) = [ln for ln in stderr_of(result).splitlines() if ln.strip()]
    assert line.startswith("error: --cluster: ") and "specsim[cluster]" in line, line
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("keep me")
    result, out = _sweep(tmp_path, "--workers", "1")
    assert result.exit_code == 2
    assert out.read_text() == "keep me"


def test_json_holds_the_summary_that_summary_csv_holds(tmp_path):
    import json

    result, out = _sweep(tmp_path, "--grid", "strategy.gamma=0,2", "--repeats", "2", "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = _csv(out / "summary.csv")
    assert len(data["configurations"]) == len(rows) == 2 and data["repeats"] == 2
    for mine, theirs in zip(data["configurations"], rows):
        assert float(theirs["throughput_tokens_per_s.mean"]) == pytest.approx(mine["throughput_tokens_per_s.mean"])
    assert sorted(Path(p).name for p in data["written"]) == sorted(p.name for p in out.iterdir())


def test_dask_chunks_cover_every_task_once_in_order():
    from simulator import parallel

    for n, workers in ((1, 4), (6, 1), (7, 2), (100, 3), (3, 8)):
        chunks = parallel._chunks(n, workers)
        assert [i for a, b in chunks for i in range(a, b)] == list(range(n))
        assert len(chunks) <= max(1, workers * parallel.CHUNKS_PER_WORKER)
