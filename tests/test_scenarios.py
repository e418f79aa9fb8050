"""Every example scenario in scenarios/ runs through the CLI and gives a sane report.

The files are globbed, so a scenario added to scenarios/ is tested without touching this file.
Each one is validated, then run with `--json --out DIR`; the report must carry every key of the
DESIGN.md contract, its utilizations must lie in [0, 1], and the request and step records
written next to it must account for every token the workload asked for.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulator import scenario as sc
from simulator import workload
from simulator.cli import app
from simulator.engine import streams

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
SUFFIXES = {".yaml", ".yml", ".json", ".toml"}
SCENARIOS = sorted(p for p in SCENARIO_DIR.glob("*") if p.is_file() and p.suffix in SUFFIXES)

TOP_KEYS = ("scenario", "strategy", "requests", "output_tokens", "simulated_s", "throughput_tokens_per_s",
            "tokens_per_step", "acceptance_rate", "latency_s", "devices", "links", "warnings", "sim")
LATENCY_KEYS = ("ttft", "tpot", "e2e")
STAT_KEYS = ("mean", "p50", "p90", "p99")

runner = CliRunner()


def _ids(path: Path) -> str:
    return path.name


def test_scenarios_exist():
    assert SCENARIOS, f"no scenario files in {SCENARIO_DIR}"
    assert {p.suffix for p in SCENARIOS} >= {".yaml", ".json", ".toml"}


@pytest.mark.parametrize("path", SCENARIOS, ids=_ids)
def test_documented(path: Path):
    """Each scenario says what it asks: a comment header, or (JSON, which has none) a README section."""
    if path.suffix == ".json":
        readme = SCENARIO_DIR / "README.md"
        assert readme.is_file() and f"## {path.name}" in readme.read_text(), f"README.md lacks a section on {path.name}"
    else:
        assert path.read_text().lstrip().startswith("#"), f"{path.name} starts with no comment header"


@pytest.mark.parametrize("path", SCENARIOS, ids=_ids)
def test_validate(path: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths inside the scenario must resolve against its folder
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout.startswith("ok:")


@pytest.mark.parametrize("path", SCENARIOS, ids=_ids)
def test_run(path: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(path), "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    rep = json.loads(result.stdout)

    # the report contract of DESIGN.md
    for key in TOP_KEYS:
        assert key in rep, f"report lacks {key!r}"
    for key in LATENCY_KEYS:
        assert set(STAT_KEYS) <= set(rep["latency_s"][key]), f"latency_s.{key}"
    for key in ("ttft", "e2e"):
        for stat in STAT_KEYS:
            value = rep["latency_s"][key][stat]
            assert isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, f"{key}.{stat}"
    assert isinstance(rep["warnings"], list)
    assert {"wall_s", "events"} <= set(rep["sim"])
    assert rep["devices"], "a scenario uses at least one device"
    for name, dev in rep["devices"].items():
        assert 0.0 <= dev["utilization"] <= 1.0, f"device {name} utilization {dev['utilization']}"
    for name, link in rep["links"].items():
        assert 0.0 <= link["utilization"] <= 1.0, f"link {name} utilization {link['utilization']}"
        assert isinstance(link["bytes"], int) and link["bytes"] > 0, f"link {name} bytes"
    assert rep["simulated_s"] > 0 and rep["throughput_tokens_per_s"] > 0
    assert rep["tokens_per_step"] >= 1.0
    if rep["acceptance_rate"] is not None:
        assert 0.0 <= rep["acceptance_rate"] <= 1.0

    # tokens requested: the workload's requests, the request records and the report agree
    requests = _read_csv(out / "requests.csv")
    steps = _read_csv(out / "steps.csv")
    assert len(requests) == rep["requests"]
    requested = sum(int(r["output_tokens"]) for r in requests)
    assert requested == rep["output_tokens"]
    spec = sc.load(path)
    if spec.workload.duration_s is None:  # otherwise the drawn list holds more requests than are admitted
        reqs = workload.draw(spec.workload, streams(spec.seed)["workload"])
        assert requested == sum(reqs.outputs)
        assert len(requests) == reqs.requests

    if spec.strategy.kind == "batched":  # one record per batch step, none per request step
        batches = _read_csv(out / "batches.csv")
        assert sum(int(b["committed"]) for b in batches) == requested
        assert sum(int(b["batch"]) for b in batches) == sum(int(r["steps"]) for r in requests)
        assert sum(int(b["drafted"]) for b in batches) == sum(int(r["drafted"]) for r in requests)
        assert sum(int(b["accepted"]) for b in batches) == sum(int(r["accepted"]) for r in requests)
        assert all(0 <= int(b["accepted"]) <= int(b["drafted"]) for b in batches)
        assert not steps
        for r in requests:  # each step commits 1..accepted + 1 tokens; a re-prefill after preemption commits 1
            assert int(r["steps"]) <= int(r["output_tokens"]) - 1 or int(r["output_tokens"]) == 1
            assert int(r["accepted"]) <= int(r["drafted"])

    # tokens produced: the prefill's first token plus every step's committed tokens, per request
    # (a step commits its accepted drafts plus the target's own token, fewer only at the end)
    committed: dict[str, int] = {}
    step_count: dict[str, int] = {}
    short: dict[str, int] = {}  # steps that committed fewer than accepted + 1
    for s in steps:
        rid, k, c = s["request"], int(s["accepted"]), int(s["committed"])
        committed[rid] = committed.get(rid, 0) + c
        step_count[rid] = step_count.get(rid, 0) + 1
        assert float(s["start_s"]) <= float(s["end_s"])
        assert 0 <= k <= int(s["drafted"])
        assert 1 <= c <= k + 1, f"request {rid}: a step accepted {k} drafts and committed {c} tokens"
        pearl_full_accept = spec.strategy.kind == "pearl" and k == int(s["drafted"]) > 0 and c == k
        # pipeinfer: a micro-batch's first accepted draft is the token the run before it committed
        pipeinfer_batch = spec.strategy.kind == "pipeinfer" and int(s["drafted"]) > 0 and c == k
        if c < k + 1 and not pearl_full_accept and not pipeinfer_batch:  # pearl commits no extra token after a full accept
            short[rid] = short.get(rid, 0) + 1
    assert all(n == 1 for n in short.values()), "only a request's last step may commit fewer than accepted + 1"
    for r in requests:
        rid = r["id"]
        if spec.strategy.kind != "batched":
            assert 1 + committed.get(rid, 0) == int(r["output_tokens"]), f"request {rid}: tokens produced"
            assert step_count.get(rid, 0) == int(r["steps"]), f"request {rid}: steps"
        arrival, first, finish = float(r["arrival_s"]), float(r["first_token_s"]), float(r["finish_s"])
        assert finish >= first >= arrival, f"request {rid}: arrival {arrival}, first {first}, finish {finish}"
    # metrics.py defines simulated_s as the time the last request finished, but the engine's
    # clock also runs through a closed-loop user's think time after its last request, so
    # only the bound is held here
    assert rep["simulated_s"] >= max(float(r["finish_s"]) for r in requests) - 1e-9

    # the written report is the printed one (timing fields aside)
    written = json.loads((out / "report.json").read_text())
    assert {k: v for k, v in written.items() if k != "sim"} == {k: v for k, v in rep.items() if k != "sim"}


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
