"""Workloads: when requests arrive and how long their prompts and outputs are.

Everything random is drawn up front from the workload's own seeded Generator, so changing the
strategy (gamma, devices, links) leaves the requests exactly as they were: what-if studies
compare like with like. Plain code: no SimPy here.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import scenario as sc
from .errors import InputError
from .formats import read_input
from .measured_grid import csv_rule

DEFAULT_REQUESTS = 100


@dataclass(frozen=True)
class Requests:
    """The requests a run serves, drawn up front: their lengths and, for open loops, arrival times."""

    prompts: list[int]
    outputs: list[int]
    arrivals_s: list[float] | None  # open loop: arrival time of each request
    users: int = 0  # closed loop: concurrent users
    think_s: float = 0.0
    duration_s: float | None = None  # closed loop: no new request after this time

    @property
    def requests(self) -> int:
        return len(self.prompts)


def lengths(spec, n: int, rng: np.random.Generator) -> list[int]:
    if isinstance(spec, int):
        return [spec] * n
    if isinstance(spec, sc.Uniform):
        return rng.integers(spec.low, spec.high, endpoint=True, size=n).tolist()
    if isinstance(spec, sc.LogNormal):
        x = np.rint(spec.median * np.exp(spec.sigma * rng.standard_normal(n)))
        return np.clip(x, spec.low, spec.high).astype(int).tolist()
    if isinstance(spec, sc.Choice):
        p = None if spec.weights is None else np.asarray(spec.weights) / sum(spec.weights)
        return rng.choice(spec.values, size=n, p=p).astype(int).tolist()
    raise TypeError(spec)


def draw(spec: sc.Workload, rng: np.random.Generator) -> Requests:
    arrival = spec.arrival
    if isinstance(arrival, sc.TraceArrivals):
        return _trace_requests(spec, Path(arrival.path), rng)
    if isinstance(arrival, sc.Poisson):
        cap = spec.requests or (None if spec.duration_s else DEFAULT_REQUESTS)
        times = _poisson_times(arrival.rate_per_s, cap, spec.duration_s, rng)
        n = len(times)
        return Requests(lengths(spec.prompt_tokens, n, rng), lengths(spec.output_tokens, n, rng), times)
    # closed loop: with a duration and no count, draw lengths lazily-large enough in blocks
    n = spec.requests or (None if spec.duration_s else DEFAULT_REQUESTS)
    if n is None:
        n = 1_000_000  # bounded by duration_s in practice; lengths for unused requests are never read
    return Requests(lengths(spec.prompt_tokens, n, rng), lengths(spec.output_tokens, n, rng), None,
                users=arrival.users, think_s=arrival.think_ms / 1000, duration_s=spec.duration_s)


def _poisson_times(rate: float, cap: int | None, duration: float | None, rng) -> list[float]:
    if cap is not None:
        times = np.cumsum(rng.exponential(1 / rate, size=cap))
    else:
        chunks, t = [], 0.0
        while t <= duration:
            chunk = t + np.cumsum(rng.exponential(1 / rate, size=max(16, int(rate * duration) + 16)))
            chunks.append(chunk)
            t = chunk[-1]
        times = np.concatenate(chunks)
    if duration is not None:
        times = times[times <= duration]
    return times.tolist()


def _trace_requests(spec: sc.Workload, path: Path, rng) -> Requests:
    reader = csv.DictReader(io.StringIO(read_input(path, "arrival trace"), newline=""))
    try:
        fields = reader.fieldnames or []
        if "arrival_s" not in fields:
            raise InputError(path, "header", "an arrival trace needs an 'arrival_s' column")
        rows = [(reader.line_num, row) for row in reader]  # (line number, row)
    except csv.Error as exc:
        raise InputError(path, f"line {reader.line_num + 1}", csv_rule(exc)) from None  # the line it stopped in
    for line, row in rows:
        if None in row or None in row.values():
            raise InputError(path, f"line {line}", f"has {'more' if None in row else 'fewer'} fields than the header")
    if spec.requests:
        rows = rows[: spec.requests]
    if not rows:
        raise InputError(path, "", "the arrival trace has no rows")
    times, prompts, outputs = [], [], []
    for line, row in rows:
        try:
            times.append(float(row["arrival_s"]))
            prompts.append(int(row["prompt_tokens"]) if row.get("prompt_tokens") else None)
            outputs.append(int(row["output_tokens"]) if row.get("output_tokens") else None)
        except ValueError:
            raise InputError(path, f"line {line}", "arrival_s must be a number, token counts integers") from None
        if not 0 <= times[-1] < math.inf or any(n is not None and not 1 <= n <= sc.MAX_TOKENS
                                                 for n in (prompts[-1], outputs[-1])):
            raise InputError(path, f"line {line}", f"arrival_s must be finite and >= 0, token counts >= 1 "
                             f"and <= {sc.MAX_TOKENS:,}")
    order = np.argsort(times, kind="stable")
    drawn_p, drawn_o = lengths(spec.prompt_tokens, len(rows), rng), lengths(spec.output_tokens, len(rows), rng)
    prompts = [p if p is not None else d for p, d in zip(prompts, drawn_p)]
    outputs = [o if o is not None else d for o, d in zip(outputs, drawn_o)]
    if spec.duration_s is not None:
        order = [i for i in order if times[i] <= spec.duration_s]
    return Requests([prompts[i] for i in order], [outputs[i] for i in order], [times[i] for i in order])
