"""The simulator against real runs: simulate each measured run and report the error.

A measured run (one JSON object per line; the format is in docs/calibration.md) is simulated
with the same models, gamma, prompt and output lengths, on the profiles it names, with its own
accepted counts replayed step by step (or its histogram of them), one request, one user. The
prediction is output_tokens / simulated end-to-end time, as the measurement is.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .. import engine
from .. import scenario as sc
from ..catalog import PRESETS
from ..errors import InputError
from ..formats import FormatError, load_json, read_input
from ..profiles import Overheads, open_profile


class HostProbe(BaseModel):
    """How fast the host was around a run: one forward shape timed right before and right after it
    (measure.host_probe), as a profile times that shape."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    batch: int = Field(ge=1, description="Batch of the probed forward.")
    query_tokens: int = Field(ge=1, description="Query tokens of the probed forward.")
    context_tokens: int = Field(ge=0, description="Cached tokens of the probed forward.")
    target_ms: list[float] = Field(min_length=1, description="The target's forward time at each probe (before, "
                                   "after), medians, in ms.")
    draft_ms: list[float] | None = Field(None, description="The draft's likewise, in ms (none without a draft).")

    @field_validator("target_ms", "draft_ms")
    @classmethod
    def _positive(cls, v):
        if v is not None and any(t <= 0 for t in v):
            raise ValueError("probe times must be > 0 ms")
        return v


class MeasuredRun(BaseModel):
    """One real generation. Extra keys (device, repeat, seconds, ...) are kept but not needed."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    _source: tuple[str, str] | None = PrivateAttr(None)  # (file, line) it was read from
    target: str = Field(description="Target model preset.")
    draft: str | None = Field(None, description="Draft model preset; none for autoregressive runs.")
    gamma: int = Field(0, ge=0, description="Tokens drafted per step.")
    mode: Literal["autoregressive", "greedy", "oracle", "sampling"] = Field(
        "autoregressive", description="How acceptance was decided (labels the run).")
    alpha: float | None = Field(None, ge=0, le=1, description="Oracle acceptance probability.")
    prompt_tokens: int = Field(ge=1, description="Prompt length, in tokens.")
    output_tokens: int = Field(ge=1, description="Tokens generated, in tokens.")
    batch: int = Field(1, ge=1, description="Sequences decoded together.")
    tokens_per_s: float = Field(gt=0, description="Measured output tokens per second of the whole generation "
                                "(prefill included).")
    accepted: list[int] | None = Field(None, description="Accepted drafts of each step, in order.")
    accepted_histogram: list[float] | None = Field(None, description="Or: how many steps accepted k drafts, k = 0..")
    target_profile: str = Field(description="Hardware profile of the target's device.")
    draft_profile: str | None = Field(None, description="Hardware profile of the draft's device (default: the target's).")
    link: dict | None = Field(None, description="A link between draft and target devices, as in a scenario.")
    tp: int = Field(1, ge=1, description="GPUs the target was split over by tensor parallelism (the draft on the "
                    "first of them); the target's device then has this many GPUs.")
    interconnect: dict | None = Field(None, description="With tp > 1: the GPUs' interconnect, as in a scenario's "
                                      "device (a measured allreduce table, or bandwidth_gb_s and latency_us).")
    pp: int = Field(1, ge=1, le=8, description="Pipeline stages the target was split into by layers, one GPU each "
                    "(the draft on the first); the target's device then is one stage.")
    stage_link: dict | None = Field(None, description="With pp > 1: the link between consecutive stages' GPUs, as "
                                    "in a scenario (bandwidth_mbps, latency_ms, ...; default free).")
    host_probe: HostProbe | None = Field(None, description="The host's speed right before and after the run "
                                         "(`--host-speed` in compare and fit scales the run to the profile's).")
    engine: Literal["specsim", "hf"] = Field("specsim", description="The loop that ran: specsim (this package's "
                                             "runner) or hf (Hugging Face transformers' assisted generation); "
                                             "it decides how the run's steps are simulated (LOOPS).")

    @model_validator(mode="after")
    def _acceptance(self):
        if self.speculative and not (self.accepted or self.accepted_histogram):
            raise ValueError("a speculative run needs accepted (per step) or accepted_histogram")
        if self.pp > 1 and (self.tp > 1 or self.batch > 1 or self.engine != "specsim" or self.link is not None):
            raise ValueError("a pipelined run (pp > 1) is simulated at batch 1, tp 1, without a draft link, "
                             "engine specsim")
        return self

    @property
    def speculative(self) -> bool:
        """A draft ran (else the run is autoregressive, a baseline)."""
        return self.draft is not None and self.gamma > 0

    @property
    def config(self) -> tuple:
        return (self.target, self.draft, self.gamma, self.mode, self.alpha, self.prompt_tokens, self.output_tokens,
                self.target_profile, self.draft_profile, self.batch, self.engine, self.link_label, self.tp, self.pp)

    @property
    def link_label(self) -> str | None:
        """The link between draft and target, in words (None without one)."""
        if self.link is None:
            return None
        bw, lat = self.link.get("bandwidth_mbps"), self.link.get("latency_ms", 0)
        return f"{bw:g} Mbit/s, {lat:g} ms"

    @property
    def baseline(self) -> tuple:
        """What an autoregressive run must share with this one to be its baseline."""
        return (self.target, self.prompt_tokens, self.output_tokens, self.target_profile, self.batch, self.engine,
                self.tp, self.pp)


def records(paths: list[Path], model, keep) -> list:
    """The lines of measurement files (JSON objects) for which keep(data) holds, validated as `model`;
    bad input names the file, the line and the field."""
    out = []
    for path in paths:
        lines = read_input(path, "measurement file").splitlines()
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = load_json(line)
                if not keep(data):
                    continue
                item = model.model_validate(data)
            except FormatError as exc:
                raise InputError(path, f"line {n}" + (f": {exc.field}" if exc.field else ""), exc.rule) from None
            except json.JSONDecodeError as exc:
                raise InputError(path, f"line {n}", f"not valid JSON: {exc.msg}") from None
            except RecursionError:
                raise InputError(path, f"line {n}", "not valid JSON: nested too deeply") from None
            except ValidationError as exc:
                err = exc.errors()[0]
                field = ".".join(map(str, err["loc"])) or "run"
                raise InputError(path, f"line {n}: {field}", err["msg"].removeprefix("Value error, ")) from None
            item._source = (str(path), f"line {n}")
            out.append(item)
    return out


def _serving(data) -> bool:
    return isinstance(data, dict) and data.get("kind") == "serving"


def load_runs(paths: list[Path], allow_none: bool = False) -> list[MeasuredRun]:
    """The single runs of measurement files (serving streams, `kind: serving`, are streams.py's)."""
    runs = records(paths, MeasuredRun, lambda d: not _serving(d))
    if not runs and not allow_none:
        raise InputError(paths[0] if paths else "measurements", "", "no runs")
    return runs


def at_profile_speed(run: MeasuredRun) -> MeasuredRun:
    """The run as it would have gone on the host its target's profile was measured on, for a
    host-bound engine: its time scaled by h = (mean probe time of the target around the run) / (the
    profile's time of the probed forward). An eager forward on a shared host is as fast as the host
    is that second (the H200's hf-noise session: transformers' forward and this package's own moved
    together, rounds 15-35 ms), so h tells a slow host from a wrong model; a host-bound engine's
    whole run (forwards and host work alike) scales with it. Kept as `host_factor`."""
    src = run._source or ("measurement", "run")
    if run.host_probe is None:
        raise InputError(src[0], f"{src[1]}: host_probe", "--host-speed needs a host probe around every run "
                         "(measure runs with them: specsim calibrate run --host-speed)")
    p = run.host_probe
    profile = open_profile(run.target_profile, "target_profile", src[0])
    ms = float(profile.ms_fn(run.target, run.target, PRESETS[run.target])(
        p.batch, p.query_tokens, np.array([p.context_tokens]))[0])
    h = float(np.mean(p.target_ms)) / ms
    update = {"tokens_per_s": run.tokens_per_s * h, "host_factor": h}
    if getattr(run, "step_end_s", None):
        update["step_end_s"] = [t / h for t in run.step_end_s]
    out = run.model_copy(update=update)
    out._source = run._source
    return out


# how each engine's loop runs a step (strategies/speculative.py, Loop): specsim's runner prefills both
# models and catches the draft up after a full accept; Hugging Face merges the prefills into the first
# step and re-feeds the draft two tokens every step
LOOPS = {"specsim": {"draft_feed": "catch_up"}, "hf": {"prefill": "merged", "draft_feed": "two"}}


def scenario_for(run: MeasuredRun, overheads: dict[str, Overheads] | None = None) -> sc.Scenario:
    """The one-request scenario that mirrors a measured run; `overheads` replaces profiles' fitted ones."""

    def device(profile: str) -> dict:
        if overheads and profile in overheads:
            return {"profile": profile, "overheads": overheads[profile].model_dump(exclude={"fitted"})}
        return {"profile": profile}

    if run.pp > 1:
        return _pipelined(run, device)

    spec_models = {"target": {"preset": run.target}}
    devices = {"target": device(run.target_profile)}
    if run.tp > 1:  # the target split over the device's GPUs; a draft beside it on one of them (tp 1 below)
        devices["target"] |= {"gpus": run.tp, "interconnect": run.interconnect}
    if run.speculative:
        spec_models["draft"] = {"preset": run.draft}
        draft_dev = "target"
        if run.draft_profile and run.draft_profile != run.target_profile or run.link is not None:  # a device each
            devices["draft"] = device(run.draft_profile or run.target_profile)
            draft_dev = "draft"
        strategy = {"kind": "speculative", "gamma": run.gamma,
                    "draft": {"model": "draft", "device": draft_dev, **({"tp": 1} if draft_dev == "target" and run.tp > 1
                                                                      else {})},
                    "target": {"model": "target", "device": "target"}, "loop": LOOPS[run.engine]}
        acceptance = _acceptance(run)
    else:
        strategy = {"kind": "autoregressive", "target": {"model": "target", "device": "target"}}
        acceptance = None
    if run.batch > 1:  # a static batch: every sequence admitted at once into one running batch
        strategy = {"kind": "batched", "target": strategy["target"], "max_batch": run.batch,
                    "step_tokens": run.batch * run.prompt_tokens}
        if run.speculative:
            strategy |= {"draft": {"model": "draft", "device": draft_dev}, "speculation": {"gamma": run.gamma}}
    links = []
    if "draft" in devices:
        links = [{"a": "draft", "b": "target", **(run.link or FREE_LINK)}]
    data = {"name": "calibration", "models": spec_models, "devices": devices, "links": links, "strategy": strategy,
            "workload": _workload(run)}
    if acceptance:
        data["acceptance"] = acceptance
    return sc.parse(data, "measurement")


def _pipelined(run: MeasuredRun, device) -> sc.Scenario:
    """A run whose target was split into run.pp stages, one GPU each: the `pipeline` strategy over
    devices stage0.. on the target's profile, the draft beside the first stage (its own device only
    on another profile), consecutive stages (and the last back to the first) joined by the stage link."""
    names = [f"stage{i}" for i in range(run.pp)]
    devices = {n: device(run.target_profile) for n in names}
    link = run.stage_link or FREE_LINK
    pairs = list(zip(names, names[1:])) + ([(names[-1], names[0])] if run.pp > 2 else [])  # a link is both ways
    links = [{"a": a, "b": b, **link} for a, b in pairs]
    models = {"target": {"preset": run.target}}
    strategy = {"kind": "pipeline", "model": "target", "stages": names}
    data = {"name": "calibration", "models": models, "devices": devices, "links": links, "strategy": strategy,
            "workload": _workload(run)}
    if run.speculative:
        models["draft"] = {"preset": run.draft}
        where = "stage0"
        if run.draft_profile and run.draft_profile != run.target_profile:
            devices["draft"] = device(run.draft_profile)
            links.append({"a": "draft", "b": "stage0", **FREE_LINK})
            where = "draft"
        strategy |= {"draft": {"model": "draft", "device": where}, "gamma": run.gamma}
        data["acceptance"] = _acceptance(run)
    return sc.parse(data, "measurement")


FREE_LINK = {"bandwidth_mbps": float("inf"), "header_bytes": 0}  # between devices a run did not separate


def _workload(run: MeasuredRun) -> dict:
    """A run's sequences (one, or a static batch's), all arriving at once, at its lengths."""
    return {"arrival": {"kind": "closed_loop", "users": run.batch}, "requests": run.batch,
            "prompt_tokens": run.prompt_tokens, "output_tokens": run.output_tokens}


def _acceptance(run: MeasuredRun) -> dict:
    """A speculative run's accepted counts replayed: its histogram, or each step's count in order (a
    static batch decides once for all its rows: each step's count, once per row, in row order)."""
    if run.accepted_histogram:
        return {"kind": "empirical", "counts": run.accepted_histogram}
    return {"kind": "trace", "counts": [k for k in run.accepted for _ in range(run.batch)]}


DRIFT = 0.05  # a run whose quarters' measured/predicted time ratios differ by more than this drifted


@dataclass
class Prediction:
    run: MeasuredRun
    predicted_tokens_per_s: float
    steps: int  # decoding steps (autoregressive: tokens after the first)
    target_forwards: int
    draft_forwards: int
    step_end_s: list[float] | None = None  # predicted end of each decoding step, since the run's start
    draft_calls: int = 0  # draft phases (steps that drafted)
    messages: int = 0  # messages over the run's link (each costs both ends' message_ms)

    @property
    def error(self) -> float:
        """Signed relative error of predicted tokens/s."""
        return self.predicted_tokens_per_s / self.run.tokens_per_s - 1

    @property
    def drift(self) -> float | None:
        """Steadiness of the run: its decoding steps cut into four quarters, the measured time of
        each quarter over its predicted time; (largest - smallest) / smallest of the four ratios.
        The prediction replays the run's own acceptance and contexts, so what the run did differs
        between quarters only as far as the machine changed under it. None without step times
        (a file from another engine, or fewer than 8 steps)."""
        measured = getattr(self.run, "step_end_s", None) or []
        predicted = self.step_end_s or []
        if len(measured) != len(predicted) or len(measured) < 8:
            return None
        cuts = [round(i * (len(measured) - 1) / 4) for i in range(5)]
        ratios = [(measured[b] - measured[a]) / (predicted[b] - predicted[a]) for a, b in zip(cuts, cuts[1:])]
        return max(ratios) / min(ratios) - 1


def predict(run: MeasuredRun, overheads: dict[str, Overheads] | None = None) -> Prediction:
    try:
        result = engine.simulate(scenario_for(run, overheads), "measurement")
    except InputError as exc:
        if run._source is None:
            raise
        file, line = run._source
        raise InputError(file, f"{line}: {exc.field}" if exc.field else line, exc.rule) from None
    if run.batch > 1:  # every sequence of the batch: tokens over the batch's span; forwards over its steps
        recs, steps = result.records, result.batches
        span = max(r.finish_s for r in recs) - min(r.arrival_s for r in recs)
        decoding = [b for b in steps if b.batch > 0]
        drafts = sum(-(-b.drafted // b.batch) for b in decoding) + 1 if run.speculative else 0
        t0 = min(r.arrival_s for r in recs)
        return Prediction(run, sum(r.output_tokens for r in recs) / span, len(decoding), len(steps), drafts,
                          [b.end_s - t0 for b in decoding])
    rec = result.records[0]
    spec = run.speculative
    merged = spec and LOOPS[run.engine].get("prefill") == "merged"  # no prefill forwards of their own
    drafts = rec.drafted + (0 if merged else 1) if spec else 0
    calls = sum(1 for s in result.steps if s.drafted > 0) if spec else 0
    # over the run's own link only: a free link between two devices of one host is the hand-over
    # that draft_call_ms costs
    messages = sum(link.messages for link in result.world.links.values()) if run.link is not None else 0
    return Prediction(run, rec.output_tokens / (rec.finish_s - rec.arrival_s), rec.steps,
                      rec.steps + (0 if merged else 1), drafts, [s.end_s - rec.arrival_s for s in result.steps], calls,
                      messages)


def summarize(preds: list[Prediction], baselines: list[Prediction] = ()) -> dict:
    """Errors per run, and per configuration (median of its repeats, measured and predicted), beside
    the spread of repeated measurements of one configuration, which is the floor of any error.
    `baselines`: more autoregressive runs (predicted alike) that speculative ones may be called
    faster or not against (a held-out split's baselines are in the training split)."""
    errs = np.abs([p.error for p in preds])
    groups: dict[tuple, list[Prediction]] = {}
    for p in preds:
        groups.setdefault(p.run.config, []).append(p)
    per_config = np.abs([statistics.median(p.predicted_tokens_per_s for p in g)
                         / statistics.median(p.run.tokens_per_s for p in g) - 1 for g in groups.values()])
    spreads = [_spread([p.run.tokens_per_s for p in g]) for g in groups.values() if len(g) > 1]
    # the same over measured / predicted: each run's own acceptance replayed, what remains is the machine
    timing = [_spread([1 / (1 + p.error) for p in g]) for g in groups.values() if len(g) > 1]
    drifts = [p.drift for p in preds if p.drift is not None]
    return {"runs": len(preds), "configurations": len(groups),
            "median_abs_error": float(np.median(errs)), "p90_abs_error": float(np.percentile(errs, 90)),
            "mean_signed_error": float(np.mean([p.error for p in preds])),
            "config_median_abs_error": float(np.median(per_config)),
            "config_p90_abs_error": float(np.percentile(per_config, 90)),
            "repeat_spread_median": float(np.median(spreads)) if spreads else None,
            "timing_spread_median": float(np.median(timing)) if timing else None,
            "steadiness_tested": len(drifts), "drifted": sum(d > DRIFT for d in drifts),
            "drift_median": float(np.median(drifts)) if drifts else None,
            **speedup_calls(groups, baselines)}


def speedup_calls(groups: dict[tuple, list[Prediction]], baselines: list[Prediction] = ()) -> dict:
    """For each speculative configuration with an autoregressive baseline in the same runs (or in
    `baselines`): is speculation faster (median tokens/s over the baseline's), measured and
    predicted; how many agree."""
    base: dict[tuple, list[Prediction]] = {}
    for p in [*baselines, *(p for g in groups.values() for p in g)]:
        if not p.run.speculative:
            base.setdefault(p.run.baseline, []).append(p)
    called, wrong = 0, []
    for g in groups.values():
        r = g[0].run
        if not r.speculative or r.baseline not in base:
            continue
        b = base[r.baseline]
        measured = statistics.median(p.run.tokens_per_s for p in g) / statistics.median(p.run.tokens_per_s for p in b)
        predicted = (statistics.median(p.predicted_tokens_per_s for p in g)
                     / statistics.median(p.predicted_tokens_per_s for p in b))
        called += 1
        if (measured > 1) != (predicted > 1):
            wrong.append(f"{r.draft} gamma {r.gamma} alpha {r.alpha}: measured {measured:.2f}x, predicted {predicted:.2f}x")
    return {"speedup_calls": called, "speedup_called_wrong": wrong}


def _spread(values: list[float]) -> float:
    """(max - min) / median."""
    return (max(values) - min(values)) / statistics.median(values)
