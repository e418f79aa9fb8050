"""Measured serving streams (continuous batching, serving.py) against the `batched` strategy.

A stream is one JSON line with `kind: serving`: the server's settings and, per request, its
arrival, lengths, first-token and finish times. It is simulated with the batched strategy on the
same settings (prefill separate, fixed draft length, iid acceptance at the stream's alpha), fed
the very requests of the stream as an arrival trace, and compared on what capacity planning
reads: throughput (output tokens over the stream's span), mean TPOT and mean TTFT.
"""

from __future__ import annotations

import csv
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from .. import engine
from .. import scenario as sc
from .compare import _serving, records


class ServingStream(BaseModel):
    """One measured stream of requests through a continuous-batching server."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    _source: tuple[str, str] | None = PrivateAttr(None)  # (file, line) it was read from
    kind: str = Field(description="`serving`.")
    target: str = Field(description="Target model preset.")
    draft: str | None = Field(None, description="Draft model preset; none without speculation.")
    gamma: int = Field(0, ge=0, description="Tokens drafted per request and step.")
    alpha: float = Field(ge=0, le=1, description="Oracle acceptance probability per drafted token.")
    max_batch: int = Field(ge=1, description="Most requests running at once.")
    step_tokens: int = Field(ge=1, description="Prompt tokens one prefill step may take, at least one prompt.")
    target_profile: str = Field(description="Hardware profile of the device.")
    requests: list[tuple[float, int, int, float, float]] = Field(
        min_length=1, description="Per request: arrival_s, prompt_tokens, output_tokens, first_token_s, finish_s "
        "(seconds since the stream's start).")


def figures(reqs) -> dict:
    """Throughput (output tokens / (last finish - first arrival)), mean TPOT and mean TTFT."""
    span = max(r[4] for r in reqs) - min(r[0] for r in reqs)
    tpots = [(r[4] - r[3]) / (r[2] - 1) for r in reqs if r[2] > 1]
    return {"tokens_per_s": sum(r[2] for r in reqs) / span, "tpot_s": statistics.fmean(tpots),
            "ttft_s": statistics.fmean(r[3] - r[0] for r in reqs)}


@dataclass
class StreamPrediction:
    stream: ServingStream
    measured: dict
    predicted: dict
    records: list[tuple]  # the simulated requests, as the stream's: arrival, lengths, first token, finish (s)

    def error(self, key: str) -> float:
        return self.predicted[key] / self.measured[key] - 1


def load(paths: list[Path]) -> list[ServingStream]:
    """The `kind: serving` lines of measurement files (the others are compare.load_runs')."""
    return records(paths, ServingStream, _serving)


def predict(stream: ServingStream, profile: str | None = None, overheads=None) -> StreamPrediction:
    """The stream simulated on `profile` (default: its own), with `overheads` (profiles.Overheads) in
    place of the profile's fitted ones if given."""
    device = {"profile": profile or stream.target_profile}
    if overheads is not None:
        device["overheads"] = overheads.model_dump(exclude={"fitted"})
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "arrivals.csv"
        with trace.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["arrival_s", "prompt_tokens", "output_tokens"])
            w.writerows([r[0], r[1], r[2]] for r in stream.requests)
        place = {"model": "target", "device": "gpu"}
        strategy = {"kind": "batched", "target": place, "max_batch": stream.max_batch,
                    "step_tokens": stream.step_tokens, "prefill": "separate"}
        models = {"target": {"preset": stream.target}}
        if stream.draft is not None and stream.gamma > 0:
            models["draft"] = {"preset": stream.draft}
            strategy |= {"draft": {"model": "draft", "device": "gpu"},
                         "speculation": {"policy": "fixed", "gamma": stream.gamma}}
        data = {"name": "serving", "seed": 0, "models": models, "devices": {"gpu": device},
                "strategy": strategy, "acceptance": {"kind": "iid", "alpha": stream.alpha},
                "workload": {"arrival": {"kind": "trace", "path": str(trace)}}}
        result = engine.simulate(sc.parse(data, "measurement"), "measurement")
    sim = [(r.arrival_s, r.prompt_tokens, r.output_tokens, r.first_token_s, r.finish_s) for r in result.records]
    return StreamPrediction(stream, figures(stream.requests), figures(sim), sim)


def config(stream: ServingStream) -> tuple:
    """What makes streams repeats of one another: settings and requests alike, times aside."""
    return (stream.target, stream.draft, stream.gamma, stream.alpha, stream.max_batch, stream.step_tokens,
            stream.model_extra.get("rate_per_s"), tuple(r[:3] for r in stream.requests))


def summarize(preds: list[StreamPrediction]) -> dict:
    """Per figure: errors over streams, and the repeat spread (max - min over median of one
    configuration's measured values, the median over configurations): the machine's share."""
    out = {"streams": len(preds)}
    groups: dict[tuple, list[StreamPrediction]] = {}
    for p in preds:
        groups.setdefault(config(p.stream), []).append(p)
    for key in ("tokens_per_s", "tpot_s", "ttft_s"):
        errs = np.abs([p.error(key) for p in preds])
        spreads = [np.ptp(v) / np.median(v) for g in groups.values() if len(g) > 1
                   for v in [[p.measured[key] for p in g]]]
        out[key] = {"median_abs_error": float(np.median(errs)), "p90_abs_error": float(np.percentile(errs, 90)),
                    "mean_signed_error": float(np.mean([p.error(key) for p in preds])),
                    "repeat_spread": float(np.median(spreads)) if spreads else None}
    return out


def summary_line(preds: list[StreamPrediction]) -> str:
    s = summarize(preds)
    return f"{s['streams']} streams: " + "; ".join(
        f"{k} median |error| {100 * v['median_abs_error']:.1f}%, p90 {100 * v['p90_abs_error']:.1f}%"
        + (f" (repeat spread {100 * v['repeat_spread']:.1f}%)" if v["repeat_spread"] is not None else "")
        for k, v in s.items() if k != "streams")
