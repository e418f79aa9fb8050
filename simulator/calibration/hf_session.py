"""One session of Hugging Face runs and the profile they are predicted on, measured interleaved.

A host-bound engine (eager transformers: a 7B forward is about 20 ms of Python and kernel
launches on the H200's host) is as fast as the host is at that moment, and on a shared host
that moment changes by tens of percent over minutes. A profile measured before the runs sees
another host than the runs do. Here every round times each configuration once and each model's
whole grid once (`samples` per point), all in one shuffled order (`measure.round_robin`: an
untimed round first); the rounds are the profile's passes, so its pass disagreement is the
host's drift over the very minutes the runs took. Beside the profile, `rounds.csv` keeps each
point's median per round, to tell a slow round from a slow point.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import yaml

from ..outputs import file_in_place
from . import hf
from .measure import _profile_meta, grid_rows, round_robin, setup, write_grid


def measure(configs: list[dict], grid: dict, out: Path, profile: str, device: str = "cuda", rounds: int = 5,
            samples: int = 4, seed: int = 0, log=print, note: str = "", probes: bool = False) -> Path:
    """Runs of `configs` (hf.measure_runs' configurations, whose profile names should be `profile`)
    to out/runs-<profile>.jsonl and the grid of every model they use to out/<profile>/, `rounds`
    timed rounds of both, interleaved; `note` is added to the profile's method; `probes`: each run
    bracketed by host probes (measure.host_probe). Returns the profile folder."""
    dev, dtype = setup(device, None)
    model = hf.models_of(dev, dtype)
    run_one = hf.runner(configs, dev, dtype, model, seed, probes=probes)
    seeds = {c["draft"]: 2 for c in configs if c.get("draft")} | {c["target"]: 1 for c in configs}
    names = list(seeds.items())  # each model's grid is timed on the object its runs use
    points = [(b, q, c) for b, q, c in itertools.product(grid["batches"], grid["queries"], grid["contexts"])]
    timed: dict[str, list[list[list[float]]]] = {n: [[] for _ in points] for n, _ in names}
    order = np.random.default_rng(seed + 1)

    def one(i: int, rnd: int) -> dict | None:
        if i < len(configs):
            return run_one(i, rnd)
        name, mseed = names[i - len(configs)]
        m = model(name, mseed)
        for k in order.permutation(len(points)):
            t = hf.time_forward(m, *points[k], samples)
            if rnd >= 0:
                timed[name][k].append(t)
        return None

    folder = out / profile

    def write(message: str) -> None:  # after every round: a session cut short keeps its profile so far
        _write(folder, out / f"rounds-{profile}.csv", timed, points, profile, dev, dtype, samples, note)
        log(message)

    round_robin(len(configs) + len(names), rounds, seed, out / f"runs-{profile}.jsonl", write, one)
    return folder


def _write(folder: Path, rounds_csv: Path, timed: dict, points: list, profile: str, dev, dtype, samples: int,
           note: str) -> None:
    """The profile folder and rounds.csv from every round timed so far."""
    folder.mkdir(parents=True, exist_ok=True)
    spread, per_round = {}, ["model,batch,query_tokens,context_tokens,round,latency_ms_p50"]
    rounds = min(len(p) for per_point in timed.values() for p in per_point)
    for name, per_point in timed.items():
        per_point = [passes[:rounds] for passes in per_point]
        rows, spread[name] = grid_rows(points, per_point)
        write_grid(folder / f"{name}.csv", rows)
        per_round += [f"{name},{b},{q},{c},{r},{np.median(p) * 1000:.4f}"
                      for (b, q, c), passes in zip(points, per_point) for r, p in enumerate(passes)]
    spread = {name: s for name, s in spread.items() if s is not None}
    meta = _profile_meta(dev, dtype, "eager", "hf", rounds, rounds * samples, 0.0, None, [], spread)
    meta["method"] = ("one forward pass per grid point of Hugging Face transformers' LlamaForCausalLM (random weights, "
                      "a DynamicCache filled to the context and cropped back between samples), run eagerly, timed "
                      "with a device synchronisation before and after, the garbage collector off; measured in one "
                      f"session with the runs of runs-{profile}.jsonl, interleaved: an untimed round, then {rounds} "
                      f"rounds, each timing every run once and every model's grid once ({samples} samples a point "
                      f"after 2 untimed), in one shuffled order; median of the {rounds * samples} samples"
                      + (f"; {note}" if note else ""))
    with file_in_place(folder / "profile.yaml") as tmp:
        tmp.write_text(yaml.safe_dump({k: v for k, v in meta.items() if v is not None}, sort_keys=False, width=100))
    with file_in_place(rounds_csv) as tmp:
        tmp.write_text("\n".join(per_round) + "\n")
