"""Capacity planning: the highest Poisson arrival rate each configuration sustains within an SLO.

For each configuration of a search (a cross product of scenario keys, grid.py) the workload's
arrival is replaced by a Poisson process at a trial rate r; the configuration sustains r when,
in one simulation, the p-th percentile of TTFT and of TPOT over the measured requests are within
their targets (metrics.slo_summary; a target left out is not checked).

Search: start at the closed form's capacity at saturation (analytic.capacity_per_s with arrivals
far faster than any device serves them: a batching server's batch full), where trials are cheap
and the answer is near (an SLO binds at or below capacity); where the closed form has no capacity
(nothing takes time), at r0 = 1 / the closed-form single-stream request time (analytic.estimate's
e2e: one request at a time, back to back). If r is sustained, step up while it is (at most
MAX_DOUBLINGS steps; still sustained: reported with bounded = 0): by 1 / f up to twice the start,
then doubling; else step down until it is: by a factor f near DESCENT = 0.85 while that stays at or
above half the start (an SLO binds at 0.7-0.9 of capacity in the shipped plans; the closed form
can also fall short of the simulated capacity), f = (1 + tolerance) ^ -(2^m) with the integer m
that brings it nearest, so that a bracket [f r, r] takes exactly m bisections (3 at the default 2%,
against 6 for a bracket of 2, and none of the dear trials at half the rate: a trial far below
capacity runs batches of few requests, nearly a step per token); below that, halving (down to r0 /
2^MAX_HALVINGS, r0 / 1024; never sustained: infeasible, reported as rate 0, not an error); then bisect
geometrically between the highest sustained rate lo and the lowest unsustained rate hi until
hi <= lo x (1 + tolerance). The answer is lo, a rate that was simulated and sustained. Every
trial uses the scenario's seed: the same arrivals scaled by 1 / r, the same lengths and the same
acceptance draws at every rate (common random numbers), so the outcome is close to monotone in
r and the search is reproducible on any backend.

Stopping rule, per trial: n = max(R, ceil(K / (1 - p / 100))) measured requests, R the scenario's
workload.requests (100 when not set) and K = TAIL_REQUESTS = 20, so that at least K measured
requests lie beyond the p-th percentile. They are preceded by w = ceil(WARMUP_FRACTION x n)
(10%) warm-up requests that are simulated but not measured, as the system starts empty. A larger
workload.requests (--set workload.requests=...) tightens the percentiles at proportional cost. A
rate just above capacity can pass when the backlog built over n requests stays within target;
the larger n, the less so. A trial ends as soon as its failure is certain: once more measured
requests have missed a target than the percentile can leave above it (_decided_miss), the same
verdict the whole trial would give, found sooner.

Ranking: by sustained rate (highest first); by tokens per USD = throughput x 3600 / USD per hour
of the devices the strategy places a model on (only when each of them has cost_per_hour, and the
sum is above 0); by tokens per joule = output tokens / energy of the sustained rate's trial over
the whole trial, on the same devices (only when each has power_w: busy W while busy, idle W for
the rest); by the p-th percentile end-to-end latency at the sustained rate (lowest first).
Throughput at the sustained rate = rate x mean output tokens per request (in a stable system the
tokens served per second equal those arriving). Infeasible configurations rank last by rate and
have no tokens-per-USD or latency rank.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import analytic, engine, grid, metrics, parallel
from . import scenario as sc
from .errors import InputError
from .plots import pyplot, save_png
from .formats import SCENARIO_FILE
from .tables import write_csv, write_yaml
from .workload import DEFAULT_REQUESTS

TAIL_REQUESTS = 20
WARMUP_FRACTION = 0.1
MAX_DOUBLINGS = 30
MAX_HALVINGS = 10
DESCENT = 0.85  # about the factor of the first two steps down from an unsustained start, before halving
SATURATING_RATE_PER_S = 1e6  # arrivals per second for the closed form's capacity: above any device's


@dataclass(frozen=True)
class Search:
    """One configuration's search (the unit of work): its scenario data, the SLO and the budget."""

    data: dict  # workload.requests already n + w; workload.arrival is set per trial
    source: str
    base_dir: str
    slo: sc.SloSpec
    start_rate_per_s: float
    warmup: int
    tolerance: float
    floor_rate_per_s: float  # the lowest rate halving tries (r0 / 2^MAX_HALVINGS); > 0


@dataclass(frozen=True)
class Job:
    source: str
    axes: list[grid.Axis]
    configs: list[dict[str, str]]
    slo: sc.SloSpec
    searches: list[Search]
    usd_per_hour: list[float | None]
    scenario: dict | None = None  # the base scenario's data (after --set) with the SLO planned for


def requests_per_trial(requests: int | None, percentile: float) -> tuple[int, int]:
    """(measured, warm-up) requests of one trial: the stopping rule above."""
    n = max(requests or DEFAULT_REQUESTS, math.ceil(round(TAIL_REQUESTS * 100 / (100 - percentile), 6)))
    return n, math.ceil(WARMUP_FRACTION * n)


def prepare(path: Path, search_keys: list[str], sets: list[str], ttft_ms: float | None, tpot_ms: float | None,
            percentile: float | None, tolerance: float) -> Job:
    """Parse the search and the SLO, and check every configuration; nothing runs yet."""
    for flag, value in (("--slo-ttft-ms", ttft_ms), ("--slo-tpot-ms", tpot_ms)):
        if value is not None and not (0 < value < math.inf):
            raise InputError(flag, "", "must be > 0 (in ms)")
    if percentile is not None and not 0 < percentile < 100:
        raise InputError("--percentile", "", "must be > 0 and < 100")
    if not 0 < tolerance < 1:
        raise InputError("--tolerance", "", "must be > 0 and < 1")
    base = grid.load_base(path, sets)
    axes = grid.parse_axes(search_keys, "--search")
    own = base.data.get("slo")
    if own is not None and not isinstance(own, dict):
        raise InputError(path, "slo", "must be a mapping {ttft_ms, tpot_ms, percentile}")
    slo = dict(own or {})
    slo.update({k: v for k, v in (("ttft_ms", ttft_ms), ("tpot_ms", tpot_ms), ("percentile", percentile))
                if v is not None})
    if slo.get("ttft_ms") is None and slo.get("tpot_ms") is None:
        raise InputError(path, "slo", "needs a target: --slo-ttft-ms and/or --slo-tpot-ms (or slo.ttft_ms, "
                         "slo.tpot_ms in the scenario)")
    top = {"workload.arrival": {"kind": "poisson", "rate_per_s": 1.0}, "workload.duration_s": None, "slo": slo}
    configs, searches, costs = grid.configurations(axes), [], []
    for config in configs:
        with grid.naming(config):
            spec = grid.parse(base, grid.build(base, config, **top))
            n, w = requests_per_trial(spec.workload.requests, spec.slo.percentile)
            data = grid.build(base, config, **top, **{"workload.requests": n + w})
            spec = grid.parse(base, data)  # the trial size within workload.requests' limit
            e2e = analytic.estimate(spec, base.source)["latency_s"]["e2e"]  # prepares, so validates, once
            flood = grid.parse(base, {**data, "workload": {**data["workload"], "arrival": {
                "kind": "poisson", "rate_per_s": SATURATING_RATE_PER_S}}})
            capacity = analytic.capacity_per_s(flood, base.source)
        r0 = 1 / e2e if e2e and e2e > 0 else 1.0
        start = capacity if 0 < capacity < SATURATING_RATE_PER_S else r0
        searches.append(Search(data, base.source, base.base_dir, spec.slo, start, w, tolerance,
                               r0 / 2 ** MAX_HALVINGS))
        costs.append(usd_per_hour(spec))
    return Job(base.source, axes, configs, searches[0].slo, searches, costs, {**base.data, "slo": slo})  # a search has one configuration or more


def placed_devices(spec: sc.Scenario) -> list[str]:
    """The devices the strategy places a model on, each once, in placement order."""
    return list(dict.fromkeys(p.device for p in spec.strategy.placements().values()))


def usd_per_hour(spec: sc.Scenario) -> float | None:
    """Price of the devices the strategy places a model on; None unless each has cost_per_hour."""
    devices = [spec.devices[d] for d in placed_devices(spec)]
    if any(d.cost_per_hour is None for d in devices):
        return None
    return float(sum(d.cost_per_hour * d.gpus for d in devices))


def trial(task: Search, rate: float, early: bool = True) -> dict:
    """Simulate at one Poisson rate; the SLO figures of the requests after the warm-up. `early`: end a
    trial as soon as its failure is certain (_decided_miss; a failed trial then has no figures)."""
    data = copy.deepcopy(task.data)
    data["workload"]["arrival"] = {"kind": "poisson", "rate_per_s": rate}
    spec = sc.parse(data, task.source, Path(task.base_dir))
    setup = engine.prepare(spec, task.source, keep_records=False)
    run = engine.simulate(spec, task.source, setup=setup, exact_columns=True,  # sliced after the warm-up below
                          stop=_decided_miss(task, setup.requests.outputs) if early else None)
    if run.stopped:  # enough measured requests missed a target that its percentile must too
        return {"met": False}
    cols = run.columns  # in id order, as they arrive
    w = task.warmup
    arrival, first, finish, out = cols.arrival_s[w:], cols.first_token_s[w:], cols.finish_s[w:], cols.output_tokens[w:]
    tpot = metrics.per_request_tpot(first, finish, out)
    slo = metrics.slo_summary(task.slo, first - arrival, tpot, out, float(finish.max() - arrival.min()))
    return {"met": slo["met"], "ttft_at_percentile_s": slo["ttft_at_percentile_s"],
            "tpot_at_percentile_s": slo["tpot_at_percentile_s"],
            "e2e_at_percentile_s": float(np.percentile(finish - arrival, task.slo.percentile)),
            "mean_output_tokens": float(out.mean()), "joules_per_token": joules_per_token(spec, run)}


def joules_per_token(spec: sc.Scenario, run) -> float | None:
    """The whole trial's energy over its output tokens, on the devices the strategy places a model
    on; None unless each has power_w (as usd_per_hour needs every price)."""
    used = placed_devices(spec)
    powers = [spec.devices[d].power_w for d in used]
    tokens = int(run.columns.output_tokens.sum())
    if any(p is None for p in powers) or not tokens:
        return None
    t = run.simulated_s
    return sum(metrics.joules(p, run.world.devices[d].server.run_busy_s, t, spec.devices[d].gpus)
               for d, p in zip(used, powers)) / tokens


def _decided_miss(task: Search, outputs: list[int]):
    """stop(record) for a trial: True once more measured requests (ids from the warm-up on) have
    missed the TTFT target, or the TPOT target (those of more than one token), than the p-th
    percentile can leave above it: with k of n values above a target, numpy's percentile (linear
    between order statistics) is at least the (n - k)-th smallest, which is then above it too, so the
    trial fails whatever the other requests do (the same verdict as the whole trial, sooner)."""
    w, p = task.warmup, task.slo.percentile / 100
    n_ttft = len(outputs) - w
    n_tpot = sum(1 for o in outputs[w:] if o > 1)
    limit_ttft = n_ttft - math.floor((n_ttft - 1) * p) if n_ttft else math.inf
    limit_tpot = n_tpot - math.floor((n_tpot - 1) * p) if n_tpot else math.inf
    ttft_s, tpot_s = task.slo.limits_s
    missed = [0, 0]

    def stop(rec) -> bool:
        if rec.id < w:
            return False
        if rec.first_token_s - rec.arrival_s > ttft_s:
            missed[0] += 1
        if rec.output_tokens > 1 and (rec.finish_s - rec.first_token_s) / (rec.output_tokens - 1) > tpot_s:
            missed[1] += 1
        return missed[0] >= limit_ttft or missed[1] >= limit_tpot

    return stop


def descent(tolerance: float) -> float:
    """(1 + tolerance) ^ -(2^m), the integer m >= 0 that brings it nearest DESCENT (in log), a hair
    larger so that m geometric bisections of [f r, r] end within the tolerance despite rounding."""
    m = max(0, round(math.log2(math.log(1 / DESCENT) / math.log1p(tolerance))))
    return (1 + tolerance) ** -(2 ** m) * (1 + 1e-9)


def run_trial(item: tuple[Search, float]) -> dict:
    """trial(task, rate) of one (task, rate): the unit of work parallel.drive hands a worker."""
    return trial(*item)


def search(task: Search) -> dict:
    """The highest sustained rate (the search above) and the figures of its trial, trial after trial
    in this process."""
    return parallel.drive(run_trial, [searching(task)], workers=1)[0]


def run(searches: list[Search], workers: int | None = None, cluster: str | None = None, notes=None) -> list[dict]:
    """search() of every configuration, their trials spread over the backend's workers as they come."""
    return parallel.drive(run_trial, [searching(t) for t in searches], workers, cluster, notes)


def searching(task: Search):
    """The search as a generator: yields (task, rate) for each trial, is sent the trial's result, and
    returns what search() does. Free of any backend, so every backend takes the same steps."""
    trials: dict[float, dict] = {}

    def sustained(rate: float):
        trials[rate] = yield task, rate
        return trials[rate]["met"]

    lo = hi = None
    rate, f = task.start_rate_per_s, descent(task.tolerance)
    if (yield from sustained(rate)):
        lo = rate
        for _ in range(MAX_DOUBLINGS):
            up = lo / f if lo / f <= 2 * rate else 2 * lo
            if not (yield from sustained(up)):
                hi = up
                break
            lo = up
    else:
        hi = rate
        while (down := hi * (f if hi * f >= rate / 2 else 0.5)) >= task.floor_rate_per_s * (1 - 1e-9):
            if (yield from sustained(down)):
                lo = down
                break
            hi = down
    if lo is None:
        return {"feasible": False, "bounded": True, "sustained_rate_per_s": 0.0, "trials": len(trials)}
    while hi is not None and hi > lo * (1 + task.tolerance):
        mid = math.sqrt(lo * hi)
        if (yield from sustained(mid)):
            lo = mid
        else:
            hi = mid
    best = trials[lo]
    return {"feasible": True, "bounded": hi is not None, "sustained_rate_per_s": lo, "trials": len(trials),
            "throughput_tokens_per_s": lo * best["mean_output_tokens"],
            "joules_per_token": best["joules_per_token"],
            **{k: v for k, v in best.items() if k.endswith("_at_percentile_s")}}


def rank(job: Job, found: list[dict]) -> list[dict]:
    """plan.csv's rows: each configuration's answer, its price and its three ranks."""
    rows = []
    for i, (config, result, usd, task) in enumerate(zip(job.configs, found, job.usd_per_hour, job.searches)):
        tput = result.get("throughput_tokens_per_s")
        per_usd = tput * 3600 / usd if tput is not None and usd else None
        jpt = result.get("joules_per_token")
        rows.append({"config": i, **config, "feasible": int(result["feasible"]),
                     "sustained_rate_per_s": result["sustained_rate_per_s"], "throughput_tokens_per_s": tput,
                     "ttft_at_percentile_s": result.get("ttft_at_percentile_s"),
                     "tpot_at_percentile_s": result.get("tpot_at_percentile_s"),
                     "e2e_at_percentile_s": result.get("e2e_at_percentile_s"),
                     "usd_per_hour": usd, "tokens_per_usd": per_usd,
                     "tokens_per_joule": 1 / jpt if jpt else None,
                     "rank_rate": None, "rank_tokens_per_usd": None, "rank_tokens_per_joule": None,
                     "rank_latency": None,
                     "bounded": int(result["bounded"]), "trials": result["trials"],
                     "requests_per_trial": task.data["workload"]["requests"], "warmup_requests": task.warmup})
    _ranks(rows, "rank_rate", lambda r: -r["sustained_rate_per_s"], lambda r: True)
    _ranks(rows, "rank_tokens_per_usd", lambda r: -r["tokens_per_usd"], lambda r: r["tokens_per_usd"] is not None)
    _ranks(rows, "rank_tokens_per_joule", lambda r: -r["tokens_per_joule"],
           lambda r: r["tokens_per_joule"] is not None)
    _ranks(rows, "rank_latency", lambda r: r["e2e_at_percentile_s"], lambda r: r["feasible"] == 1)
    return rows


def _ranks(rows: list[dict], column: str, key, eligible) -> None:
    """1 for the best; ties keep configuration order."""
    for place, row in enumerate(sorted((r for r in rows if eligible(r)), key=lambda r: (key(r), r["config"])), 1):
        row[column] = place


OUTPUTS = ("plan.csv", "plan.png", "scenario.yaml")  # every file `write` may write


def write(out: Path, job: Job, rows: list[dict]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [write_csv(out / "plan.csv", rows), plot(out / "plan.png", job, rows)]
    if job.scenario is not None:
        written.append(write_yaml(out / SCENARIO_FILE, job.scenario))
    return written


def plot(path: Path, job: Job, rows: list[dict]) -> Path:
    return save_png(figure([grid.label(c) for c in job.configs], rows, title(Path(job.source).name, job.slo),
                           job.slo.percentile), path)


def title(name: str, slo: sc.SloSpec) -> str:
    targets = ", ".join(f"{k} <= {v:g} ms" for k, v in (("TTFT", slo.ttft_ms), ("TPOT", slo.tpot_ms)) if v is not None)
    return f"{name}: highest rate with p{slo.percentile:g} {targets}"


def figure(labels: list[str], rows: list[dict], title: str, percentile: float | None = None):
    """Per configuration, side by side: its sustained rate (infeasible: no bar, marked), tokens per
    USD (where its devices have a cost_per_hour) and its TTFT, TPOT and end-to-end latency at the
    plan's percentile, at that rate."""
    plt = pyplot()
    priced = any(r.get("tokens_per_usd") is not None for r in rows)
    panels = 3 if priced else 2
    label_in = 0.057 * max(len(t) for t in labels) + 0.3  # 8-point text; fixed margins, no layout engine
    width, height = label_in + 3.4 * panels, max(2.4, 0.32 * len(rows) + 1.3)
    fig, axes = plt.subplots(1, panels, figsize=(width, height), sharey=True)
    ys = range(len(rows))
    axes[0].barh(ys, [r["sustained_rate_per_s"] for r in rows], color="#4c9be8")
    for y, row in enumerate(rows):
        if not row["feasible"]:
            axes[0].annotate(" infeasible", (0, y), va="center", fontsize=8)
    axes[0].set_xlabel("sustained Poisson rate (requests/s)", fontsize=8)
    if priced:
        axes[1].barh(ys, [r.get("tokens_per_usd") or 0 for r in rows], color="#5cb85c")
        axes[1].set_xlabel("output tokens per USD", fontsize=8)
    lat = axes[-1]
    p = f"p{percentile:g}" if percentile is not None else "percentile"
    for k, (name, colour) in enumerate((("ttft", "#8c8c8c"), ("tpot", "#e8804c"), ("e2e", "#8172b2"))):
        lat.barh([y + (k - 1) * 0.27 for y in ys], [1000 * (r.get(f"{name}_at_percentile_s") or 0) for r in rows],
                 height=0.27, color=colour, label=f"{p} {name.upper()}")
    lat.set_xscale("symlog", linthresh=1.0)
    lat.set_xlabel(f"{p} latency at that rate (ms)", fontsize=8)
    lat.legend(fontsize=6, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    axes[0].set_yticks(list(ys), labels, fontsize=8)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=label_in / width, right=0.98, bottom=0.65 / height, top=1 - 0.6 / height, wspace=0.08)
    return fig
