"""Fitting the overheads a forward-pass profile does not see, by least squares on real runs.

For one request on one profile the simulated time is linear in the overheads:
  T = T0 + F x forward_ms + D x draft_forward_ms + C x draft_call_ms + S x step_ms + 2 M x message_ms
with T0 the simulation without overheads, F and D the target's and the draft's forward passes,
C the draft phases (steps that drafted), S the decoding steps and M the messages over a link
(each pays both ends' message_ms: the drafts up, the verdict down, the prompt and the first
token; runs in one process send none, which is what tells a message's cost from a step's). Non-negative least squares on relative error over a training split (every
other distinct configuration, or with --train-every K the autoregressive ones and every K-th speculative one) gives the five overheads; the other configurations are held
out to measure the error of the fitted profile. Runs with the draft on another device (a CPU
beside a GPU) keep the target profile's own overheads and fit the draft side only, on the draft's
profile: the hand-over of each step between the two (the drafted ids to the GPU, the result back,
the host shared by the draft's compute and the GPU's launches) shows there as a cost per draft
phase. Runs of one stream make one target forward per
step and one more (the prefill), so F = S + 1 and only forward_ms + step_ms is determined by them;
the split between the two is whatever the least squares lands on and changes no prediction of
such runs.

Serving streams (continuous batching, streams.py) are not linear in the overheads (a slower step
also queues the requests behind it): `fit_streams` fits the step overhead alone, by a bounded
scalar search on the squared relative errors of throughput and mean TPOT over every third
configuration, the profile's other overheads kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import minimize_scalar, nnls

from ..errors import InputError
from ..outputs import file_in_place
from ..profiles import Overheads, find, read_meta
from .compare import MeasuredRun, Prediction, predict


@dataclass
class Fit:
    """A fit of runs (MeasuredRun, Prediction) or of serving streams (ServingStream, StreamPrediction)."""

    overheads: Overheads
    train: list[MeasuredRun]
    held_out: list[MeasuredRun]
    before: dict[str, list[Prediction]]  # split name -> predictions with the overheads before the fit
    after: dict[str, list[Prediction]]


def on_profile(runs: list[MeasuredRun], profile: str, draft_profile: str | None = None) -> list[MeasuredRun]:
    """Batch-1 runs with the target on `profile` and the draft on `draft_profile` (default: the same)."""
    d = draft_profile or profile
    return [r for r in runs if r.target_profile == profile and (r.draft_profile or r.target_profile) == d
            and r.batch == 1]


def split(runs: list[MeasuredRun], every: int | None = None) -> tuple[list[MeasuredRun], list[MeasuredRun]]:
    """Every other distinct configuration trains, the rest is held out (repeats stay together).
    With `every` = k: every autoregressive configuration and every k-th speculative one train."""
    configs = sorted({r.config for r in runs}, key=repr)
    if every is None:
        train_set = set(configs[0::2])
    else:
        speculative = {r.config for r in runs if r.speculative}
        spec = [c for c in configs if c in speculative]
        train_set = {c for c in configs if c not in spec} | set(spec[0::every])
    return [r for r in runs if r.config in train_set], [r for r in runs if r.config not in train_set]


def fit(runs: list[MeasuredRun], profile: str, progress=None, draft_profile: str | None = None,
        every: int | None = None) -> Fit:
    """Overheads of `profile` (all four), or with a `draft_profile` of another device the draft's two
    on it, the target's as `profile` stores them; trained on `split(runs, every)`."""
    split_pair = draft_profile is not None and draft_profile != profile
    mine = on_profile(runs, profile, draft_profile)
    where = f"the target on {profile!r} and the draft on {draft_profile!r}" if split_pair else \
        f"both models on {profile!r}"
    if len({r.config for r in mine}) < 4:
        raise InputError(profile, "runs", f"fitting needs runs of at least 4 configurations with {where} at batch 1; "
                         f"found {len({r.config for r in mine})}")
    train, held = split(mine, every)
    if split_pair:
        folder = find(profile)
        kept = read_meta(folder).overheads if folder is not None else Overheads()
        base = {profile: kept, draft_profile: Overheads()}
    else:
        base = {profile: Overheads()}
    before = {"train": [], "held_out": []}
    for name, group in (("train", train), ("held_out", held)):
        for r in group:
            before[name].append(predict(r, base))
            if progress:
                progress()
    a, b = [], []
    for p in before["train"]:
        t = p.run.output_tokens / p.run.tokens_per_s
        t0 = p.run.output_tokens / p.predicted_tokens_per_s
        row = [p.draft_forwards / t, p.draft_calls / t]
        a.append([*row, p.messages / t] if split_pair else [p.target_forwards / t, *row, p.steps / t, 2 * p.messages / t])
        b.append((t - t0) / t)
    x = [round(float(v) * 1000, 4) for v in nnls(np.array(a), np.array(b))[0]]
    if split_pair:
        fitted = Overheads(draft_forward_ms=x[0], draft_call_ms=x[1], message_ms=x[2])
        after_set = {profile: base[profile], draft_profile: fitted}
    else:
        fitted = Overheads(forward_ms=x[0], draft_forward_ms=x[1], draft_call_ms=x[2], step_ms=x[3], message_ms=x[4])
        after_set = {profile: fitted}
    after = {name: [predict(p.run, after_set) for p in group] for name, group in before.items()}
    return Fit(fitted, train, held, before, after)


def store(profile: str, overheads: Overheads) -> Path:
    folder = find(profile)
    if folder is None:
        raise InputError(profile, "profile", "unknown profile")
    path = folder / "profile.yaml"
    data = yaml.safe_load(path.read_text())
    data["overheads"] = overheads.model_dump(exclude_none=True)
    with file_in_place(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, width=100))
    return path


def fit_streams(served: list, profile: str, progress=None) -> Fit:
    """The step overhead of `profile` for a serving loop, fitted on every third configuration of
    the streams `served` (predicted on `profile`), held-out error before and after."""
    from . import streams

    folder = find(profile)
    if folder is None:
        raise InputError(profile, "profile", "unknown profile")
    kept = read_meta(folder).overheads
    configs = sorted({streams.config(s) for s in served}, key=lambda c: repr(c[:7]))
    if len(configs) < 3:
        raise InputError(profile, "streams", f"fitting needs streams of at least 3 configurations; found {len(configs)}")
    train_set = set(configs[0::3])
    train = [s for s in served if streams.config(s) in train_set]
    held = [s for s in served if streams.config(s) not in train_set]

    def predictions(group, overheads):
        out = []
        for s in group:
            out.append(streams.predict(s, profile, overheads))
            if progress:
                progress()
        return out

    def loss(step_ms: float) -> float:
        preds = predictions(train, kept.model_copy(update={"step_ms": step_ms}))
        return sum(p.error("tpot_s") ** 2 + p.error("tokens_per_s") ** 2 for p in preds)

    step_ms = round(float(minimize_scalar(loss, bounds=(0.0, 20.0), method="bounded",
                                          options={"xatol": 0.005}).x), 4)
    fitted = kept.model_copy(update={"step_ms": step_ms, "fitted": None})
    before = {"train": predictions(train, kept), "held_out": predictions(held, kept)}
    after = {"train": predictions(train, fitted), "held_out": predictions(held, fitted)}
    return Fit(fitted, train, held, before, after)
