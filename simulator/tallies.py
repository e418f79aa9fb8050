"""What a run keeps when no records are asked for: only what the report needs, streamed.

A run that writes no requests.csv, steps.csv or batches.csv (`specsim run` without --out, every
sweep run and plan trial) keeps no step or batch rows and no RequestRecord per request:

  steps      Discard: its `append` drops the row (the processes append a row per step either way;
             the report reads a request's step counts from the request itself)
  batches    BatchTotals: the sums behind the report's `batching` block, added per batch step
  requests   RequestColumns: per request only the four numbers its latency percentiles and SLO
             figures need (arrival, first token, finish, output tokens: 28 bytes), in id order,
             and the sums of steps, drafted and accepted over the requests; past EXACT_LIMIT
             requests, histograms instead (below)

Exact percentiles need every request's value, so the columns grow by 28 bytes a request up to
EXACT_LIMIT requests (16,384: 0.46 MB); the report is then the same figure for figure either way
(tests/test_lean_runs.py), as both build the same arrays in the same order. Past the limit the
columns fold what they hold into one LogHistogram per latency (ttft, tpot, e2e) and from then on
keep only the requests in flight, so memory stops growing with requests: means stay exact (sums),
percentiles come from buckets 2^(1/4096) wide, within 8.5e-5 of the exact figure relative
(tests/test_tallies.py), and SLO attainment and goodput are counted as requests finish. A plan
trial, which slices its columns after a warm-up, keeps them exact (limit None). Plain code: no
SimPy here.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

EXACT_LIMIT = 1 << 14  # requests kept value by value (16,384); past it, latencies are folded into histograms


class Discard:
    """A step log that keeps nothing: the processes' `steps.append(row)` costs a call and no memory."""

    __slots__ = ()

    def append(self, row) -> None:
        pass


class BatchTotals:
    """A batching server's steps, summed as metrics' `batching` block needs them: steps, decoding steps
    (a batch of at least one request decoding), requests decoding summed over them, tokens drafted."""

    __slots__ = ("steps", "decoding_steps", "decoding", "drafted")

    def __init__(self) -> None:
        self.steps = self.decoding_steps = self.decoding = self.drafted = 0

    def append(self, row: tuple) -> None:
        """Add one batch step, a row in records.BatchRecord's field order."""
        _, _, batch, _, drafted, *_ = row
        self.steps += 1
        if batch > 0:
            self.decoding_steps += 1
            self.decoding += batch
        self.drafted += drafted

    @classmethod
    def of(cls, rows) -> BatchTotals:
        totals = cls()
        for row in rows:
            totals.append(row)
        return totals


class LogHistogram:
    """Counts of non-negative values in buckets 2^(1/BINS) wide (relative width 1.7e-4), zero in a
    bucket of its own; the sum and count kept exactly. A percentile is numpy's default (linear
    between the order statistics at ranks floor and ceil of (n - 1) p / 100), each order statistic
    read as its bucket's geometric middle: within 2^(1/(2 BINS)) - 1 = 8.5e-5 of the exact figure,
    relative. Memory grows with the buckets the values span, not with the values."""

    BINS = 4096
    ZERO = -(1 << 62)  # the key of the value 0 (sorts first)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n, self.total = 0, 0.0

    def add(self, x: float) -> None:
        k = math.floor(math.log2(x) * self.BINS) if x > 0 else self.ZERO
        self.counts[k] = self.counts.get(k, 0) + 1
        self.n += 1
        self.total += x

    def add_many(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=float)
        with np.errstate(divide="ignore"):
            keys = np.where(values > 0, np.floor(np.log2(values) * self.BINS), self.ZERO).astype(np.int64)
        for k, c in zip(*np.unique(keys, return_counts=True)):
            self.counts[int(k)] = self.counts.get(int(k), 0) + int(c)
        self.n += values.size
        self.total += float(values.sum())

    def _value(self, k: int) -> float:
        return 0.0 if k == self.ZERO else 2.0 ** ((k + 0.5) / self.BINS)

    def percentiles(self, ps) -> list[float]:
        keys = sorted(self.counts)
        ends = np.cumsum([self.counts[k] for k in keys])  # rank < ends[i]: in bucket i

        def order(rank: int) -> float:
            return self._value(keys[int(np.searchsorted(ends, rank, side="right"))])

        out = []
        for p in ps:
            rank = (self.n - 1) * p / 100
            lo, hi = math.floor(rank), math.ceil(rank)
            a, b = order(lo), order(hi)
            out.append(a + (b - a) * (rank - lo))
        return out

    def stats(self) -> dict:
        """The report's mean, p50, p90 and p99 (None without values)."""
        if not self.n:
            return {"mean": None, "p50": None, "p90": None, "p99": None}
        p50, p90, p99 = self.percentiles([50, 90, 99])
        return {"mean": self.total / self.n, "p50": p50, "p90": p90, "p99": p99}


class RequestColumns:
    """Per request, in id order: arrival_s, first_token_s, finish_s and output_tokens as numpy arrays
    (read them after the run); over the requests, the sums of steps, drafted and accepted. With a
    `limit`, past that many requests: `folded` histograms instead of the arrays (module doc); `slo`
    (the scenario's, or None) is what finished requests are counted against from then on."""

    def __init__(self, limit: int | None = None, slo=None) -> None:
        self._arrival, self._first, self._finish, self._output = array("d"), array("d"), array("d"), array("i")
        self.steps = self.drafted = self.accepted = 0
        self.limit, self.slo = limit, slo
        if slo is not None:
            self._ttft_s, self._tpot_s = slo.limits_s
        self.folded: dict[str, LogHistogram] | None = None  # ttft, tpot, e2e, once past the limit
        self._flight: dict[int, object] = {}  # id -> record, for the requests not finished
        self.n = 0

    def open(self, rec) -> None:
        """A request arrives (ids are issued in order: request i is the i-th opened)."""
        assert rec.id == self.n, "requests are opened in id order"
        self.n += 1
        if self.limit is not None:
            self._flight[rec.id] = rec
        if self.folded is not None:
            return
        self._arrival.append(rec.arrival_s)
        self._first.append(rec.first_token_s)
        self._finish.append(rec.finish_s)
        self._output.append(rec.output_tokens)
        if self.limit is not None and self.n > self.limit:
            self._fold()

    def close(self, rec) -> None:
        """A request is done: keep its times and counts; the record itself can go."""
        self.steps += rec.steps
        self.drafted += rec.drafted
        self.accepted += rec.accepted
        if self.limit is not None:
            del self._flight[rec.id]
        if self.folded is None:
            self._first[rec.id], self._finish[rec.id] = rec.first_token_s, rec.finish_s
        else:  # one request: the scalar form of _add (the same formulas as metrics')
            first, finish, out = rec.first_token_s, rec.finish_s, rec.output_tokens
            ttft = first - rec.arrival_s
            tpot = (finish - first) / (out - 1) if out > 1 else None
            self.folded["ttft"].add(ttft)
            if tpot is not None:
                self.folded["tpot"].add(tpot)
            self.folded["e2e"].add(finish - rec.arrival_s)
            self.output_total += out
            self._last = max(self._last, finish)
            if self.slo is not None and ttft <= self._ttft_s and (tpot is None or tpot <= self._tpot_s):
                self.attained += 1
                self.goodput_tokens += out

    def _fold(self) -> None:
        """Every finished request into the histograms; the arrays go, the ones in flight stay records."""
        done = np.ones(self.n, dtype=bool)
        done[list(self._flight)] = False
        self.folded = {"ttft": LogHistogram(), "tpot": LogHistogram(), "e2e": LogHistogram()}
        self.output_total = self.attained = self.goodput_tokens = 0
        self._last = 0.0
        self._add(self.arrival_s[done], self.first_token_s[done], self.finish_s[done], self.output_tokens[done])
        self._arrival = self._first = self._finish = self._output = None

    def _add(self, arrival, first, finish, out) -> None:
        from .metrics import meets, per_request_tpot

        tpot = per_request_tpot(first, finish, out)
        self.folded["ttft"].add_many(first - arrival)
        self.folded["tpot"].add_many(tpot[~np.isnan(tpot)])
        self.folded["e2e"].add_many(finish - arrival)
        self.output_total += int(out.sum())
        self._last = max(self._last, float(finish.max(initial=0.0)))
        if self.slo is not None:
            ok = meets(self.slo, first - arrival, tpot)
            self.attained += int(ok.sum())
            self.goodput_tokens += int(out[ok].sum())

    def __len__(self) -> int:
        return self.n

    @property
    def arrival_s(self) -> np.ndarray:
        return np.frombuffer(self._arrival, dtype=float) if len(self) else np.array([])

    @property
    def first_token_s(self) -> np.ndarray:
        return np.frombuffer(self._first, dtype=float) if len(self) else np.array([])

    @property
    def finish_s(self) -> np.ndarray:
        return np.frombuffer(self._finish, dtype=float) if len(self) else np.array([])

    @property
    def output_tokens(self) -> np.ndarray:
        return np.frombuffer(self._output, dtype=np.intc).astype(int) if len(self) else np.array([], dtype=int)

    def last_finish_s(self) -> float:
        """The time the last request finished (0 with none), as max() over the records gives it."""
        return max(self._finish, default=0.0) if self.folded is None else self._last

    @classmethod
    def of(cls, records) -> RequestColumns:
        """The columns of kept records (in the order kept: id order)."""
        cols = cls()
        for rec in records:
            cols.open(rec)
            cols.close(rec)
        return cols
