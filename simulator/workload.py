"""Workloads: when requests arrive and how long their prompts and outputs are.

Everything random is drawn up front from the workload's own seeded Generator, so changing the
strategy (gamma, devices, links) leaves the requests exactly as they were: what-if studies
compare like with like. Plain code: no SimPy here.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import scenario as sc
from .errors import InputError
from .formats import read_input
from .measured_grid import csv_rule

DEFAULT_REQUESTS = 100


class Same:
    """n copies of one length, without n slots: a fixed length costs nothing a request."""

    __slots__ = ("value", "n")

    def __init__(self, value: int, n: int) -> None:
        self.value, self.n = value, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.value] * len(range(*i.indices(self.n)))
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self.value

    def __iter__(self):
        return itertools.repeat(self.value, self.n)


def _compact(code: str, values: np.ndarray) -> array:
    """A typed array of `values` (8 bytes an item), filled from the numpy buffer without a bytes copy."""
    out = array(code)
    out.frombytes(memoryview(np.ascontiguousarray(values)).cast("B"))
    return out


def longest(lengths: Same | array) -> int:
    if isinstance(lengths, Same):
        return lengths.value
    return int(np.frombuffer(lengths, np.int64).max()) if len(lengths) else max(lengths)  # max([]) raises


def mean(lengths: Same | array) -> float:
    """The mean length (numpy's, as over a list of the same ints)."""
    return float(lengths.value) if isinstance(lengths, Same) else float(np.mean(lengths))


@dataclass(frozen=True)
class Requests:
    """The requests a run serves, drawn up front: their lengths and, for open loops, arrival times
    (compact: a fixed length as Same, drawn ones in typed arrays of 8 bytes a value, whose items
    are plain Python numbers)."""

    prompts: Same | array  # tokens, per request
    outputs: Same | array
    arrivals_s: array | None  # open loop: arrival time of each request, seconds
    users: int = 0  # closed loop: concurrent users
    think_s: float = 0.0
    duration_s: float | None = None  # closed loop: no new request after this time

    @property
    def requests(self) -> int:
        return len(self.prompts)


def lengths(spec, n: int, rng: np.random.Generator) -> Same | array:
    if isinstance(spec, int):
        return Same(spec, n)
    if isinstance(spec, sc.Uniform):
        x = rng.integers(spec.low, spec.high, endpoint=True, size=n)
    elif isinstance(spec, sc.LogNormal):  # in place: one array of n floats at a time
        x = rng.standard_normal(n)
        x *= spec.sigma
        np.exp(x, out=x)
        x *= spec.median
        np.clip(np.rint(x, out=x), spec.low, spec.high, out=x)
    elif isinstance(spec, sc.Choice):
        p = None if spec.weights is None else np.asarray(spec.weights) / sum(spec.weights)
        x = rng.choice(spec.values, size=n, p=p)
    else:
        raise TypeError(spec)
    return _compact("q", x.astype(np.int64, copy=False))


UNBOUNDED_REQUESTS = 1_000_000  # a closed loop without think time and a duration: lengths drawn for so many


def closed_loop_bound(users: int, think_s: float, duration_s: float) -> int:
    """The most requests `users` closed-loop users can issue when none is issued after duration_s: a
    user's k-th request starts at or after (k - 1) x think_s, so k <= duration / think + 1 (one more
    for rounding); without think time, UNBOUNDED_REQUESTS (lengths never read cost only their draw)."""
    if think_s <= 0:
        return UNBOUNDED_REQUESTS
    return min(UNBOUNDED_REQUESTS, users * (math.floor(duration_s / think_s) + 2))


def draw(spec: sc.Workload, rng: np.random.Generator) -> Requests:
    arrival = spec.arrival
    if isinstance(arrival, sc.TraceArrivals):
        return _trace_requests(spec, Path(arrival.path), rng)
    if isinstance(arrival, sc.Poisson):
        cap = spec.requests or (None if spec.duration_s else DEFAULT_REQUESTS)
        times = _poisson_times(arrival.rate_per_s, cap, spec.duration_s, rng)
        n = len(times)
        return Requests(lengths(spec.prompt_tokens, n, rng), lengths(spec.output_tokens, n, rng), times)
    # closed loop: with a duration and no count, as many as the duration lets the users issue
    n = spec.requests or (None if spec.duration_s else DEFAULT_REQUESTS)
    if n is None:
        n = closed_loop_bound(arrival.users, arrival.think_ms / 1000, spec.duration_s)
    return Requests(lengths(spec.prompt_tokens, n, rng), lengths(spec.output_tokens, n, rng), None,
                users=arrival.users, think_s=arrival.think_ms / 1000, duration_s=spec.duration_s)


def _poisson_times(rate: float, cap: int | None, duration: float | None, rng) -> array:
    if cap is not None:
        times = rng.exponential(1 / rate, size=cap)
        np.cumsum(times, out=times)
    else:
        chunks, t = [], 0.0
        while t <= duration:
            chunk = t + np.cumsum(rng.exponential(1 / rate, size=max(16, int(rate * duration) + 16)))
            chunks.append(chunk)
            t = chunk[-1]
        times = np.concatenate(chunks)
    if duration is not None:
        times = times[times <= duration]
    return _compact("d", times)


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
    return Requests(array("q", [prompts[i] for i in order]), array("q", [outputs[i] for i in order]),
                    array("d", [times[i] for i in order]))
