"""Fitting the overheads a forward-pass profile does not see, by least squares on real runs.

For one request on one profile the simulated time is linear in the overheads:
  T = T0 + F x forward_ms + D x draft_forward_ms + C x draft_call_ms + S x step_ms
with T0 the simulation without overheads, F and D the target's and the draft's forward passes,
C the draft phases (steps that drafted) and S the decoding steps. Non-negative least squares on relative error over a training split (every
other distinct configuration) gives the three overheads; the other configurations are held
out to measure the error of the fitted profile. Runs of one stream make one target forward per
step and one more (the prefill), so F = S + 1 and only forward_ms + step_ms is determined by them;
the split between the two is whatever the least squares lands on and changes no prediction of
such runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import nnls

from ..errors import InputError
from ..profiles import Overheads, find
from .compare import MeasuredRun, Prediction, predict


@dataclass
class Fit:
    overheads: Overheads
    train: list[MeasuredRun]
    held_out: list[MeasuredRun]
    before: dict[str, list[Prediction]]  # split name -> predictions without overheads
    after: dict[str, list[Prediction]]


def on_profile(runs: list[MeasuredRun], profile: str) -> list[MeasuredRun]:
    return [r for r in runs if r.target_profile == profile and (r.draft_profile or profile) == profile and r.batch == 1]


def split(runs: list[MeasuredRun]) -> tuple[list[MeasuredRun], list[MeasuredRun]]:
    """Every other distinct configuration trains, the rest is held out (repeats stay together)."""
    configs = sorted({r.config for r in runs}, key=repr)
    train_set = set(configs[0::2])
    return [r for r in runs if r.config in train_set], [r for r in runs if r.config not in train_set]


def fit(runs: list[MeasuredRun], profile: str, progress=None) -> Fit:
    mine = on_profile(runs, profile)
    if len({r.config for r in mine}) < 4:
        raise InputError(profile, "runs", f"fitting needs runs of at least 4 configurations with both models on "
                         f"{profile!r} at batch 1; found {len({r.config for r in mine})}")
    train, held = split(mine)
    zero = {profile: Overheads()}
    before = {"train": [], "held_out": []}
    for name, group in (("train", train), ("held_out", held)):
        for r in group:
            before[name].append(predict(r, zero))
            if progress:
                progress()
    a, b = [], []
    for p in before["train"]:
        t = p.run.output_tokens / p.run.tokens_per_s
        t0 = p.run.output_tokens / p.predicted_tokens_per_s
        a.append([p.target_forwards / t, p.draft_forwards / t, p.draft_calls / t, p.steps / t])
        b.append((t - t0) / t)
    x, _ = nnls(np.array(a), np.array(b))
    fitted = Overheads(forward_ms=round(float(x[0]) * 1000, 4), draft_forward_ms=round(float(x[1]) * 1000, 4),
                       draft_call_ms=round(float(x[2]) * 1000, 4), step_ms=round(float(x[3]) * 1000, 4))
    after = {name: [predict(p.run, {profile: fitted}) for p in group] for name, group in before.items()}
    return Fit(fitted, train, held, before, after)


def store(profile: str, overheads: Overheads) -> Path:
    folder = find(profile)
    if folder is None:
        raise InputError(profile, "profile", "unknown profile")
    path = folder / "profile.yaml"
    data = yaml.safe_load(path.read_text())
    data["overheads"] = overheads.model_dump(exclude_none=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, width=100))
    tmp.replace(path)
    return path
