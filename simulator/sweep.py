"""What-if sweeps: every configuration of a grid, each run `repeats` times, as tidy tables and plots.

Seeds: repeat r (r = 0, 1, ...) of a configuration runs with seed = that configuration's `seed`
(the scenario's, after --set and --grid) + r, so every run is reproducible and gives the same
figures on every backend (parallel.py).

Outputs, written only after every run has finished, all of them whole or none (outputs.py):
  runs.csv     one row per run: config (its index), every swept key (the value as written),
               repeat, seed, then every numeric figure of the report (metrics.py) flattened to
               a dotted column (latency_s.ttft.p99, devices.NAME.utilization, slo.attained, ...);
               booleans as 1 or 0, an empty cell where a figure is undefined; the report's `sim`
               block (wall time, events) is left out
  scenario.yaml the base scenario (after --set), before the grid's values
  summary.csv  one row per configuration: the swept keys, runs, and for each main figure
               (SUMMARIZED) its mean over the repeats, METRIC.mean, and the half-width of its 95%
               confidence interval, METRIC.ci95 = t(0.975, n - 1) x s / sqrt(n) with s the sample
               standard deviation of the n repeats (Student's t; empty when n = 1)
  plot-KEY.png for each swept key: throughput and the p99 latencies against the key's values,
               one line per combination of the other swept keys, error bars the 95% interval
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import engine, grid, metrics
from . import scenario as sc
from .errors import InputError
from .plots import pyplot, save_png
from .formats import SCENARIO_FILE
from .tables import write_csv, write_yaml

SUMMARIZED = ("throughput_tokens_per_s", "requests_per_s", "tokens_per_step", "acceptance_rate",
              "latency_s.ttft.mean", "latency_s.ttft.p99", "latency_s.tpot.mean", "latency_s.tpot.p99",
              "latency_s.e2e.mean", "latency_s.e2e.p99", "slo.attained", "slo.goodput_tokens_per_s")
PLOTTED = {"throughput_tokens_per_s": ("throughput (tokens/s)", 1.0), "latency_s.ttft.p99": ("TTFT p99 (ms)", 1e3),
           "latency_s.tpot.p99": ("TPOT p99 (ms)", 1e3), "latency_s.e2e.p99": ("end-to-end p99 (ms)", 1e3)}


@dataclass(frozen=True)
class SweepRun:
    """One simulation: the scenario data of a configuration with its seed set."""

    data: dict
    source: str
    base_dir: str


@dataclass(frozen=True)
class Sweep:
    axes: list[grid.Axis]
    configs: list[dict[str, str]]
    repeats: int
    runs: list[SweepRun]  # configuration-major: config i's repeats at i * repeats ... (i + 1) * repeats - 1
    seeds: list[int]
    scenario: dict | None = None  # the base scenario's data (after --set), written as scenario.yaml


def prepare(path: Path, grids: list[str], sets: list[str], repeats: int) -> Sweep:
    """Parse the grids and check every configuration; nothing runs yet."""
    if repeats < 1:
        raise InputError("--repeats", "", "must be >= 1")
    base = grid.load_base(path, sets)
    axes = grid.parse_axes(grids)
    configs = grid.configurations(axes)
    runs, seeds = [], []
    for config in configs:
        spec = grid.check(base, config)
        for r in range(repeats):
            runs.append(SweepRun(grid.build(base, config, seed=spec.seed + r), base.source, base.base_dir))
            seeds.append(spec.seed + r)
    return Sweep(axes, configs, repeats, runs, seeds, base.data)


def run_one(run: SweepRun) -> dict:
    """The flat figures of one simulation (the unit of work: pure, so any backend gives the same)."""
    spec = sc.parse(run.data, run.source, Path(run.base_dir))
    result = engine.simulate(spec, run.source, keep_records=False)  # the report's figures only
    return flatten(metrics.report(result, spec.name, spec.strategy.kind))


def flatten(report: dict, prefix: str = "") -> dict:
    """Numeric figures of a report as {dotted.name: value}; text, lists and the timing block left out."""
    out: dict = {}
    for key, value in report.items():
        if not prefix and key in metrics.TIMING_KEYS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, bool):
            out[name] = int(value)
        elif value is None or isinstance(value, (int, float)):
            out[name] = value
    return out


def rows(sweep: Sweep, results: list[dict]) -> list[dict]:
    """runs.csv's rows."""
    out = []
    for i, (result, seed) in enumerate(zip(results, sweep.seeds)):
        c = i // sweep.repeats
        out.append({"config": c, **sweep.configs[c], "repeat": i % sweep.repeats, "seed": seed, **result})
    return out


def ci95(values: list) -> tuple[float | None, float | None]:
    """(mean, half-width of the 95% Student-t interval) of the defined values."""
    x = np.array([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], float)
    if x.size == 0:
        return None, None
    if x.size == 1:
        return float(x[0]), None
    from scipy import stats

    return float(x.mean()), float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def summary(sweep: Sweep, run_rows: list[dict]) -> list[dict]:
    """summary.csv's rows: per configuration, the mean and 95% half-width of each main figure."""
    present = [m for m in SUMMARIZED if any(m in r for r in run_rows)]
    out = []
    for c, config in enumerate(sweep.configs):
        mine = run_rows[c * sweep.repeats:(c + 1) * sweep.repeats]
        row = {"config": c, **config, "runs": len(mine)}
        for m in present:
            row[f"{m}.mean"], row[f"{m}.ci95"] = ci95([r.get(m) for r in mine])
        out.append(row)
    return out


OUTPUTS = ("runs.csv", "summary.csv", "plot-*.png", "scenario.yaml")  # every file `write` may write


def write(out: Path, sweep: Sweep, results: list[dict]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    run_rows = rows(sweep, results)
    summ = summary(sweep, run_rows)
    written = [write_csv(out / "runs.csv", run_rows), write_csv(out / "summary.csv", summ)]
    if sweep.scenario is not None:
        written.append(write_yaml(out / SCENARIO_FILE, sweep.scenario))
    for axis in sweep.axes:
        written.append(plot(out / f"plot-{re.sub(r'[^A-Za-z0-9._-]', '_', axis.key)}.png", sweep, summ, axis))
    return written


def plot(path: Path, sweep: Sweep, summ: list[dict], axis: grid.Axis) -> Path:
    return save_png(figure(sweep.axes, sweep.repeats, summ, axis), path)


def figure(axes: list[grid.Axis], repeats: int, summ: list[dict], axis: grid.Axis):
    """The main figures against one swept key, one line per combination of the other keys
    (summ: summary.csv's rows, figures as numbers or None)."""
    plt = pyplot()
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in axis.values)
    x_of = dict(zip(axis.raws, axis.values if numeric else range(len(axis.raws))))
    others = [a.key for a in axes if a.key != axis.key]
    lines: dict[tuple, list[dict]] = {}
    for row in summ:
        lines.setdefault(tuple(row[k] for k in others), []).append(row)
    fig, panels = plt.subplots(2, 2, figsize=(11, 7.5))  # fixed margins: a layout engine costs seconds
    for ax, (metric, (title, scale)) in zip(panels.flat, PLOTTED.items()):
        for combo, members in lines.items():
            pts = [(x_of[r[axis.key]], r.get(f"{metric}.mean"), r.get(f"{metric}.ci95")) for r in members]
            pts = [(x, y * scale, (e or 0.0) * scale) for x, y, e in pts if y is not None]
            if pts:
                xs, ys, es = zip(*pts)
                name = ", ".join(f"{k}={v}" for k, v in zip(others, combo)) or None
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(axis.key)
        if not numeric:
            ax.set_xticks(range(len(axis.raws)), axis.raws, rotation=20, fontsize=8)
        ax.grid(alpha=0.3)
    if others:
        handles, labels = panels.flat[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=7)
    fig.suptitle(f"{axis.key}: mean over {repeats} repeat(s), error bars 95% interval", fontsize=10)
    legend_rows = math.ceil(len(lines) / 3) if others else 0
    fig.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=min(0.4, 0.1 + 0.03 * legend_rows), hspace=0.35,
                        wspace=0.2)
    return fig
